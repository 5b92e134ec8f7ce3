"""Append-only CSV files that survive a kill at any moment: a run's rows are never rewritten in place.

A :class:`Journal` appends each batch of rows with one ``write`` followed by ``fsync``, header first
when the file is new. Whatever happens to the process, the file is a header and complete rows,
possibly followed by one half-written line: :meth:`Journal.read` ignores that line, and
:meth:`Journal.repair` (called before appending to an existing file) removes it by an atomic rewrite
of the complete rows, byte for byte.

Columns that hold arrays (the per-image curves the data-set-level metrics need) are stored compactly
and exactly, as ``dtype:shape:base64(zlib(bytes))``; an empty cell is None.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from xaibench.errors import XaibenchError
from xaibench.run_folder import atomic_write
from xaibench.text import csv_text, unescape_columns

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


def decode_array(text: object) -> np.ndarray | None:
    """The inverse of :func:`encode_array` (bit-exact); an empty or missing cell -> None, and so is a
    0-d NaN (how earlier versions wrote the empty cells of a non-finite map's row)."""
    if not isinstance(text, str) or not text:
        return None
    dtype, shape, payload = text.split(":", 2)
    dims = tuple(int(s) for s in shape.split("x")) if shape else ()
    array = np.frombuffer(zlib.decompress(base64.b64decode(payload)), dtype=np.dtype(dtype)).reshape(dims).copy()
    return None if array.ndim == 0 and np.isnan(array) else array


class Journal:
    """One append-only CSV file with fixed columns.

    Args:
        path: The file.
        columns: Its columns, in order; appended frames must have them all.
        array_columns: The columns that hold arrays (encoded with :func:`encode_array`).
        text_columns: Columns read back as text whatever they look like (ids, names).
        lost: What deleting a damaged line loses, for the message that reports it.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        columns: Sequence[str],
        *,
        array_columns: Sequence[str] = (),
        text_columns: Sequence[str] = (),
        lost: str = "its row",
    ) -> None:
        self.path = Path(path)
        self.columns = list(columns)
        self.array_columns = list(array_columns)
        self.text_columns = list(text_columns)
        self.lost = lost

    def create(self) -> None:
        """Write the header, if the file does not exist yet (so an empty journal says it is empty)."""
        if not self.path.exists():
            header = ",".join(self.columns) + "\n"
            atomic_write(self.path, lambda file: file.write(header.encode("utf-8")))

    def append(self, frame: pd.DataFrame) -> None:
        """Append ``frame``'s rows (its :attr:`columns`, in order) in one write, flushed to disk."""
        if frame.empty:
            return
        frame = frame[self.columns].copy()
        for column in self.array_columns:
            frame[column] = [encode_array(a) for a in frame[column]]
        new = not self.path.exists() or self.path.stat().st_size == 0  # create() not called
        text = csv_text(frame, header=new)
        with open(self.path, "a", encoding="utf-8", newline="") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())

    def _complete_text(self) -> str:
        """The file's text up to its last newline (a half-written last line left out)."""
        if not self.path.is_file():
            return ""
        text = self.path.read_text(encoding="utf-8", errors="replace")
        return text[: text.rfind("\n") + 1]

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
        header = text[: text.index("\n")].split(",")
        if header != self.columns:
            raise XaibenchError(
                f"{self.path} has the columns {','.join(header)}, expected {','.join(self.columns)}; it was "
                "written by another version of xaibench: pass --overwrite to start the run again"
            )
        try:
            frame = pd.read_csv(
                io.StringIO(text),
                **_EXACT_FLOATS,
                keep_default_na=False,
                na_values=[""],
                dtype={c: str for c in self.text_columns + self.array_columns},
            )
        except (ValueError, pd.errors.ParserError) as error:  # ParserError names the line
            raise self._damaged(" ".join(str(error).split())) from error
        unescape_columns(frame, self.text_columns + self.array_columns)  # csv_text wrote =x as '=x
        for column in frame.columns.difference(self.text_columns + self.array_columns):
            if pd.api.types.is_numeric_dtype(frame[column]):
                continue
            bad = (pd.to_numeric(frame[column], errors="coerce").isna() & frame[column].notna()).to_numpy()
            if bad.any():
                line = int(np.flatnonzero(bad)[0]) + 2  # the header is line 1
                raise self._damaged(f"line {line}: {column} is {frame[column][bad].iloc[0]!r}, not a number")
        if where is not None:
            frame = frame[where(frame)].copy()
        for column in self.array_columns:
            frame[column] = [self._decode(cell, column, row) for row, cell in zip(frame.index, frame[column])]
        return frame.reset_index(drop=True)

    def _decode(self, cell: object, column: str, row: int) -> np.ndarray | None:
        try:
            return decode_array(cell)
        except (ValueError, TypeError, zlib.error, binascii.Error) as error:
            cause = " ".join(f"{type(error).__name__}: {error}".split())
            raise self._damaged(f"line {row + 2}: its {column} cannot be decoded, {cause}") from error

    def _damaged(self, problem: str) -> XaibenchError:
        return XaibenchError(
            f"{self.path} is damaged ({problem}); repair or delete that line (deleting it loses {self.lost}), "
            "or start the run again with --overwrite"
        )

    def repair(self) -> None:
        """Remove a half-written last line, if any, by atomically rewriting the complete rows."""
        if not self.path.is_file():
            return
        size = self.path.stat().st_size
        text = self._complete_text()
        if len(text.encode("utf-8")) != size:
            atomic_write(self.path, lambda file: file.write(text.encode("utf-8")))
