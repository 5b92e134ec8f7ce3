"""One classifier of every torchvision family, random weights (seed 0): its target layer is found, and
CAM, Grad-CAM and saliency each give a finite map of the input's size, or (CAM, on a head that is not
global average pooling then one linear layer) refuse with the reason."""

from __future__ import annotations

import pytest
import torch

import xaibench
from xaibench.errors import LayerError

#: (model, its automatic target layer, whether CAM applies to its head)
FAMILIES = [
    ("resnet18", "layer4", True),
    ("vgg11", "avgpool", False),  # flatten -> three linear layers
    ("densenet121", "features", True),
    ("mobilenet_v3_small", "features", False),  # pooling -> linear -> hardswish -> linear
    ("efficientnet_b0", "features", True),
    ("regnet_y_400mf", "trunk_output", True),
    ("convnext_tiny", "features", False),  # pooling -> LayerNorm -> linear
    ("swin_t", "permute", True),  # norm, then the channels-first map that is pooled
    ("vit_b_16", "encoder.layers.encoder_layer_11.ln_1", False),  # the class token's head
    ("maxvit_t", "blocks.3", False),  # pooling -> LayerNorm -> linear -> tanh -> linear
]


@pytest.mark.parametrize(("name", "layer", "cam_applies"), FAMILIES, ids=[f[0] for f in FAMILIES])
def test_cam_gradcam_and_saliency_on_every_family(name, layer, cam_applies) -> None:
    torch.manual_seed(0)
    model = xaibench.load_model(name, weights=None)
    assert model.target_layer_name == layer
    head = model.classifier
    if head is not None and not head.weight.detach().any():  # torchvision's ViT: a head of zeros
        torch.nn.init.normal_(head.weight, std=0.01)
    images, targets = torch.rand(1, 3, *model.input_size), torch.tensor([1])
    for method in ("cam", "gradcam", "saliency"):
        if method == "cam" and not cam_applies:  # refused when made (its head probed) or at its first images
            with pytest.raises(LayerError, match="CAM needs"):
                xaibench.create_explainer(method, model)(images, targets)
            continue
        explanation = xaibench.create_explainer(method, model).explain(images, targets)
        assert explanation.maps.shape == (1, *model.input_size) and bool(explanation.finite.all()), (name, method)
