"""A run's per-image results as Apache Parquet part files: written a part at a time, read by column.

Each table of a run (the per-image rows, the skipped images, the timings, the image and map thumbnails)
is a folder of part files, ``<table>/part-00000001.parquet``, ``part-00000002.parquet``, ...: the
layout that pandas (``pd.read_parquet("RUN/per_image")``), DuckDB
(``SELECT * FROM 'RUN/per_image/*.parquet'``), Polars and Spark read as one data set. A part is
written whole to a temporary file, flushed to disk and renamed into place, so a run killed at any
moment leaves complete parts only (and perhaps a temporary file, which :meth:`Table.repair` removes):
nothing needs repairing, and a kill loses at most the part in flight. Parts are numbered in the order
they are written, and readers read them in that order, so a table reads as the rows appended so far.

Readers ask for columns (Parquet stores each column apart): knowing which (model, index, method) rows
exist reads three text and integer columns, the summary reads the metric columns, the report reads the
thumbnails it shows. Per-image arrays (a metric's curve, an image's boxes, a map's grey levels) are
nested Arrow lists (``list<float>`` for a curve, ``list<list<uint8>>`` for a map), real arrays to
every reader, not encoded text.

A part is read back as input, never trusted: it is opened only as xaibench's own regular file
(:mod:`xaibench.own_files`), its declared size is bounded before anything is decoded, its columns and
their types must be the table's, integer and choice columns are checked row by row, and every array
cell is checked against its column's :class:`~xaibench.journal.ArrayCell` (dtype, dimensions,
elements, one shape per column where required). A damaged part gives one line naming the file and
what deleting it loses.

Example:
    >>> import tempfile
    >>> table = Table(tempfile.mkdtemp() + "/rows", ["index", "iou"], integer_columns=["index"])
    >>> table.create()
    >>> table.append(pd.DataFrame({"index": [0, 1], "iou": [0.5, 0.25]}))
    >>> table.read()["iou"].tolist()
    [0.5, 0.25]
"""

from __future__ import annotations

import copy
import itertools
import logging
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from xaibench.errors import XaibenchError
from xaibench.journal import ANY_ARRAY, ArrayCell, Journal
from xaibench.own_files import REMEDY, check_own_folder, open_own, remove_own
from xaibench.run_folder import PART_FILE, atomic_write, atomic_write_new
from xaibench.text import displayable

logger = logging.getLogger(__name__)

#: Rows one part may hold, and the bytes a text cell may take (checked in the file's metadata, with
#: each array column's own bound, before anything is decompressed).
MAX_PART_ROWS = 1 << 20
MAX_TEXT_BYTES = 1 << 16
#: Field metadata of an array column whose cells are 0-dimensional arrays, stored as one-element lists.
SCALAR_ARRAYS = b"xaibench.scalar_arrays"
#: Integer columns (indices, labels, sizes) hold values below this: exact as floats, and as C longs.
_LARGEST_INTEGER = 2**53
#: Parquet compression of the parts: fast, and about 3x smaller than the JPEG-free CSV journals.
COMPRESSION = "zstd"
_KINDS = {"b": pa.types.is_boolean, "i": pa.types.is_signed_integer, "u": pa.types.is_unsigned_integer,
          "f": pa.types.is_floating}


def part_name(number: int) -> str:
    """The file name of part ``number`` (1, 2, ...)."""
    return f"part-{number:08d}.parquet"


class Table:
    """One table of a run: a folder of Parquet parts with fixed columns.

    Args:
        folder: The table's folder (created by :meth:`create`).
        columns: Its columns, in order; appended frames must have them all (optional ones aside).
        array_columns: The columns that hold arrays (each cell an N-d numpy array or None), as a list
            (any array of up to 2**20 numbers) or a mapping to each column's :class:`ArrayCell`.
        text_columns: Columns of text (ids, names).
        integer_columns: Columns of non-negative integers (indices, labels, counts).
        choices: Text columns that must hold one of the given values.
        optional_columns: Columns that a frame may lack (written as missing values).
        added_columns: Optional columns that a later version added, whose absence loses nothing a
            resumed run needs (as :class:`~xaibench.journal.Journal` takes them): a frame may lack them.
        renamed_columns: Columns that parts of an earlier version name otherwise (old name -> name):
            read under their names of today.
        lost: What deleting a damaged part loses, for the message that reports it.

    Every other column is a number (float64; NaN where missing).
    """

    def __init__(
        self,
        folder: str | os.PathLike,
        columns: Sequence[str],
        *,
        array_columns: Sequence[str] | Mapping[str, ArrayCell] = (),
        text_columns: Sequence[str] = (),
        integer_columns: Sequence[str] = (),
        choices: Mapping[str, Sequence[str]] | None = None,
        optional_columns: Sequence[str] = (),
        added_columns: Sequence[str] = (),
        renamed_columns: Mapping[str, str] | None = None,
        lost: str = "its rows",
    ) -> None:
        self.path = Path(folder)
        self.columns = list(columns)
        cells = array_columns if isinstance(array_columns, Mapping) else dict.fromkeys(array_columns, ANY_ARRAY)
        self.array_cells = dict(cells)
        self.array_columns = list(self.array_cells)
        self.text_columns = list(text_columns)
        self.integer_columns = list(integer_columns)
        self.choices = dict(choices or {})
        self.optional_columns = list(optional_columns) + [c for c in added_columns if c not in optional_columns]
        self.renamed_columns = dict(renamed_columns or {})
        self.lost = lost
        #: Whether other processes append to the table at the same time (:meth:`append` then claims
        #: each part's number with :func:`~xaibench.run_folder.atomic_write_new`).
        self.shared = False
        self._next: int | None = None

    def at(self, folder: str | os.PathLike) -> Table:
        """The same table in another folder."""
        other = copy.copy(self)
        other.path, other._next = Path(folder), None
        return other

    # ------------------------------------------------------------------------------------- writing
    def exists(self) -> bool:
        """Whether the table's folder is there (a link or a file in its place is refused)."""
        return check_own_folder(self.path)

    def create(self) -> None:
        """Create the table's folder, if it is not there yet."""
        if not self.exists():
            try:
                self.path.mkdir()
            except FileExistsError:  # another process of the run made it meanwhile
                self.exists()
            except OSError as error:
                raise XaibenchError(f"cannot create {self.path} ({error.strerror or error}); {REMEDY}") from None

    def repair(self) -> None:
        """Remove the temporary files that a process killed mid-write left in the table's folder."""
        if self.exists():
            for stale in self.path.glob(".*.partial"):
                if not stale.is_dir() or stale.is_symlink():
                    stale.unlink(missing_ok=True)

    def append(self, frame: pd.DataFrame) -> None:
        """Write ``frame``'s rows (its :attr:`columns`, in order) as the next part, atomically."""
        if frame.empty:
            return
        missing = [c for c in self.columns if c not in frame.columns and c not in self.optional_columns]
        if missing:
            raise XaibenchError(f"rows for {self.path} lack the column(s) {', '.join(missing)}")
        fields, arrays = [], []
        for column in self.columns:
            array = self._arrow(frame, column)
            scalars = column in self.array_cells and column in frame.columns and _all_scalar(frame[column])
            fields.append(pa.field(column, array.type, metadata={SCALAR_ARRAYS: b"1"} if scalars else None))
            arrays.append(array)
        table = pa.Table.from_arrays(arrays, schema=pa.schema(fields))
        self.create()
        write = lambda file: pq.write_table(table, file, compression=COMPRESSION)  # noqa: E731
        if self.shared:  # other processes write parts too: take the first free number, never replace
            numbers = itertools.count(max((number for number, _ in self.parts()), default=0) + 1)
            atomic_write_new((self.path / part_name(number) for number in numbers), write)
            return
        if self._next is None:
            self._next = max((number for number, _ in self.parts()), default=0) + 1
        atomic_write(self.path / part_name(self._next), write)
        self._next += 1

    def _arrow(self, frame: pd.DataFrame, column: str) -> pa.Array:
        if column not in frame.columns:
            return pa.nulls(len(frame), pa.string() if column in self.text_columns else pa.float64())
        values = frame[column]
        if column in self.array_cells:  # 0-d arrays (a curve of one point) kept as one-element lists
            return arrays_to_arrow([np.asarray(v).reshape(1) if not _missing_cell(v) and np.ndim(v) == 0 else v
                                    for v in values])
        if column in self.text_columns:
            return pa.array([None if _missing(v) else displayable(str(v)) for v in values], type=pa.string())
        if column in self.integer_columns:
            return pa.array(np.asarray(values, dtype=np.int64))
        return pa.array(pd.to_numeric(values).to_numpy(dtype=np.float64))

    # ------------------------------------------------------------------------------------- reading
    def parts(self) -> list[tuple[int, Path]]:
        """The table's parts, (number, path), in the order they were written; none if there is no folder."""
        if not self.exists():
            return []
        found = []
        for entry in os.scandir(self.path):
            match = PART_FILE.fullmatch(entry.name)
            if match:
                found.append((int(match.group(1)), Path(entry.path)))
        return sorted(found)

    def read(
        self,
        where: Callable[[pd.DataFrame], pd.Series] | None = None,
        columns: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """The rows of every part, arrays as numpy arrays; an empty frame with the columns when there are none.

        Args:
            where: Keep only the rows for which it is True, given a part's rows without their arrays
                (the arrays of the other rows are never read).
            columns: Read only these columns (default: all).

        Raises:
            XaibenchError: a part is damaged or not this table's (one line naming it).
        """
        wanted = self.columns if columns is None else list(columns)
        frames = list(self.chunks(where, columns))
        if not frames:
            return pd.DataFrame({c: pd.Series(dtype=object) for c in wanted})
        return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]

    def chunks(
        self,
        where: Callable[[pd.DataFrame], pd.Series] | None = None,
        columns: Sequence[str] | None = None,
    ) -> Iterator[pd.DataFrame]:
        """:meth:`read` a part at a time: memory bounded by a part, not by the table."""
        wanted = self.columns if columns is None else list(columns)
        for _, path in self.parts():
            frame = self._read_part(path, wanted, where, whole=columns is None)
            if len(frame):
                yield frame

    def keys(self, columns: Sequence[str]) -> pd.DataFrame:
        """Only ``columns`` of every row (text and integer columns: no array is read), e.g. to know
        which rows exist."""
        return self.read(columns=columns)

    def _read_part(
        self, path: Path, columns: list[str], where: Callable[[pd.DataFrame], pd.Series] | None, whole: bool
    ) -> pd.DataFrame:
        descriptor = open_own(path, os.O_RDONLY, linked_ok=True)  # a hard-linked copy of a run reads the same
        with os.fdopen(descriptor, "rb") as file:
            try:
                part = pq.ParquetFile(file)
                on_file = {self.renamed_columns.get(c, c): c for c in part.schema_arrow.names}  # name now -> in the part
                self._check_sizes(path, part.metadata, columns)
                names = list(on_file)
                self._check_columns(path, names, columns, whole)
                plain = [c for c in columns if c not in self.array_cells and c in names]
                arrays = [c for c in columns if c in self.array_cells and c in names]
                read = part.read(columns=[on_file[c] for c in plain]).rename_columns(plain) if plain else None
                frame = self._frame(path, read, plain, part.metadata.num_rows)
                keep = None
                if where is not None:
                    keep = np.asarray(where(frame), dtype=bool)
                    frame = frame[keep].reset_index(drop=True)
                if arrays and len(frame):
                    table = part.read(columns=[on_file[c] for c in arrays]).rename_columns(arrays)
                    if keep is not None:
                        table = table.filter(pa.array(keep))
                    for column in arrays:
                        cells = arrays_from_arrow(table.column(column), self.array_cells[column],
                                                  lambda problem: self._damaged(path, problem), column)
                        if (table.schema.field(column).metadata or {}).get(SCALAR_ARRAYS) and 0 in self.array_cells[column].dims:
                            cells = [c.reshape(()) if c is not None and c.size == 1 else c for c in cells]
                        frame[column] = cells
            except (pa.ArrowException, OSError, ValueError, TypeError, IndexError) as error:
                raise self._damaged(path, " ".join(f"{type(error).__name__}: {error}".split())[:300]) from None
        for column in columns:
            if column not in frame.columns:
                frame[column] = None  # an optional column this part lacks
        return frame[columns]

    def _check_sizes(self, path: Path, metadata: pq.FileMetaData, columns: list[str]) -> None:
        """The part's declared sizes are within what its rows may hold, before anything is decoded: per
        row, one value (a number, or a text of at most :data:`MAX_TEXT_BYTES`) per column, and at most
        the column's :attr:`ArrayCell.max_elements` numbers of 8 bytes per array cell. (Parquet's own
        encodings compress runs of equal values, so the count of values, not the bytes, bounds what
        decoding allocates.)"""
        rows = metadata.num_rows
        if rows > MAX_PART_ROWS:
            raise self._damaged(path, f"it declares {rows} rows, more than the {MAX_PART_ROWS} a part holds")
        for group in range(metadata.num_row_groups):
            for k in range(metadata.num_columns):
                chunk = metadata.row_group(group).column(k)
                name = chunk.path_in_schema.split(".")[0]
                name = self.renamed_columns.get(name, name)
                if name not in columns:  # not read, so not decoded
                    continue
                cell = self.array_cells.get(name)
                values = max(rows, 1) * (cell.max_elements if cell is not None else 1)
                if chunk.num_values > values:  # what decoding allocates: 8 bytes or less a value
                    raise self._damaged(path, f"its {name} declares {chunk.num_values} numbers for {rows} row(s), "
                                              "more than that column holds")
                per_row = 8 * cell.max_elements + 64 if cell is not None else MAX_TEXT_BYTES
                if chunk.total_uncompressed_size > rows * per_row + (1 << 16):
                    raise self._damaged(path, f"its {name} declares {chunk.total_uncompressed_size} bytes for {rows} "
                                              "row(s), more than that column holds")

    def _check_columns(self, path: Path, names: list[str], wanted: list[str], whole: bool) -> None:
        """The part has the ``wanted`` columns (optional ones aside) and, read ``whole``, no others."""
        missing = [c for c in wanted if c not in names and c not in self.optional_columns]
        extra = [c for c in names if c not in self.columns] if whole else []
        if missing or extra:
            raise XaibenchError(
                f"{path} has the columns {','.join(names)[:300]}, expected {','.join(self.columns)}; it is not a part "
                "of this table of this xaibench version: restore it, or read the run with the version that wrote it"
            )

    def _frame(self, path: Path, table: pa.Table | None, columns: list[str], rows: int) -> pd.DataFrame:
        """The non-array columns of a part as a checked frame."""
        data: dict[str, object] = {}  # the columns, made into a frame at once
        for column in columns:
            values = table.column(column)
            kind = values.type
            if column in self.text_columns:
                if not (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_null(kind)):
                    raise self._damaged(path, f"its {column} is {kind}, not text")
                data[column] = values.to_pandas()
            elif column in self.integer_columns:
                if not pa.types.is_integer(kind) or values.null_count:
                    raise self._damaged(path, f"its {column} is {kind}{' with missing values' if values.null_count else ''}, "
                                              "not integers")
                numbers = values.to_numpy()
                bad = (numbers < 0) | (numbers >= _LARGEST_INTEGER)
                if bad.any():
                    row = int(np.flatnonzero(bad)[0])
                    raise self._damaged(path, f"row {row}: {column} is {numbers[row]}, not an integer in [0, 2**53)")
                data[column] = numbers.astype(np.int64)
            else:
                if not (pa.types.is_floating(kind) or pa.types.is_integer(kind) or pa.types.is_null(kind)):
                    raise self._damaged(path, f"its {column} is {kind}, not a number")
                data[column] = values.to_numpy(zero_copy_only=False).astype(np.float64) if len(values) else np.zeros(0)
        frame = pd.DataFrame(data, index=pd.RangeIndex(rows))
        for column, allowed in self.choices.items():
            if column in frame.columns:
                bad = ~frame[column].isin(list(allowed)).to_numpy()
                if bad.any():
                    row = int(np.flatnonzero(bad)[0])
                    raise self._damaged(path, f"row {row}: {column} is {str(frame[column].iloc[row])[:60]!r}, not one "
                                              f"of {', '.join(allowed)}")
        return frame

    def _damaged(self, path: Path, problem: str) -> XaibenchError:
        return XaibenchError(
            f"{path} is damaged ({problem}); delete that file (that loses {self.lost}), or start the run again "
            "with --overwrite"
        )


def convert_journal(journal: Journal, table: Table) -> None:
    """Move the rows of a CSV journal of xaibench 0.3 or earlier into ``table``, once, atomically: they
    are written as one part into a temporary folder beside it, which is renamed into place; then the
    CSV file is removed. A kill at any moment leaves the CSV, or the table (and perhaps the CSV, removed
    at the next call, or the temporary folder, which :func:`xaibench.run_folder.remove_partial_files`
    removes).

    Raises:
        XaibenchError: the journal is damaged, or lacks columns that its rows need to be continued
            (a run of an earlier version, without the images' digests): nothing is converted.
    """
    if table.exists():
        remove_own(journal.path)  # converted before, the CSV's removal interrupted
        return
    journal.repair()  # refuses a journal of a version whose rows cannot be continued
    rows = journal.read()
    temporary = Path(tempfile.mkdtemp(dir=table.path.parent, prefix=f".{table.path.name}.", suffix=".partial"))
    os.chmod(temporary, 0o777 & ~_umask())  # mkdtemp makes a private folder; give the usual permissions
    table.at(temporary).append(rows)
    os.rename(temporary, table.path)
    remove_own(journal.path)
    logger.warning("converted %s (%d rows) to %s, the Parquet results store of this version; it is read from "
                   "there from now on", journal.path, len(rows), table.path)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _all_scalar(values: pd.Series) -> bool:
    """Whether every array of a column is 0-dimensional (and there is one)."""
    present = [v for v in values if not _missing_cell(v)]
    return bool(present) and all(np.ndim(v) == 0 for v in present)


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


# ----------------------------------------------------------------------------------- array cells
def arrays_to_arrow(cells: Sequence[np.ndarray | None]) -> pa.Array:
    """Per-row N-d arrays (or None) as one nested Arrow list column: ``list<T>`` for 1-d arrays,
    ``list<list<T>>`` for 2-d, ... (every array of the column has the same number of dimensions and
    dtype); an all-None column is of the null type.

    Example:
        >>> arrays_to_arrow([np.array([[1, 2], [3, 4]], np.uint8), None]).to_pylist()
        [[[1, 2], [3, 4]], None]
    """
    present = [np.asarray(a) for a in cells if not _missing_cell(a)]
    if not present:
        return pa.nulls(len(cells))
    ndim, dtype = present[0].ndim, present[0].dtype
    if ndim == 0 or any(a.ndim != ndim or a.dtype != dtype for a in present):
        raise XaibenchError(f"an array column must hold arrays of one dtype and of 1 or more dimensions, got "
                            f"{sorted({(str(a.dtype), a.ndim) for a in present})}")
    values = pa.array(np.concatenate([a.ravel() for a in present]) if present else np.zeros(0, dtype))
    shapes = np.array([a.shape for a in present], dtype=np.int64)  # (cells, ndim)
    for level in range(ndim - 1, 0, -1):  # innermost lists first
        if (shapes[:, level] == shapes[0, level]).all():  # one length: fixed-size lists keep it even for 0 rows
            values = pa.FixedSizeListArray.from_arrays(values, int(shapes[0, level]))
            continue
        repeats = np.prod(shapes[:, :level], axis=1)
        lengths = np.repeat(shapes[:, level], repeats)
        values = pa.ListArray.from_arrays(pa.array(_offsets(lengths)), values)
    lengths = np.zeros(len(cells), dtype=np.int64)
    valid = np.array([not _missing_cell(a) for a in cells])
    lengths[valid] = shapes[:, 0]
    return pa.ListArray.from_arrays(pa.array(_offsets(lengths)), values, mask=pa.array(~valid))


def _missing_cell(cell: object) -> bool:
    return cell is None or (np.ndim(cell) == 0 and pd.isna(cell))


def _offsets(lengths: np.ndarray) -> np.ndarray:
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    if offsets[-1] >= 2**31:
        return offsets
    return offsets.astype(np.int32)


def arrays_from_arrow(
    column: pa.ChunkedArray | pa.Array,
    cell: ArrayCell = ANY_ARRAY,
    damaged: Callable[[str], Exception] = ValueError,
    name: str = "array",
) -> list[np.ndarray | None]:
    """The inverse of :func:`arrays_to_arrow`: a numpy array (or None) per row, each checked against
    ``cell`` before it is built: the dtype's kind and size, the number of dimensions, the number of
    elements, a rectangular shape, and one shape for every row where ``cell.uniform``.

    Raises:
        ``damaged(problem)``: a cell the column does not allow.
    """
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    if pa.types.is_null(column.type):
        return [None] * len(column)
    levels, kind = [], column.type
    while pa.types.is_list(kind) or pa.types.is_large_list(kind) or (levels and pa.types.is_fixed_size_list(kind)):
        levels.append(kind)
        kind = kind.value_type
    if not levels or len(levels) not in cell.dims:
        raise damaged(f"its {name} holds {len(levels)}-dimensional arrays, expected {' or '.join(map(str, cell.dims))}")
    if not any(_KINDS[k](kind) for k in cell.kinds) or kind.bit_width > 64:
        raise damaged(f"its {name} holds {kind}, not numbers of the kinds {cell.kinds!r}")
    # Offsets of every level, and the innermost values.
    offsets, widths, array = [], [], column
    for level in levels:
        if pa.types.is_fixed_size_list(level):
            widths.append(level.list_size)
            offsets.append((np.arange(len(array) + 1, dtype=np.int64) + array.offset) * level.list_size)
        else:
            widths.append(None)
            offsets.append(np.asarray(array.offsets.to_numpy(zero_copy_only=False), dtype=np.int64))
        array = array.values
    if array.null_count:
        raise damaged(f"its {name} has missing numbers inside an array")
    values = array.to_numpy(zero_copy_only=False)
    if not values.flags.writeable:  # Arrow's buffers are read-only; readers may change what they get
        values = values.copy()
    valid = column.is_valid().to_numpy(zero_copy_only=False)
    if any(np.any(np.diff(o) < 0) for o in offsets):
        raise damaged(f"its {name} has lists of negative length")
    cells: list[np.ndarray | None] = []
    shapes = set()
    for row in range(len(column)):
        if not valid[row]:
            cells.append(None)
            continue
        start, stop = int(offsets[0][row]), int(offsets[0][row + 1])
        shape = [stop - start]
        for level, fixed in zip(offsets[1:], widths[1:]):
            lengths = np.diff(level[start:stop + 1])
            if len(lengths) and np.any(lengths != lengths[0]):
                raise damaged(f"row {row}: its {name} is not rectangular")
            width = fixed if fixed is not None else int(lengths[0]) if len(lengths) else 0
            start, stop = int(level[start]), int(level[stop])
            shape.append(width)
        elements = int(np.prod(shape))
        if elements > cell.max_elements:
            raise damaged(f"row {row}: its {name} has {elements} elements, more than the {cell.max_elements} it holds")
        cells.append(values[start:stop].reshape(shape))
        shapes.add(tuple(shape))
    if cell.uniform and len(shapes) > 1:
        raise damaged(f"its {name} has arrays of the shapes {sorted(shapes)[:3]}, where a column holds one")
    return cells
