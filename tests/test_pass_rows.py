"""xaibench.pass_rows: a method's default batch of copies follows its model's device."""

import pytest
import torch

import xaibench
from xaibench import options, pass_rows
from xaibench.errors import OptionError
from xaibench.models import Model


def test_on_the_cpu_the_default_holds_a_fixed_number_of_pixels(model) -> None:
    """4 x 224 x 224 pixels a forward pass, 8 x 224 x 224 a forward and backward pass (``model`` is 16 x 16)."""
    assert pass_rows.default_rows(model) == options.PASS_PIXELS // 16**2 == 784
    assert pass_rows.default_rows(model, backward=True) == options.GRADIENT_PASS_PIXELS // 16**2
    assert pass_rows.default_rows(model, input_size=(64, 64)) == 49
    assert pass_rows.default_rows(model, backward=True, input_size=(64, 64)) == 98
    assert pass_rows.default_rows(model, input_size=(224, 224)) == 4
    assert pass_rows.default_rows(model, backward=True, input_size=(224, 224)) == 8
    assert pass_rows.pass_batch_size("batch_size", 3, model) == 3
    with pytest.raises(OptionError, match="option internal_batch_size must be an integer >= 1, got 0"):
        pass_rows.pass_batch_size("internal_batch_size", 0, model)


def test_gpu_rows_is_the_share_of_free_memory_clamped() -> None:
    mib, gib = 2**20, 2**30
    assert pass_rows.gpu_rows(40 * gib, 100 * mib) == int(pass_rows.GPU_MEMORY_SHARE * 40 * 1024 / 100) == 204
    assert pass_rows.gpu_rows(gib, 2 * gib) == 1  # one copy does not fit: one a pass all the same
    assert pass_rows.gpu_rows(80 * gib, mib) == pass_rows.MAX_GPU_ROWS


def test_methods_built_on_a_gpu_take_the_memory_budget(model, monkeypatch) -> None:
    """Each method that batches copies asks :func:`pass_rows.default_rows` with its pass kind: forward
    only (Score-CAM and its kin, RISE, occlusion, LIME, Kernel SHAP, Smooth Grad-CAM++) or forward and backward (the sampled gradient
    methods). The device and its memory are stood in for: a CUDA machine runs the real probe
    (:func:`test_the_probe_on_a_gpu`, ``benchmarks/gpu_check.py``)."""
    monkeypatch.setattr(Model, "device", property(lambda self: torch.device("cuda", 0)))
    probed = []

    def probe(model, size, *, backward=False):
        probed.append((tuple(size), backward))
        return (300 if backward else 100) * 2**20

    monkeypatch.setattr(pass_rows, "bytes_per_row", probe)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (30 * 2**30, 80 * 2**30))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: 10 * 2**30)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: 0)
    forward, backward = pass_rows.gpu_rows(40 * 2**30, 100 * 2**20), pass_rows.gpu_rows(40 * 2**30, 300 * 2**20)
    assert (forward, backward) == (204, 68)
    for name in ("scorecam", "sscam", "iscam", "rise", "occlusion", "lime", "kernelshap", "smoothgradcampp"):
        assert xaibench.create_explainer(name, model).batch_size == forward, name
    for name in ("smoothgrad", "vargrad", "gradientshap"):
        assert xaibench.create_explainer(name, model).batch_size == backward, name
    assert xaibench.create_explainer("integrated_gradients", model).internal_batch_size == backward
    assert xaibench.create_explainer("rise", model, batch_size=5).batch_size == 5  # an explicit size wins
    assert set(probed) == {(model.input_size, False), (model.input_size, True)}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_probe_on_a_gpu() -> None:  # pragma: no cover - CI has no GPU
    """On a real GPU: a pass on the default number of copies takes at most the share of free memory."""
    model = xaibench.load_model("builtin", device="cuda")
    per_row = pass_rows.bytes_per_row(model, model.input_size)
    assert per_row > 0 and pass_rows.bytes_per_row(model, model.input_size) == per_row  # measured once
    rows = pass_rows.default_rows(model)
    free = torch.cuda.mem_get_info()[0] + torch.cuda.memory_reserved() - torch.cuda.memory_allocated()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    with torch.no_grad():
        model(torch.zeros(rows, 3, *model.input_size, device="cuda"))
    assert torch.cuda.max_memory_allocated() - before <= pass_rows.GPU_MEMORY_SHARE * free
