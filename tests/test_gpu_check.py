"""benchmarks/gpu_check.py, the prepared check of the GPU path, runs on the CPU (``--device cpu``, a small size):
the CPU against itself, so every map agrees (r = 1) and the two runs' summaries are equal."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from conftest import SHARED_IMAGENET

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


@pytest.mark.skipif(not SHARED_IMAGENET.is_dir(), reason="needs the shared ImageNet photos")
def test_gpu_check_runs_on_the_cpu(tmp_path, capsys) -> None:
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    gpu_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_check)
    out = tmp_path / "gpu_check.md"
    assert gpu_check.main(["--device", "cpu", "--data", str(SHARED_IMAGENET), "--out", str(out)]) == 0
    text = out.read_text()
    for method in gpu_check.SIZES["cpu"]["methods"].split(","):
        assert f"| {method} | 1.000000 |" in text, text
    assert "largest difference from the CPU's 0.0000 points (within 0.5)" in text
