"""benchmarks/gpu_check.py, the prepared check of the GPU path, runs on the CPU (``--device cpu``, a small size):
the CPU against itself, so every map agrees (r = 1) and the two runs' summaries are equal; and bf16
against fp32 there, where saliency refuses and the CAM family's maps stay close."""

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
    half = text.split("#### bf16 against fp32 on CPU")[1]
    assert "| saliency |  |  |  |  | refuses bf16: its map is a gradient with respect to the pixels" in half
    for method in ("cam", "gradcam", "gradcampp"):
        r = float(half.split(f"| {method} | ")[1].split(" |")[0])
        assert 0.99 <= r < 1.0, (method, r)  # bf16 ran, and the maps moved only a little
    assert "in bf16: largest difference from fp32's" in half
