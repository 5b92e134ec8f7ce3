"""Faithfulness metrics: known answers by hand, and agreement with pytorch-grad-cam and Quantus."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

import xaibench
from xaibench import faithfulness
from xaibench.metric import MetricInput, create_metric


class _Linear(nn.Module):
    """logits = W x (flattened), a linear model: its input gradient for class c is W[c] exactly."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ self.weight.T


def _bare_model(network: nn.Module, size: int, classes: int) -> xaibench.Model:
    """A Model for metrics, which use only the network (no feature layer, no normalisation)."""
    return xaibench.Model(network=network, target_layer=network, target_layer_name="", classifier=None,
                          classifier_name=None, class_names=[f"c{k}" for k in range(classes)], input_size=(size, size))


def _linear_model(size: int = 8, classes: int = 3, seed: int = 0) -> xaibench.Model:
    weight = torch.randn(classes, 3 * size * size, generator=torch.Generator().manual_seed(seed))
    return _bare_model(_Linear(weight), size, classes)


def _input(model, images, maps, targets) -> MetricInput:
    n = len(images)
    return MetricInput(
        maps=np.asarray(maps, dtype=np.float32), images=images, targets=targets, labels=targets.numpy(),
        top5=targets.numpy()[:, None], boxes=[np.zeros((1, 4))] * n, difficult=[np.zeros(1, bool)] * n,
        masks=[None] * n, target="label", model=model,
    )


# ------------------------------------------------------------------------------------ pure functions


def test_pixel_order_is_decreasing_with_row_major_ties() -> None:
    m = np.array([[0.5, 1.0], [0.5, 0.0]])
    assert faithfulness.pixel_order(m).tolist() == [1, 0, 2, 3]


def test_auc_is_the_trapezoid_over_unit_interval() -> None:
    assert faithfulness.auc(np.ones(5)) == pytest.approx(1.0)
    assert faithfulness.auc(np.linspace(1, 0, 101)) == pytest.approx(0.5)
    assert faithfulness.auc(np.array([1.0, 0.0, 0.0])) == pytest.approx(0.25)


def test_rise_blur_kernel_is_the_authors_gkern() -> None:
    from scipy.ndimage import gaussian_filter

    dirac = np.zeros((11, 11))
    dirac[5, 5] = 1
    kernel = faithfulness.rise_blur_kernel()
    assert np.allclose(kernel.numpy(), gaussian_filter(dirac, 5))
    assert kernel.sum().item() == pytest.approx(1.0, abs=1e-6)
    # A constant image stays constant away from the zero-padded border.
    flat = faithfulness.blur(torch.ones(1, 3, 32, 32), kernel)
    assert torch.allclose(flat[..., 5:-5, 5:-5], torch.ones(()), atol=1e-6)


def test_removal_mask_counts_and_ends() -> None:
    m = np.arange(100, dtype=float).reshape(10, 10)
    order = faithfulness.road_order(m, torch.Generator().manual_seed(0))
    assert order.tolist() == list(range(99, -1, -1))  # distinct values: the noise (1e-4) reorders none
    top = faithfulness.removal_mask(order, m.shape, 0.2, most_relevant=True)
    bottom = faithfulness.removal_mask(order, m.shape, 0.2, most_relevant=False)
    assert top.sum() == bottom.sum() == 20
    assert top.reshape(-1)[80:].all() and bottom.reshape(-1)[:20].all()


def test_removal_counts_are_the_authors_int_of_the_fraction() -> None:
    """The authors remove ``order[:int(H W p)]`` (MoRF) and ``order[int(H W p):]`` (LeRF, p the fraction
    kept): on 224 x 224, 30 % is 15052 pixels (not round(15052.8)), and LeRF at 10 % is 50176 - 45158."""
    order = np.arange(224 * 224)
    assert faithfulness.removal_mask(order, (224, 224), 0.3, most_relevant=True).sum() == 15052
    assert faithfulness.removal_mask(order, (224, 224), 0.1, most_relevant=False).sum() == 50176 - 45158


@pytest.mark.parametrize("fraction", [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])
def test_lerf_keeps_the_authors_count_where_one_minus_the_fraction_is_inexact(fraction) -> None:
    """The authors' LeRF keeps ``int(H W th_p)`` pixels with ``th_p`` a literal of their list (0.1, 0.2, ...):
    on 100 x 100 that is exactly 100 (1 - f) * 100, whereas ``int(10000 * (1 - 0.9))`` is 999."""
    order = np.arange(100 * 100)
    kept = round(100 * (1 - fraction)) * 100
    assert faithfulness.removal_mask(order, (100, 100), fraction, most_relevant=False).sum() == 10000 - kept


def test_road_order_breaks_ties_at_random_like_the_authors() -> None:
    """A plateau (half the map at 0) is ordered by the authors' 1e-4 noise, not row by row: among the
    zeros, the first removed are spread over every row; above the plateau, the order is the map's."""
    m = np.zeros((16, 16))
    m[:, :8] = np.arange(128).reshape(16, 8) + 1.0
    order = faithfulness.road_order(m, torch.Generator().manual_seed(0))
    assert set(order[:128]) == set(np.flatnonzero(m.reshape(-1) > 0))
    assert np.all(np.diff(m.reshape(-1)[order[:128]]) < 0)
    first_zeros = order[128:160]
    assert len(set(first_zeros // 16)) >= 10  # row-major order would take rows 0-3 only
    again = faithfulness.road_order(m, torch.Generator().manual_seed(0))
    assert np.array_equal(order, again)
    assert not np.array_equal(order, faithfulness.road_order(m, torch.Generator().manual_seed(1)))


def test_imputation_of_a_linear_ramp_is_exact_inside() -> None:
    """A removed block in the middle of a linear ramp: the weighted neighbour mean of a linear function
    is the function itself, so the system's solution is the ramp."""
    y, x = torch.meshgrid(torch.arange(12.0), torch.arange(12.0), indexing="ij")
    image = torch.stack([x, y, x + 2 * y])
    removed = np.zeros((12, 12), bool)
    removed[4:8, 3:9] = True
    imputed = faithfulness.noisy_linear_imputation(image, removed, noise=0.0, generator=None)
    assert torch.allclose(imputed, image, atol=1e-5)


def test_imputation_equals_pytorch_grad_cam_road_imputer() -> None:
    road = pytest.importorskip("pytorch_grad_cam.metrics.road")
    image = torch.rand(3, 24, 20, generator=torch.Generator().manual_seed(0))
    removed = np.random.default_rng(1).random((24, 20)) < 0.6  # corners, borders and big holes
    ours = faithfulness.noisy_linear_imputation(image, removed, noise=0.0, generator=None)
    theirs = road.NoisyLinearImputer(noise=0.0)(image, torch.from_numpy((~removed).astype(np.float32)))
    assert torch.allclose(ours, theirs, atol=1e-5)
    assert torch.equal(ours[:, ~torch.from_numpy(removed)], image[:, ~torch.from_numpy(removed)])


# ------------------------------------------------------------------------------- deletion / insertion


def test_deletion_curve_equals_quantus_pixel_flipping() -> None:
    """On a linear model and a map without ties, one pixel per step and a zero baseline, RISE's deletion
    curve is Quantus's PixelFlipping curve (the softmax probability after each step). Quantus 0.6 flips
    each channel value as its own feature (it broadcasts the map over the channels), xaibench all the
    channels of a pixel at once: the two coincide on one-channel inputs."""
    quantus = pytest.importorskip("quantus")
    weight = torch.randn(3, 36, generator=torch.Generator().manual_seed(1))
    linear = _Linear(weight).eval()
    images = torch.rand(2, 1, 6, 6, generator=torch.Generator().manual_seed(2))
    targets = torch.tensor([0, 2])
    maps = np.random.default_rng(3).random((2, 6, 6))
    ours = faithfulness.causal_curves(linear, images, maps, targets, images, torch.zeros_like(images), 1, 7)
    metric = quantus.PixelFlipping(
        features_in_step=1, perturb_baseline=0.0, disable_warnings=True, display_progressbar=False,
        normalise=False, abs=False, return_auc_per_sample=False,
    )
    theirs = metric(
        model=linear, x_batch=images.numpy(), y_batch=targets.numpy(), a_batch=maps[:, None].astype(np.float32),
        softmax=True, device="cpu", channel_first=True,
    )
    assert np.allclose(ours[:, 1:], np.asarray(theirs), atol=1e-5)


def test_deletion_and_insertion_known_answers() -> None:
    """A linear model with an all-positive input gradient for the target: deleting pixels in the
    order of their contribution x_i W_ci lowers the logit fastest, the reversed map slowest."""
    model = _linear_model(size=8)
    images = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(5))
    target = torch.tensor([1])
    contribution = (images[0] * model.network.weight[1].view(3, 8, 8)).sum(0).detach().numpy()
    deletion = create_metric("deletion_auc", steps=64, substrate="black")
    best = deletion.score(_input(model, images, contribution[None], target))["deletion_auc"][0]
    worst = deletion.score(_input(model, images, -contribution[None], target))["deletion_auc"][0]
    flat = deletion.score(_input(model, images, np.zeros((1, 8, 8)), target))["deletion_auc"][0]
    assert best < flat < worst
    insertion = create_metric("insertion_auc", steps=64, substrate="black")
    best_in = insertion.score(_input(model, images, contribution[None], target))["insertion_auc"][0]
    worst_in = insertion.score(_input(model, images, -contribution[None], target))["insertion_auc"][0]
    assert best_in > worst_in


def test_deletion_curve_ends_at_the_substrate_and_starts_at_the_image() -> None:
    model = _linear_model(size=8)
    images = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(6))
    targets = torch.tensor([0, 2])
    values = create_metric("deletion_auc", steps=16, substrate="black").score(
        _input(model, images, np.random.default_rng(0).random((2, 8, 8)), targets)
    )
    curves = np.stack(values["deletion_curve"])
    assert curves.shape == (2, 17)
    with torch.no_grad():
        start = torch.softmax(model.network(images), 1)[[0, 1], targets].numpy()
    assert np.allclose(curves[:, 0], start, atol=1e-6)
    assert np.allclose(curves[:, -1], 1 / 3, atol=1e-6)  # a black image gives zero logits: uniform
    assert np.allclose(values["deletion_auc"], faithfulness.auc(curves))


# ------------------------------------------------------------------------ Average Drop / Increase


def test_average_drop_and_increase_known_answers() -> None:
    """The all-ones map shows the whole image: no drop, no increase. The all-zero map shows a black
    image: logits 0, probability 1/3 for every class."""
    model = _linear_model(size=8)
    images = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(7))
    targets = torch.tensor([0, 1, 2])
    with torch.no_grad():
        y = torch.softmax(model.network(images), 1)[[0, 1, 2], targets].numpy().astype(np.float64)
    drop, increase = create_metric("average_drop"), create_metric("increase_in_confidence")
    ones = _input(model, images, np.ones((3, 8, 8)), targets)
    assert np.allclose(drop.score(ones)["average_drop"], 0.0, atol=1e-4)
    assert np.all(np.asarray(increase.score(_input(model, images, np.ones((3, 8, 8)), targets))["increase_in_confidence"]) == 0)
    zeros = _input(model, images, np.zeros((3, 8, 8)), targets)
    assert np.allclose(drop.score(zeros)["average_drop"], 100 * np.maximum(0, y - 1 / 3) / y, atol=1e-4)
    assert np.array_equal(increase.score(zeros)["increase_in_confidence"], 100.0 * (1 / 3 > y))


def test_given_the_clean_logits_average_drop_runs_the_network_on_the_shown_images_only() -> None:
    """The harness shares the classification pass's logits (MetricInput.logits): Y comes from them, and
    the network sees the n images times their maps, not 2 n images."""
    model = _linear_model(size=8)
    images = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(5))
    targets = torch.tensor([2, 0, 1, 1])
    maps = np.random.default_rng(6).random((4, 8, 8)).astype(np.float32)
    rows = []
    handle = model.network.register_forward_pre_hook(lambda module, inputs: rows.append(len(inputs[0])))
    try:
        alone = _input(model, images, maps, targets)
        own = (create_metric("average_drop").score(alone), create_metric("increase_in_confidence").score(alone))
        assert rows == [8]  # the images and E in one pass, shared by both metrics
        with torch.no_grad():
            given = dataclasses.replace(_input(model, images, maps, targets), logits=model(images))
        rows.clear()
        shared = (create_metric("average_drop").score(given), create_metric("increase_in_confidence").score(given))
    finally:
        handle.remove()
    assert rows == [4]  # E alone
    assert np.allclose(shared[0]["average_drop"], own[0]["average_drop"], rtol=1e-6, atol=0)
    assert np.array_equal(shared[1]["increase_in_confidence"], own[1]["increase_in_confidence"])


def test_average_drop_equals_pytorch_grad_cam_times_y() -> None:
    """pytorch-grad-cam's DropInConfidence is max(0, Y - O) on the (here unnormalised) input times the
    map; ours divides by Y (the Grad-CAM++ paper's definition)."""
    pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.metrics.cam_mult_image import DropInConfidence, IncreaseInConfidence
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    model = _linear_model(size=8)
    images = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(8))
    targets = torch.tensor([0, 1, 2, 0])
    maps = np.random.default_rng(9).random((4, 8, 8)).astype(np.float32)
    with torch.no_grad():
        y = torch.softmax(model.network(images), 1)[range(4), targets].numpy()
    batch = _input(model, images, maps, targets)
    ours = np.asarray(create_metric("average_drop").score(batch)["average_drop"])
    wanted = [ClassifierOutputSoftmaxTarget(int(t)) for t in targets]
    theirs = DropInConfidence()(images, maps, wanted, model.network)
    assert np.allclose(ours * y / 100, theirs, atol=1e-5)
    assert np.array_equal(
        np.asarray(create_metric("increase_in_confidence").score(batch)["increase_in_confidence"]) / 100,
        IncreaseInConfidence()(images, maps, wanted, model.network),
    )


# ------------------------------------------------------------------------------------------ ROAD


def test_road_known_answers_on_the_object_mask() -> None:
    """A network that reads one pixel: removing it (MoRF with the map on that pixel) changes the class,
    removing the rest (LeRF) keeps it."""

    class OnePixel(nn.Module):
        def forward(self, x):
            v = x[:, 0, 4, 4]
            return torch.stack([v, 0.5 * torch.ones_like(v)], 1)

    model = _bare_model(OnePixel(), 9, 2)
    images = torch.zeros(1, 3, 9, 9)
    images[0, 0, 4, 4] = 1.0  # class 0 (logit 1 > 0.5); its neighbours are 0, so imputation gives ~0
    mask = np.zeros((1, 9, 9))
    mask[0, 4, 4] = 1.0
    batch = _input(model, images, mask, torch.tensor([0]))
    morf = create_metric("road_morf", fractions=(0.1, 0.5), noise=0.0).score(batch)
    lerf = create_metric("road_lerf", fractions=(0.1, 0.5), noise=0.0).score(batch)
    assert morf["road_morf"][0] == 0.0 and lerf["road_lerf"][0] == 100.0
    assert morf["road_morf_curve"][0].tolist() == [0.0, 0.0]


def test_road_imputes_the_image_before_normalising_it() -> None:
    """ROAD's noise (0.01) is in pixel values, as the authors' ``run_road`` imputes the [0, 1] image and
    normalises afterwards: on a constant image the imputed pixels, mapped back from the network's
    input, spread by 0.01, not by 0.01 times the normalisation's std (here 0.25)."""
    seen = []

    class Spy(nn.Module):
        def forward(self, x):
            seen.append(x.clone())
            return torch.zeros(len(x), 2)

    model = dataclasses.replace(_bare_model(Spy(), 32, 2), mean=(0.5, 0.4, 0.3), std=(0.25, 0.25, 0.25))
    images = torch.full((1, 3, 32, 32), 0.6)
    maps = np.random.default_rng(0).random((1, 32, 32))
    create_metric("road_morf", fractions=(0.5,), noise=0.01).score(_input(model, images, maps, torch.tensor([0])))
    pixels = seen[0][0] * 0.25 + torch.tensor(model.mean)[:, None, None]  # back to [0, 1]
    removed = (pixels - 0.6).abs().amax(0) > 1e-6
    assert removed.sum() == 512  # int(0.5 * 32 * 32)
    assert (pixels - 0.6)[:, removed].std().item() == pytest.approx(0.01, rel=0.1)


def test_road_is_seeded_per_image() -> None:
    """With noise large enough to flip the predictions, the curves depend on the seed, yet an image's
    curve is the same alone as in a batch (its noise is drawn from the image and the seed)."""
    model = _linear_model(size=8)
    images = torch.rand(6, 3, 8, 8, generator=torch.Generator().manual_seed(10))
    maps = np.random.default_rng(11).random((6, 8, 8))
    targets = torch.tensor([0, 1, 2, 0, 1, 2])

    def curves(seed, first=0):
        metric = create_metric("road_morf", noise=3.0, seed=seed)
        return np.stack(metric.score(_input(model, images[first:], maps[first:], targets[first:]))["road_morf_curve"])

    batch = curves(3)
    assert not np.array_equal(batch, curves(4))  # the noise matters here
    assert np.array_equal(batch, curves(3))
    assert np.array_equal(batch[4:], curves(3, first=4))
