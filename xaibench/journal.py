"""Append-only CSV files that survive a kill at any moment: a run's rows are never rewritten in place.

A :class:`Journal` appends each batch of rows with one ``write`` followed by ``fsync``, header first
when the file is new. Whatever happens to the process, the file is a header and complete rows,
possibly followed by one half-written line: :meth:`Journal.read` ignores that line, and
:meth:`Journal.repair` (called before appending to an existing file) removes it by an atomic rewrite
of the complete rows, byte for byte.

Columns that hold arrays (the per-image curves the data-set-level metrics need) are stored compactly
and exactly, as ``dtype:shape:base64(zlib(bytes))``; an empty cell is None.

A journal is read back as input, never trusted: the file is opened only as xaibench's own regular file
(:mod:`xaibench.own_files`), a byte-order mark or CRLF line ends that a spreadsheet added are
accepted, every integer and choice column is checked row by row, and every array cell is checked
against its column's :class:`ArrayCell` (dtype, number of dimensions, number of elements) *before* it
is decompressed, which then stops at the size the cell declares: a crafted cell cannot make a reader
allocate more than its column allows. A damaged file gives one line naming the file, the line and the
column.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

from dataclasses import dataclass
from typing import Mapping

import numpy as np
import pandas as pd

from xaibench.errors import XaibenchError
from xaibench.own_files import open_own, read_own_bytes
from xaibench.run_folder import atomic_write
from xaibench.text import csv_text, unescape_columns

_BOM = "\ufeff"
#: Integer columns (indices, labels, sizes) hold values below this: exact as floats, and as C longs.
_LARGEST_INTEGER = 2.0**53


@dataclass(frozen=True)
class ArrayCell:
    """What one array column may hold: numeric dtypes of at most 8 bytes (of the kinds in ``kinds``,
    numpy's letters: ``b`` bool, ``i``/``u`` integers, ``f`` floats), ``ndim`` in ``dims``, and at most
    ``max_elements`` elements (so at most ``8 * max_elements`` bytes once decompressed); ``uniform``:
    every row's array has the same shape (a per-image curve at fixed thresholds or steps)."""

    kinds: str = "biuf"
    dims: tuple[int, ...] = (0, 1, 2)
    max_elements: int = 1 << 20
    uniform: bool = False


#: The default for an array column that does not say.
ANY_ARRAY = ArrayCell()

#: Read floats back exactly as written: pandas 3 does by default (and deprecates the option).
_EXACT_FLOATS = {} if int(pd.__version__.split(".")[0]) >= 3 else {"float_precision": "round_trip"}


def encode_array(array: np.ndarray | None) -> str:
    """``dtype:shape:payload`` with the raw bytes zlib-compressed and base64-encoded; None (or a missing
    value, NaN) -> ``""``."""
    if array is None or (np.ndim(array) == 0 and pd.isna(array)):
        return ""
    array = np.asarray(array)
    shape = "x".join(str(s) for s in array.shape)
    payload = base64.b64encode(zlib.compress(array.tobytes(order="C"), 6)).decode("ascii")
    return f"{array.dtype.str}:{shape}:{payload}"


def decode_array(text: object, cell: ArrayCell = ANY_ARRAY) -> np.ndarray | None:
    """The inverse of :func:`encode_array` (bit-exact); an empty or missing cell -> None, and so is a
    0-d NaN (how earlier versions wrote the empty cells of a non-finite map's row).

    The dtype and shape written in the cell are checked against ``cell`` before anything is
    decompressed, and decompression stops at the declared size.

    Raises:
        ValueError: a dtype, shape or size the column does not allow, or a payload of another size.
    """
    if not isinstance(text, str) or not text:
        return None
    dtype_text, shape, payload = text.split(":", 2)
    if len(dtype_text) > 8:
        raise ValueError(f"dtype {dtype_text[:20]!r} is not a number type")
    dtype = np.dtype(dtype_text)
    if dtype.kind not in cell.kinds or dtype.itemsize > 8 or dtype.fields is not None:
        raise ValueError(f"dtype {dtype_text!r} is not allowed here (kinds {cell.kinds!r})")
    if len(shape) > 64 or not all(s.isdigit() for s in shape.split("x") if shape):
        raise ValueError(f"shape {shape[:40]!r} is not of the form AxBxC")
    dims = tuple(int(s) for s in shape.split("x")) if shape else ()
    if len(dims) not in cell.dims:
        raise ValueError(f"{len(dims)} dimensions, expected {' or '.join(map(str, cell.dims))}")
    elements = int(np.prod(dims, dtype=object)) if dims else 1
    if elements > cell.max_elements:
        raise ValueError(f"{elements} elements, more than the {cell.max_elements} this column holds")
    expected = elements * dtype.itemsize
    inflate = zlib.decompressobj()
    data = inflate.decompress(base64.b64decode(payload, validate=True), expected + 1)
    if len(data) != expected or not inflate.eof:
        raise ValueError(f"the payload does not hold the {expected} bytes its dtype and shape declare")
    array = np.frombuffer(data, dtype=dtype).reshape(dims).copy()
    return None if array.ndim == 0 and np.isnan(array) else array


class Journal:
    """One append-only CSV file with fixed columns.

    Args:
        path: The file.
        columns: Its columns, in order; appended frames must have them all.
        array_columns: The columns that hold arrays (encoded with :func:`encode_array`), as a list (any
            array of up to 2**20 numbers) or a mapping to each column's :class:`ArrayCell`.
        text_columns: Columns read back as text whatever they look like (ids, names).
        integer_columns: Columns that must hold non-negative integers (indices, labels, counts).
        choices: Text columns that must hold one of the given values.
        optional_columns: Columns that files written by an earlier version may lack (read back as
            missing values; such a file cannot be appended to, unless the columns it lacks are all
            ``added_columns``).
        added_columns: Optional columns that a later version added after the others, whose absence
            loses nothing a resumed run needs (a timing): :meth:`repair` gives an earlier file them,
            empty in its rows, so that it can be appended to.
        renamed_columns: Columns that files of an earlier version name otherwise (old name -> name):
            read under their names of today.
        lost: What deleting a damaged line loses, for the message that reports it.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        columns: Sequence[str],
        *,
        array_columns: Sequence[str] | Mapping[str, ArrayCell] = (),
        text_columns: Sequence[str] = (),
        integer_columns: Sequence[str] = (),
        choices: Mapping[str, Sequence[str]] | None = None,
        optional_columns: Sequence[str] = (),
        added_columns: Sequence[str] = (),
        renamed_columns: Mapping[str, str] | None = None,
        lost: str = "its row",
    ) -> None:
        self.path = Path(path)
        self.columns = list(columns)
        cells = array_columns if isinstance(array_columns, Mapping) else dict.fromkeys(array_columns, ANY_ARRAY)
        self.array_cells = dict(cells)
        self.array_columns = list(self.array_cells)
        self.text_columns = list(text_columns)
        self.integer_columns = list(integer_columns)
        self.choices = dict(choices or {})
        self.optional_columns = list(optional_columns) + [c for c in added_columns if c not in optional_columns]
        self.added_columns = list(added_columns)
        self.renamed_columns = dict(renamed_columns or {})
        self.lost = lost

    def create(self) -> None:
        """Write the header, if the file does not exist yet (so an empty journal says it is empty)."""
        if not os.path.lexists(self.path):
            header = ",".join(self.columns) + "\n"
            atomic_write(self.path, lambda file: file.write(header.encode("utf-8")))

    def append(self, frame: pd.DataFrame) -> None:
        """Append ``frame``'s rows (its :attr:`columns`, in order) in one write, flushed to disk."""
        if frame.empty:
            return
        descriptor = open_own(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)  # never through a link
        with os.fdopen(descriptor, "a", encoding="utf-8", newline="") as file:
            new = os.fstat(descriptor).st_size == 0  # create() not called
            file.write(self._text(frame, header=new))
            file.flush()
            os.fsync(descriptor)

    def _text(self, frame: pd.DataFrame, header: bool) -> str:
        """``frame``'s rows as this journal's CSV text: its columns in order, arrays encoded."""
        frame = frame.reindex(columns=self.columns) if set(self.optional_columns) - set(frame) else frame[self.columns]
        frame = frame.copy()
        for column in self.array_columns:
            frame[column] = [encode_array(a) for a in frame[column]]
        return csv_text(frame, header=header)

    def _complete_text(self) -> str:
        """The file's text up to its last newline (a half-written last line left out)."""
        data = read_own_bytes(self.path, linked_ok=True)  # reading a hard-linked copy changes nothing
        if data is None:
            return ""
        text = data.decode("utf-8", errors="replace")
        return text[: text.rfind("\n") + 1]

    def _header(self, text: str) -> list[str]:
        """The columns named by ``text``'s first line (a byte-order mark and a CR ignored)."""
        names = text[: text.index("\n")].lstrip(_BOM).rstrip("\r").split(",")
        return [self.renamed_columns.get(name, name) for name in names]

    def _check_header(self, header: list[str]) -> None:
        missing = [c for c in self.columns if c not in header]
        if header != [c for c in self.columns if c in header] or not set(missing) <= set(self.optional_columns):
            raise XaibenchError(
                f"{self.path} has the columns {','.join(header)[:300]}, expected {','.join(self.columns)}; it is not "
                "a file of this xaibench version: restore it, or read the run with the version that wrote it "
                "(--overwrite would start the run again without its rows)"
            )

    def read(self, where: Callable[[pd.DataFrame], pd.Series] | None = None) -> pd.DataFrame:
        """The complete rows, arrays decoded; an empty frame with the columns when there are none.

        Args:
            where: Keep only the rows for which it is True (given the frame, arrays not yet decoded:
                a few rows of a large journal are read without decoding the others).

        Raises:
            XaibenchError: the file's header is not this journal's (a file of another kind or version),
                or a line is damaged (a wrong number of fields, an unclosed quote, a number column
                holding text, an array cell that cannot be decoded).
        """
        text = self._complete_text()
        if not text:
            return pd.DataFrame({c: pd.Series(dtype=object) for c in self.columns})
        self._check_header(self._header(text))
        text = text.lstrip(_BOM)
        named = {new: old for old, new in self.renamed_columns.items()}  # as the file names them
        try:
            frame = pd.read_csv(
                io.StringIO(text),
                **_EXACT_FLOATS,
                keep_default_na=False,
                na_values=[""],
                dtype={named.get(c, c): str for c in self.text_columns + self.array_columns},
            )
        except (ValueError, pd.errors.ParserError) as error:  # ParserError names the line
            raise self._damaged(" ".join(str(error).split())) from error
        frame = frame.rename(columns=self.renamed_columns)
        unescape_columns(frame, self.text_columns + self.array_columns)  # csv_text wrote =x as '=x
        for column in frame.columns.difference(self.text_columns + self.array_columns):
            if pd.api.types.is_numeric_dtype(frame[column]):
                continue
            bad = (pd.to_numeric(frame[column], errors="coerce").isna() & frame[column].notna()).to_numpy()
            if bad.any():
                line = int(np.flatnonzero(bad)[0]) + 2  # the header is line 1
                raise self._damaged(f"line {line}: {column} is {frame[column][bad].iloc[0]!r}, not a number")
        self._check_values(frame)
        for column in self.columns:
            if column not in frame.columns:  # a file of an earlier version, without this optional column
                frame[column] = None
        frame = frame[self.columns]
        if where is not None:
            frame = frame[where(frame)].copy()
        for column in self.array_columns:
            frame[column] = [self._decode(cell, column, row) for row, cell in zip(frame.index, frame[column])]
            if self.array_cells[column].uniform:
                self._check_uniform(frame, column)
        return frame.reset_index(drop=True)

    def _check_uniform(self, frame: pd.DataFrame, column: str) -> None:
        """Every array of ``column`` has one shape (that of most rows): a row of another is damaged."""
        shapes = pd.Series([a.shape if a is not None else None for a in frame[column]], index=frame.index, dtype=object)
        known = shapes.dropna()
        if known.empty or known.nunique() == 1:
            return
        usual = known.value_counts().index[0]
        row = known.index[known != usual][0]
        raise self._damaged(f"line {row + 2}: its {column} has the shape {known[row]}, where the other rows have {usual}")

    def keys(self, columns: Sequence[str]) -> pd.DataFrame:
        """Only ``columns`` of the complete rows (text and integer columns: no array is read), e.g. to
        know which rows exist; the other columns of the file are not checked. An optional column that the
        file lacks is all missing values.

        Raises:
            XaibenchError: the file lacks one of ``columns``, or one of their cells is damaged.
        """
        text = self._complete_text().lstrip(_BOM)
        if not text:
            return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
        header = self._header(text)
        missing = [c for c in columns if c not in header and c not in self.optional_columns]
        if missing:
            raise XaibenchError(f"{self.path} has no column {', '.join(missing)}; it is not a file of this xaibench version")
        present = [c for c in columns if c in header]
        named = {new: old for old, new in self.renamed_columns.items()}  # as the file names them
        try:
            frame = pd.read_csv(io.StringIO(text), usecols=[named.get(c, c) for c in present], keep_default_na=False,
                                na_values=[""], dtype={named.get(c, c): str for c in present if c in self.text_columns})
        except (ValueError, pd.errors.ParserError) as error:
            raise self._damaged(" ".join(str(error).split())) from error
        frame = frame.rename(columns=self.renamed_columns)
        unescape_columns(frame, [c for c in present if c in self.text_columns])
        self._check_values(frame)
        return frame.reindex(columns=list(columns))

    def _check_values(self, frame: pd.DataFrame) -> None:
        """Integer columns hold non-negative integers, choice columns one of their values, every row."""
        for column in self.integer_columns:
            if column not in frame.columns:
                continue
            values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)
            bad = ~(np.isfinite(values) & (values >= 0) & (values < _LARGEST_INTEGER) & (np.floor(values) == values))
            if bad.any():
                line = int(np.flatnonzero(bad)[0]) + 2
                raise self._damaged(
                    f"line {line}: {column} is {str(frame[column].iloc[line - 2])[:40]!r}, not an integer in [0, 2**53)"
                )
        for column, allowed in self.choices.items():
            if column not in frame.columns:
                continue
            bad = ~frame[column].isin(list(allowed)).to_numpy()
            if bad.any():
                line = int(np.flatnonzero(bad)[0]) + 2
                raise self._damaged(
                    f"line {line}: {column} is {str(frame[column].iloc[line - 2])[:60]!r}, not one of {', '.join(allowed)}"
                )

    def _decode(self, cell: object, column: str, row: int) -> np.ndarray | None:
        try:
            return decode_array(cell, self.array_cells[column])
        except (ValueError, TypeError, OverflowError, zlib.error, binascii.Error) as error:
            cause = " ".join(f"{type(error).__name__}: {error}".split())
            raise self._damaged(f"line {row + 2}: its {column} cannot be decoded, {cause}") from error

    def _damaged(self, problem: str) -> XaibenchError:
        return XaibenchError(
            f"{self.path} is damaged ({problem}); repair or delete that line (deleting it loses {self.lost}), "
            "or start the run again with --overwrite"
        )

    def repair(self) -> None:
        """Make the file ready to append to: a half-written last line removed, and a byte-order mark or
        CRLF line ends that a spreadsheet added taken out, by atomically rewriting the complete rows.

        Raises:
            XaibenchError: the file is not this journal's (other columns), or lacks a column that files
                of an earlier version lack (rows cannot be appended to it).
        """
        data = read_own_bytes(self.path)
        if data is None:
            return
        text = data.decode("utf-8", errors="replace")
        text = text[: text.rfind("\n") + 1]
        if not text:
            return
        header = self._header(text)
        self._check_header(header)
        if header != self.columns and header == self.columns[: len(header)] and set(self.columns[len(header) :]) <= set(self.added_columns):
            rows = self.read()  # the columns it lacks, empty
            atomic_write(self.path, lambda file: file.write(self._text(rows, header=True).encode("utf-8")))
            return
        if header != self.columns:
            missing = ", ".join(c for c in self.columns if c not in header)
            raise XaibenchError(
                f"{self.path} was written by an earlier version of xaibench, without {missing}; summarize and report "
                "read it, but continue it with the version that wrote it, or start it again with --overwrite"
            )
        clean = text.lstrip(_BOM).replace("\r\n", "\n")
        if clean.encode("utf-8") != data:
            atomic_write(self.path, lambda file: file.write(clean.encode("utf-8")))
