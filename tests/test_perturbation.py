"""Perturbation attributions (plugins/perturbation.py): known answers, captum, RISE's reference, seeds.

captum draws LIME's and Kernel SHAP's coalitions from torch's global generator; seeding it per image
with :func:`xaibench.seeding.image_seed`, as xaibench seeds its own generator, makes captum draw the
very same coalitions, so the two must agree up to float rounding, with few samples.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from torch import nn

import xaibench
from xaibench.errors import XaibenchError
from xaibench.seeding import image_generator, image_seed

from conftest import SHARED_IMAGENET, pearson, post, tiny_model

captum_attr = pytest.importorskip("captum.attr")


# ------------------------------------------------------------------------------------------- helpers


def _raw(explainer: xaibench.Explainer, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The raw maps, as attribute() returns them (without gradients, as explain() runs it)."""
    with torch.no_grad():
        return explainer.attribute(images.clone(), targets.clone())


def _probabilities(model: xaibench.Model):
    return lambda x: torch.softmax(model(x), dim=1)


def _linear_model(size: int = 8) -> tuple[xaibench.Model, torch.Tensor]:
    """A network whose logits are linear in the [0, 1] pixels: logit_c = <w_c, x> + b_c."""
    torch.manual_seed(3)
    network = nn.Sequential(nn.Flatten(), nn.Linear(3 * size * size, 2))
    model = xaibench.Model(network, network[0], "0", network[1], "1", ["a", "b"], (size, size))
    return model, network[1].weight.detach().view(2, 3, size, size)


def _slic(image: torch.Tensor, n_segments: int, compactness: float = 10.0) -> torch.Tensor:
    """The documented segmentation, written here from scikit-image directly."""
    from skimage.segmentation import slic

    labels = slic(image.permute(1, 2, 0).double().numpy(), n_segments=n_segments, compactness=compactness, start_label=0)
    return torch.from_numpy(np.unique(labels, return_inverse=True)[1].reshape(labels.shape)).long()


def _lime_kernel(width: float):
    """lime_image's kernel, sqrt(exp(-d^2 / w^2)), d the cosine distance of the coalition to all-ones."""

    def similarity(original, perturbed, interpretable, **kwargs):
        z = interpretable.double().flatten()
        d = 1 - torch.nn.functional.cosine_similarity(z, torch.ones_like(z), dim=0)
        return math.sqrt(math.exp(-(d.item() ** 2) / width**2))

    return similarity


def _captum_superpixels(method: str, model, images, targets, n_segments, n_samples, seed=0, output="probability"):
    """captum's Lime (with lime_image's kernel and Ridge) or KernelShap, one image at a time, seeded
    per image as xaibench seeds its generator."""
    from captum._utils.models.linear_model import SkLearnRidge

    forward = _probabilities(model) if output == "probability" else model
    maps = []
    for image, target in zip(images, targets.tolist()):
        if method == "lime":
            explainer = captum_attr.Lime(forward, interpretable_model=SkLearnRidge(alpha=1.0), similarity_func=_lime_kernel(0.25))
        else:
            explainer = captum_attr.KernelShap(forward)
        segments = _slic(image, n_segments)
        torch.manual_seed(image_seed(image, seed))
        attribution = explainer.attribute(
            image[None], baselines=0.0, target=target, feature_mask=segments[None, None],
            n_samples=n_samples, perturbations_per_eval=n_samples,
        )
        maps.append(attribution[0, 0])
    return torch.stack(maps)


@pytest.fixture(scope="module")
def photos() -> tuple[xaibench.Model, torch.Tensor, torch.Tensor]:
    """efficientnet_lite0 and two shared ImageNet photos with their labels."""
    if not SHARED_IMAGENET.is_dir():
        pytest.skip(f"shared ImageNet photos not found at {SHARED_IMAGENET}")
    model = xaibench.load_model("efficientnet_lite0")
    data = xaibench.load_dataset(f"imagenet:{SHARED_IMAGENET}", image_size=(224, 224), class_names=model.class_names)
    images = torch.stack([data[i].image for i in range(2)])
    return model, images, torch.tensor([data[i].label for i in range(2)])


@pytest.fixture(scope="module")
def builtin() -> tuple[xaibench.Model, torch.Tensor, torch.Tensor]:
    model = xaibench.load_model("builtin")
    data = xaibench.load_dataset("builtin", image_size=model.input_size, size=3)
    return model, torch.stack([data[i].image for i in range(3)]), torch.tensor([data[i].label for i in range(3)])


# ------------------------------------------------------------------------------------------ occlusion


@pytest.mark.parametrize("window, stride, baseline", [(1, 1, 0.0), (3, 2, 0.5), (5, 3, 0.0)])
def test_occlusion_of_a_linear_score_by_hand(window, stride, baseline) -> None:
    """logit = <w, x> + b: occluding window W drops it by sum_{p in W} sum_ch w(p) (x(p) - baseline);
    each pixel averages the drops of the windows covering it (the last window cut by the border)."""
    model, w = _linear_model(8)
    image = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    contribution = (w[1] * (image[0] - baseline)).sum(0)  # (8, 8)
    total, count = torch.zeros(8, 8), torch.zeros(8, 8)
    starts = [i * stride for i in range(math.ceil((8 - window) / stride) + 1)]
    for top in starts:
        for left in starts:
            drop = contribution[top : top + window, left : left + window].sum()
            total[top : top + window, left : left + window] += drop
            count[top : top + window, left : left + window] += 1
    explainer = xaibench.create_explainer(
        "occlusion", model, window=window, stride=stride, baseline=baseline, output="logit"
    )
    assert torch.allclose(_raw(explainer, image, torch.tensor([1]))[0].float(), total / count, atol=1e-5)


@pytest.mark.parametrize("output", ["probability", "logit"])
@pytest.mark.parametrize("window, stride", [(4, 2), (5, 3)])
def test_occlusion_matches_captum_on_a_tiny_model(model, batch, output, window, stride) -> None:
    images, targets = batch
    forward = _probabilities(model) if output == "probability" else model
    captum = captum_attr.Occlusion(forward).attribute(
        images, sliding_window_shapes=(3, window, window), strides=(3, stride, stride), baselines=0.0,
        target=targets, perturbations_per_eval=64,
    )
    assert torch.equal(captum[:, 0], captum[:, 2])  # the same on every channel
    explainer = xaibench.create_explainer("occlusion", model, window=window, stride=stride, output=output)
    raw = _raw(explainer, images, targets)
    # Drops are differences of float32 outputs (captum's probabilities float32, xaibench's float64).
    assert torch.allclose(raw.float(), captum.mean(1), rtol=1e-3, atol=1e-3 * captum.abs().max().item())
    assert (pearson(post(raw, (16, 16)), post(captum.mean(1), (16, 16))) >= 0.9999).all()


def test_occlusion_defaults_match_captum_on_the_builtin_network(builtin) -> None:
    """32 x 32 windows, stride 16, baseline 0, probabilities: 3 x 3 windows on 64 px."""
    model, images, targets = builtin
    captum = captum_attr.Occlusion(_probabilities(model)).attribute(
        images, sliding_window_shapes=(3, 32, 32), strides=(3, 16, 16), baselines=0.0, target=targets,
        perturbations_per_eval=9,
    )
    ours = xaibench.create_explainer("occlusion", model)(images, targets)
    assert (pearson(ours, post(captum.mean(1), (64, 64))) >= 0.999).all()


def test_occlusion_matches_captum_on_efficientnet(photos) -> None:
    """Coarse windows (128 px, stride 96: 2 x 2 windows, overlapping by 32 px) keep the test affordable;
    the default windows are checked on the built-in network."""
    model, images, targets = photos
    captum = captum_attr.Occlusion(_probabilities(model)).attribute(
        images, sliding_window_shapes=(3, 128, 128), strides=(3, 96, 96), baselines=0.0, target=targets,
        perturbations_per_eval=4,
    )
    ours = xaibench.create_explainer("occlusion", model, window=128, stride=96)(images, targets)
    correlation = pearson(ours, post(captum.mean(1), (224, 224)))
    assert (correlation >= 0.99).all(), correlation


def test_occlusion_clips_a_window_larger_than_the_image(model, batch) -> None:
    """32 px windows on 16 px images: one window covering everything, a constant map (flagged)."""
    explanation = xaibench.create_explainer("occlusion", model).explain(*batch)
    assert explanation.constant.all() and explanation.finite.all()


# ------------------------------------------------------------------------------- LIME and Kernel SHAP


@pytest.mark.parametrize("name", ["lime", "kernelshap"])
def test_superpixel_weights_of_a_linear_score_by_hand(name) -> None:
    """logit = <w, x> + b is linear in the coalition z: f(h(z)) = f(h(0)) + sum_j z_j c_j with
    c_j = sum_{p in S_j} sum_ch w(p) (x(p) - baseline). Kernel SHAP's Shapley values and LIME's
    unpenalised weighted fit both recover c_j exactly."""
    model, w = _linear_model(8)
    image = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    baseline = 0.25
    segments = _slic(image[0], 6)
    contribution = (w[0] * (image[0] - baseline)).sum(0)
    expected = torch.zeros(8, 8, dtype=torch.float64)
    for j in range(int(segments.max()) + 1):
        expected[segments == j] = contribution[segments == j].sum().double()
    options = {"alpha": 0.0} if name == "lime" else {}
    explainer = xaibench.create_explainer(
        name, model, n_samples=40, n_segments=6, baseline=baseline, output="logit", **options
    )
    assert torch.allclose(_raw(explainer, image, torch.tensor([0]))[0], expected, atol=1e-5)


def test_kernelshap_values_add_up_to_the_output_change(model, batch) -> None:
    """Efficiency, imposed exactly: sum_j phi_j = f(image) - f(baseline image), on a non-linear net."""
    images, targets = batch
    explainer = xaibench.create_explainer("kernelshap", model, n_samples=30, baseline=0.0)
    raw = _raw(explainer, images, targets)
    with torch.no_grad():
        change = (_probabilities(model)(images) - _probabilities(model)(torch.zeros_like(images)))[range(4), targets]
    for i, image in enumerate(images):
        segments = _slic(image, 50)
        phi = torch.stack([raw[i][segments == j][0] for j in range(int(segments.max()) + 1)])
        assert torch.allclose(phi.sum(), change[i].double(), atol=1e-6)


@pytest.mark.parametrize("name", ["lime", "kernelshap"])
@pytest.mark.parametrize("output", ["probability", "logit"])
def test_superpixels_match_captum_on_a_tiny_model(model, batch, name, output) -> None:
    """LIME against captum's Lime given lime_image's kernel and Ridge(alpha=1); Kernel SHAP against
    captum's KernelShap as it is; the same coalitions (captum seeded per image)."""
    images, targets = batch
    captum = _captum_superpixels(name, model, images, targets, n_segments=50, n_samples=60, output=output)
    explainer = xaibench.create_explainer(name, model, n_samples=60, output=output)
    raw = _raw(explainer, images, targets)
    assert (pearson(post(raw, (16, 16)), post(captum, (16, 16))) >= 0.9999).all()
    # float32 outputs and fits in captum (and its 1e6 weights for Kernel SHAP's endpoints), float64 here.
    tolerance = 5e-3 * captum.abs().amax((1, 2), keepdim=True)
    assert ((raw - captum.double()).abs() <= tolerance).all()


@pytest.mark.parametrize("name", ["lime", "kernelshap"])
def test_superpixels_match_captum_on_efficientnet(photos, name) -> None:
    """Few superpixels and samples keep it affordable; the coalitions are the same, so few suffice."""
    model, images, targets = photos
    captum = _captum_superpixels(name, model, images, targets, n_segments=12, n_samples=10)
    ours = xaibench.create_explainer(name, model, n_samples=10, n_segments=12)(images, targets)
    correlation = pearson(ours, post(captum, (224, 224)))
    assert (correlation >= 0.99).all(), correlation


def test_captum_lime_defaults_are_another_estimator(model, batch) -> None:
    """What the docstring says of captum's own Lime defaults: a sparse Lasso fit (superpixels set to
    exactly 0) with another kernel, on the same coalitions; xaibench's Ridge fit gives every superpixel
    a weight."""
    images, targets = batch
    image, target = images[0], int(targets[0])
    segments = _slic(image, 50)
    torch.manual_seed(image_seed(image, 0))
    captum = captum_attr.Lime(_probabilities(model)).attribute(
        image[None], baselines=0.0, target=target, feature_mask=segments[None, None], n_samples=60,
        perturbations_per_eval=60,
    )[0, 0]
    ours = _raw(xaibench.create_explainer("lime", model, n_samples=60), images[:1], targets[:1])[0]
    n_features = int(segments.max()) + 1
    captum_zero = sum(bool((captum[segments == j] == 0).all()) for j in range(n_features))
    ours_zero = sum(bool((ours[segments == j] == 0).all()) for j in range(n_features))
    assert captum_zero > n_features // 2 and ours_zero == 0


# ----------------------------------------------------------------------------------------------- RISE


def _rise_by_hand(model, image, target, n_masks, s, p, seed):
    """The paper's formula for one image, unbatched, masks made as RISE's reference code makes them
    (skimage resize, order 1, mode reflect, then a crop), from the documented draws, multiplied into
    the normalised input as the reference code does."""
    from skimage.transform import resize

    height, width = image.shape[-2:]
    cell_h, cell_w = math.ceil(height / s), math.ceil(width / s)
    generator = image_generator(image, seed)
    grids = torch.rand(n_masks, s, s, generator=generator) < p
    rows = torch.randint(0, cell_h, (n_masks,), generator=generator)
    cols = torch.randint(0, cell_w, (n_masks,), generator=generator)
    saliency = torch.zeros(height, width, dtype=torch.float64)
    for i in range(n_masks):
        big = resize(grids[i].numpy().astype("float32"), ((s + 1) * cell_h, (s + 1) * cell_w), order=1, mode="reflect", anti_aliasing=False)
        mask = torch.from_numpy(np.ascontiguousarray(big[rows[i] : rows[i] + height, cols[i] : cols[i] + width]))
        with torch.no_grad():
            probability = torch.softmax(model.network(model.normalize(image[None]) * mask).double(), 1)[0, target]
        saliency += probability * mask.double()
    return saliency / (n_masks * p)


@pytest.mark.parametrize("size, s, p", [((16, 20), 4, 0.5), ((16, 16), 7, 0.3)])
def test_rise_matches_the_formula_by_hand_on_a_tiny_model(size, s, p, batch) -> None:
    model = tiny_model(input_size=size)
    images = torch.nn.functional.interpolate(batch[0][:2], size=size, mode="bilinear")
    targets = batch[1][:2]
    explainer = xaibench.create_explainer("rise", model, n_masks=24, grid_size=s, p=p, batch_size=10)
    raw = _raw(explainer, images, targets)
    for i in range(2):
        expected = _rise_by_hand(model, images[i], int(targets[i]), 24, s, p, 0)
        assert torch.allclose(raw[i], expected, rtol=1e-4, atol=1e-6)


def test_rise_matches_the_formula_by_hand_on_the_builtin_network(builtin) -> None:
    """The paper's grid (7 x 7) on a trained network: cells of 10 px, masks of 80 px cropped to 64."""
    model, images, targets = builtin
    raw = _raw(xaibench.create_explainer("rise", model, n_masks=20), images[:1], targets[:1])
    assert torch.allclose(raw[0], _rise_by_hand(model, images[0], int(targets[0]), 20, 7, 0.5, 0), rtol=1e-4, atol=1e-6)


class _RegionMean(nn.Module):
    """P(class 0) = the mean of channel 0 over the top-left 6 x 6 pixels (logits log m, log(1 - m))."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x[:, 0, :6, :6].mean((1, 2)).clamp(1e-6, 1 - 1e-6)
        return torch.stack([m.log(), (1 - m).log()], 1)


def test_rise_known_answer_for_a_region_mean() -> None:
    """On an all-ones image, P_c(I * M) = mean_R(M). Rows >= 40 of a 48 px image use grid rows 2-3
    only, R (rows < 6, offsets < 12) rows 0-1 only, so there M is independent of P_c and
    E[S] = E[P_c] E[M] / p = p. Inside R, M and P_c are correlated: E[S] > p."""
    network = _RegionMean()
    model = xaibench.Model(network, network, "", None, None, ["in", "out"], (48, 48))
    explainer = xaibench.create_explainer("rise", model, n_masks=2000, grid_size=4, p=0.5, batch_size=500)
    raw = _raw(explainer, torch.ones(1, 3, 48, 48), torch.tensor([0]))[0]
    assert abs(raw[40:].mean().item() - 0.5) < 0.03  # Monte Carlo std about 0.005
    assert raw[:6, :6].mean().item() > 0.6
    assert raw.argmax() // 48 < 12 and raw.argmax() % 48 < 12


# ----------------------------------------------------------------------------------------------- seeds


@pytest.mark.parametrize("name, options", [
    ("lime", {"n_samples": 30}),
    ("kernelshap", {"n_samples": 30}),
    ("rise", {"n_masks": 30}),
])
def test_seeded_methods(name, options, model, batch) -> None:
    """Same seed, same maps; another seed, other maps; a batch equals its images one at a time exactly
    (each image's passes are its own, its random numbers drawn from its own generator)."""
    images, targets = batch
    first = _raw(xaibench.create_explainer(name, model, seed=0, **options), images, targets)
    again = _raw(xaibench.create_explainer(name, model, seed=0, **options), images, targets)
    other = _raw(xaibench.create_explainer(name, model, seed=1, **options), images, targets)
    assert torch.equal(first, again)
    assert not torch.allclose(first, other)
    explainer = xaibench.create_explainer(name, model, seed=0, **options)
    alone = torch.cat([_raw(explainer, images[i : i + 1], targets[i : i + 1]) for i in range(len(images))])
    assert torch.equal(first, alone)


# --------------------------------------------------------------------------------------------- options


@pytest.mark.parametrize("name, options", [
    ("occlusion", {"window": 4, "stride": 2}),
    ("lime", {"n_samples": 20}),
    ("kernelshap", {"n_samples": 20}),
    ("rise", {"n_masks": 20}),
])
def test_channels_last_changes_only_rounding(name, options, model, batch) -> None:
    assert model.channels_last  # the tiny conv network takes channels-last input
    fast = _raw(xaibench.create_explainer(name, model, **options), *batch)
    contiguous = dataclasses.replace(model, channels_last=False)
    plain = _raw(xaibench.create_explainer(name, contiguous, **options), *batch)
    assert torch.allclose(fast, plain, rtol=1e-3, atol=1e-3 * plain.abs().max().item())


@pytest.mark.parametrize("name, options, message", [
    ("occlusion", {"window": 8, "stride": 9}, "stride .* must be at most window"),
    ("occlusion", {"window": 0}, "method 'occlusion': option window must be an integer >= 1, got 0"),
    ("occlusion", {"output": "softmax"}, "output must be one of 'probability', 'logit'"),
    ("lime", {"n_samples": 0}, "n_samples must be an integer >= 1"),
    ("lime", {"kernel_width": 0.0}, "option kernel_width must be a finite number > 0.0"),
    ("lime", {"alpha": -1.0}, "option alpha must be a finite number >= 0.0"),
    ("kernelshap", {"n_samples": 1}, "n_samples must be an integer >= 2"),
    ("kernelshap", {"seed": 1.5}, "seed.* must be an integer"),
    ("rise", {"p": 0.0}, "option p must be a finite number > 0.0"),
    ("rise", {"p": 1.5}, "p must be a finite number > 0.0 and <= 1.0"),
    ("rise", {"batch_size": 0}, "batch_size must be an integer >= 1"),
    ("rise", {"n_masks": True}, "n_masks.* must be an integer"),
])
def test_bad_options_are_refused(name, options, message, model) -> None:
    with pytest.raises(XaibenchError, match=message):
        xaibench.create_explainer(name, model, **options)
