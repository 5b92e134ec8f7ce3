"""The Explainer interface (checks, post-processing, state left alone) and the registry."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import xaibench
from xaibench.errors import UnknownNameError, XaibenchError
from xaibench.explainer import _REGISTRY, normalize_maps, upsample_maps

from conftest import tiny_model


def test_normalize_maps_known_values_and_flat_maps() -> None:
    maps = torch.tensor([[[1.0, 3.0], [5.0, 9.0]], [[2.0, 2.0], [2.0, 2.0]], [[-4.0, 0.0], [0.0, 4.0]]])
    out = normalize_maps(maps)
    assert torch.equal(out[0], torch.tensor([[0.0, 0.25], [0.5, 1.0]]))
    assert torch.equal(out[1], torch.zeros(2, 2))  # flat -> zeros, never NaN
    assert torch.equal(out[2], torch.tensor([[0.0, 0.5], [0.5, 1.0]]))


def test_upsample_maps_is_bilinear_and_keeps_constant_maps() -> None:
    maps = torch.stack([torch.full((2, 2), 3.0), torch.tensor([[0.0, 1.0], [0.0, 1.0]])])
    up = upsample_maps(maps, (4, 4))
    assert up.shape == (2, 4, 4)
    assert torch.allclose(up[0], torch.full((4, 4), 3.0))
    # align_corners=False: the outer columns copy the border values, the inner ones interpolate.
    assert torch.allclose(up[1, 0], torch.tensor([0.0, 0.25, 0.75, 1.0]))


class _Fixed(xaibench.Explainer):
    """Returns a fixed low-resolution map whatever the input."""

    def attribute(self, images, targets):
        return torch.arange(4.0).reshape(1, 2, 2).repeat(len(images), 1, 1)


def test_call_upsamples_and_normalises(model, batch) -> None:
    maps = _Fixed(model)(*batch)
    assert maps.shape == (4, 16, 16) and maps.dtype == torch.float32
    assert maps.min() == 0 and maps.max() == 1


@pytest.mark.parametrize(
    "targets, message",
    [
        (torch.tensor([0, 1, 2, 3]).int(), "LongTensor"),
        (torch.tensor([0, 1]), "4 images but 2 targets"),
        (torch.tensor([0, 1, 2, 5]), r"targets must lie in \[0, 4\]"),
        (None, "LongTensor"),
    ],
)
def test_call_rejects_bad_targets(model, batch, targets, message) -> None:
    with pytest.raises(XaibenchError, match=message):
        _Fixed(model)(batch[0], targets)


def test_call_rejects_bad_images(model) -> None:
    with pytest.raises(XaibenchError, match=r"\(N, C, H, W\)"):
        _Fixed(model)(torch.rand(3, 16, 16), torch.tensor([0, 1, 2]))


class _Raising(xaibench.Explainer):
    def attribute(self, images, targets):
        assert not self.model.network.training
        raise RuntimeError("boom")


def test_training_flags_restored_even_after_an_error(model, batch) -> None:
    model.network.train()
    model.network.features[0].eval()  # a mixed state must come back exactly
    before = {name: m.training for name, m in model.network.named_modules()}
    with pytest.raises(RuntimeError, match="boom"):
        _Raising(model)(*batch)
    assert {name: m.training for name, m in model.network.named_modules()} == before


def test_wrong_output_shape_is_reported(model, batch) -> None:
    class Flat(xaibench.Explainer):
        def attribute(self, images, targets):
            return torch.rand(len(images), 16 * 16)

    with pytest.raises(XaibenchError, match=r"must return \(N, h, w\)"):
        Flat(model)(*batch)


# ------------------------------------------------------------------------------------------ registry


def test_builtins_are_found_through_entry_points() -> None:
    assert {"cam", "gradcam", "saliency"} <= set(xaibench.available_explainers())
    assert xaibench.get_explainer("cam").__module__ == "xaibench_plugins.cam"


def test_unknown_name_lists_the_available_ones(model) -> None:
    with pytest.raises(UnknownNameError, match="unknown method 'nope'; available: .*cam.*gradcam"):
        xaibench.create_explainer("nope", model)


def test_register_create_and_duplicate(model, batch) -> None:
    try:
        @xaibench.register_explainer("test-fixed")
        class Mine(_Fixed):
            """My method."""

        assert "test-fixed" in xaibench.available_explainers()
        explainer = xaibench.create_explainer("test-fixed", model)
        assert isinstance(explainer, Mine) and explainer.name == "test-fixed"
        assert explainer(*batch).shape == (4, 16, 16)

        with pytest.raises(XaibenchError, match="already registered"):
            @xaibench.register_explainer("test-fixed")
            class Other(_Fixed):
                pass

        xaibench.get_explainer("cam")  # a built-in's name is taken too
        with pytest.raises(XaibenchError, match="'cam' is already registered by xaibench_plugins.cam:CAM"):
            xaibench.register_explainer("cam")(_Fixed)
    finally:
        _REGISTRY.pop("test-fixed", None)


def test_register_needs_an_explainer_subclass() -> None:
    with pytest.raises(TypeError, match="Explainer subclass"):
        xaibench.register_explainer("not-a-class")(object)


def test_loading_cam_imports_no_other_plugin() -> None:
    code = (
        "import sys, xaibench; xaibench.get_explainer('cam'); "
        "assert 'xaibench_plugins.cam' in sys.modules; "
        "bad = [m for m in ('xaibench_plugins.gradcam', 'xaibench_plugins.saliency', 'captum') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_tiny_model_fixture_is_deterministic() -> None:
    a, b = tiny_model(), tiny_model()
    assert all(torch.equal(p, q) for p, q in zip(a.network.parameters(), b.network.parameters()))
