"""Faults planted in a run folder for the tests of what reading it back guarantees.

The tests of tests/test_run_folder_trust.py hold for any storage of a run's results; what they plant
depends on how the results are stored today, and that knowledge lives here alone: a new store
changes this module, not the tests.
"""

from __future__ import annotations

import base64
import zlib
from pathlib import Path

from xaibench.run_folder import PER_IMAGE


def _replace_first_array_cell(folder: Path, cell: str) -> None:
    """Put ``cell`` in place of the first encoded array of the per-image rows."""
    path = folder / PER_IMAGE
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    fields = lines[1].rstrip("\n").split(",")
    k = next(k for k, field in enumerate(fields) if field.count(":") == 2 and field.startswith("<f"))
    fields[k] = cell
    lines[1] = ",".join(fields) + "\n"
    path.write_text("".join(lines), encoding="utf-8")


def plant_decompression_bomb(folder: Path, inflated_bytes: int = 1 << 31) -> int:
    """An array cell that declares 10 numbers but decompresses to ``inflated_bytes`` bytes; returns the
    size of the compressed cell."""
    compressor = zlib.compressobj(9)
    chunk = bytes(1 << 20)
    payload = b"".join(compressor.compress(chunk) for _ in range(inflated_bytes >> 20)) + compressor.flush()
    cell = "<f8:10:" + base64.b64encode(payload).decode("ascii")
    _replace_first_array_cell(folder, cell)
    return len(cell)


def plant_huge_declared_array(folder: Path) -> None:
    """An array cell that declares a billion numbers (8 GB) with a tiny payload."""
    _replace_first_array_cell(folder, "<f8:1000000000:" + base64.b64encode(zlib.compress(b"")).decode("ascii"))


def plant_array_of_dtype(folder: Path, dtype: str) -> None:
    """An array cell of another dtype (an object, a string, a structured record, ...)."""
    _replace_first_array_cell(folder, f"{dtype}:1:" + base64.b64encode(zlib.compress(bytes(64))).decode("ascii"))


def plant_bad_index(folder: Path, value: str) -> None:
    """A per-image row whose image index is ``value`` (negative, fractional, text)."""
    path = folder / PER_IMAGE
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    fields = lines[1].split(",", 2)
    lines[1] = ",".join([fields[0], value, fields[2]])
    path.write_text("".join(lines), encoding="utf-8")


def text_files(folder: Path) -> list[Path]:
    """The files of the run that a spreadsheet might open and save again."""
    return sorted(p for p in folder.iterdir() if p.suffix == ".csv")


def as_written_by_0_2(folder: Path) -> None:
    """The per-image rows as xaibench 0.2 wrote them: without the images' digests."""
    import pandas as pd

    path = folder / PER_IMAGE
    rows = pd.read_csv(path, dtype=str, keep_default_na=False)
    path.write_text(rows.drop(columns=["image_sha256"]).to_csv(index=False, lineterminator="\n"), encoding="utf-8")


def plant_array_of_shape(folder: Path, shape: tuple[int, ...]) -> None:
    """An array cell of valid numbers but another shape than the column's other rows."""
    import numpy as np

    from xaibench.journal import encode_array

    _replace_first_array_cell(folder, encode_array(np.zeros(shape)))
