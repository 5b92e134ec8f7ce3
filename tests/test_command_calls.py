"""The library calls of ``sanity``, ``explain`` and ``video`` (xaibench/sanity_run.py, explain_run.py,
video_run.py): each writes what its command writes, and says no to what its command says no to."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from xaibench.cli import main
from xaibench.errors import XaibenchError
from xaibench.explain_run import ExplainSpec, explain_images
from xaibench.sanity_run import SanitySpec, run_sanity
from xaibench.video_run import VideoSpec, explain_video_file


def _files(folder) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_run_sanity_writes_the_folder_xaibench_sanity_writes(tmp_path, capsys) -> None:
    assert main(["sanity", "--methods", "cam,saliency", "--n", "3", "--show", "1", "--out", str(tmp_path / "cli")]) == 0
    started = []
    result = run_sanity(SanitySpec(methods=["cam", "saliency"], n=3, show=1, out=tmp_path / "api"), on_start=started.append)
    by_cli, by_api = _files(tmp_path / "cli"), _files(tmp_path / "api")
    assert sorted(by_cli) == sorted(by_api) and "data_randomization.csv" in by_cli and "sanity_maps.png" in by_cli
    for name in by_cli:
        assert by_cli[name] == by_api[name], name
    assert result.folder == tmp_path / "api" and started[0].config == result.config and result.config["n"] == 3
    assert sorted(set(result.summary.method)) == ["cam", "saliency"]


def test_explain_images_writes_the_figures_xaibench_explain_writes(tmp_path, capsys) -> None:
    photo = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(photo)
    missing = tmp_path / "missing.jpg"
    argv = ["explain", str(photo), str(missing), "--model", "builtin", "--method", "cam,gradcam", "--topk", "2", "--dpi", "40"]
    assert main([*argv, "--out", str(tmp_path / "cli")]) == 1  # one image skipped
    said = capsys.readouterr()
    skipped, written = [], []
    done = explain_images(
        ExplainSpec(images=(photo, missing), models="builtin", methods="cam,gradcam", topk=2, dpi=40, out=tmp_path / "api"),
        on_figure=written.append, on_skip=skipped.append,
    )
    assert done.written == written == [tmp_path / "api" / "noise-cam+gradcam.png"]
    assert said.err == f"xaibench: skipped {done.skipped[0]}\n" and skipped == done.skipped
    assert "missing.jpg does not exist" in done.skipped[0]
    assert _files(tmp_path / "cli") == _files(tmp_path / "api")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (ExplainSpec(images=(), models="builtin"), "name at least one image file"),
        (ExplainSpec(images=("a.png",), models="builtin", topk=2, class_name="disk"), "--topk and --class exclude each other"),
        (ExplainSpec(images=("a.png",), models="builtin", figsize=(0, 5)), "--figsize must be two positive numbers of inches below 1000, got '0,5'"),
        (ExplainSpec(images=("a.png",), models="builtin,efficientnet_lite0"), "xaibench explain uses one model"),
        (SanitySpec(models="builtin,efficientnet_lite0"), "xaibench sanity checks one model at a time"),
        (SanitySpec(show=-1), "--show must be at least 0, got -1"),
        (VideoSpec("clip.mp4", "out.mp4", models="builtin", method="cam,gradcam"), "--method takes one method, got 2"),
        (VideoSpec("clip.mp4", "out.mp4", models="builtin", method=""), "--method names no method"),
        (VideoSpec("clip.mp4", "out.mp4", models="builtin", every=0), "--every must be an integer of at least 1"),
    ],
)
def test_a_bad_spec_is_the_command_s_one_line_error(spec, message, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    call = {ExplainSpec: explain_images, SanitySpec: run_sanity, VideoSpec: explain_video_file}[type(spec)]
    with pytest.raises(XaibenchError) as error:
        call(spec)
    assert message in str(error.value) and "\n" not in str(error.value), str(error.value)
    assert not any(tmp_path.iterdir())  # refused before anything was written
