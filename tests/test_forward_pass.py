"""One forward pass per batch: the classification pass serves the forward-only methods and the metrics."""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import pytest
import torch

import xaibench
from xaibench.data import Sample
from xaibench.errors import XaibenchError
from xaibench.explainer import available_explainers, get_explainer
from xaibench.forward_pass import classification_pass
from xaibench.harness import evaluate
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


def _squares(n: int) -> list[Sample]:
    g = torch.Generator().manual_seed(3)
    return [Sample(f"s{i}", torch.rand(3, 16, 16, generator=g), i % 5, torch.tensor([[1.0, 2, 9, 11]])) for i in range(n)]


def test_a_run_with_cam_and_the_baselines_runs_the_network_once_per_batch(model, tmp_path) -> None:
    data = _squares(10)
    methods = [xaibench.create_explainer(name, model) for name in ["cam", "eigencam", "ablationcam", "center", "random"]]
    with _passes(model.network) as passes:
        evaluate(model, data, methods, batch_size=4)
    assert passes[0] == 3  # the classification pass of each of the 3 batches, nothing else


def test_average_drop_takes_the_clean_probability_from_the_classification_pass(model) -> None:
    """One pass per batch for the clean images, whatever the number of methods; one per method for
    the images times their maps."""
    data = _squares(10)
    metrics = ["top1_cls", "average_drop", "increase_in_confidence"]
    methods = [xaibench.create_explainer(name, model) for name in ["cam", "center", "random"]]
    with _passes(model.network) as passes:
        shared = evaluate(model, data, methods, metrics=metrics, batch_size=4)
    assert passes[0] == 3 * (1 + 3)
    # the same values as each method's own pass over the image and its map
    for method, rows in shared.groupby("method"):
        maps = xaibench.create_explainer(method, model).explain(
            torch.stack([s.image for s in data]), torch.tensor([s.label for s in data])).maps
        with torch.no_grad():
            p = torch.softmax(model(torch.cat([torch.stack([s.image for s in data]),
                                               torch.stack([s.image for s in data]) * maps[:, None]])), 1)
        y, o = (p[range(10), [s.label for s in data]] for p in (p[:10], p[10:]))
        expected = 100 * np.maximum(0, y.double().numpy() - o.double().numpy()) / y.double().numpy()
        assert np.allclose(rows.average_drop, expected, rtol=1e-6, atol=0)  # bit-equal where the network is batch-invariant
        assert rows.increase_in_confidence.tolist() == (100.0 * (o > y)).tolist()
