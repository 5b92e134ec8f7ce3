"""Text from outside the program, made safe for each place xaibench puts it.

Paths, file names, image ids, class names, data set strings and the names of methods and metrics
come from the user, their files and their plugins, and may hold anything: bytes that are not UTF-8,
a ``$``, a leading ``=``. Each kind of output has one function here, used by every writer of it:

- :func:`displayable`: a path or file name whose bytes are not UTF-8 (on Linux Python gives their
  undecodable bytes as surrogate escapes, ``'caf\\udce9'``) shown with those bytes as ``\\xNN``
  (``caf\\xe9``), so that it can be written as UTF-8 and drawn; any other text unchanged.
- :func:`encode`: the UTF-8 bytes of a text file (Markdown, HTML, JSON), :func:`displayable`.
- :func:`csv_text`: how every CSV file is written, each text cell :func:`displayable` and
  :func:`escape_cell` d: a cell that a spreadsheet would run as a formula (text starting with ``=``,
  ``+``, ``-``, ``@``, a tab or a carriage return) gets a leading ``'``, as OWASP advises against
  CSV injection, and so does a cell starting with ``'``, so that the encoding is reversible: every
  reader of xaibench's CSV files decodes it (:func:`unescape_columns`) and sees the text as it was.
  Numbers, and text that reads as a number (``-0.5``), are written as they are.
- :func:`literal`: text for a matplotlib figure, drawn as written: ``$`` is escaped, so that
  ``a$b`` or ``$\\frac{$`` is never read as mathtext (a parse error, or a formula in a title).
- :func:`tolerant_output`: the command line's printed lines never fail on such a path.

A path itself is never changed: files are opened by the name the user gave (``os.fsencode`` gives
back its bytes); only the text written about it is.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import pandas as pd

__all__ = ["csv_text", "displayable", "encode", "escape_cell", "literal", "tolerant_output", "unescape_cell",
           "unescape_columns"]

_SURROGATE = re.compile("[\ud800-\udfff]")
#: The first characters that make a spreadsheet take a cell for a formula (OWASP: CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_QUOTE = "'"
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def _shown(match: re.Match) -> str:
    code = ord(match.group())
    return f"\\x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"\\u{code:04x}"


def displayable(text: str) -> str:
    """``text`` with each surrogate escape (an undecodable byte of a file name, ``os.fsdecode``'s
    ``'\\udce9'``) written as that byte, ``\\xe9``, and any other lone surrogate as ``\\udXXX``: a
    text that can be encoded as UTF-8 and drawn. Text without surrogates is returned as it is."""
    text = str(text)
    return _SURROGATE.sub(_shown, text) if _SURROGATE.search(text) else text


def literal(text: object) -> str:
    """``text`` for a matplotlib figure (a title, a label, a tick label, a legend entry):
    :func:`displayable`, and every ``$`` escaped, so that matplotlib draws the text as written instead
    of parsing it as mathtext."""
    return displayable(str(text)).replace("$", "\\$")


def encode(text: str) -> bytes:
    """The UTF-8 bytes of a text file's ``text``, :func:`displayable`: never a UnicodeEncodeError."""
    return displayable(text).encode("utf-8")


def escape_cell(value: object) -> object:
    """A CSV cell as xaibench writes it: a text that a spreadsheet would take for a formula (it starts
    with one of :data:`FORMULA_STARTS`) or that starts with ``'`` gets a leading ``'``; numbers, text
    that reads as a number (``-0.5``, ``+3``, ``-1e-3``) and other values are returned as they are."""
    if isinstance(value, str) and value[:1] in (*FORMULA_STARTS, _QUOTE) and not _NUMBER.fullmatch(value):
        return _QUOTE + value
    return value


def unescape_cell(value: object) -> object:
    """The inverse of :func:`escape_cell`: a text's leading ``'`` removed."""
    return value[1:] if isinstance(value, str) and value.startswith(_QUOTE) else value


def _cell(value: object) -> object:
    return escape_cell(displayable(value)) if isinstance(value, str) else value


def csv_text(frame: pd.DataFrame, *, header: bool = True) -> str:
    """``frame`` as CSV text (no index, ``\\n`` line ends), each text cell :func:`displayable` and
    :func:`escape_cell` d: how every CSV file of xaibench is written."""
    cells = frame.copy(deep=False)
    for k in range(frame.shape[1]):
        if pd.api.types.is_object_dtype(frame.dtypes.iloc[k]) or pd.api.types.is_string_dtype(frame.dtypes.iloc[k]):
            cells.isetitem(k, frame.iloc[:, k].map(_cell))
    return cells.to_csv(index=False, header=header, lineterminator="\n")


def unescape_columns(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """``frame``, read from a CSV file that :func:`csv_text` wrote, with the cells of its text
    ``columns`` decoded (:func:`unescape_cell`), in place."""
    for column in columns:
        if column in frame.columns:
            frame[column] = frame[column].map(unescape_cell)
    return frame


@contextmanager
def tolerant_output() -> Iterator[None]:
    """While the block runs, standard output and error write a character they cannot encode (the
    surrogate escape of a path's undecodable byte) as a backslash escape instead of raising, as
    Python's standard error always does; their setting is restored afterwards."""
    changed = []
    for stream in (sys.stdout, sys.stderr):
        if getattr(stream, "errors", None) == "strict" and callable(getattr(stream, "reconfigure", None)):
            stream.reconfigure(errors="backslashreplace")
            changed.append(stream)
    try:
        yield
    finally:
        for stream in changed:
            stream.reconfigure(errors="strict")
