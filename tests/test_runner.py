"""The run as a library call (xaibench/runner.py): ``xaibench run`` and ``xaibench.run(spec)`` write the same
folder; the spec's errors are the command line's; a selection of images is what gets scored."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import xaibench
from xaibench import harness
from xaibench.cli import _run_spec, build_parser, main
from xaibench.data.selection import Selection
from xaibench.errors import XaibenchError
from xaibench.method_spec import MethodSpec
from xaibench.runner import RunSpec, RunStart

#: Files whose bytes hold the seconds the run took, which no two runs share: the timings table's parts
#: (its seconds column), summary.md (its s/img column) and report.html (the times it shows, in tables and
#: plots). Every other file of the two folders (the other tables' parts included) is compared byte for byte.
TIMED = {"timings", "summary.md", "report.html"}

ARGV = ["run", "--methods", "cam,center(sigma=0.3)", "--metrics", "default,pointing(tolerance=7.5)", "--n", "6",
        "--batch-size", "4", "--seed", "5"]
SPEC = RunSpec(methods=["cam", MethodSpec("center", {"sigma": 0.3})], metrics=("default", "pointing(tolerance=7.5)"),
               n=6, batch_size=4, seed=5)


def _without_seconds(markdown: str) -> str:
    """summary.md without the s/img and metric s/img columns (the last two of the tables whose header
    ends with them)."""
    lines, timed = [], False
    for line in markdown.splitlines():
        timed = (timed and line.startswith("|")) or line.endswith("| s/img | metric s/img |")
        lines.append(re.sub(r"\| [^|]* \| [^|]* \|$", "|", line) if timed else line)
    return "\n".join(lines)


def test_the_command_line_and_the_python_api_write_the_same_folder(tmp_path) -> None:
    by_cli, by_api = tmp_path / "cli" / "run", tmp_path / "api" / "run"  # one name: report.html shows it
    args = build_parser().parse_args([*ARGV, "--out", str(by_cli)])
    # The command line fills the spec the test gives the library (a text of methods where it gives a list).
    assert _run_spec(args) == RunSpec(
        methods="cam,center(sigma=0.3)", metrics="default,pointing(tolerance=7.5)", n=6, batch_size=4, seed=5,
        out=str(by_cli), progress=True,
    )
    assert main([*ARGV, "--out", str(by_cli)]) == 0
    result = xaibench.run(dataclasses.replace(SPEC, out=by_api))
    files = sorted(str(p.relative_to(by_cli)) for p in by_cli.rglob("*") if p.is_file())
    assert result.folder == by_api and files == sorted(str(p.relative_to(by_api)) for p in by_api.rglob("*") if p.is_file())
    assert {"config.json", "per_image/part-00000001.parquet", "summary.csv", "overlays.png", "report.html"} <= set(files)
    for name in files:
        if name.split("/")[0] not in TIMED:
            assert (by_cli / name).read_bytes() == (by_api / name).read_bytes(), name
    timings = [pd.read_parquet(folder / "timings").drop(columns=["seconds", "metric_seconds"]) for folder in (by_cli, by_api)]
    pd.testing.assert_frame_equal(*timings)
    assert _without_seconds((by_cli / "summary.md").read_text()) == _without_seconds((by_api / "summary.md").read_text())
    config = json.loads((by_api / "config.json").read_text())
    assert config["methods"] == ["cam", "center"] and config["method_options"]["center"] == {"sigma": 0.3}
    assert config["metric_options"]["pointing"]["tolerance"] == 7.5 and config["seed"] == 5 and config["selection"] is None
    pd.testing.assert_frame_equal(result.summary, pd.read_csv(by_api / "summary.csv"), check_dtype=False)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (RunSpec(n=0), "--n must be at least 1, got 0"),
        (RunSpec(n="5"), "--n must be a whole number, got '5'"),
        (RunSpec(methods=[]), "--methods names no method"),
        (RunSpec(methods="cam,gradcma"), "did you mean 'gradcam'?"),
        (RunSpec(metrics="default,nope"), "unknown metric 'nope'"),
        (RunSpec(mode="resume"), "--resume needs --out DIR, the folder of the run to continue"),
        (RunSpec(mode="again"), "mode must be one of new, overwrite, resume, got 'again'"),
        (RunSpec(target="top5"), "--target must be one of label, prediction, got 'top5'"),
        (RunSpec(seed=-1), "--seed must lie in [0, 2**32 - 1], got -1"),
        (RunSpec(max_image_pixels=0), "--max-image-pixels must be at least 1, got 0"),
        (RunSpec(models=["builtin", "builtin"]), "--model names builtin more than once"),
        (RunSpec(selection=Selection(sample=0)), "--sample must be at least 1, got 0"),
        (RunSpec(selection={"sample": 3}), "selection must be a xaibench.Selection or None, got dict"),
        (RunSpec(workers=-1), "--workers must be a whole number, 0 or more, got -1"),
    ],
)
def test_a_bad_spec_is_the_command_line_s_one_line_error(spec, message) -> None:
    with pytest.raises(XaibenchError) as error:
        xaibench.run(spec)
    assert message in str(error.value) and "\n" not in str(error.value), str(error.value)


def test_on_start_is_told_the_folder_and_configuration_before_the_first_image(tmp_path, monkeypatch) -> None:
    told: list[RunStart] = []

    def evaluate(*args, **kwargs):  # the first image: config.json is there, on_start was called
        assert len(told) == 1 and (tmp_path / "config.json").is_file()
        raise XaibenchError("stop here")

    monkeypatch.setattr(harness, "evaluate", evaluate)
    with pytest.raises(XaibenchError, match="stop here"):
        xaibench.run(RunSpec(methods="center", n=300, out=tmp_path, report=False), on_start=told.append)
    assert told[0].folder == tmp_path and told[0].config["n"] == 300 and told[0].notes == ()


def test_without_report_the_run_writes_the_summary_but_no_figures(tmp_path, capsys) -> None:
    assert main(["run", "--methods", "center", "--n", "3", "--no-report", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "summary.csv").is_file() and (tmp_path / "summary.md").is_file()
    assert not (tmp_path / "overlays.png").exists() and not (tmp_path / "report.html").exists()
    assert f"xaibench: wrote {tmp_path}" in capsys.readouterr().out


# Choosing the images --------------------------------------------------------------------------------


def test_the_run_hands_the_chosen_indices_to_the_harness_and_records_them(tmp_path, monkeypatch) -> None:
    """The labels of the built-in test split's first 12 images are 4 1 2 5 4 4 2 3 2 1 5 4: its rings
    (class 4) are images 0, 4, 5 and 11."""
    calls = []

    def evaluate(model, dataset, methods, *, indices=None, **kwargs):
        calls.append((indices, kwargs.get("n")))
        raise XaibenchError("stop here")

    monkeypatch.setattr(harness, "evaluate", evaluate)
    spec = RunSpec(methods="center", n=12, selection=Selection(classes=("Ring",)), out=tmp_path)
    with pytest.raises(XaibenchError, match="stop here"):
        xaibench.run(spec)
    assert calls == [([0, 4, 5, 11], None)]
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["n"] == 4
    assert config["selection"] == {"classes": ["ring"], "ids": None, "sample": None, "indices": [0, 4, 5, 11]}




@pytest.mark.parametrize(
    ("options", "indices"),
    [
        (["--classes", "ring"], [0, 4, 5, 11]),
        (["--classes", "ring,triangle", "--sample", "3"], None),  # three of 0 2 4 5 6 8 11, drawn with seed 0
        (["--sample", "3"], [6, 7, 8]),
        (["--ids", "shapes-test-000009,shapes-test-000002"], [2, 9]),
    ],
)
def test_a_selection_is_what_the_run_scores(tmp_path, capsys, options, indices) -> None:
    import numpy as np

    if indices is None:
        kept = [0, 2, 4, 5, 6, 8, 11]
        indices = sorted(kept[j] for j in np.random.default_rng(0).choice(len(kept), 3, replace=False).tolist())
    out = tmp_path / "run"
    argv = ["run", "--methods", "center,cam", "--n", "12", "--batch-size", "2", "--no-report"]  # the report is not asked about
    status = main([*argv, *options, "--out", str(out)])
    if status != 0:
        raise XaibenchError(capsys.readouterr().err)
    rows = pd.read_parquet(out / "per_image")
    assert sorted(set(rows["index"])) == indices and len(rows) == 2 * len(indices)
    assert (pd.read_csv(out / "summary.csv").n == len(indices)).all()
    config = json.loads((out / "config.json").read_text())
    assert config["n"] == len(indices) and config["selection"]["indices"] == indices
    assert f"on {len(indices)} images of builtin" in capsys.readouterr().out
    # The same selection resumes; another is refused, naming the field.
    assert main([*argv, *options, "--out", str(out), "--resume"]) == 0
    assert main([*argv, "--sample", "2", "--out", str(out), "--resume"]) == 2
    assert "cannot resume the run in" in capsys.readouterr().err


def test_a_selection_is_checked_before_the_model_is_loaded(tmp_path, capsys) -> None:
    assert main(["run", "--sample", "0", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err == "xaibench: error: --sample must be at least 1, got 0\n"
    assert main(["run", "--classes", "ring", "--ids", " , ", "--out", str(tmp_path)]) == 2
    assert "--ids names no image" in capsys.readouterr().err


def test_import_xaibench_loads_no_plotting_library() -> None:
    code = "import sys, xaibench; assert callable(xaibench.run); bad = [m for m in ('matplotlib', 'xaibench.viz') if m in sys.modules]; assert not bad, bad"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_spec_is_frozen_and_keeps_lists_as_tuples() -> None:
    spec = RunSpec(models=["builtin"], methods=["cam", "gradcam"])
    assert spec.models == ("builtin",) and spec.methods == ("cam", "gradcam")
    with pytest.raises(AttributeError):
        spec.n = 3  # type: ignore[misc]
    assert Path(RunSpec(weights=Path("w.pt")).weights) == Path("w.pt")
