"""One forward pass per batch: the classification pass serves the forward-only methods and the metrics."""

from __future__ import annotations

from contextlib import contextmanager

import pytest
import torch

import xaibench
from xaibench.errors import XaibenchError
from xaibench.explainer import available_explainers, get_explainer
from xaibench.forward_pass import classification_pass
from xaibench.hooks import count_hooks

from conftest import FlattenHeadNet, tiny_model

#: The methods that take their maps from the classification pass.
FORWARD_ONLY = ["cam", "eigencam", "ablationcam"]


@contextmanager
def _passes(network: torch.nn.Module):
    """The number of forward passes of ``network`` inside the block, as a one-element list."""
    count = [0]
    handle = network.register_forward_pre_hook(lambda module, inputs: count.__setitem__(0, count[0] + 1))
    try:
        yield count
    finally:
        handle.remove()


def test_the_forward_only_methods_are_the_ones_that_say_so() -> None:
    assert sorted(n for n in available_explainers() if get_explainer(n).uses_forward_pass) == sorted(FORWARD_ONLY)


def test_the_classification_pass_is_the_model_s_output_and_leaves_no_hook(model, batch) -> None:
    images, _ = batch
    hooks = count_hooks(model.network)
    forward = classification_pass(model, images, features=True)
    with torch.no_grad():
        assert torch.equal(forward.logits, model(images))
        assert torch.equal(forward.features, model.network.features(model.normalize(images)))
    assert count_hooks(model.network) == hooks and forward.images is images
    assert classification_pass(model, images).features is None


@pytest.mark.parametrize("name", FORWARD_ONLY)
def test_given_the_pass_a_forward_only_method_runs_no_network_and_gives_the_same_maps(name, model, batch) -> None:
    explainer = xaibench.create_explainer(name, model)
    images, targets = batch
    with _passes(model.network) as own:
        alone = explainer.explain(images, targets)
    forward = classification_pass(model, images, features=True)
    with _passes(model.network) as given:
        reused = explainer.explain(images, targets, forward=forward)
    assert own[0] == 1 and given[0] == 0
    assert torch.equal(reused.raw, alone.raw) and torch.equal(reused.maps, alone.maps)


def test_ablation_cam_s_general_path_runs_the_network_given_the_pass(batch) -> None:
    """Without a GAP -> linear head, Ablation-CAM's closed form does not hold: given the pass, it still
    ablates each feature map, with the same maps as on its own."""
    model = tiny_model(FlattenHeadNet())
    explainer = xaibench.create_explainer("ablationcam", model)
    images, targets = batch
    alone = explainer.explain(images, targets)
    forward = classification_pass(model, images, features=True)
    with _passes(model.network) as given:
        reused = explainer.explain(images, targets, forward=forward)
    assert given[0] > 0 and torch.equal(reused.raw, alone.raw)


def test_a_pass_without_features_or_of_other_images_is_not_used(model, batch) -> None:
    images, targets = batch
    cam = xaibench.create_explainer("cam", model)
    without_features = classification_pass(model, images)
    with _passes(model.network) as passes:
        cam.explain(images, targets, forward=without_features)
    assert passes[0] == 1  # no target layer output: CAM runs its own pass
    with pytest.raises(XaibenchError, match="forward pass of other images"):
        cam.explain(images, targets, forward=classification_pass(model, images.flip(0), features=True))
    with pytest.raises(XaibenchError, match="forward pass of 3 images for 4 images"):
        cam.explain(images, targets, forward=classification_pass(model, images[:3], features=True))


def test_a_method_cannot_change_the_pass_the_next_method_receives(model, batch) -> None:
    class Editor(xaibench.Explainer):
        uses_forward_pass = True

        def attribute(self, images, targets):
            return images.mean(1)

        def attribute_from_pass(self, forward, targets):
            forward.features.zero_(), forward.logits.zero_(), forward.images.zero_()
            return forward.features.sum(1) + 1

    images, targets = batch
    forward = classification_pass(model, images, features=True)
    kept = [t.clone() for t in (forward.logits, forward.features, images)]
    Editor(model).explain(images, targets, forward=forward)
    assert all(torch.equal(a, b) for a, b in zip(kept, (forward.logits, forward.features, images)))
