"""Text from outside the program, made safe for each place xaibench puts it.

Paths, file names, image ids, class names, data set strings and the names of methods and metrics
come from the user, their files and their plugins, and may hold anything: bytes that are not UTF-8,
a ``$``. Each kind of output has one function here, used by every writer of it:

- :func:`displayable`: a path or file name whose bytes are not UTF-8 (on Linux Python gives their
  undecodable bytes as surrogate escapes, ``'caf\\udce9'``) shown with those bytes as ``\\xNN``
  (``caf\\xe9``), so that it can be written as UTF-8 and drawn; any other text unchanged.
- :func:`literal`: text for a matplotlib figure, drawn as written: ``$`` is escaped, so that
  ``a$b`` or ``$\\frac{$`` is never read as mathtext (a parse error, or a formula in a title).
"""

from __future__ import annotations

import re

__all__ = ["displayable", "literal"]

_SURROGATE = re.compile("[\ud800-\udfff]")


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
