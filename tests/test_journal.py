"""Append-only journals: exact array round trips, torn last lines, and foreign headers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from xaibench.errors import XaibenchError
from xaibench.journal import Journal, decode_array, encode_array


def test_arrays_round_trip_bit_for_bit() -> None:
    rng = np.random.default_rng(0)
    for array in (rng.random(100), rng.integers(0, 10**6, (2, 102)), np.zeros(0), np.array(1 / 3)):
        back = decode_array(encode_array(array))
        assert back.dtype == array.dtype and back.shape == array.shape and np.array_equal(back, array)
    assert encode_array(None) == "" and decode_array("") is None and decode_array(float("nan")) is None
    # Compact: a step-like curve of 100 float64 values (800 bytes) takes far fewer characters.
    assert len(encode_array(np.repeat([0.0, 0.25, 0.5, 0.75], 25))) < 120


def _journal(path) -> Journal:
    return Journal(path, ["id", "value", "curve"], array_columns=["curve"], text_columns=["id"])


def _frame(ids, start=0.0) -> pd.DataFrame:
    return pd.DataFrame({
        "id": ids,
        "value": [start + k / 3 for k in range(len(ids))],
        "curve": [np.arange(3.0) + k for k in range(len(ids))],
    })


def test_a_missing_array_is_an_empty_cell_and_the_old_nan_cell_reads_as_none() -> None:
    assert encode_array(None) == encode_array(np.nan) == encode_array(float("nan")) == ""
    assert decode_array("") is None
    assert decode_array(encode_array(np.zeros(0))).shape == (0,)  # an empty curve stays an array
    nan_cell = "<f8::eJxjYACBH/UAAncBeA=="  # np.asarray(np.nan) as earlier versions wrote it
    assert decode_array(nan_cell) is None
    assert decode_array(encode_array(np.array(1.0))).tolist() == 1.0  # a 0-d number that is not NaN stays


def test_append_and_read_back_exactly(tmp_path) -> None:
    journal = _journal(tmp_path / "rows.csv")
    assert journal.read().empty and list(journal.read().columns) == ["id", "value", "curve"]
    journal.append(_frame(["NA", "nan", "a,b"]))  # ids that pandas would otherwise turn into NaN or split
    journal.append(_frame(["x"], start=0.1))
    rows = journal.read()
    assert rows.id.tolist() == ["NA", "nan", "a,b", "x"]
    assert rows.value.tolist() == [0.0, 1 / 3, 2 / 3, 0.1]  # floats round-trip exactly
    assert np.array_equal(rows.curve[3], np.arange(3.0))
    assert (tmp_path / "rows.csv").read_text().count("id,value,curve") == 1  # one header


def test_a_half_written_last_line_is_ignored_then_removed(tmp_path) -> None:
    path = tmp_path / "rows.csv"
    journal = _journal(path)
    journal.append(_frame(["a", "b"]))
    complete = path.read_bytes()
    journal.append(_frame(["c"]))
    path.write_bytes(path.read_bytes()[:-7])  # the process died in the middle of the last line
    assert journal.read().id.tolist() == ["a", "b"]
    journal.repair()
    assert path.read_bytes() == complete  # the finished rows, byte for byte
    journal.append(_frame(["c"]))
    assert journal.read().id.tolist() == ["a", "b", "c"]


def test_an_earlier_file_without_an_added_column_gets_it_empty_and_takes_new_rows(tmp_path) -> None:
    path = tmp_path / "timings.csv"
    path.write_text("model,method,seconds\n'=m,cam,0.1\nm,rise,2.5\nm,ri")  # and a half-written line
    journal = Journal(path, ["model", "method", "seconds", "metric_seconds"], text_columns=["model", "method"],
                      added_columns=["metric_seconds"])
    assert journal.read().metric_seconds.isna().all()  # read as it is
    journal.repair()
    assert path.read_text() == "model,method,seconds,metric_seconds\n'=m,cam,0.1,\nm,rise,2.5,\n"
    journal.append(pd.DataFrame({"model": ["m"], "method": ["cam"], "seconds": [0.2], "metric_seconds": [0.05]}))
    rows = journal.read()
    assert rows.model.tolist() == ["=m", "m", "m"] and rows.seconds.tolist() == [0.1, 2.5, 0.2]
    assert rows.metric_seconds.tolist()[2] == 0.05 and rows.metric_seconds[:2].isna().all()
    other = Journal(path, ["model", "method", "seconds", "metric_seconds", "x"], text_columns=["model", "method"],
                    optional_columns=["x"])
    with pytest.raises(XaibenchError, match="written by an earlier version of xaibench, without x"):
        other.repair()  # an optional column it lacks that is not an added one: refused as before


def test_a_file_with_other_columns_is_refused(tmp_path) -> None:
    path = tmp_path / "rows.csv"
    path.write_text("image,score\nx,1\n")
    with pytest.raises(XaibenchError, match="it is not a file of this xaibench version: restore it"):
        _journal(path).read()


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda line: line + ",x,y", r"Expected 3 fields in line 3, saw 5"),
        (lambda line: line.replace("<f8:3:", "<f8:3:AAAA"), r"line 3: its curve cannot be decoded"),
        (lambda line: line.replace(",0.3333333333333333,", ",abc,"), r"line 3: value is 'abc', not a number"),
    ],
)
def test_a_damaged_line_is_one_error_naming_it(tmp_path, damage, message) -> None:
    path = tmp_path / "rows.csv"
    journal = _journal(path)
    journal.append(_frame(["a", "b", "c"]))
    lines = path.read_text().split("\n")
    lines[2] = damage(lines[2])
    path.write_text("\n".join(lines))
    with pytest.raises(XaibenchError, match=rf"rows.csv is damaged \(.*({message}).*\); repair or delete that line \(deleting it loses its row\)"):
        journal.read()


def test_text_a_spreadsheet_would_run_is_escaped_and_read_back(tmp_path) -> None:
    """CSV injection: a text cell starting with =, +, -, @ (or the escape ' itself) is written with a
    leading ', and read back as it was; a negative number is written as it is."""
    journal = _journal(tmp_path / "rows.csv")
    journal.create()
    ids = ["=1+1", "-x", "'quoted", "@a", "+SUM(1)", "-0.5", "ok"]
    journal.append(_frame(ids, start=-1.0))
    lines = (tmp_path / "rows.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in lines[1:]] == ["'=1+1", "'-x", "''quoted", "'@a", "'+SUM(1)", "-0.5", "ok"]
    assert lines[1].split(",")[1] == "-1.0"  # a number, not the text '-1.0
    back = journal.read()
    assert back.id.tolist() == ids and back.value.tolist() == _frame(ids, start=-1.0).value.tolist()
    assert journal.read(lambda f: f.id == "=1+1").value.tolist() == [-1.0]  # decoded before the filter
