"""Gradient attributions (plugins/attributions.py): known answers, captum and pytorch-grad-cam cross-checks,
seeding, and the user's network left alone.

Cross-checks compare maps after the same post-processing (the method's channel reduction, then
min-max), exactly (``allclose``) on the tiny networks and by Pearson correlation (>= 0.99, in practice
1 - 1e-6) on EfficientNet-Lite0 with two shared ImageNet photos. Captum's hook-based methods see
EfficientNet-Lite0's ``nn.ReLU6`` only once its activation modules are ``nn.ReLU`` objects computing
ReLU6, each used once (:func:`captum_ready`); that network, built here for the test, gives the same
logits.
"""

from __future__ import annotations

import copy
import logging
import types
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import xaibench
from xaibench.errors import LayerError, XaibenchError
from xaibench.explainer import normalize_maps, upsample_maps
from xaibench.hooks import count_hooks
from xaibench.seeding import image_seed
from xaibench.testing import check_explainer

from conftest import SHARED_IMAGENET, SharedActNet, TinyGapNet, pearson, post, tiny_model

from xaibench_plugins import attributions as attr

captum = pytest.importorskip("captum.attr")

SEEDED = ["smoothgrad", "vargrad", "gradientshap"]
#: Fewer samples or steps where a test checks something else than the number of samples.
FEW = {"smoothgrad": {"n_samples": 3}, "vargrad": {"n_samples": 3}, "gradientshap": {"n_samples": 3},
       "integrated_gradients": {"n_steps": 5}}
NAMES = [
    "integrated_gradients", "smoothgrad", "vargrad", "inputxgradient", "guided_backprop",
    "deconvolution", "guided_gradcam", "gradientshap", "deeplift",
]


# ----------------------------------------------------------------------------------------- helpers


class Normalized(nn.Module):
    """What a captum user hands to the hook-based methods: normalise [0, 1] images, run the network."""

    def __init__(self, model: xaibench.Model, network: nn.Module | None = None) -> None:
        super().__init__()
        self.model = model
        self.network = network if network is not None else model.network

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.network(self.model.normalize(images))


def abs_sum(a):  # additive attributions
    return a.sum(1).abs()


def sum_abs(a):  # SmoothGrad, VarGrad
    return a.abs().sum(1)


def max_abs(a):  # modified gradients
    return a.abs().amax(1)


def ours(name: str, model: xaibench.Model, images, targets, **options) -> torch.Tensor:
    return xaibench.create_explainer(name, model, **options)(images, targets)


def grad_cam_guided_backprop(model, images, targets, *, cams=None) -> torch.Tensor:
    """pytorch-grad-cam's GuidedBackpropReLUModel, one image per call (its API), on a copy of the network
    (it swaps the model's ReLU modules); times ``cams`` (N, H, W) when given (its Guided Grad-CAM)."""
    from pytorch_grad_cam import GuidedBackpropReLUModel

    peer = GuidedBackpropReLUModel(Normalized(model, copy.deepcopy(model.network)), device="cpu")
    maps = []
    for i in range(images.shape[0]):
        gb = peer(images[i : i + 1], int(targets[i]))
        maps.append(torch.from_numpy(gb if cams is None else gb * cams[i][:, :, None]).permute(2, 0, 1))
    return torch.stack(maps)


def plain_gradient(model, images, targets):
    pixels = images.clone().requires_grad_(True)
    (grads,) = torch.autograd.grad(model(pixels).gather(1, targets[:, None]).sum(), pixels)
    return grads


class ReLU6Net(nn.Module):
    """ReLU6 activations (EfficientNet-Lite's kind): one in-place module object applied twice, then a
    last one of its own, the target layer ``features.5``."""

    def __init__(self) -> None:
        super().__init__()
        act = nn.ReLU6(inplace=True)
        self.features = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1), act, nn.Conv2d(4, 6, 3, padding=1, stride=2), act,
            nn.Conv2d(6, 6, 1), nn.ReLU6(),
        )
        self.fc = nn.Linear(6, 5)

    def forward(self, x):
        return self.fc(self.features(x * 4).mean((2, 3)))  # x 4: some inputs above 6


class PoolNet(nn.Module):
    """Convolutions, ReLUs and max pooling, its windows overlapping (ResNet's stem pooling) or not."""

    def __init__(self, overlap: bool = True) -> None:
        super().__init__()
        pool = nn.MaxPool2d(3, 2, 1) if overlap else nn.MaxPool2d(2)
        self.features = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), pool, nn.Conv2d(4, 6, 3, padding=1), nn.ReLU()
        )
        self.fc = nn.Linear(6, 5)

    def forward(self, x):
        return self.fc(self.features(x).mean((2, 3)))


class GatedNet(nn.Module):
    """A functional sigmoid gate (squeeze-and-excitation's kind): no module DeepLIFT can replace."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.act = nn.ReLU()
        self.fc = nn.Linear(6, 5)

    def forward(self, x):
        h = self.act(self.conv(x))
        return self.fc((h * torch.sigmoid(h.mean((2, 3), keepdim=True))).mean((2, 3)))


def linear_model() -> tuple[xaibench.Model, torch.Tensor]:
    """A linear classifier on 3 x 4 x 4 images: every attribution of class 1 is known by hand."""
    torch.manual_seed(3)
    network = nn.Sequential(nn.Flatten(), nn.Linear(48, 2))
    model = xaibench.Model(network, network[0], "0", network[1], "1", ["a", "b"], (4, 4))
    return model, network[1].weight.detach()[1].view(3, 4, 4)


# ------------------------------------------------------------------------------------- the options


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("integrated_gradients", {"n_steps": 0}, "method 'integrated_gradients': option n_steps must be an integer >= 1, got 0"),
        ("integrated_gradients", {"method": "simpson"}, "option method must be one of 'gausslegendre', .*got 'simpson'"),
        ("integrated_gradients", {"internal_batch_size": 2.5}, "internal_batch_size .*must be an integer"),
        ("smoothgrad", {"n_samples": True}, "n_samples .*must be an integer"),
        ("smoothgrad", {"noise_level": -0.1}, "option noise_level must be a finite number >= 0.0"),
        ("vargrad", {"noise_level": float("nan")}, "option noise_level must be a finite number >= 0.0"),
        ("vargrad", {"batch_size": 0}, "option batch_size must be an integer >= 1"),
        ("gradientshap", {"stdev": float("inf")}, "option stdev must be a finite number >= 0.0"),
        ("gradientshap", {"seed": "0"}, "seed .*must be an integer"),
        ("smoothgrad", {"samples": 10}, "no option 'samples'; its options: n_samples=50, noise_level=0.15"),
        ("deeplift", {"eps": -1.0}, "method 'deeplift': option eps must be a finite number >= 0.0, got -1.0"),
    ],
)
def test_bad_options_are_refused_with_what_is_wrong(name, options, message, model) -> None:
    with pytest.raises(XaibenchError, match=message):
        xaibench.create_explainer(name, model, **options)


@pytest.mark.parametrize("name", ["guided_backprop", "deconvolution", "guided_gradcam"])
def test_modified_relu_methods_refuse_a_network_without_relu(name) -> None:
    network = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.SiLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5)
    )
    model = xaibench.wrap_model(network, input_size=16, target_layer="1")
    with pytest.raises(LayerError, match="has none .*it would be the plain gradient"):
        xaibench.create_explainer(name, model)


# ------------------------------------------------------------------------------------ known answers


@pytest.mark.parametrize("name", ["integrated_gradients", "inputxgradient", "deeplift"])
def test_additive_attributions_of_a_linear_model_are_input_times_weight(name) -> None:
    """S(x) = w . x + b: IG, input x gradient and DeepLIFT (black baseline) all give x * w; map |sum_c|."""
    model, w = linear_model()
    images = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    targets = torch.tensor([1, 1])
    explainer = xaibench.create_explainer(name, model)
    with torch.no_grad():
        raw = explainer.attributions(images, targets)
    assert torch.allclose(raw, images * w, atol=1e-6)
    assert torch.allclose(explainer(images, targets), post(abs_sum(images * w), (4, 4)), atol=1e-6)


def test_gradientshap_of_a_linear_model_is_input_minus_mean_baseline_times_weight() -> None:
    """The gradient is w everywhere: phi = (x - mean_s b_s) * w, with the baselines drawn per image."""
    model, w = linear_model()
    images = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    explainer = xaibench.create_explainer("gradientshap", model, n_samples=7, seed=4)
    with torch.no_grad():
        raw = explainer.attributions(images, torch.tensor([1, 1]))
    for image, phi in zip(images, raw):
        generator = xaibench.seeding.image_generator(image, 4)
        baselines = []
        for _ in range(7):  # the draws of one sample: baseline, point on the path
            baselines.append(torch.rand(image.shape, generator=generator))
            torch.rand((), generator=generator)
        assert torch.allclose(phi, (image - torch.stack(baselines).mean(0)) * w, atol=1e-6)


def test_smoothgrad_of_a_linear_model_is_the_weight_and_vargrad_is_zero() -> None:
    """The gradient of a linear score is w at every noisy copy: SmoothGrad = w, VarGrad = 0."""
    model, w = linear_model()
    images = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    targets = torch.tensor([1, 1])
    with torch.no_grad():
        mean = xaibench.create_explainer("smoothgrad", model, n_samples=7, batch_size=3).attributions(images, targets)
        var = xaibench.create_explainer("vargrad", model, n_samples=7).attributions(images, targets)
    assert torch.allclose(mean, w.expand_as(mean), atol=1e-6)
    assert var.abs().max() < 1e-7  # float32 cancellation in E[g^2] - E[g]^2


def test_integrated_gradients_is_complete(model, batch) -> None:
    """Sundararajan et al. 2017, Prop. 1: the attributions add up to S_c(x) - S_c(black)."""
    images, targets = batch
    with torch.no_grad():
        raw = xaibench.create_explainer("integrated_gradients", model).attributions(images, targets)
        delta = model(images).gather(1, targets[:, None])[:, 0] - model(torch.zeros_like(images))[:, targets].diagonal()
    assert torch.allclose(raw.flatten(1).sum(1), delta, rtol=1e-3, atol=1e-4)


def test_integrated_gradients_internal_batching_changes_nothing(model, batch) -> None:
    images, targets = batch
    images, targets = images[:3], targets[:3]
    one_row = ours("integrated_gradients", model, images, targets, n_steps=6, internal_batch_size=1)
    all_rows = ours("integrated_gradients", model, images, targets, n_steps=6, internal_batch_size=1000)
    assert torch.allclose(one_row, all_rows, atol=1e-5)


@pytest.mark.parametrize("net", [TinyGapNet, ReLU6Net])
def test_deeplift_contributions_add_up_to_the_score_difference(net, batch, caplog) -> None:
    """Shrikumar et al. 2017, Eq. 1 (summation-to-delta), with ReLU6 (an in-place module used twice)."""
    model = tiny_model(net(), **({"target_layer": "features.5"} if net is ReLU6Net else {}))
    images, targets = batch
    explainer = xaibench.create_explainer("deeplift", model)
    with torch.no_grad(), caplog.at_level(logging.WARNING):
        contributions, delta = explainer.contributions(images, targets)
        explainer(images, targets)
    assert torch.allclose(contributions.flatten(1).sum(1), delta, rtol=1e-4, atol=1e-5)
    assert "deeplift" not in caplog.text


def test_deeplift_warns_when_a_nonlinearity_is_a_function(batch, caplog) -> None:
    model = tiny_model(GatedNet())
    with caplog.at_level(logging.WARNING):
        xaibench.create_explainer("deeplift", model)(*batch)
    assert "some nonlinearity is applied as a function" in caplog.text


def test_guided_backprop_by_hand_on_one_relu() -> None:
    """S = v . relu(W x): guided backprop = W^T (1[Wx > 0] * relu(v)); deconvolution = W^T relu(v)."""
    torch.manual_seed(0)
    network = nn.Sequential(nn.Flatten(), nn.Linear(12, 6, bias=False), nn.ReLU(), nn.Linear(6, 2, bias=False))
    model = xaibench.Model(network, network[0], "0", network[3], "3", ["a", "b"], (2, 2))
    x = torch.rand(1, 3, 2, 2)
    W, v = network[1].weight.detach(), network[3].weight.detach()[1]
    active = (W @ x.flatten() > 0).float()
    with torch.no_grad():
        guided = xaibench.create_explainer("guided_backprop", model).attributions(x, torch.tensor([1]))
        deconv = xaibench.create_explainer("deconvolution", model).attributions(x, torch.tensor([1]))
    assert torch.allclose(guided.flatten(), W.T @ (active * v.clamp_min(0)), atol=1e-6)
    assert torch.allclose(deconv.flatten(), W.T @ v.clamp_min(0), atol=1e-6)


def test_guided_gradcam_is_guided_backprop_times_gradcam(model, batch) -> None:
    images, targets = batch
    with torch.no_grad():
        gb = xaibench.create_explainer("guided_backprop", model).attributions(images, targets)
        cam = xaibench.create_explainer("gradcam", model).attribute(images, targets)
    expected = post(max_abs(gb) * upsample_maps(cam, (16, 16)), (16, 16))
    assert torch.allclose(ours("guided_gradcam", model, images, targets), expected, atol=1e-5)


# -------------------------------------------------------------------------- captum on tiny networks


@pytest.mark.parametrize("inplace", [False, True])
def test_guided_backprop_and_deconvolution_equal_captum_on_relu_networks(inplace, batch) -> None:
    net = TinyGapNet(inplace=inplace)
    model = tiny_model(net)
    images, targets = batch
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # captum announces its hooks
        gb = captum.GuidedBackprop(Normalized(model)).attribute(images.clone(), target=targets)
        dc = captum.Deconvolution(Normalized(model)).attribute(images.clone(), target=targets)
    assert torch.allclose(ours("guided_backprop", model, images, targets), post(max_abs(gb), (16, 16)), atol=1e-5)
    assert torch.allclose(ours("deconvolution", model, images, targets), post(max_abs(dc), (16, 16)), atol=1e-5)


def test_guided_backprop_equals_pytorch_grad_cam_on_a_relu_network(batch) -> None:
    model = tiny_model()
    images, targets = batch
    theirs = grad_cam_guided_backprop(model, images, targets)
    assert torch.allclose(ours("guided_backprop", model, images, targets), post(max_abs(theirs), (16, 16)), atol=1e-5)


def test_relu6_is_guided_here_but_left_to_the_plain_gradient_by_the_peers(batch) -> None:
    """Captum and pytorch-grad-cam hook or replace nn.ReLU only: on a ReLU6 network their guided
    backpropagation is the plain gradient. Ours treats ReLU6 as a ReLU, and equals captum's rule once
    the ReLU6 modules carry nn.ReLU's type (captum_ready)."""
    model = tiny_model(ReLU6Net(), target_layer="features.5")
    images, targets = batch
    plain = plain_gradient(model, images, targets)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        direct = captum.GuidedBackprop(Normalized(model)).attribute(images.clone(), target=targets)
        ready_net = Normalized(model, relu6_as_relu(model.network))
        ready = captum.GuidedBackprop(ready_net).attribute(images.clone(), target=targets)
    gradcam_lib = grad_cam_guided_backprop(model, images, targets)
    assert torch.allclose(direct, plain, atol=1e-6) and torch.allclose(gradcam_lib, plain, atol=1e-6)
    mine = ours("guided_backprop", model, images, targets)
    assert torch.allclose(mine, post(max_abs(ready), (16, 16)), atol=1e-5)
    assert not torch.allclose(mine, post(max_abs(plain), (16, 16)), atol=1e-2)


@pytest.mark.parametrize("target_layer", [None, "features.1"])
def test_guided_gradcam_equals_captum_with_bilinear_upsampling(target_layer, batch) -> None:
    """features.1 has a ReLU after it (features.3): the two-pass path, true gradients for Grad-CAM."""
    model = tiny_model(**({"target_layer": target_layer} if target_layer else {}))
    images, targets = batch
    explainer = xaibench.create_explainer("guided_gradcam", model)
    assert explainer._one_pass == (target_layer is None)
    peer = captum.GuidedGradCam(Normalized(model), model.target_layer)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bilinear = peer.attribute(images.clone(), target=targets, interpolate_mode="bilinear")
        nearest = peer.attribute(images.clone(), target=targets)
    mine = explainer(images, targets)
    assert torch.allclose(mine, post(max_abs(bilinear), (16, 16)), atol=1e-5)
    if target_layer is None:  # an 8 x 8 Grad-CAM: captum's default upsampling gives another map
        assert (mine - post(max_abs(nearest), (16, 16))).abs().max() > 1e-2


def test_guided_gradcam_equals_pytorch_grad_cam_recipe(batch) -> None:
    """pytorch-grad-cam's recipe, GradCAM times GuidedBackpropReLUModel: its Grad-CAM is min-max scaled
    after upsampling, before the product, so it agrees where the upsampled Grad-CAM's minimum is 0, and
    everywhere once ours is scaled the same way."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model = tiny_model()
    images, targets = batch
    peer_net = Normalized(model, copy.deepcopy(model.network))
    layer = peer_net.network.get_submodule(model.target_layer_name)
    with GradCAM(peer_net, [layer]) as cam:
        cams = cam(images.clone(), [ClassifierOutputTarget(int(t)) for t in targets])
    theirs = post(max_abs(grad_cam_guided_backprop(model, images, targets, cams=cams)), (16, 16))
    with torch.no_grad():
        guided = xaibench.create_explainer("guided_backprop", model).attributions(images, targets)
        low = xaibench.create_explainer("gradcam", model).attribute(images, targets)
    up = upsample_maps(low, (16, 16))
    assert pearson(post(max_abs(guided) * normalize_maps(up), (16, 16)), theirs).min() > 0.99999
    zero = up.amin((1, 2)) == 0
    assert zero.any()
    assert pearson(ours("guided_gradcam", model, images, targets)[zero], theirs[zero]).min() > 0.99999


@pytest.mark.parametrize(
    "net", [TinyGapNet, lambda: TinyGapNet(inplace=True), lambda: PoolNet(overlap=False), lambda: PoolNet(overlap=True)]
)
def test_deeplift_equals_captum(net, batch) -> None:
    """Max pooling after a ReLU: captum's ReLU hook reads the gradient at its output before captum's
    max-pooling hook rescales it (both hooks sit on that tensor), so captum keeps the pooling's
    gradient there, as DeepLIFT's authors do (MaxPoolDeepLiftMode.gradient) and as this class does."""
    model = tiny_model(net())
    images, targets = batch
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = captum.DeepLift(Normalized(model)).attribute(images.clone(), target=targets, baselines=0.0)
    with torch.no_grad():
        mine = xaibench.create_explainer("deeplift", model).attributions(images, targets)
    assert torch.allclose(mine, theirs.detach(), atol=1e-6)


def test_deeplift_equals_captum_on_the_builtin_network() -> None:
    """BatchNorm, ReLU and 2 x 2 max pooling."""
    model = xaibench.load_model("builtin")
    data = xaibench.load_dataset("builtin", image_size=model.input_size, size=2)
    images = torch.stack([data[i].image for i in range(2)])
    targets = torch.tensor([data[i].label for i in range(2)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = captum.DeepLift(Normalized(model).eval()).attribute(images.clone(), target=targets, baselines=0.0)
    mine = ours("deeplift", model, images, targets)
    assert torch.allclose(mine, post(abs_sum(theirs), (64, 64)), atol=1e-4)


def test_deeplift_where_captum_cannot_run(batch) -> None:
    """One ReLU module called twice: captum raises; ours is complete (summation-to-delta)."""
    network = SharedActNet()
    model = xaibench.Model(network, network.act, "act", network.fc, "fc", list("abcde"), (16, 16))
    images, targets = batch
    with pytest.raises(RuntimeError, match="used more than once"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        captum.DeepLift(Normalized(model)).attribute(images.clone(), target=targets, baselines=0.0)
    with torch.no_grad():
        contributions, delta = xaibench.create_explainer("deeplift", model).contributions(images, targets)
    assert torch.allclose(contributions.flatten(1).sum(1), delta, rtol=1e-4, atol=1e-5)


def test_integrated_gradients_and_inputxgradient_equal_captum(model, batch) -> None:
    images, targets = batch
    ig = captum.IntegratedGradients(Normalized(model)).attribute(images.clone(), target=targets)
    ixg = captum.InputXGradient(Normalized(model)).attribute(images.clone().requires_grad_(True), target=targets)
    assert torch.allclose(ours("integrated_gradients", model, images, targets), post(abs_sum(ig), (16, 16)), atol=1e-5)
    assert torch.allclose(ours("inputxgradient", model, images, targets), post(abs_sum(ixg), (16, 16)), atol=1e-5)


def test_integrated_gradients_equals_a_riemann_sum_by_hand(model, batch) -> None:
    """An independent computation: IG = x * mean_k grad S(k/m x), right Riemann sum with m steps."""
    images, targets = batch
    m = 64
    alphas = torch.arange(1, m + 1) / m
    points = (alphas[:, None, None, None, None] * images).flatten(0, 1).requires_grad_(True)
    scores = model(points).view(m, 4, -1).gather(2, targets[None, :, None].expand(m, 4, 1)).sum()
    (grads,) = torch.autograd.grad(scores, points)
    by_hand = images * grads.view(m, 4, 3, 16, 16).mean(0)
    mine = ours("integrated_gradients", model, images, targets, n_steps=m, method="riemann_right")
    assert torch.allclose(mine, post(abs_sum(by_hand), (16, 16)), atol=1e-5)


def noise_tunnel(model, image, target, nt_type, n, noise_level=0.15, seed=0, absolute=False):
    """Captum's NoiseTunnel(Saliency) on one image, its global random state seeded as xaibench seeds
    that image: the same noise, drawn by captum."""
    torch.manual_seed(image_seed(image, seed))
    sigma = noise_level * float(image.max() - image.min())
    return captum.NoiseTunnel(captum.Saliency(Normalized(model))).attribute(
        image[None].clone(), nt_type=nt_type, nt_samples=n, stdevs=sigma, target=int(target), abs=absolute
    )[0]


@pytest.mark.parametrize(("name", "nt_type"), [("smoothgrad", "smoothgrad"), ("vargrad", "vargrad")])
def test_smoothgrad_and_vargrad_equal_captum_noise_tunnel_given_the_same_noise(name, nt_type, model, batch) -> None:
    images, targets = batch
    with torch.random.fork_rng():
        theirs = torch.stack([noise_tunnel(model, images[i], targets[i], nt_type, 20) for i in range(4)])
        magnitudes = torch.stack(
            [noise_tunnel(model, images[i], targets[i], nt_type, 20, absolute=True) for i in range(4)]
        )
    mine = ours(name, model, images, targets, n_samples=20, batch_size=7)
    assert torch.allclose(mine, post(sum_abs(theirs), (16, 16)), atol=1e-4)
    # Captum's default, Saliency(abs=True), smooths |gradient|: another map.
    assert (mine - post(sum_abs(magnitudes), (16, 16))).abs().max() > 1e-2


class CaptumDraws(attr.GradientShap):
    """GradientShap fed with captum's random draws for one image, reproduced from numpy's and torch's
    global random state seeded as for captum's call."""

    def __init__(self, model, baselines, n_samples, stdev, seed):
        super().__init__(model, n_samples=n_samples, stdev=stdev)
        np.random.seed(seed)
        torch.manual_seed(seed)
        index = np.random.choice(baselines.shape[0], n_samples).tolist()
        noise = torch.normal(0, torch.tensor(stdev).repeat((n_samples, *baselines.shape[1:])))
        alphas = torch.tensor(np.random.uniform(0.0, 1.0, n_samples), dtype=torch.float32)
        self.rows = iter(zip(baselines[index], noise, alphas))

    def _draw(self, image, generator, prepared=None):
        baseline, noise, alpha = next(self.rows)
        noisy = image + noise
        return alpha * noisy + (1.0 - alpha) * baseline, noisy - baseline


def test_gradientshap_equals_captum_given_the_same_draws(model, batch) -> None:
    images, targets = batch
    baselines = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(5))
    for i in range(2):
        with torch.random.fork_rng():
            np_state = np.random.get_state()
            np.random.seed(11)
            torch.manual_seed(11)
            theirs = captum.GradientShap(Normalized(model)).attribute(
                images[i : i + 1].clone(), baselines=baselines, n_samples=6, stdevs=0.05, target=targets[i : i + 1]
            )
            explainer = CaptumDraws(model, baselines, 6, 0.05, 11)
            np.random.set_state(np_state)
        with torch.no_grad():
            mine = explainer.attributions(images[i : i + 1], targets[i : i + 1])
        assert torch.allclose(mine, theirs.detach(), atol=1e-6)


# ------------------------------------------------------------------------------------------ seeding


@pytest.mark.parametrize("name", SEEDED)
def test_seeded_methods_depend_on_the_seed_and_the_image_alone(name, model, batch) -> None:
    images, targets = batch
    options = {"n_samples": 6, "batch_size": 4}
    first = ours(name, model, images, targets, seed=0, **options)
    assert torch.equal(first, ours(name, model, images, targets, seed=0, **options))
    assert (first - ours(name, model, images, targets, seed=1, **options)).abs().amax((1, 2)).min() > 1e-3
    # The same image in another batch, at another position, with other rows in its chunks.
    order = torch.tensor([2, 0, 3, 1])
    shuffled = ours(name, model, images[order], targets[order], seed=0, **{**options, "batch_size": 5})
    assert torch.allclose(shuffled, first[order], atol=1e-5)
    alone = torch.cat([ours(name, model, images[i : i + 1], targets[i : i + 1], seed=0, **options) for i in range(4)])
    assert torch.allclose(alone, first, atol=1e-5)


# --------------------------------------------------------------------------- the user's network


def state(network: nn.Module) -> tuple:
    return (
        [(name, type(m), getattr(m, "inplace", None), m.training) for name, m in network.named_modules()],
        {k: v.clone() for k, v in network.state_dict().items()},
        count_hooks(network),
    )


@pytest.mark.parametrize("name", NAMES)
def test_the_users_network_is_untouched(name, batch) -> None:
    """ReLU6, an in-place ReLU6 and a module used twice: the copy changes them, the network keeps them."""
    network = ReLU6Net()
    model = tiny_model(network, target_layer="features.5")
    images, targets = batch
    before = state(network)
    with torch.no_grad():
        logits = model(images)
    explainer = xaibench.create_explainer(name, model, **FEW.get(name, {}))
    explainer(images, targets)
    after = state(network)
    assert before[0] == after[0] and before[2] == after[2]
    assert all(torch.equal(before[1][k], after[1][k]) for k in before[1])
    with torch.no_grad():
        assert torch.equal(model(images), logits)


@pytest.mark.parametrize("name", ["guided_backprop", "deeplift", "guided_gradcam"])
def test_the_copy_follows_the_users_network(name, batch) -> None:
    model = tiny_model()
    images, targets = batch
    explainer = xaibench.create_explainer(name, model)
    first = explainer(images, targets)
    with torch.no_grad():
        model.network.features[0].weight.mul_(-1)  # an in-place update: the shared parameter
    flipped = explainer(images, targets)
    assert not torch.allclose(first, flipped, atol=1e-3)
    assert torch.allclose(flipped, xaibench.create_explainer(name, model)(images, targets), atol=1e-6)
    model.network.fc = nn.Linear(6, 5)  # a new module: the copy is rebuilt
    fresh = xaibench.create_explainer(name, model)
    assert torch.allclose(explainer(images, targets), fresh(images, targets), atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_contract_on_a_relu6_network_with_shared_and_inplace_activations(name, batch) -> None:
    model = tiny_model(ReLU6Net(), target_layer="features.5")
    check_explainer(xaibench.create_explainer(name, model, **FEW.get(name, {})), *batch)


# ------------------------------------------------------------------------- EfficientNet-Lite0 photos


def relu6_as_relu(network: nn.Module) -> nn.Module:
    """A copy of ``network`` whose ReLU6 modules are nn.ReLU objects computing ReLU6: captum's guided
    backpropagation and deconvolution hook them (isinstance), its DeepLIFT too (exact type)."""
    net = copy.deepcopy(network)
    for parent in list(net.modules()):
        for child_name, child in list(parent._modules.items()):  # every name of a shared module
            if isinstance(child, nn.ReLU6):
                relu = nn.ReLU()
                relu.forward = F.relu6  # the instance's forward: type(relu) stays nn.ReLU
                setattr(parent, child_name, relu)
    return net


def _unshared_block_forward(block, inputs, drop_connect_rate=None):
    """MBConvBlock.forward (eval mode, no squeeze-and-excitation, as in Lite0) with one activation
    module per call, so that captum's DeepLIFT sees each once."""
    x = inputs
    if block._block_args.expand_ratio != 1:
        x = block._act_expand(block._bn0(block._expand_conv(inputs)))
    x = block._act_depthwise(block._bn1(block._depthwise_conv(x)))
    x = block._bn2(block._project_conv(x))
    args = block._block_args
    if block.id_skip and args.stride == 1 and args.input_filters == args.output_filters:
        x = x + inputs
    return x


def captum_ready(model: xaibench.Model) -> nn.Module:
    network = relu6_as_relu(model.network)
    for block in network._blocks:
        assert not block.has_se
        block._act_expand, block._act_depthwise = relu6_as_relu(nn.Sequential(nn.ReLU6(), nn.ReLU6()))
        del block._swish
        block.forward = types.MethodType(_unshared_block_forward, block)
    return Normalized(model, network).eval()


@pytest.fixture(scope="module")
def photos():
    if not SHARED_IMAGENET.is_dir():
        pytest.skip(f"shared ImageNet photos not found at {SHARED_IMAGENET}")
    model = xaibench.load_model("efficientnet_lite0")
    data = xaibench.load_dataset(f"imagenet:{SHARED_IMAGENET}", image_size=(224, 224), class_names=model.class_names)
    images = torch.stack([data[i].image for i in range(2)])
    targets = torch.tensor([data[i].label for i in range(2)])
    ready = captum_ready(model)
    with torch.no_grad():
        assert torch.allclose(ready(images), model(images), atol=1e-5)
    return model, images, targets, ready, state(model.network)


def close(mine: torch.Tensor, theirs_raw: torch.Tensor, reduce) -> None:
    theirs = post(reduce(theirs_raw.detach()), (224, 224))
    r = pearson(mine, theirs)
    assert r.min() >= 0.99, r
    assert torch.allclose(mine, theirs, atol=2e-3)


def test_efficientnet_modified_gradients_equal_captum(photos) -> None:
    model, images, targets, ready, _ = photos
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gb = captum.GuidedBackprop(ready).attribute(images.clone(), target=targets)
        dc = captum.Deconvolution(ready).attribute(images.clone(), target=targets)
        dl = captum.DeepLift(ready).attribute(images.clone(), target=targets, baselines=0.0)
    close(ours("guided_backprop", model, images, targets), gb, max_abs)
    close(ours("deconvolution", model, images, targets), dc, max_abs)
    with torch.no_grad(), xaibench.models.eval_mode(model.network):
        contributions, delta = xaibench.create_explainer("deeplift", model).contributions(images, targets)
    close(post(abs_sum(contributions), (224, 224)), dl, abs_sum)
    assert torch.allclose(contributions.flatten(1).sum(1), delta, rtol=1e-4)  # summation-to-delta


def test_efficientnet_guided_gradcam_equals_captum(photos) -> None:
    model, images, targets, ready, _ = photos
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = captum.GuidedGradCam(ready, ready.network.head_act).attribute(
            images.clone(), target=targets, interpolate_mode="bilinear"
        )
    explainer = xaibench.create_explainer("guided_gradcam", model)
    assert explainer._one_pass
    close(explainer(images, targets), theirs, max_abs)


def test_efficientnet_captum_direct_methods(photos) -> None:
    model, images, targets, _, _ = photos
    ig = captum.IntegratedGradients(Normalized(model)).attribute(
        images.clone(), target=targets, n_steps=2, internal_batch_size=4
    )
    close(ours("integrated_gradients", model, images, targets, n_steps=2), ig, abs_sum)
    ixg = captum.InputXGradient(Normalized(model)).attribute(images.clone().requires_grad_(True), target=targets)
    close(ours("inputxgradient", model, images, targets), ixg, abs_sum)


def test_efficientnet_sampled_methods_equal_captum(photos) -> None:
    model, images, targets, _, _ = photos
    explainer = xaibench.create_explainer("smoothgrad", model, n_samples=2)
    with torch.no_grad():
        mean, squares = explainer.moments(images, targets)
    with torch.random.fork_rng():
        smooth = torch.stack([noise_tunnel(model, images[i], targets[i], "smoothgrad", 2) for i in range(2)])
        var = torch.stack([noise_tunnel(model, images[i], targets[i], "vargrad", 2) for i in range(2)])
    close(post(sum_abs(mean), (224, 224)), smooth, sum_abs)
    close(post(sum_abs(squares - mean * mean), (224, 224)), var, sum_abs)
    baselines = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(5))
    for i in range(2):
        with torch.random.fork_rng():
            np_state = np.random.get_state()
            np.random.seed(11)
            torch.manual_seed(11)
            theirs = captum.GradientShap(Normalized(model)).attribute(
                images[i : i + 1].clone(), baselines=baselines, n_samples=2, target=targets[i : i + 1]
            )
            shap = CaptumDraws(model, baselines, 2, 0.0, 11)
            np.random.set_state(np_state)
        with torch.no_grad():
            close(post(abs_sum(shap.attributions(images[i : i + 1], targets[i : i + 1])), (224, 224)), theirs, abs_sum)


def test_efficientnet_pytorch_grad_cam_guided_backprop_is_the_plain_gradient(photos) -> None:
    """The documented difference on the real network: pytorch-grad-cam replaces nn.ReLU modules only,
    so on EfficientNet-Lite0 (ReLU6) its guided backpropagation is the plain gradient; ours is not."""
    model, images, targets, _, _ = photos
    image, target = images[:1], targets[:1]
    theirs = grad_cam_guided_backprop(model, image, target)
    plain = plain_gradient(model, image, target)
    assert torch.allclose(theirs, plain, rtol=1e-4, atol=1e-7)
    assert pearson(ours("guided_backprop", model, image, target), post(max_abs(plain), (224, 224))).max() < 0.9


def test_efficientnet_network_untouched(photos) -> None:
    """Runs last in this module: every method above ran on the network."""
    model, _, _, _, before = photos
    after = state(model.network)
    assert before[0] == after[0] and before[2] == after[2]
    assert all(torch.equal(before[1][k], after[1][k]) for k in before[1])
