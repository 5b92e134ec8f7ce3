"""--keep-maps: every scored map kept at a stated size and dtype, read back as arrays."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

import xaibench
from xaibench.cli import main
from xaibench.errors import XaibenchError
from xaibench.harness import explain_samples, read_kept_maps
from xaibench.kept_maps import KeepMaps, kept_map_cells, parse_keep_maps

SPEC = xaibench.RunSpec(methods="cam,center", n=6, batch_size=4, report=False)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("224", KeepMaps(224, "float16")), ("56:uint8", KeepMaps(56, "uint8")), (" full : float32 ", KeepMaps(None, "float32"))],
)
def test_parse_keep_maps(text, expected) -> None:
    assert parse_keep_maps(text) == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [("0", "its side is '0'"), ("big", "its side is 'big'"), ("5000", "its side is '5000'"),
     ("64:int8", "its dtype is 'int8', not one of float16, float32, uint8")],
)
def test_a_bad_keep_maps_is_a_one_line_error(text, problem) -> None:
    with pytest.raises(XaibenchError) as error:
        parse_keep_maps(text)
    assert str(error.value).startswith("--keep-maps takes SIDE[:DTYPE]") and problem in str(error.value)


def test_cells_are_area_averaged_down_bilinear_up_and_cast() -> None:
    maps = np.array([[[0.0, 0.5, 1.0, 1.0], [0.5, 0.0, 1.0, 1.0], [0.0, 0.0, 0.5, 0.5], [0.0, 0.0, 0.5, 0.5]]], np.float32)
    finite = np.array([True])
    assert np.array_equal(kept_map_cells(maps, finite, KeepMaps(2, "float32"))[0], np.array([[0.25, 1.0], [0.0, 0.5]], np.float32))
    assert np.array_equal(kept_map_cells(maps, finite, KeepMaps(2, "uint8"))[0], np.array([[64, 255], [0, 128]], np.uint8))
    half = kept_map_cells(maps, finite, KeepMaps(None, "float16"))[0]
    assert half.dtype == np.float16 and np.array_equal(half, maps[0].astype(np.float16))
    grown = kept_map_cells(maps[:, :2, :2], finite, KeepMaps(4, "float32"))[0]  # bilinear, align_corners=False
    assert grown.shape == (4, 4)
    assert (grown[0, 0], grown[0, 1], grown[0, 3], grown[3, 3]) == (0.0, 0.125, 0.5, 0.0)  # x = 0, 0.25, 1 (edge), ...
    wide = kept_map_cells(np.zeros((1, 8, 16), np.float32), finite, KeepMaps(4, "uint8"))[0]
    assert wide.shape == (2, 4)  # the longer side is SIDE, the other in proportion
    assert kept_map_cells(maps, np.array([False]), KeepMaps(2))[0] is None  # a non-finite map is not kept


def test_a_run_keeps_every_scored_map_as_scored(tmp_path) -> None:
    out = tmp_path / "run"
    xaibench.run(dataclasses.replace(SPEC, out=out, keep_maps="full:float32"))
    kept = read_kept_maps(out)
    assert list(zip(kept.method, kept["index"])) == [(m, i) for b in (range(4), range(4, 6)) for m in ("cam", "center") for i in b]
    model = xaibench.load_model("builtin")
    data = xaibench.load_dataset("builtin", image_size=model.input_size, size=6)
    scored = explain_samples(model, [data[i] for i in range(6)], ["cam", "center"])
    for method, index, cell in zip(kept.method, kept["index"], kept["map"]):
        assert cell.dtype == np.float32 and np.array_equal(cell, scored[method][index])  # the very maps scored
    config = json.loads((out / "config.json").read_text())
    assert config["keep_maps"] == {"side": "full", "dtype": "float32"}
    small = read_kept_maps(out, lambda keys: keys.method == "cam")
    assert small.method.unique().tolist() == ["cam"] and len(small) == 6


def test_the_command_line_keeps_maps_and_a_resume_must_keep_them_alike(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    argv = ["run", "--methods", "cam", "--n", "4", "--batch-size", "2", "--no-report", "--out", str(out)]
    assert main([*argv, "--keep-maps", "16:uint8"]) == 0
    kept = read_kept_maps(out)
    assert len(kept) == 4 and all(cell.shape == (16, 16) and cell.dtype == np.uint8 for cell in kept["map"])
    assert main([*argv, "--resume", "--keep-maps", "32:uint8"]) == 2
    assert "'keep_maps.side' was 16, now 32" in capsys.readouterr().err
    assert main([*argv, "--overwrite"]) == 0  # without --keep-maps: the old kept maps go with the old run
    assert not (out / "kept_maps").exists()
    with pytest.raises(XaibenchError, match="keeps no maps: the run was not told to; run it with --keep-maps"):
        read_kept_maps(out)


def test_keep_maps_needs_a_folder(model) -> None:
    with pytest.raises(XaibenchError, match="keep_maps needs out"):
        xaibench.evaluate(model, [], ["center"], keep_maps=KeepMaps(8))
