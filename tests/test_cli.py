"""The command line: listing, one-line errors, and a whole run on the built-in benchmark."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

from xaibench.cli import main


def test_list_shows_every_method_and_its_origin(capsys) -> None:
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("cam", "gradcam", "saliency"):
        assert f"\n{name} " in "\n" + out
    assert "from xaibench_plugins.cam:CAM (xaibench" in out


def test_module_entry_point_runs() -> None:
    done = subprocess.run([sys.executable, "-m", "xaibench", "list"], capture_output=True, text=True, check=True)
    assert "gradcam" in done.stdout


@pytest.mark.parametrize(
    "argv, message",
    [
        (["run", "--methods", "cam,nope"], "unknown method 'nope'; available: cam, center, gradcam, random, saliency"),
        (["run", "--methods", "cam", "--model", "nope"], "unknown model 'nope'"),
        (["run", "--methods", "cam", "--model", "resnet18", "--weights", "/no/such.pth"], "/no/such.pth does not exist"),
        (["run", "--methods", "cam", "--model", "efficientnet_lite0", "--dataset", "nope:x"], "unknown data set kind 'nope'"),
        (["run", "--methods", "cam", "--model", "resnet18", "--weights", "none", "--target-layer", "layer9"], "no layer 'layer9'"),
        (["run", "--methods", "cam", "--model", "vgg11", "--weights", "none", "--n", "2", "--out", "{tmp}"],
         "CAM needs global average pooling"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys, tmp_path) -> None:
    assert main([a.format(tmp=tmp_path) for a in argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_run_on_the_builtin_benchmark_writes_every_file(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    assert main(["run", "--methods", "cam,gradcam,saliency", "--n", "40", "--batch-size", "16", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| cam |" in printed and f"wrote {out}" in printed
    per_image = pd.read_csv(out / "per_image.csv")
    assert len(per_image) == 120 and set(per_image.method) == {"cam", "gradcam", "saliency"}
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary.columns) == ["method", "metric", "value", "ci_low", "ci_high", "n"]
    assert (summary.n == 40).all()
    config = json.loads((out / "config.json").read_text())
    assert config["model"] == "builtin" and config["n"] == 40 and config["methods"] == ["cam", "gradcam", "saliency"]
    assert (out / "summary.md").read_text().startswith("# xaibench: builtin on builtin")
    assert (out / "overlays.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The trained network looks at its objects: CAM's maximum lands on (or within 15 px of) the object.
    cam = summary[(summary.method == "cam") & (summary.metric == "pointing")].value.item()
    assert cam >= 90
