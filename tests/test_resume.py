"""Runs killed with SIGKILL: resuming gives the files of an uninterrupted run; a kill during the final
writes leaves each file either as it was or complete."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from xaibench.cli import main
from xaibench.harness import read_per_image, read_skipped
from xaibench.run_folder import PER_IMAGE, TIMINGS

N, METHODS = 32, "cam,gradcam,saliency"  # 8 batches of 4: room to land a kill half-way
FINAL_FILES = ("summary.csv", "summary.md", "box_accuracy_curves.csv", "overlays.png")


def _command(out: Path, *extra: str, report: bool = False) -> list[str]:
    """The run under test; its report (no test here reads one) only where it lengthens the final writes."""
    return [sys.executable, "-m", "xaibench", "run", "--methods", METHODS, "--n", str(N), "--batch-size", "4",
            *([] if report else ["--no-report"]), "--out", str(out), *extra]


def _finish(out: Path) -> None:
    """Resume the run in ``out`` to its end, in this process (the killed runs are the processes under test)."""
    assert main([*_command(out)[3:], "--resume"]) == 0


def _rows(out: Path) -> int:
    """The per-image rows a run has written so far (its complete parts)."""
    return sum(pq.ParquetFile(part).metadata.num_rows for part in (out / PER_IMAGE).glob("part-*.parquet"))


def _kill_when(out: Path, ready, *extra: str, delay: float = 0.0, report: bool = False) -> None:
    """Start a run and SIGKILL it as soon as ``ready()`` holds (then after ``delay`` seconds)."""
    process = subprocess.Popen(_command(out, *extra, report=report), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not ready():
            assert process.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "the run never got there"
            time.sleep(0.002)
        time.sleep(delay)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(30)
    finally:
        if process.poll() is None:
            process.kill()


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    """The run in this process: it is the reference, not a process under test (the kills are)."""
    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    assert main(_command(out)[3:]) == 0
    return out


def test_sigkill_half_way_then_resume_gives_the_uninterrupted_files(uninterrupted, tmp_path) -> None:
    out = tmp_path / "run"
    _kill_when(out, lambda: _rows(out) > 0)
    rows = _rows(out)
    assert 0 < rows < 3 * N, f"the kill did not land half-way ({rows} rows)"
    assert not (out / "summary.csv").exists()
    # A partial run can be summarised as it is.
    assert main(["summarize", str(out)]) == 0
    assert f"**partial run** of {N} images" in (out / "summary.md").read_text()
    partial = pd.read_csv(out / "summary.csv")
    assert set(partial.n) <= set(range(1, N)) and (partial.n >= 1).all()
    _finish(out)
    for name in ("summary.csv", "box_accuracy_curves.csv"):
        assert (out / name).read_bytes() == (uninterrupted / name).read_bytes(), name
    pd.testing.assert_frame_equal(read_per_image(out), read_per_image(uninterrupted))
    pd.testing.assert_frame_equal(read_skipped(out), read_skipped(uninterrupted))
    # Nothing was computed twice: each (batch, method) was timed at most once, over both processes.
    timings = pd.read_parquet(out / TIMINGS)
    assert not timings.duplicated(["batch", "method"]).any()
    assert (timings.groupby("method").images.sum() <= N).all()


def test_resume_refuses_another_configuration(uninterrupted, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    shutil.copytree(uninterrupted, out)
    assert main(_command(out, "--resume", "--seed", "1")[3:]) == 2
    err = capsys.readouterr().err
    assert "cannot resume the run" in err and "'seed' was 0, now 1" in err


def test_resume_refuses_weights_whose_contents_changed(tmp_path, capsys) -> None:
    """The weights file is recorded by its SHA-256, not only its path: rows of other weights are
    never mixed into the run."""
    import torch

    import xaibench

    weights, out = tmp_path / "w.pt", tmp_path / "run"
    state = xaibench.load_model("builtin").network.state_dict()
    torch.save(state, weights)
    assert main(["run", "--n", "4", "--methods", "cam", "--weights", str(weights), "--no-report", "--out", str(out)]) == 0
    last = [k for k in state if k.endswith("weight")][-1]
    torch.save({**state, last: -state[last]}, weights)
    capsys.readouterr()
    assert main(["run", "--n", "4", "--methods", "cam", "--weights", str(weights), "--out", str(out), "--resume"]) == 2
    assert "'models[0].weights_sha256' was" in capsys.readouterr().err


@pytest.mark.parametrize("delay", [0.0, 0.2])
def test_sigkill_during_the_final_writes_leaves_old_or_new_files_never_a_mixture(uninterrupted, tmp_path, delay) -> None:
    out = tmp_path / "run"
    shutil.copytree(uninterrupted, out)
    old = {name: f"old {name}\n".encode() for name in FINAL_FILES}
    for name, content in old.items():
        (out / name).write_bytes(content)
    # Every row is there, so the resumed run goes straight to its final writes; kill it during them.
    _kill_when(out, lambda: any(out.glob(".*.partial")), "--resume", delay=delay, report=True)
    states = {}
    for name in FINAL_FILES:
        content = (out / name).read_bytes()
        new = b"" if name == "overlays.png" else (uninterrupted / name).read_bytes()  # (the reference drew none)
        if name == "summary.md":  # holds the run's timing, so compare all but the table's s/img cells
            new_ok = content.startswith(new.split(b"| method")[0]) and content.count(b"\n") == new.count(b"\n")
        elif name == "overlays.png":
            new_ok = content[:8] == b"\x89PNG\r\n\x1a\n" and content.endswith(b"IEND\xaeB`\x82")
        else:
            new_ok = content == new
        assert content == old[name] or new_ok, f"{name} is neither the old nor the new file"
        states[name] = "old" if content == old[name] else "new"
    _finish(out)  # and the run can still be finished
    assert (out / "summary.csv").read_bytes() == (uninterrupted / "summary.csv").read_bytes()
    assert not list(out.glob(".*.partial"))


def test_sigterm_stops_a_run_like_ctrl_c_saying_how_to_continue(tmp_path) -> None:
    """SIGTERM (a scheduler's stop; a background job ignores SIGINT) ends the run cleanly: exit 143
    (128 + SIGTERM, as a shell reports it), the message naming --resume (that resuming gives the
    uninterrupted files is the SIGKILL test's)."""
    out = tmp_path / "run"
    process = subprocess.Popen(_command(out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while _rows(out) == 0:
            assert process.poll() is None and time.monotonic() < deadline, "the run ended before it could be stopped"
            time.sleep(0.002)
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 128 + signal.SIGTERM, err
    assert f"continue with --resume --out {out}" in err and "Traceback" not in err, err
    assert 0 < _rows(out) < 3 * N
