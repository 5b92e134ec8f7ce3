"""Faults planted in a run folder for the tests of what reading it back guarantees.

The tests of tests/test_run_folder_trust.py hold for any storage of a run's results; what they plant
depends on how the results are stored today (Parquet part files, :mod:`xaibench.results_store`), and
that knowledge lives here alone: a new store changes this module, not the tests.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from xaibench.harness import RunTables
from xaibench.journal import Journal
from xaibench.run_folder import LEGACY_JOURNALS, PER_IMAGE, TABLES, TIMINGS

#: The per-image array column the faults are planted in.
CURVE = "box_iou_curve"


def files(folder: Path) -> list[str]:
    """Every file of a run, as paths relative to its folder (the tables' parts included)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def same_tables(one: Path, other: Path, tables: tuple[str, ...] = (PER_IMAGE, "skipped", "maps", "images")) -> None:
    """Assert that two runs wrote the same ``tables`` (every part, byte for byte; the timings differ)."""
    for table in tables:
        parts = [p.name for p in sorted((one / table).glob("part-*.parquet"))]
        assert parts == [p.name for p in sorted((other / table).glob("part-*.parquet"))], table
        for part in parts:
            assert (one / table / part).read_bytes() == (other / table / part).read_bytes(), f"{table}/{part}"


def first_part(folder: Path, table: str = PER_IMAGE) -> Path:
    """The first part file of one of the run's tables."""
    return sorted((folder / table).glob("part-*.parquet"))[0]


def _replace_first_row(folder: Path, column: str, value: pa.Array) -> None:
    """Rewrite the first per-image part with ``value`` (one row's cell, as an Arrow array of one
    element) in place of its first row's ``column``; the other rows are dropped."""
    path = first_part(folder)
    table = pq.read_table(path).slice(0, 1)
    k = table.schema.get_field_index(column)
    table = table.set_column(k, pa.field(column, value.type), value)
    pq.write_table(table, path, compression="zstd")


def plant_decompression_bomb(folder: Path, inflated_bytes: int = 1 << 31) -> int:
    """A per-image curve of ``inflated_bytes`` bytes of zeros, which compress to almost nothing;
    returns the size of the planted file."""
    zeros = np.zeros(inflated_bytes // 8)
    _replace_first_row(folder, CURVE, pa.ListArray.from_arrays(pa.array([0, len(zeros)], pa.int32()), pa.array(zeros)))
    return first_part(folder).stat().st_size


def plant_huge_declared_array(folder: Path) -> None:
    """A per-image curve of more numbers than the column holds (2**21 of at most 2**20)."""
    plant_decompression_bomb(folder, 8 << 21)


def plant_array_of_dtype(folder: Path, dtype: str) -> None:
    """A per-image curve of another type: ``object`` (nested lists three deep), ``text``, ``struct``
    or ``bytes``."""
    value = {
        "object": pa.array([[[[1.0]]]]),
        "text": pa.array([["a", "b"]]),
        "struct": pa.array([[{"a": 1.0}]]),
        "bytes": pa.array([[b"\x00\x01"]]),
    }[dtype]
    _replace_first_row(folder, CURVE, value)


def plant_array_of_shape(folder: Path, shape: tuple[int, ...]) -> None:
    """A per-image curve of valid numbers but another shape than the column's other rows (the part keeps
    a second row of the usual shape)."""
    path = first_part(folder)
    table = pq.read_table(path).slice(0, 2)
    usual = table.column(CURVE).to_pylist()[1]
    # a 2-d cell makes the column one of 2-d arrays: the usual row becomes a column vector
    cells = [np.zeros(shape).tolist(), usual if len(shape) == 1 else [[x] for x in usual]]
    value = pa.array(cells)
    k = table.schema.get_field_index(CURVE)
    pq.write_table(table.set_column(k, pa.field(CURVE, value.type), value), path, compression="zstd")


def plant_bad_index(folder: Path, value: str) -> None:
    """A per-image row whose image index is ``value`` (negative, fractional, larger than any index)."""
    number = float(value)
    array = pa.array([int(number)], pa.int64()) if number.is_integer() and abs(number) < 2**63 else pa.array([number])
    _replace_first_row(folder, "index", array)


def text_files(folder: Path) -> list[Path]:
    """The files of the run that a spreadsheet might open and save again."""
    return sorted(p for p in folder.iterdir() if p.suffix == ".csv")


def as_written_by(folder: Path, version: str) -> None:
    """The run's tables as CSV journals, as xaibench 0.3 wrote them (``"0.3"``), or 0.2, which also kept
    no digest of the images (``"0.2"``)."""
    import shutil

    from xaibench.report import run_metrics
    from xaibench.run_folder import read_config

    tables = RunTables.at(folder, run_metrics(read_config(folder)))
    for name, table in zip(TABLES, tables.all()):
        rows = table.read()
        if version == "0.2" and name == PER_IMAGE:
            rows = rows.drop(columns=["image_sha256"])
        if name == TIMINGS:  # the method's seconds only
            rows = rows.drop(columns=["metric_seconds"])
        if name == PER_IMAGE:  # the CAM box's IoU, as 0.3 named its column
            rows = rows.rename(columns={"mean_iou": "iou"})
        columns = [{"mean_iou": "iou"}.get(c, c) if name == PER_IMAGE else c for c in table.columns]
        columns = [c for c in columns if c in rows.columns]
        journal = Journal(folder / LEGACY_JOURNALS[name], columns, array_columns=table.array_cells)
        journal.create()
        journal.append(rows)
        shutil.rmtree(folder / name)


def as_written_by_0_2(folder: Path) -> None:
    """The per-image rows as xaibench 0.2 wrote them: CSV journals without the images' digests."""
    as_written_by(folder, "0.2")
