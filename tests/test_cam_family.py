"""The gradient-based CAM family (plugins/cam_family.py): known answers on tiny networks, then each
method against every peer that implements it (torchcam, pytorch-grad-cam), on a tiny network whose
gradients vary over positions and depend on the activations, and on efficientnet_lite0 with real photos.

Maps are compared as Pearson correlations per map after xaibench's own post-processing (a peer's raw
map goes through ``upsample_maps`` and ``normalize_maps``); where a peer defines a method differently,
the test shows the difference the plugin's docstring documents.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import xaibench
from xaibench.errors import LayerError, XaibenchError
from xaibench.explainer import normalize_maps, upsample_maps
from xaibench.hooks import capture, count_hooks
from xaibench_plugins.cam_family import (
    _activations,
    _activations_and_gradients,
    _effective_bias,
    _first_component,
    _gradcampp_weights,
    _noise,
)

from conftest import SHARED_IMAGENET, TinyGapNet, post, tiny_model

pgc = pytest.importorskip("pytorch_grad_cam")
torchcam_methods = pytest.importorskip("torchcam.methods")
from pytorch_grad_cam.utils.model_targets import (  # noqa: E402
    ClassifierOutputReST,
    ClassifierOutputTarget,
    FinerWeightedTarget,
)

MIN_CORRELATION = 0.99


# --------------------------------------------------------------------------------------- helpers


class NonlinearHeadNet(nn.Module):
    """conv -> BatchNorm -> ReLU (the target layer, 6 x 8 x 8) -> 1x1 conv -> SiLU -> GAP -> linear.

    After the target layer the gradients vary over positions and depend on the activations (SiLU), so
    the methods differ from Grad-CAM and ShapleyCAM's Hessian term is not zero. The BatchNorm's running
    statistics are set away from (0, 1) so that its effective bias is not its bias parameter.
    """

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1, stride=2), nn.BatchNorm2d(6), nn.ReLU())
        self.head = nn.Sequential(nn.Conv2d(6, 8, 1), nn.SiLU())
        self.fc = nn.Linear(8, 5)
        with torch.no_grad():
            self.features[1].running_mean.uniform_(-0.5, 0.5)
            self.features[1].running_var.uniform_(0.5, 2.0)
            self.features[1].weight.uniform_(0.5, 1.5)
            self.features[1].bias.uniform_(-0.5, 0.5)
            self.head[0].bias[0] = 0.0  # a channel FullGrad skips: its bias-gradient is 0

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.head(self.features(x)).mean((2, 3)))


def nonlinear_model() -> xaibench.Model:
    torch.manual_seed(0)
    return xaibench.wrap_model(NonlinearHeadNet().eval(), target_layer="features", input_size=16)


def correlation(a: Tensor, b: Tensor) -> Tensor:
    """Pearson correlation of each pair of maps (N,); two constant maps (say, both all zero after the
    final ReLU) agree (1), a constant map and another do not (0)."""
    a, b = a.flatten(1).double(), b.flatten(1).double()
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    r = (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-300)
    both_flat = (a.abs().amax(1) == 0) & (b.abs().amax(1) == 0)
    return torch.where(both_flat, torch.ones_like(r), r)


def ours(name: str, model: xaibench.Model, images: Tensor, targets: Tensor, **options) -> Tensor:
    return xaibench.create_explainer(name, model, **options)(images, targets)


def assert_agree(a: Tensor, b: Tensor, what: str) -> None:
    r = correlation(a, b)
    assert bool((r >= MIN_CORRELATION).all()), f"{what}: correlations {r.tolist()}"


def pgc_raw(cls: type, model: xaibench.Model, images: Tensor, targets: Tensor, target=ClassifierOutputTarget):
    """pytorch-grad-cam's raw map, its whole pipeline (its hooks, its backward pass, its get_cam_image,
    its ReLU), before its OpenCV resize and scaling."""
    with cls(model=model.network, target_layers=[model.target_layer]) as cam:
        inputs = model.normalize(images)
        wanted = [target(int(t)) for t in targets]
        outputs = cam.activations_and_grads(inputs)
        if cam.uses_gradients:
            sum(t(o) for t, o in zip(wanted, outputs)).backward()
        acts = cam.activations_and_grads.activations[0].numpy()
        grads = cam.activations_and_grads.gradients[0].numpy() if cam.uses_gradients else None
        raw = cam.get_cam_image(inputs, model.target_layer, wanted, acts, grads, False)
    model.network.zero_grad(set_to_none=True)
    return np.maximum(raw, 0)


def pgc_formula(cls: type, model: xaibench.Model, images: Tensor, targets: Tensor, wanted=None, graph=False):
    """pytorch-grad-cam's raw map from its own formula (get_cam_image, then its ReLU) applied to the
    activations and gradients of ``wanted`` (pytorch-grad-cam target objects; the logits by default)
    that xaibench computes. Its own backward pass runs through the whole network and every parameter;
    ``test_pytorch_grad_cam_sees_the_same_activations_and_gradients`` shows it finds the same."""
    wanted = wanted or [ClassifierOutputTarget(int(t)) for t in targets]

    def score(logits: Tensor, _: Tensor) -> Tensor:
        return torch.stack([target(row) for target, row in zip(wanted, logits)])

    acts, grads, _ = _activations_and_gradients(model, images, targets, score, create_graph=graph)
    with cls(model=model.network, target_layers=[model.target_layer]) as cam:
        if graph:  # ShapleyCAM differentiates its gradients once more
            raw = cam.get_cam_image(images, model.target_layer, wanted, acts, grads, False)
        else:
            raw = cam.get_cam_image(images, model.target_layer, wanted, acts.detach().numpy(), grads.numpy(), False)
    return np.maximum(raw, 0)


def pgc_map(cls: type, model: xaibench.Model, images: Tensor, targets: Tensor, **options) -> Tensor:
    """On the tiny network, pytorch-grad-cam's whole pipeline; on efficientnet_lite0, its formula."""
    if images.shape[-1] <= 16:
        return post(pgc_raw(cls, model, images, targets), images.shape[-2:])
    return post(pgc_formula(cls, model, images, targets, **options), images.shape[-2:])


def torchcam_raw(name: str, model: xaibench.Model, images: Tensor, targets: Tensor, **options) -> Tensor:
    """torchcam's raw (unnormalised) map for one class per image."""
    cls = getattr(torchcam_methods, name)
    with cls(model.network, model.target_layer_name, **options) as extractor:
        scores = model.network(model.normalize(images))
        maps = extractor(targets.tolist(), scores, normalized=False)
    return maps[0].detach()


def gradcampp_torchcam_effective(model, images, targets) -> Tensor:
    """What torchcam's GradCAMpp computes: ``alpha[idx][mask].div_(...)`` divides a copy made by the
    boolean mask, so alpha stays g^2 and ``w_k = sum_ij g^2 ReLU(g)``."""
    acts, grads, _ = _activations_and_gradients(model, images, targets)
    weights = (grads**2 * F.relu(grads)).sum((2, 3))
    return F.relu(torch.einsum("nk,nkhw->nhw", weights, acts.detach()))


# ------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def photos() -> tuple[xaibench.Model, Tensor, Tensor]:
    """efficientnet_lite0 and two shared ImageNet photos with their labels. On photo 19 LAPACK's first
    singular vector (pytorch-grad-cam's Eigen-CAM) points the other way than EigenCAM's."""
    if not SHARED_IMAGENET.is_dir():
        pytest.skip(f"shared ImageNet photos not found at {SHARED_IMAGENET}")
    model = xaibench.load_model("efficientnet_lite0")
    data = xaibench.load_dataset(f"imagenet:{SHARED_IMAGENET}", image_size=(224, 224), class_names=model.class_names)
    chosen = [0, 19]
    return model, torch.stack([data[i].image for i in chosen]), torch.tensor([data[i].label for i in chosen])


@pytest.fixture
def tiny(batch) -> tuple[xaibench.Model, Tensor, Tensor]:
    return (nonlinear_model(), *batch)


@pytest.fixture(params=["tiny", "efficientnet_lite0"])
def where(request, tiny) -> tuple[xaibench.Model, Tensor, Tensor]:
    """Each cross-check runs on the tiny nonlinear-head network and on efficientnet_lite0 with photos."""
    return tiny if request.param == "tiny" else request.getfixturevalue("photos")


# ------------------------------------------------------------------- known answers (GAP -> linear)


def _gap_parts(model, images, targets):
    """A = features (N, 6, 8, 8), W = fc weights, the class weights W[c] (N, 6), Z = 64."""
    acts = model.network.features(model.normalize(images)).detach()
    weights = model.network.fc.weight.detach()
    return acts, weights, weights[targets], acts.shape[-1] * acts.shape[-2]


def _expected(raw: Tensor) -> Tensor:
    return normalize_maps(upsample_maps(raw, (16, 16)))


def test_on_gap_linear_several_methods_are_gradcam(model, batch) -> None:
    """With GAP -> linear, g_k(i, j) = W[c, k] / Z everywhere: XGrad-CAM's weights are W[c, k] / Z,
    HiResCAM is ReLU(CAM) / Z, ShapleyCAM's Hessian is zero: all three are Grad-CAM = ReLU(CAM)."""
    images, targets = batch
    acts, _, w_c, _ = _gap_parts(model, images, targets)
    expected = _expected(F.relu(torch.einsum("nk,nkhw->nhw", w_c, acts)))
    for name in ("xgradcam", "hirescam", "shapleycam"):
        assert torch.allclose(ours(name, model, images, targets), expected, atol=1e-5), name


def test_layercam_and_elementwise_on_gap_linear(model, batch) -> None:
    """LayerCAM = ReLU(sum_k ReLU(W[c, k]) A_k); element-wise Grad-CAM = sum_k ReLU(W[c, k] A_k), the
    same map here since A >= 0 (after ReLU)."""
    images, targets = batch
    acts, _, w_c, _ = _gap_parts(model, images, targets)
    assert (acts >= 0).all()
    expected = _expected(torch.einsum("nk,nkhw->nhw", F.relu(w_c), acts))
    assert torch.allclose(ours("layercam", model, images, targets), expected, atol=1e-5)
    assert torch.allclose(ours("gradcam_elementwise", model, images, targets), expected, atol=1e-5)


def test_gradcampp_closed_form_on_gap_linear(model, batch) -> None:
    """g = W[c, k] / Z is constant, so alpha = 1 / (2 + S_k g) with S_k = sum_ab A_k(a, b), and
    w_k = Z ReLU(g) / (2 + S_k g) (Grad-CAM++ Eq. 19 with Eq. 10)."""
    images, targets = batch
    acts, _, w_c, z = _gap_parts(model, images, targets)
    g = w_c / z
    w = z * F.relu(g) / (2 + acts.sum((2, 3)) * g)
    expected = _expected(F.relu(torch.einsum("nk,nkhw->nhw", w, acts)))
    assert torch.allclose(ours("gradcampp", model, images, targets), expected, atol=1e-5)


def test_finercam_with_one_reference_is_gradcam_of_the_difference(model, batch) -> None:
    """One reference d (the class whose logit is closest to the target's): S = y^c - alpha y^d, whose
    Grad-CAM on GAP -> linear is ReLU(sum_k (W[c, k] - alpha W[d, k]) A_k)."""
    images, targets = batch
    acts, weights, w_c, _ = _gap_parts(model, images, targets)
    logits = model(images).detach()
    distance = (logits - logits.gather(1, targets[:, None])).abs()
    distance[torch.arange(len(targets)), targets] = float("inf")
    closest = distance.argmin(1)
    expected = _expected(F.relu(torch.einsum("nk,nkhw->nhw", w_c - 0.5 * weights[closest], acts)))
    maps = ours("finercam", model, images, targets, alpha=0.5, num_comparisons=1)
    assert torch.allclose(maps, expected, atol=1e-5)


def test_finercam_softmax_weighted_contrast_on_gap_linear(model, batch) -> None:
    """The full definition, through the logits: dS/dA_k = sum_j (dS/dy_j) W[j, k] / Z (chain rule by
    hand), with S = sum_i p_i (y_c - y_i) / sum_i p_i over the 3 closest classes, p = softmax(y)."""
    images, targets = batch
    acts, weights, _, _ = _gap_parts(model, images, targets)
    logits = model(images).detach().requires_grad_(True)
    scores = []
    for row, t in zip(logits, targets):
        order = [int(c) for c in torch.argsort((row - row[t]).abs().detach()) if c != t][:3]
        p = torch.softmax(row, 0)[order]
        scores.append((p * (row[t] - row[order])).sum() / p.sum())
    (d_logits,) = torch.autograd.grad(torch.stack(scores).sum(), logits)
    expected = _expected(F.relu(torch.einsum("nk,nkhw->nhw", d_logits @ weights, acts)))
    assert torch.allclose(ours("finercam", model, images, targets), expected, atol=1e-5)


def test_smoothgradcampp_without_noise_is_gradcampp(tiny) -> None:
    model, images, targets = tiny
    plain = ours("gradcampp", model, images, targets)
    assert torch.allclose(ours("smoothgradcampp", model, images, targets, std=0.0), plain, atol=1e-5)


class RankOneNet(nn.Module):
    """The target layer is the input itself (nn.Identity), then GAP -> linear(3 -> 2, no bias)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Identity()
        self.fc = nn.Linear(3, 2, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.features(x).mean((2, 3)))


def _rank_one_images() -> tuple[Tensor, Tensor]:
    """Images whose channel k is a_k m(i, j) + c_k: rank one once centred over positions."""
    m = torch.rand(2, 1, 6, 6, generator=torch.Generator().manual_seed(3))
    a = torch.tensor([0.5, -0.2, 0.3])[None, :, None, None]
    c = torch.tensor([0.1, 0.6, 0.2])[None, :, None, None]
    return a * m + c, m[:, 0]


def test_eigencam_rank_one_known_answer() -> None:
    """Centred, X = (m - mean m) a^T, so X v_1 = +-|a| (m - mean m); a sums to 0.6 > 0, so the sign
    convention (v_1 . 1 >= 0) takes +: the map is ReLU(m - mean m), whatever the target."""
    images, m = _rank_one_images()
    network = RankOneNet()
    model = xaibench.Model(network, network.features, "features", network.fc, "fc", ["a", "b"], (6, 6))
    centred = m - m.mean((1, 2), keepdim=True)
    assert torch.allclose(_first_component(images), centred * torch.tensor([0.5, -0.2, 0.3]).norm(), atol=1e-5)
    expected = normalize_maps(F.relu(centred))
    for target in (0, 1):
        maps = ours("eigencam", model, images, torch.tensor([target, target]))
        assert torch.allclose(maps, expected, atol=1e-5)


def test_eigengradcam_rank_one_points_to_the_class_evidence() -> None:
    """g * A = (W[c, k] / Z)(a_k m + c_k): rank one once centred; the component is oriented like
    sum_k W[c, k] a_k (m - mean m), so the map is ReLU(s (m - mean m)) with s = sign(W[c] . a)."""
    images, m = _rank_one_images()
    network = RankOneNet()
    network.fc.weight.data = torch.tensor([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.5]])  # W[0].a = 0.5, W[1].a = -0.35
    model = xaibench.Model(network, network.features, "features", network.fc, "fc", ["a", "b"], (6, 6))
    centred = m - m.mean((1, 2), keepdim=True)
    for target, sign in ((0, 1.0), (1, -1.0)):
        maps = ours("eigengradcam", model, images, torch.tensor([target, target]))
        assert torch.allclose(maps, normalize_maps(F.relu(sign * centred)), atol=1e-5)


class LinearConvNet(nn.Module):
    """1 x 1 convolution with bias -> GAP -> linear without bias: y^c = sum_ch w_ch mean(x_ch) + const."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Conv2d(3, 4, 1)
        self.fc = nn.Linear(4, 2, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.features(x).mean((2, 3)))


def test_fullgrad_known_answer_on_a_linear_network() -> None:
    """grad_x y^c is constant per channel (w_ch = sum_k W_fc[c, k] W_conv[k, ch] / HW), so
    psi(grad * x)_ch = rescale(|x_ch|); the conv's bias-gradient is constant over positions, so its
    psi is 0. FullGrad = sum_ch rescale(|x_ch|)."""
    torch.manual_seed(0)
    network = LinearConvNet()
    model = xaibench.Model(network, network.features, "features", network.fc, "fc", ["a", "b"], (8, 8))
    images = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(4)) - 0.3
    flat = images.abs().flatten(2)
    low, high = flat.amin(2, keepdim=True), flat.amax(2, keepdim=True)
    expected = ((flat - low) / (high - low)).sum(1).reshape(3, 8, 8)
    maps = ours("fullgrad", model, images, torch.tensor([0, 1, 0]))
    assert torch.allclose(maps, normalize_maps(expected), atol=1e-5)


def test_batchnorm_effective_bias_is_its_output_for_zero_input() -> None:
    bn = NonlinearHeadNet().features[1].eval()
    assert torch.allclose(_effective_bias(bn), bn(torch.zeros(1, 6, 1, 1)).flatten(), atol=1e-6)


def test_fullgrad_is_unchanged_by_inplace_relu_after_biased_layers(batch) -> None:
    """An in-place ReLU after a conv with a bias rewrites the conv's output: detected, then copied."""
    plain_net, inplace_net = TinyGapNet(inplace=False), TinyGapNet(inplace=True)
    inplace_net.load_state_dict(plain_net.state_dict())
    plain = ours("fullgrad", tiny_model(plain_net), *batch)
    explainer = xaibench.create_explainer("fullgrad", tiny_model(inplace_net))
    assert torch.allclose(explainer(*batch), plain, atol=1e-6)
    assert explainer._copied == {inplace_net.features[0], inplace_net.features[2]}


def test_fullgrad_refuses_batchnorm_without_running_statistics() -> None:
    network = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4, track_running_stats=False), nn.ReLU(),
                            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    with pytest.raises(LayerError, match="track_running_stats=False"):
        xaibench.create_explainer("fullgrad", xaibench.wrap_model(network, input_size=8))


# ------------------------------------------------------------------------------ seeded, options


def test_smoothgradcampp_is_seeded_per_image(tiny) -> None:
    """Same seed, same maps; another seed, other maps; a batch equals its images one at a time, also
    when the noisy copies of several images share a forward pass (batch_size 3, 4 copies per image)."""
    model, images, targets = tiny
    options = {"std": 1.0, "batch_size": 3}
    first = ours("smoothgradcampp", model, images, targets, seed=3, **options)
    assert torch.equal(ours("smoothgradcampp", model, images, targets, seed=3, **options), first)
    other = ours("smoothgradcampp", model, images, targets, seed=4, **options)
    assert (other - first).abs().max() > 1e-3
    alone = torch.cat(
        [ours("smoothgradcampp", model, images[i : i + 1], targets[i : i + 1], seed=3, **options) for i in range(4)]
    )
    assert torch.allclose(alone, first, atol=1e-5)


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("smoothgradcampp", {"num_samples": 0}, "num_samples"),
        ("smoothgradcampp", {"std": -0.1}, "std"),
        ("smoothgradcampp", {"std": float("nan")}, "std"),
        ("smoothgradcampp", {"batch_size": 0}, "batch_size"),
        ("smoothgradcampp", {"seed": 1.5}, "seed"),
        ("finercam", {"num_comparisons": 0}, "num_comparisons"),
        ("finercam", {"alpha": "1"}, "alpha"),
        ("shapleycam", {"score": "softmax"}, "'logit', 'rest'"),
    ],
)
def test_bad_options_are_refused(model, name, options, message) -> None:
    with pytest.raises(XaibenchError, match=message):
        xaibench.create_explainer(name, model, **options)


def test_finercam_needs_two_classes() -> None:
    network = nn.Sequential(nn.Conv2d(3, 2, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 1))
    with pytest.raises(XaibenchError, match="one class"):
        xaibench.create_explainer("finercam", xaibench.wrap_model(network, input_size=8))


@pytest.mark.parametrize("name", ["fullgrad", "shapleycam", "smoothgradcampp"])
def test_no_hook_left_when_the_model_raises(name, tiny) -> None:
    model, images, targets = tiny

    def boom(*_):
        raise RuntimeError("boom")

    handle = model.network.head.register_forward_hook(boom)  # after the target layer
    try:
        with pytest.raises(RuntimeError, match="boom"):
            ours(name, model, images, targets)
    finally:
        handle.remove()
    assert count_hooks(model.network) == 0 and torch.is_grad_enabled()


# ------------------------------------------------------------------- cross-checks against the peers


@pytest.mark.parametrize(
    ("name", "peer"),
    [
        ("gradcampp", "GradCAMPlusPlus"),
        ("xgradcam", "XGradCAM"),
        ("layercam", "LayerCAM"),
        ("hirescam", "HiResCAM"),
        ("gradcam_elementwise", "GradCAMElementWise"),
    ],
)
def test_agrees_with_pytorch_grad_cam(name, peer, where) -> None:
    model, images, targets = where
    peer_maps = pgc_map(getattr(pgc, peer), model, images, targets)
    assert_agree(ours(name, model, images, targets), peer_maps, f"{name} vs pytorch-grad-cam")


@pytest.mark.parametrize(("name", "peer"), [("xgradcam", "XGradCAM"), ("layercam", "LayerCAM")])
def test_agrees_with_torchcam(name, peer, where) -> None:
    model, images, targets = where
    raw = torchcam_raw(peer, model, images, targets)
    assert_agree(ours(name, model, images, targets), post(raw, images.shape[-2:]), f"{name} vs torchcam")


class NoNoise:
    def sample(self, size: torch.Size) -> Tensor:
        return torch.zeros(size)


def test_gradcampp_and_torchcam(where) -> None:
    """torchcam's GradCAMpp loses its alpha (the in-place division acts on a copy): it equals
    w = sum g^2 ReLU(g). torchcam's own Grad-CAM++ formula, in its SmoothGradCAMpp without noise,
    sums A g^3 over the positions where the paper's Eq. 19 has g(i, j)^3 sum A: the same formula
    where g does not vary over the positions (behind a pooling-and-linear head, as on
    efficientnet_lite0). Both networks here are asked for Pearson >= 0.99 per map."""
    model, images, targets = where
    size = images.shape[-2:]
    effective = post(gradcampp_torchcam_effective(model, images, targets), size)
    assert_agree(post(torchcam_raw("GradCAMpp", model, images, targets), size), effective, "torchcam GradCAMpp")
    with torchcam_methods.SmoothGradCAMpp(model.network, model.target_layer_name, num_samples=1) as extractor:
        extractor._distrib = NoNoise()  # torch's Normal refuses std = 0
        model.network(model.normalize(images))
        raw = extractor(class_idx=targets.tolist(), normalized=False)[0]
    assert_agree(ours("gradcampp", model, images, targets), post(raw, size), "gradcampp vs torchcam's formula")


def test_smoothgradcampp_and_torchcam(where) -> None:
    """With the same noise, torchcam equals this class's formula with ReLU of the last noisy gradient
    (not of D^1) in the weights, the last noisy copy's activations (not the clean ones) in the sum and
    its own denominator (sum_ab A D^3, not D^3(i, j) sum_ab A); the class itself equals the paper's
    formula computed here copy by copy."""
    model, images, targets = where
    inputs, n, std = model.normalize(images), 2, 0.3
    noise = torch.stack([eps for _, eps in _noise(images, n, std, seed=0)]).unflatten(0, (len(images), n))

    class SameNoise:
        drawn = 0

        def sample(self, size):
            self.drawn += 1
            return noise[:, self.drawn - 1]

    with torchcam_methods.SmoothGradCAMpp(model.network, model.target_layer_name, num_samples=n, std=std) as extractor:
        extractor._distrib = SameNoise()
        model.network(inputs)
        peer = extractor(class_idx=targets.tolist(), normalized=False)[0]

    clean = _activations(model, images)
    grads, acts = [], []
    for m in range(n):
        with torch.no_grad(), capture(model.target_layer, graph=True) as feats:
            logits = model.network(inputs + noise[:, m])
        with torch.enable_grad():
            grads += torch.autograd.grad(logits.gather(1, targets[:, None]).sum(), feats.output)
        acts.append(feats.output.detach())
    g = torch.stack(grads)
    d1, d2, d3 = g.mean(0), (g**2).mean(0), (g**3).mean(0)
    size = images.shape[-2:]
    alpha = d2 / (2 * d2 + (d3 * clean).sum((2, 3), keepdim=True) + 1e-8)  # torchcam's, eps included
    as_torchcam = torch.einsum("nk,nkhw->nhw", (alpha * F.relu(g[-1])).sum((2, 3)), acts[-1])
    assert_agree(post(F.relu(as_torchcam), size), post(peer, size), "torchcam SmoothGradCAMpp's effective formula")
    paper = F.relu(torch.einsum("nk,nkhw->nhw", _gradcampp_weights(clean, d1, d2, d3), clean))
    mine = ours("smoothgradcampp", model, images, targets, num_samples=n, std=std)
    assert torch.allclose(mine, post(paper, size), atol=1e-4)


@pytest.mark.parametrize(("name", "peer"), [("eigencam", "EigenCAM"), ("eigengradcam", "EigenGradCAM")])
def test_eigen_methods_agree_with_pytorch_grad_cam_up_to_the_sign(name, peer, where) -> None:
    """pytorch-grad-cam's projection (its get_cam_image, i.e. get_2d_projection, before its ReLU) agrees
    with EigenCAM's up to the sign, which is LAPACK's there; the maps agree where the signs are the
    same (on photo 19 Eigen-CAM's are not). EigenCAM's sign follows the centred channel sum."""
    model, images, targets = where
    acts, grads, _ = _activations_and_gradients(model, images, targets)
    features = acts.detach() if name == "eigencam" else (acts * grads).detach()
    with getattr(pgc, peer)(model=model.network, target_layers=[model.target_layer]) as cam:
        theirs = cam.get_cam_image(images, model.target_layer, None, acts.detach().numpy(), grads.numpy(), False)
    mine = _first_component(features)
    r = correlation(mine, torch.from_numpy(theirs))
    assert bool((r.abs() >= MIN_CORRELATION).all()), r.tolist()
    assert ((mine * features.sum(1)).sum((1, 2)) >= 0).all()  # the sign convention
    same = r > 0
    peer_maps = post(np.maximum(theirs, 0), images.shape[-2:])
    assert_agree(ours(name, model, images, targets)[same], peer_maps[same], f"{name} vs pytorch-grad-cam")
    if images.shape[-1] > 16 and name == "eigencam":
        assert same.tolist() == [True, False]  # photo 19: pytorch-grad-cam keeps the other half


def test_fullgrad_agrees_with_pytorch_grad_cam(where) -> None:
    model, images, targets = where
    if images.shape[-1] > 16:
        # pytorch-grad-cam resizes each of the 21,008 channel maps of efficientnet_lite0 to the image
        # (7 s of CPU per 224 px photo): the photos at 96 px exercise the same layers, 5 x cheaper.
        images = F.interpolate(images, size=(96, 96), mode="bilinear", antialias=True, align_corners=False)
    with pgc.FullGrad(model=model.network, target_layers=[]) as cam:
        peer = cam(input_tensor=model.normalize(images), targets=[ClassifierOutputTarget(int(t)) for t in targets])
    assert_agree(ours("fullgrad", model, images, targets), torch.from_numpy(peer), "fullgrad vs pytorch-grad-cam")


def test_finercam_agrees_with_pytorch_grad_cam(where) -> None:
    """pytorch-grad-cam's FinerWeightedTarget with its defaults (alpha 1, the 3 closest classes) as the
    score, its Grad-CAM as the map."""
    model, images, targets = where
    inputs = model.normalize(images)
    logits = model.network(inputs).detach().numpy()
    finer = []
    for row, t in zip(logits, targets.tolist()):
        order = np.argsort(np.abs(row - row[t]))
        finer.append(FinerWeightedTarget(t, [int(c) for c in order if c != t][:3], 1.0))
    if images.shape[-1] <= 16:
        with pgc.FinerCAM(model=model.network, target_layers=[model.target_layer]) as cam:
            peer = torch.from_numpy(cam(inputs, targets=finer))
    else:
        peer = post(pgc_formula(pgc.GradCAM, model, images, targets, wanted=finer), images.shape[-2:])
    assert_agree(ours("finercam", model, images, targets), peer, "finercam vs pytorch-grad-cam")


def test_finercam_and_torchcam(where) -> None:
    """torchcam explains y^c - gamma mean_i y^{d_i}: with one reference and gamma = alpha, the same score."""
    model, images, targets = where
    peer = torchcam_raw("FinerCAM", model, images, targets, gamma=0.7, num_references=1)
    mine = ours("finercam", model, images, targets, alpha=0.7, num_comparisons=1)
    assert_agree(mine, post(peer, images.shape[-2:]), "finercam (one reference) vs torchcam")


@pytest.mark.parametrize(("score", "target"), [("logit", ClassifierOutputTarget), ("rest", ClassifierOutputReST)])
def test_shapleycam_agrees_with_pytorch_grad_cam(score, target, where) -> None:
    model, images, targets = where
    if images.shape[-1] <= 16:
        with pgc.ShapleyCAM(model=model.network, target_layers=[model.target_layer]) as cam:
            wanted = [target(int(t)) for t in targets]
            peer = torch.from_numpy(cam(input_tensor=model.normalize(images), targets=wanted))
    else:
        wanted = [target(int(t)) for t in targets]
        peer = post(pgc_formula(pgc.ShapleyCAM, model, images, targets, wanted=wanted, graph=True), images.shape[-2:])
    assert_agree(ours("shapleycam", model, images, targets, score=score), peer, f"shapleycam ({score})")


def test_pytorch_grad_cam_sees_the_same_activations_and_gradients(photos) -> None:
    """pytorch-grad-cam's hooks and backward pass (through every layer and parameter) find the same
    target-layer activations and logit gradients as xaibench's, so its formulas can be checked on
    xaibench's (the efficientnet_lite0 cases of the cross-checks above)."""
    model, images, targets = photos
    with pgc.HiResCAM(model=model.network, target_layers=[model.target_layer]) as cam:
        outputs = cam.activations_and_grads(model.normalize(images))
        outputs.gather(1, targets[:, None]).sum().backward()
        theirs = cam.activations_and_grads.activations[0], cam.activations_and_grads.gradients[0]
    model.network.zero_grad(set_to_none=True)
    acts, grads, _ = _activations_and_gradients(model, images, targets)
    assert torch.allclose(acts.detach(), theirs[0], rtol=1e-4, atol=1e-4)  # another summation order: ~1e-5
    assert torch.allclose(grads, theirs[1], rtol=1e-4, atol=1e-7)


def test_shapleycam_hessian_term_matters_on_a_nonlinear_head(tiny) -> None:
    model, images, targets = tiny
    gradcam = ours("gradcam", model, images, targets)
    assert (ours("shapleycam", model, images, targets) - gradcam).abs().max() > 1e-2
