"""The built-in methods: one contract test over every registered method, then known answers."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from captum.attr import LayerGradCam
from captum.attr import Saliency as CaptumSaliency

import xaibench
from xaibench.errors import LayerError
from xaibench.explainer import normalize_maps, upsample_maps
from xaibench.hooks import count_hooks
from xaibench.testing import check_explainer

from conftest import ConvHeadNet, FlattenHeadNet, SharedActNet, TinyGapNet, tiny_model, tiny_vit


def _hooks(network: torch.nn.Module) -> int:
    return count_hooks(network)


#: The methods made for vision transformers: their contract holds on a small ViT, and a CNN is refused.
TRANSFORMER_ONLY = {"attention_rollout"}


@pytest.mark.parametrize("name", xaibench.available_explainers())
def test_contract(name, model, batch) -> None:
    """Every registered method keeps the contract (xaibench.testing.check_explainer), on a model in a
    mixed train/eval state with a frozen parameter and a stale gradient that must stay as they are."""
    if name in TRANSFORMER_ONLY:
        with pytest.raises(LayerError, match="vision transformer"):
            xaibench.create_explainer(name, model)
        vit = tiny_vit()
        vit.network.train()
        images = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
        assert check_explainer(xaibench.create_explainer(name, vit), images, batch[1]).finite.all()
        assert vit.network.training
        return
    network = model.network
    network.train()
    network.features[0].eval()
    network.fc.weight.requires_grad_(False)
    network.fc.bias.grad = torch.ones_like(network.fc.bias)
    explanation = check_explainer(xaibench.create_explainer(name, model), *batch)
    assert explanation.finite.all()
    assert network.training and not network.features[0].training
    assert torch.equal(network.fc.bias.grad, torch.ones(5))


@pytest.fixture(scope="module")
def builtin_batch() -> tuple[xaibench.Model, torch.Tensor, torch.Tensor]:
    """The shipped built-in network and four images of its data set with their labels."""
    model = xaibench.load_model("builtin")
    data = xaibench.load_dataset("builtin", image_size=model.input_size, size=4)
    return model, torch.stack([data[i].image for i in range(4)]), torch.tensor([data[i].label for i in range(4)])


#: Fewer samples or steps for the sampling methods whose default budget is the paper's (the contract does
#: not depend on it; their full budgets run in test_contract on the tiny network and in their own tests).
SMALLER_BUDGET = {"rise": {"n_masks": 64}, "sscam": {"num_samples": 2}, "iscam": {"num_samples": 2},
                  "lime": {"n_samples": 64}, "kernelshap": {"n_samples": 64}, "smoothgrad": {"n_samples": 16},
                  "vargrad": {"n_samples": 16}, "integrated_gradients": {"n_steps": 16}}


@pytest.mark.parametrize("name", xaibench.available_explainers())
def test_contract_on_the_builtin_network(name, builtin_batch) -> None:
    """On real images of a trained network every method singles out something: no constant map."""
    model, images, targets = builtin_batch
    if name in TRANSFORMER_ONLY:  # its contract: test_contract, on a small ViT
        with pytest.raises(LayerError, match="needs a vision transformer with a class token"):
            xaibench.create_explainer(name, model)
        return
    explainer = xaibench.create_explainer(name, model, **SMALLER_BUDGET.get(name, {}))
    check_explainer(explainer, images, targets, allow_constant=False)


def _features(model, images):
    """The target layer's output, computed by hand."""
    return model.network.features(model.normalize(images))


def test_cam_equals_class_weights_times_feature_maps(model, batch) -> None:
    images, targets = batch
    A = _features(model, images)  # (N, 6, 8, 8)
    W = model.network.fc.weight
    by_hand = torch.stack([sum(W[c, k] * A[i, k] for k in range(A.shape[1])) for i, c in enumerate(targets)])
    expected = normalize_maps(upsample_maps(by_hand.detach(), (16, 16)))
    assert torch.allclose(xaibench.create_explainer("cam", model)(images, targets), expected, atol=1e-6)


def test_gradcam_is_relu_cam_on_a_gap_linear_network(model, batch) -> None:
    """Selvaraju et al. 2017, Sec. 3.1: with GAP -> linear, alpha_k^c = w_k^c / Z."""
    images, targets = batch
    A = _features(model, images).detach()
    cam = torch.einsum("nk,nkhw->nhw", model.network.fc.weight.detach()[targets], A)
    expected = normalize_maps(upsample_maps(F.relu(cam), (16, 16)))
    assert torch.allclose(xaibench.create_explainer("gradcam", model)(images, targets), expected, atol=1e-6)


def test_gradcam_matches_captum_layergradcam(batch) -> None:
    # A network whose target layer is not followed by GAP alone, so Grad-CAM differs from CAM.
    model = tiny_model(FlattenHeadNet())
    images, targets = batch
    captum = LayerGradCam(model, model.target_layer).attribute(images, target=targets, relu_attributions=True)
    expected = normalize_maps(upsample_maps(captum[:, 0].detach(), (16, 16)))
    ours = xaibench.create_explainer("gradcam", model)(images, targets)
    assert torch.allclose(ours, expected, atol=1e-5)


def test_saliency_matches_captum_saliency(model, batch) -> None:
    images, targets = batch
    captum = CaptumSaliency(model).attribute(images.clone(), target=targets, abs=True)
    expected = normalize_maps(captum.amax(1))
    assert torch.allclose(xaibench.create_explainer("saliency", model)(images, targets), expected, atol=1e-5)


def test_saliency_is_gradient_magnitude_of_a_linear_model() -> None:
    """For a linear score S_c = w_c . x the saliency is |w_c| (max over channels), whatever x is."""
    w = torch.zeros(2, 3, 4, 4)
    w[1, 0, 1, 2], w[1, 2, 3, 0], w[1, 1, 3, 0] = -2.0, 1.0, 0.5
    network = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 2, bias=False))
    network[1].weight.data = w.flatten(1)
    model = xaibench.Model(network, network[0], "0", network[1], "1", ["a", "b"], (4, 4))
    maps = xaibench.create_explainer("saliency", model)(torch.rand(1, 3, 4, 4), torch.tensor([1]))
    expected = torch.zeros(4, 4)
    expected[1, 2], expected[3, 0] = 1.0, 0.5
    assert torch.allclose(maps[0], expected)


def test_inplace_relu_after_the_target_layer_changes_nothing(batch) -> None:
    """The captured activations must not be overwritten by an in-place op that follows the layer."""
    plain_net, inplace_net = TinyGapNet(inplace=False), TinyGapNet(inplace=True)
    inplace_net.load_state_dict(plain_net.state_dict())
    plain = tiny_model(plain_net, target_layer="features.2")
    inplace = tiny_model(inplace_net, target_layer="features.2")
    ours = xaibench.create_explainer("gradcam", inplace)(*batch)
    assert torch.allclose(ours, xaibench.create_explainer("gradcam", plain)(*batch))


def test_cam_without_a_linear_head_names_what_is_missing() -> None:
    with pytest.raises(LayerError, match="has no nn.Linear classifier"):
        xaibench.create_explainer("cam", tiny_model(ConvHeadNet()))


def test_cam_on_a_head_without_gap_refuses(batch) -> None:
    with pytest.raises(LayerError, match="global average pooling"):
        xaibench.create_explainer("cam", tiny_model(FlattenHeadNet()))(*batch)


def test_cam_on_pre_activation_features_refuses(batch) -> None:
    """The GAP input is features.3 (after ReLU); CAM on features.2 would silently be wrong."""
    model = tiny_model(target_layer="features.2")
    with pytest.raises(LayerError, match="spatial mean of target layer 'features.2'"):
        xaibench.create_explainer("cam", model)(*batch)


@pytest.mark.parametrize("name", ["cam", "gradcam"])
def test_layer_called_twice_raises_and_leaves_no_hook(name, batch) -> None:
    network = SharedActNet()
    model = xaibench.Model(network, network.act, "act", network.fc, "fc", list("abcde"), (16, 16))
    with pytest.raises(LayerError, match="layer 'act' ran more than once"):
        xaibench.create_explainer(name, model)(*batch)
    assert _hooks(network) == 0
    assert torch.is_grad_enabled()
