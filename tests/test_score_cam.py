"""Score-CAM, SS-CAM, IS-CAM and Ablation-CAM (plugins/score_cam.py): known answers, the peers, seeds.

Known answers come from networks whose scores are known in closed form (a linear classifier, a GAP
-> linear head). The peers are torchcam (ScoreCAM, SSCAM, ISCAM) and pytorch-grad-cam (ScoreCAM,
AblationCAM), run on the tiny models of conftest.py and, for the cheap checks, on EfficientNet-Lite0
with shared ImageNet photos: Score-CAM against torchcam and Ablation-CAM against pytorch-grad-cam on
one photo at 96 x 96 (all 1280 channels of ``head_act``, 3 x 3). The full cross-checks at 224 x 224, SS-CAM and
IS-CAM included, run the network 1,300 to 2,600 times per photo and method (about an hour in all on two
CPU cores), so they run only when ``XAIBENCH_SLOW=1`` is set.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import xaibench
from xaibench.errors import LayerError, XaibenchError
from xaibench.explainer import normalize_maps, upsample_maps
from xaibench.hooks import capture, count_hooks
from xaibench.testing import check_explainer

from conftest import SHARED_IMAGENET, SLOW, FlattenHeadNet, SharedActNet, TinyGapNet, pearson, post, tiny_model

METHODS = ["scorecam", "sscam", "iscam", "ablationcam"]
needs_photos = pytest.mark.skipif(not SHARED_IMAGENET.is_dir(), reason="needs ../shared/data/imagenet-val-300")


# ----------------------------------------------------------------------------------- the peers


def torchcam_maps(method: str, model: xaibench.Model, images, targets, **options) -> torch.Tensor:
    import torchcam.methods

    inputs = model.normalize(images)
    cls = getattr(torchcam.methods, method)
    layer, shape = model.target_layer_name, tuple(inputs.shape[1:])
    with cls(model.network, target_layer=layer, input_shape=shape, **options) as cam:
        with torch.inference_mode():
            model.network(inputs)
        return post(cam(class_idx=targets.tolist())[0], images.shape[-2:])


def grad_cam_maps(method: str, model: xaibench.Model, images, targets, **options) -> torch.Tensor:
    import pytorch_grad_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cls = getattr(pytorch_grad_cam, method)
    with cls(model=model.network, target_layers=[model.target_layer], **options) as cam:
        maps = cam(input_tensor=model.normalize(images), targets=[ClassifierOutputTarget(int(t)) for t in targets])
    return post(maps, images.shape[-2:])


# ------------------------------------------------------------------- a network with known scores


class Regions(nn.Module):
    """Outputs fixed region maps (K, H, W) for every image, whatever it is."""

    def __init__(self, maps: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("maps", maps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.maps.expand(x.shape[0], *self.maps.shape)


class LinearOnRegions(nn.Module):
    """Logits linear in the pixels (``fc(x)``); the 'target layer' returns fixed region maps."""

    def __init__(self, maps: torch.Tensor, n_classes: int = 3) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.regions = Regions(maps)
        self.fc = nn.Linear(3 * maps.shape[1] * maps.shape[2], n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.regions(x)
        return self.fc(x.flatten(1))


def region_model() -> tuple[xaibench.Model, torch.Tensor]:
    """Four 4 x 4 region maps at the input's resolution: a binary one, one of {0, 2} (scaled to {0, 1}
    by s), one of {1, 3} (scaled to {0, 1}) and an all-zero one (a dead channel)."""
    maps = torch.zeros(4, 4, 4)
    maps[0, :2, :2] = 1.0
    maps[1, 2:, :] = 2.0
    maps[2] = 1.0
    maps[2, :, 3] = 3.0
    network = LinearOnRegions(maps)
    model = xaibench.Model(network, network.regions, "regions", network.fc, "fc", ["a", "b", "c"], (4, 4))
    return model, maps


def region_scores(model: xaibench.Model, maps: torch.Tensor, images: torch.Tensor, targets: torch.Tensor):
    """S_k = f^c(X o H_k) - f^c(0) = w_c . (X o H_k) for the linear network (the bias cancels)."""
    flat = maps.flatten(1)
    low, high = flat.min(1).values, flat.max(1).values
    low, span = low[:, None, None], (high - low)[:, None, None]
    masks = torch.where(span > 0, (maps - low) / span.clamp_min(1e-12), 0)
    w = model.network.fc.weight.detach()[targets].view(-1, 1, 3, 4, 4)  # (N, 1, 3, H, W)
    return (w * images[:, None] * masks[None, :, None]).sum((2, 3, 4))  # (N, K)


def expected_map(scores: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    weights = torch.softmax(scores, 1)
    return normalize_maps(F.relu(torch.einsum("nk,khw->nhw", weights, maps)))


@pytest.fixture
def region_batch():
    model, maps = region_model()
    images = torch.rand(3, 3, 4, 4, generator=torch.Generator().manual_seed(3))
    return model, maps, images, torch.tensor([0, 2, 1])


def test_scorecam_known_answer_on_a_linear_network(region_batch) -> None:
    """S_k is w_c . (X o s(A_k)); the dead channel gets S = 0 (so weight e^0 / Z) without a pass."""
    model, maps, images, targets = region_batch
    expected = expected_map(region_scores(model, maps, images, targets), maps)
    assert torch.allclose(xaibench.create_explainer("scorecam", model)(images, targets), expected, atol=1e-5)


def test_iscam_known_answer_on_a_linear_network(region_batch) -> None:
    """With f^c linear, S_k = mean_i c_i * S_k(Score-CAM), mean_i c_i = (N + 1)(N + 2) / (6N)."""
    model, maps, images, targets = region_batch
    n = 4
    expected = expected_map((n + 1) * (n + 2) / (6 * n) * region_scores(model, maps, images, targets), maps)
    ours = xaibench.create_explainer("iscam", model, num_samples=n)(images, targets)
    assert torch.allclose(ours, expected, atol=1e-5)


def test_sscam_without_noise_is_scorecam(region_batch) -> None:
    model, maps, images, targets = region_batch
    expected = xaibench.create_explainer("scorecam", model)(images, targets)
    ours = xaibench.create_explainer("sscam", model, std=0.0, num_samples=3)(images, targets)
    assert torch.allclose(ours, expected, atol=1e-6)


def test_sscam_known_answer_with_its_own_noise(region_batch) -> None:
    """With f^c linear the noise adds (1/N) sum_i w_c . (X o delta_i) to S_k: checked with the noise
    the method draws (recorded), so the rest of the pipeline is known exactly."""
    model, maps, images, targets = region_batch
    explainer = xaibench.create_explainer("sscam", model, num_samples=3, std=0.5, batch_size=5)
    drawn = []
    original = explainer._noise

    def recording(shape, image_ids, channel_ids, steps, source):
        noise = original(shape, image_ids, channel_ids, steps, source)
        drawn.append((image_ids, channel_ids, noise[:, 0]))
        return noise

    explainer._noise = recording
    ours = explainer(images, targets)
    scores = region_scores(model, maps, images, targets)
    w = model.network.fc.weight.detach()[targets].view(-1, 3, 4, 4)
    for image_ids, channel_ids, noise in drawn:
        extra = (w[image_ids] * images[image_ids] * noise[:, None]).sum((1, 2, 3)) / 3
        scores.index_put_((image_ids, channel_ids), extra, accumulate=True)
    # 3 images x 3 samples x the 3 channels that are not all zero (the dead one is never run: its
    # weight only scales the map, see test_sscam_skips_exactly_the_all_zero_feature_maps)
    assert sum(len(i) for i, _, _ in drawn) == 3 * 3 * 3
    assert 3 not in torch.cat([c for _, c, _ in drawn]).tolist()
    assert torch.allclose(ours, expected_map(scores, maps), atol=1e-5)


# ---------------------------------------------------------------------- skipped work is exact


def _count_masked_inputs(model: xaibench.Model) -> tuple[list[int], object]:
    sizes: list[int] = []
    handle = model.network.register_forward_pre_hook(lambda m, args: sizes.append(args[0].shape[0]))
    return sizes, handle


def _with_a_dead_channel(batch) -> tuple[xaibench.Model, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The tiny network with channel 1 of its target layer dead (ReLU(-100 + ...) = 0), the batch, and
    the target layer's output for it, flattened (N, K, h * w)."""
    network = TinyGapNet()
    with torch.no_grad():
        network.features[2].bias[1] = -100.0
    model = tiny_model(network)
    images, targets = batch
    with torch.no_grad(), capture(model.target_layer) as feats:
        model(images)
    return model, images, targets, feats.output.flatten(2)


def test_scorecam_and_iscam_skip_exactly_the_constant_feature_maps(batch) -> None:
    """A feature map that is constant has H_k = 0: its masked input is X_b, so it is never run."""
    model, images, targets, flat = _with_a_dead_channel(batch)
    live = int((flat.amax(2) > flat.amin(2)).sum())
    assert live < flat.shape[0] * flat.shape[1]  # channel 1 (at least) is dead
    for name, passes in [("scorecam", live), ("iscam", 3 * live)]:
        sizes, handle = _count_masked_inputs(model)
        try:
            xaibench.create_explainer(name, model, **({"num_samples": 3} if name == "iscam" else {}))(images, targets)
        finally:
            handle.remove()
        # the features' pass (N images), the baseline's (1), then the masked inputs
        assert sum(sizes) == len(images) + 1 + passes, name
    # Running the dead channels too gives the same map: SS-CAM with std = 0 is Score-CAM.
    ours = xaibench.create_explainer("scorecam", model)(images, targets)
    explainer = xaibench.create_explainer("sscam", model, std=0.0, num_samples=1)
    explainer._skip_constant = lambda: False
    assert torch.allclose(explainer(images, targets), ours, atol=1e-6)


def test_sscam_skips_exactly_the_all_zero_feature_maps(batch) -> None:
    """With noise, a dead (all-zero) feature map's masked input is X o delta, not X_b, so its S_k is
    not 0; but alpha_k A_k = 0 whatever S_k: leaving it out of the softmax scales the raw map by a
    positive factor, and the maps are the same as running every channel: with the seeded noise itself,
    since each feature map's noise has its own generator (running more maps shifts no one's noise)."""
    model, images, targets, flat = _with_a_dead_channel(batch)
    nonzero = int(flat.ne(0).any(2).sum())
    assert nonzero < flat.shape[0] * flat.shape[1]

    skipping = xaibench.create_explainer("sscam", model, num_samples=3, std=0.7, seed=5)
    every = xaibench.create_explainer("sscam", model, num_samples=3, std=0.7, seed=5)
    every._skip_zero = lambda: False
    sizes, handle = _count_masked_inputs(model)
    try:
        ours = skipping.explain(images, targets)
    finally:
        handle.remove()
    assert sum(sizes) == len(images) + 1 + 3 * nonzero
    reference = every.explain(images, targets)
    assert torch.allclose(ours.maps, reference.maps, atol=1e-5)
    assert not torch.allclose(ours.raw, reference.raw)  # the raw maps differ by a positive factor only
    ratio = reference.raw.flatten(1).amax(1) / ours.raw.flatten(1).amax(1)
    assert torch.allclose(reference.raw, ours.raw * ratio[:, None, None], rtol=1e-4, atol=1e-6)
    assert (ratio < 1).all()


def test_sscam_an_image_with_no_nonzero_feature_map_gets_a_zero_map_and_a_nan_score_is_flagged(batch) -> None:
    """All feature maps zero: the softmax over no channel is NaN, the map is zero all the same (constant,
    not a failure). A NaN score of a channel that was run is a failure: the map is flagged non-finite."""
    network = TinyGapNet()
    with torch.no_grad():
        network.features[2].bias.fill_(-100.0)  # every channel of the target layer is ReLU(-100 + ...) = 0
    model = tiny_model(network)
    images, targets = batch
    explanation = xaibench.create_explainer("sscam", model, num_samples=2, std=0.5).explain(images, targets)
    assert explanation.finite.all() and explanation.constant.all()

    model = tiny_model()
    explainer = xaibench.create_explainer("sscam", model, num_samples=2, std=0.5)
    scores = explainer.scores

    def one_nan(*args):
        values = scores(*args)
        values[0, 0] = float("nan")
        return values

    explainer.scores = one_nan
    explanation = explainer.explain(images, targets)
    assert explanation.finite.tolist() == [False, True, True, True]


# ----------------------------------------------------------------- Score-CAM against the peers


class _UpsampleLikeThePaper(nn.Module):
    """Stands in for ``nn.UpsamplingBilinear2d`` (``align_corners=True``), which pytorch-grad-cam's
    ScoreCAM upsamples its masks with, by the paper's code's ``align_corners=False`` (ours too)."""

    def __init__(self, size) -> None:
        super().__init__()
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, size=self.size, mode="bilinear", align_corners=False)


@pytest.mark.parametrize("target_layer", ["features", "features.1"])
def test_scorecam_matches_torchcam_and_pytorch_grad_cam(target_layer, batch, monkeypatch) -> None:
    """On features.1 (16 x 16, the input's resolution) the three masks coincide: same maps. On the
    8 x 8 layer the masks differ slightly (torchcam scales before upsampling, pytorch-grad-cam
    upsamples with align_corners=True), the weights are the same quantity: correlation >= 0.99; and
    pytorch-grad-cam upsampling as the paper's code does gives our maps."""
    model = tiny_model(target_layer=target_layer)
    images, targets = batch
    ours = xaibench.create_explainer("scorecam", model)(images, targets)
    for peer in (torchcam_maps("ScoreCAM", model, images, targets), grad_cam_maps("ScoreCAM", model, images, targets)):
        assert (pearson(ours, peer) >= 0.99).all()
        if target_layer == "features.1":
            assert torch.allclose(ours, peer, atol=1e-5)
    monkeypatch.setattr(torch.nn, "UpsamplingBilinear2d", _UpsampleLikeThePaper)
    assert torch.allclose(grad_cam_maps("ScoreCAM", model, images, targets), ours, atol=1e-5)


@pytest.mark.parametrize("target_layer", ["features", "features.1"])
def test_iscam_matches_torchcam(target_layer, batch) -> None:
    model = tiny_model(target_layer=target_layer)
    images, targets = batch
    ours = xaibench.create_explainer("iscam", model, num_samples=4)(images, targets)
    peer = torchcam_maps("ISCAM", model, images, targets, num_samples=4)
    assert (pearson(ours, peer) >= 0.99).all()
    if target_layer == "features.1":
        assert torch.allclose(ours, peer, atol=1e-5)


@pytest.mark.parametrize("target_layer", ["features", "features.1"])
def test_sscam_matches_torchcam_given_torchcam_s_noise(target_layer, batch, monkeypatch) -> None:
    """torchcam draws its noise from the global generator, we from per-image generators: the maps of
    two noisy runs cannot agree. Recording torchcam's noise and feeding it to ours, they do."""
    import torchcam.methods

    model = tiny_model(target_layer=target_layer)
    images, targets = batch
    recorded = []
    sample = torch.distributions.Normal.sample

    def recording(self, shape=()):
        recorded.append(sample(self, shape))
        return recorded[-1]

    monkeypatch.setattr(torch.distributions.Normal, "sample", recording)
    peer = torchcam_maps("SSCAM", model, images, targets, num_samples=3, std=0.5)
    monkeypatch.setattr(torch.distributions.Normal, "sample", sample)
    assert len(recorded) == 3 and isinstance(torchcam.methods.SSCAM, type)

    explainer = xaibench.create_explainer("sscam", model, num_samples=3, std=0.5, batch_size=7)
    explainer._noise = lambda shape, image_ids, channel_ids, steps, source: torch.stack(
        [recorded[s][i, k] for i, k, s in zip(image_ids.tolist(), channel_ids.tolist(), steps.tolist())]
    )[:, None]
    ours = explainer(images, targets)
    assert (pearson(ours, peer) >= 0.99).all()
    if target_layer == "features.1":
        assert torch.allclose(ours, peer, atol=1e-5)


# ------------------------------------------------------------------- SS-CAM's seeded randomness


def test_sscam_seeds(batch) -> None:
    model = tiny_model()
    images, targets = batch
    make = lambda **o: xaibench.create_explainer("sscam", model, num_samples=2, **o)  # noqa: E731
    first = make(seed=0)(images, targets)
    assert torch.equal(make(seed=0)(images, targets), first)
    assert not torch.allclose(make(seed=1)(images, targets), first, atol=1e-3)
    # An image's noise depends on neither the batch nor batch_size.
    alone = torch.cat([make(seed=0, batch_size=5)(images[i : i + 1], targets[i : i + 1]) for i in range(len(images))])
    assert torch.allclose(alone, first, atol=1e-5)
    reordered = make(seed=0, batch_size=3)(images.flip(0), targets.flip(0)).flip(0)
    assert torch.allclose(reordered, first, atol=1e-5)


# ---------------------------------------------------------------------------------- Ablation-CAM


def test_ablationcam_known_answer_on_a_gap_linear_network(model, batch) -> None:
    """alpha_k = (y_c - y_c^k) / y_c = W[c, k] mean(A_k) / y_c when A goes through GAP into the fc."""
    images, targets = batch
    with torch.no_grad(), capture(model.target_layer) as feats:
        logits = model(images)
    A, W = feats.output, model.network.fc.weight.detach()
    y = logits.gather(1, targets[:, None])
    alpha = W[targets] * A.mean((2, 3)) / y
    expected = normalize_maps(upsample_maps(F.relu(torch.einsum("nk,nkhw->nhw", alpha, A)), (16, 16)))
    assert torch.allclose(xaibench.create_explainer("ablationcam", model)(images, targets), expected, atol=1e-5)
    # The general path (zeroing each channel and re-running the network) gives the same map.
    hook = xaibench.create_explainer("ablationcam", model, closed_form=False, batch_size=4)(images, targets)
    assert torch.allclose(hook, expected, atol=1e-5)


@pytest.mark.parametrize(
    "network, target_layer",
    [(TinyGapNet, None), (FlattenHeadNet, None), (TinyGapNet, "features.1")],
    ids=["gap-closed-form", "flatten-head", "inner-layer"],
)
def test_ablationcam_matches_pytorch_grad_cam(network, target_layer, batch) -> None:
    """ReLU feature maps (a zero somewhere): pytorch-grad-cam zeroes the channel as the paper does."""
    model = tiny_model(network(), **({"target_layer": target_layer} if target_layer else {}))
    images, targets = batch
    ours = xaibench.create_explainer("ablationcam", model)(images, targets)
    peer = grad_cam_maps("AblationCAM", model, images, targets)
    assert (pearson(ours, peer) >= 0.99).all()
    assert torch.allclose(ours, peer, atol=1e-4)


class PreActivationNet(nn.Module):
    """conv -> ReLU -> conv (the target layer: no ReLU after it, so no zero in its output) -> GAP -> fc."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 6, 3, padding=1, stride=2))
        self.fc = nn.Linear(6, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean((2, 3)))


def test_ablationcam_differs_from_pytorch_grad_cam_where_it_deviates_from_the_paper(batch) -> None:
    """The target layer's output has no zero: pytorch-grad-cam then 'ablates' a channel with
    min(A) - 1e7 instead of 0, and its weights become about W[c, k] * 1e7 / y_c (a CAM-like map).
    Given an ablation layer that zeroes (the paper's definition), it agrees with ours."""
    from pytorch_grad_cam.ablation_layer import AblationLayer

    class ZeroAblation(AblationLayer):
        def __call__(self, x):
            output = self.activations
            for i in range(output.size(0)):
                output[i, self.indices[i], :] = 0
            return output

    model = tiny_model(PreActivationNet())
    images, targets = batch
    ours = xaibench.create_explainer("ablationcam", model)(images, targets)
    theirs = grad_cam_maps("AblationCAM", model, images, targets)
    assert (pearson(ours, theirs) < 0.99).any()
    zeroed = grad_cam_maps("AblationCAM", model, images, targets, ablation_layer=ZeroAblation())
    assert (pearson(ours, zeroed) >= 0.99).all()
    assert torch.allclose(ours, zeroed, atol=1e-4)


class BatchFromInputNet(nn.Module):
    """The head reshapes with the *input's* batch size: feeding one image and broadcasting the target
    layer's copies cannot work here, so Ablation-CAM's general path must run copies of the image."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1, stride=2), nn.ReLU())
        self.fc = nn.Linear(6 * 8 * 8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).reshape(x.shape[0], -1))


def test_ablationcam_general_path_without_broadcasting(batch) -> None:
    images, targets = batch
    model = tiny_model(BatchFromInputNet())
    explainer = xaibench.create_explainer("ablationcam", model, batch_size=5)
    ours = explainer(images, targets)
    assert explainer._broadcast is False
    # By hand: zero each channel of the layer's output and run the head.
    with torch.no_grad(), capture(model.target_layer) as feats:
        logits = model(images)
    A, net = feats.output, model.network
    y = logits.gather(1, targets[:, None])[:, 0]
    ablated = [net.fc((A * (torch.arange(6) != k)[None, :, None, None]).flatten(1)) for k in range(6)]
    drop = torch.stack([y - logits_k.gather(1, targets[:, None])[:, 0] for logits_k in ablated], 1)
    expected = normalize_maps(upsample_maps(F.relu(torch.einsum("nk,nkhw->nhw", drop / y[:, None], A)), (16, 16)))
    assert torch.allclose(ours, expected, atol=1e-5)
    broadcasting = xaibench.create_explainer("ablationcam", tiny_model(FlattenHeadNet()))
    broadcasting(images, targets)
    assert broadcasting._broadcast is True


# ----------------------------------------------------------------------------- shared behaviour


@pytest.mark.parametrize("name", METHODS)
def test_layer_called_twice_raises_and_leaves_no_hook(name, batch) -> None:
    network = SharedActNet()
    model = xaibench.Model(network, network.act, "act", network.fc, "fc", list("abcde"), (16, 16))
    with pytest.raises(LayerError, match="ran more than once"):
        xaibench.create_explainer(name, model)(*batch)
    assert count_hooks(network) == 0


@pytest.mark.parametrize(
    "name, options",
    [
        ("scorecam", {"batch_size": 0}),
        ("scorecam", {"batch_size": 2.5}),
        ("iscam", {"num_samples": 0}),
        ("sscam", {"std": -1.0}),
        ("sscam", {"std": float("nan")}),
        ("sscam", {"seed": -1}),
        ("sscam", {"num_samples": True}),
        ("ablationcam", {"batch_size": 0}),
        ("ablationcam", {"closed_form": "yes"}),
    ],
)
def test_bad_options_are_refused(name, options, model) -> None:
    with pytest.raises(XaibenchError, match=next(iter(options))):
        xaibench.create_explainer(name, model, **options)


@pytest.mark.parametrize(
    "name, options",
    [
        ("scorecam", {"batch_size": 3}),
        ("sscam", {"num_samples": 2, "batch_size": 5}),
        ("iscam", {"num_samples": 2, "batch_size": 5}),
        ("ablationcam", {"closed_form": False, "batch_size": 2}),
    ],
)
def test_contract_with_small_batches(name, options, model, batch) -> None:
    """The contract with chunks that split images and channels across forward passes."""
    check_explainer(xaibench.create_explainer(name, model, **options), *batch)


# ------------------------------------------------------------------ EfficientNet-Lite0, real photos


@pytest.fixture(scope="module")
def lite0() -> xaibench.Model:
    """EfficientNet-Lite0 with its ImageNet weights, loaded once for the module's photo tests."""
    return xaibench.load_model("efficientnet_lite0")


@pytest.fixture(scope="module")
def lite0_photos(lite0):
    model = lite0
    data = xaibench.load_dataset(f"imagenet:{SHARED_IMAGENET}", image_size=(224, 224), class_names=model.class_names)
    images = torch.stack([data[i].image for i in range(2)])
    return model, images, torch.tensor([data[i].label for i in range(2)])


@needs_photos
def test_lite0_dead_channels_are_common(lite0_photos) -> None:
    """head_act is ReLU6: on real photos about half of its 1280 maps are all zero (620 on average over
    the first 32 shared photos), each a forward pass that Score-CAM and IS-CAM do not run."""
    model, images, _ = lite0_photos
    with torch.no_grad(), capture(model.target_layer) as feats:
        model(images)
    flat = feats.output.flatten(2)
    dead = (flat.amax(2) == flat.amin(2)).sum(1)
    assert (dead >= 300).all(), dead.tolist()


@needs_photos
def test_lite0_ablationcam_closed_form_equals_the_general_path(lite0_photos) -> None:
    """y_c - y_c^k = W[c, k] mean(A_k), checked against real ablations on one photo.

    EfficientNet's forward reshapes the pooled features with the *input's* batch size
    (``x.view(inputs.size(0), -1)``), so the general path cannot feed one image and broadcast the
    ablated copies: it runs copies of the image, one full pass per ablated channel. To keep the test
    short, only the 8 channels that weigh most are left non-zero (the general path skips the others).
    """
    model, images, targets = lite0_photos
    image, target = images[:1], targets[:1]
    inputs = model.normalize(image)
    with torch.no_grad(), capture(model.target_layer) as feats:
        model.network(inputs)
    A, W, b = feats.output, model.classifier.weight.detach(), model.classifier.bias.detach()
    keep = (W[target] * A.mean((2, 3))).abs()[0].topk(8).indices
    A = A * torch.zeros(A.shape[1]).index_fill_(0, keep, 1.0)[None, :, None, None]
    y = F.linear(A.mean((2, 3)), W, b).gather(1, target[:, None])[:, 0]  # the logit of those features
    explainer = xaibench.create_explainer("ablationcam", model, closed_form=False, batch_size=8)
    with torch.no_grad():
        ablated = explainer.ablated_scores(inputs, A, target, y)
    assert explainer._broadcast is False
    closed = W[target] * A.mean((2, 3))
    assert torch.allclose(y[:, None] - ablated, closed, atol=1e-5 * (1 + y.abs().max().item()))
    assert torch.equal(ablated[0, closed[0] == 0], y.expand(int((closed[0] == 0).sum())))  # not run: y_c^k = y_c


@pytest.fixture(scope="module")
def lite0_photo_96(lite0):
    """EfficientNet-Lite0 with its ImageNet weights on one shared photo at 96 x 96: ``head_act`` is
    1280 x 3 x 3 (``side // 32``), and a full pass of the network about a fifth of one at 224 x 224, so
    that the peers' 1280 passes per method fit in the test suite's time."""
    model = lite0
    data = xaibench.load_dataset(f"imagenet:{SHARED_IMAGENET}", image_size=(96, 96), class_names=model.class_names)
    return model, data[0].image[None], torch.tensor([data[0].label])


@needs_photos
@pytest.mark.parametrize(
    "name, peer, options",
    [
        ("scorecam", ("torchcam", "ScoreCAM"), {}),
        ("ablationcam", ("grad-cam", "AblationCAM"), {}),
    ],
)
def test_lite0_at_96_matches_the_peers(name, peer, options, lite0_photo_96) -> None:
    """The real network and weights on a real photo, every one of the 1280 channels: Pearson >= 0.99.

    Each peer runs the network 1280 times per photo (per noise sample or step for SS-CAM and IS-CAM),
    so pytorch-grad-cam's ScoreCAM, SS-CAM and IS-CAM are checked on the tiny networks here and on
    EfficientNet-Lite0 with ``XAIBENCH_SLOW=1``."""
    model, images, targets = lite0_photo_96
    ours = xaibench.create_explainer(name, model, **options)(images, targets)
    library, method = peer
    run = grad_cam_maps if library == "grad-cam" else torchcam_maps
    correlation = pearson(ours, run(method, model, images, targets, **options))
    print(f"{name} vs {library} {method} at 96 x 96: pearson {correlation.tolist()}")
    assert (correlation >= 0.99).all()


_OURS: dict[tuple, torch.Tensor] = {}


@pytest.mark.skipif(not SLOW, reason="set XAIBENCH_SLOW=1 (about an hour on two CPU cores)")
@needs_photos
@pytest.mark.parametrize(
    "name, peer, options, n",
    [
        ("scorecam", ("torchcam", "ScoreCAM"), {}, 2),
        ("scorecam", ("grad-cam", "ScoreCAM"), {}, 2),
        ("ablationcam", ("grad-cam", "AblationCAM"), {}, 2),
        ("iscam", ("torchcam", "ISCAM"), {"num_samples": 2}, 1),
        ("sscam", ("torchcam", "SSCAM"), {"num_samples": 1, "std": 1e-6}, 1),
    ],
)
def test_lite0_matches_the_peers(name, peer, options, n, lite0_photos, monkeypatch) -> None:
    """On head_act (1280 x 7 x 7) with n photos (one for the sampling methods: 2,600-3,900 passes of
    the network per photo); SS-CAM with the noise switched off (std 1e-6 on both sides).

    pytorch-grad-cam's ScoreCAM upsamples the 7 x 7 maps to 224 x 224 with align_corners=True: a
    mask shifted by up to half a cell, whose scores then go through a softmax over 1280 channels; on
    the second photo that alone brings the correlation down to 0.965 (0.9994 on the first). With its
    upsampling switched to the paper's code's align_corners=False it agrees with ours (>= 0.99)."""
    model, images, targets = lite0_photos
    images, targets = images[:n], targets[:n]
    key = (name, n, tuple(sorted(options.items())))
    if key not in _OURS:
        _OURS[key] = xaibench.create_explainer(name, model, **options)(images, targets)
    library, method = peer
    run = torchcam_maps if library == "torchcam" else grad_cam_maps
    if library == "grad-cam" and name == "scorecam":  # it builds N x K masked inputs at once: per image
        as_is = torch.cat([run(method, model, images[i : i + 1], targets[i : i + 1]) for i in range(n)])
        print(f"{name} vs {library} {method} as it is: pearson {pearson(_OURS[key], as_is).tolist()}")
        assert (pearson(_OURS[key], as_is) >= 0.95).all()
        monkeypatch.setattr(torch.nn, "UpsamplingBilinear2d", _UpsampleLikeThePaper)
        theirs = torch.cat([run(method, model, images[i : i + 1], targets[i : i + 1]) for i in range(n)])
    else:
        theirs = run(method, model, images, targets, **options)
    correlation = pearson(_OURS[key], theirs)
    print(f"{name} vs {library} {method}: pearson {correlation.tolist()}")
    assert (correlation >= 0.99).all()
