"""The results store: tables of Parquet parts, written a part at a time and read by column, that other
tools read as they are."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from xaibench.errors import XaibenchError
from xaibench.journal import ArrayCell, Journal
from xaibench.results_store import Table, arrays_from_arrow, arrays_to_arrow, convert_journal


def _table(folder) -> Table:
    return Table(folder / "rows", ["model", "index", "status", "iou", "curve", "map"],
                 array_columns={"curve": ArrayCell(uniform=True), "map": ArrayCell("u", (2,), 1 << 16)},
                 text_columns=["model", "status"], integer_columns=["index"], choices={"status": ("ok", "nonfinite")})


def _rows(start: int, k: int) -> pd.DataFrame:
    index = np.arange(start, start + k)
    return pd.DataFrame({
        "model": "m", "index": index, "status": ["ok"] * (k - 1) + ["nonfinite"],
        "iou": np.r_[index[:-1] / 10, np.nan],
        "curve": [np.linspace(0, i, 5, dtype=np.float32) for i in index[:-1]] + [None],
        "map": [np.full((2 + i % 3, 3), i, np.uint8) for i in index],
    })


def test_rows_arrays_and_types_read_back_exactly_part_by_part(tmp_path) -> None:
    table = _table(tmp_path)
    table.create()
    written = pd.concat([_rows(0, 3), _rows(3, 4)], ignore_index=True)
    table.append(written.iloc[:3])
    table.append(written.iloc[3:].reset_index(drop=True))
    assert [p.name for _, p in table.parts()] == ["part-00000001.parquet", "part-00000002.parquet"]
    read = table.read()
    assert read["index"].tolist() == list(range(7)) and read["index"].dtype == np.int64
    assert read.status.tolist() == ["ok", "ok", "nonfinite", "ok", "ok", "ok", "nonfinite"]
    np.testing.assert_array_equal(read.iou.to_numpy(), written.iou.to_numpy())
    for a, b in zip(written.curve, read.curve):
        assert (a is None and b is None) or (b.dtype == np.float32 and np.array_equal(a, b))
    for a, b in zip(written["map"], read["map"]):
        assert b.dtype == np.uint8 and b.shape == a.shape and np.array_equal(a, b)
    # a filter sees the rows without their arrays; only the rows kept have theirs decoded
    seen = []
    kept = table.read(where=lambda rows: seen.append(list(rows.columns)) or rows["index"] % 2 == 0)
    assert kept["index"].tolist() == [0, 2, 4, 6] and all("curve" not in c for c in seen)
    assert list(table.keys(["model", "index"]).columns) == ["model", "index"]


def test_other_tools_read_a_table_folder_as_one_data_set(tmp_path) -> None:
    duckdb = pytest.importorskip("duckdb")
    table = _table(tmp_path)
    table.append(_rows(0, 3))
    table.append(_rows(3, 4))
    frame = pd.read_parquet(table.path)
    assert frame["index"].tolist() == list(range(7)) and list(frame.curve[1]) == [0.0, 0.25, 0.5, 0.75, 1.0]
    mean = duckdb.sql(f"SELECT avg(iou) FROM '{table.path}/*.parquet' WHERE status = 'ok'").fetchall()[0][0]
    assert mean == pytest.approx(np.mean([0.0, 0.1, 0.3, 0.4, 0.5]))
    third = duckdb.sql(f"SELECT curve[3] FROM '{table.path}/*.parquet' WHERE index = 4").fetchall()[0][0]
    assert third == pytest.approx(2.0)  # DuckDB's lists count from 1: the middle of linspace(0, 4, 5)


@pytest.mark.parametrize("cells", [
    [np.arange(6, dtype=np.uint8).reshape(2, 3), None, np.zeros((0, 3), np.uint8), np.ones((4, 3), np.uint8)],
    [np.ones((4, 2)), np.ones((1, 5)), None],
    [np.array([True, False]), np.array([], dtype=bool)],
    [None, None],
])
def test_arrays_of_any_shape_round_trip_even_sliced(cells) -> None:
    array = arrays_to_arrow(cells)
    for start in (0, 1):
        back = arrays_from_arrow(array.slice(start))
        for a, b in zip(cells[start:], back):
            assert (a is None and b is None) or (b.dtype == a.dtype and b.shape == a.shape and np.array_equal(a, b))


def test_a_cell_the_column_does_not_allow_is_refused_before_it_is_built() -> None:
    with pytest.raises(ValueError, match="has 12 elements, more than the 10"):
        arrays_from_arrow(arrays_to_arrow([np.zeros((3, 4))]), ArrayCell(max_elements=10))
    with pytest.raises(ValueError, match="2-dimensional arrays, expected 1"):
        arrays_from_arrow(arrays_to_arrow([np.zeros((3, 4))]), ArrayCell(dims=(1,)))
    with pytest.raises(ValueError, match="not numbers of the kinds 'u'"):
        arrays_from_arrow(arrays_to_arrow([np.zeros(3)]), ArrayCell("u"))
    with pytest.raises(ValueError, match="the shapes"):
        arrays_from_arrow(arrays_to_arrow([np.zeros(3), np.zeros(4)]), ArrayCell(uniform=True))


def test_a_part_that_is_not_this_table_s_is_one_line(tmp_path) -> None:
    table = _table(tmp_path)
    table.append(_rows(0, 3))
    other = Table(table.path, ["model", "index"], text_columns=["model"], integer_columns=["index"])
    with pytest.raises(XaibenchError, match="has the columns .*expected model,index"):
        other.read()
    assert other.keys(["model", "index"])["index"].tolist() == [0, 1, 2]  # a projection reads what it asks
    bad = _rows(3, 2).assign(status="maybe")
    table.append(bad)
    with pytest.raises(XaibenchError, match=r"part-00000002.parquet is damaged \(row 0: status is 'maybe'"):
        table.read()


def test_a_csv_journal_is_converted_once_atomically(tmp_path) -> None:
    rows = _rows(0, 4)
    journal = Journal(tmp_path / "rows.csv", list(rows.columns), array_columns=["curve", "map"],
                      text_columns=["model", "status"], integer_columns=["index"])
    journal.create()
    journal.append(rows)
    table = _table(tmp_path)
    convert_journal(journal, table)
    assert not journal.path.exists() and len(table.parts()) == 1
    pd.testing.assert_frame_equal(table.read().drop(columns=["curve", "map"]), rows.drop(columns=["curve", "map"]))
    journal.path.write_text("left over\n")  # the removal interrupted: the table stands, the CSV goes
    convert_journal(journal, table)
    assert not journal.path.exists() and len(table.parts()) == 1


def test_a_column_renamed_since_is_read_under_its_new_name(tmp_path) -> None:
    """Parts (and journals) of an earlier version that named a column otherwise are read, and appended
    to, under today's name; the values and the keys are those written."""
    old = _table(tmp_path)
    old.create()
    written = _rows(0, 4)
    old.append(written)
    new = Table(old.path, ["model", "index", "status", "score", "curve", "map"], array_columns=old.array_cells,
                text_columns=["model", "status"], integer_columns=["index"], choices={"status": ("ok", "nonfinite")},
                renamed_columns={"iou": "score"})
    new.append(_rows(4, 2).rename(columns={"iou": "score"}))
    read = new.read()
    np.testing.assert_array_equal(read.score.to_numpy(), pd.concat([written, _rows(4, 2)]).iou.to_numpy())
    assert new.keys(["index", "score"]).columns.tolist() == ["index", "score"]
    assert [a.shape for a in new.read(lambda keys: keys["index"] < 2)["map"]] == [(2, 3), (3, 3)]
    with pytest.raises(XaibenchError, match="has the columns model,index,status,iou,curve,map, expected"):
        Table(old.path, new.columns, array_columns=old.array_cells, text_columns=["model", "status"]).read()
