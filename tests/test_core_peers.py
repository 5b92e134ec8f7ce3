"""CAM, Grad-CAM and saliency against torchcam, pytorch-grad-cam and captum, run as their users run
them, on a tiny network and on EfficientNet-Lite0 with shared ImageNet photos: Pearson >= 0.99 per
map after xaibench's upsampling and min-max scaling (in fact equal to float precision)."""

from __future__ import annotations

import captum.attr
import pytest
import pytorch_grad_cam
import torch
import torchcam.methods
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import Tensor

import xaibench

from conftest import SHARED_IMAGENET, TinyGapNet, pearson, post

MIN_CORRELATION = 0.99


def torchcam_cam(model: xaibench.Model, images: Tensor, targets: Tensor) -> Tensor:
    layer, fc = model.target_layer_name, model.classifier_name
    with torchcam.methods.CAM(model.network, target_layer=layer, fc_layer=fc) as extractor:
        with torch.no_grad():
            scores = model.network(model.normalize(images))
        return post(extractor(targets.tolist(), scores, normalized=False)[0], images.shape[-2:])


def torchcam_gradcam(model: xaibench.Model, images: Tensor, targets: Tensor) -> Tensor:
    with torchcam.methods.GradCAM(model.network, target_layer=model.target_layer_name) as extractor:
        scores = model.network(model.normalize(images))
        maps = extractor(targets.tolist(), scores, normalized=False)[0]
    return post(maps.detach(), images.shape[-2:])


def grad_cam_gradcam(model: xaibench.Model, images: Tensor, targets: Tensor) -> Tensor:
    with pytorch_grad_cam.GradCAM(model=model.network, target_layers=[model.target_layer]) as cam:
        maps = cam(input_tensor=model.normalize(images), targets=[ClassifierOutputTarget(int(t)) for t in targets])
    return post(maps, images.shape[-2:])


def captum_saliency(model: xaibench.Model, images: Tensor, targets: Tensor) -> Tensor:
    """captum's Saliency (abs=True) on the [0, 1] images through the model's normalisation, reduced as
    Simonyan et al.: the maximum over the colour channels."""
    def forward(x: Tensor) -> Tensor:
        return model.network(model.normalize(x))

    grads = captum.attr.Saliency(forward).attribute(images.clone().requires_grad_(True), target=targets, abs=True)
    return post(grads.amax(1).detach(), images.shape[-2:])


PEERS = [
    ("cam", "torchcam CAM", torchcam_cam),
    ("gradcam", "torchcam GradCAM", torchcam_gradcam),
    ("gradcam", "pytorch-grad-cam GradCAM", grad_cam_gradcam),
    ("saliency", "captum Saliency", captum_saliency),
]


@pytest.fixture(scope="module")
def tiny() -> tuple[xaibench.Model, Tensor, Tensor]:
    torch.manual_seed(0)
    model = xaibench.wrap_model(TinyGapNet().eval(), input_size=16)
    images = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    return model, images, torch.tensor([0, 1, 2, 3])


@pytest.fixture(scope="module")
def photos() -> tuple[xaibench.Model, Tensor, Tensor]:
    if not SHARED_IMAGENET.is_dir():
        pytest.skip(f"shared ImageNet photos not found at {SHARED_IMAGENET}")
    model = xaibench.load_model("efficientnet_lite0")
    data = xaibench.load_dataset(f"imagenet:{SHARED_IMAGENET}", image_size=(224, 224), class_names=model.class_names)
    chosen = [0, 7, 19]
    return model, torch.stack([data[i].image for i in chosen]), torch.tensor([data[i].label for i in chosen])


@pytest.mark.parametrize("where", ["tiny", "photos"])
@pytest.mark.parametrize("name, peer, run", PEERS, ids=[f"{n}-{p}" for n, p, _ in PEERS])
def test_agrees_with_the_peer(name, peer, run, where, request) -> None:
    model, images, targets = request.getfixturevalue(where)
    ours = xaibench.create_explainer(name, model)(images, targets)
    r = pearson(ours, run(model, images, targets))
    assert bool((r >= MIN_CORRELATION).all()), f"{name} vs {peer} on {where}: {r.tolist()}"
