"""The peers' implementations of CAM, Grad-CAM and saliency, as their users call them (for bench_peers.py).

Each factory takes a xaibench ``Model`` and returns ``(images, targets) -> maps`` running the peer's
code: torchcam's extractors (hooks set up when the extractor is built, as torchcam's users do),
pytorch-grad-cam's ``GradCAM`` (its ``__call__`` with ``ClassifierOutputTarget``), captum's
``LayerGradCam`` and ``Saliency``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from xaibench.models import Model

Factory = Callable[[Model], Callable[[Tensor, Tensor], Tensor]]


class Normalized(nn.Module):
    """The network behind the model's normalisation, as one module the peers can hook into."""

    def __init__(self, model: Model) -> None:
        super().__init__()
        self.model = model
        self.network = model.network

    def forward(self, images: Tensor) -> Tensor:
        return self.network(self.model.normalize(images))


def torchcam(method: str, **options: object) -> Factory:
    def build(model: Model) -> Callable[[Tensor, Tensor], Tensor]:
        from torchcam import methods

        module = Normalized(model).eval()
        extra = {"fc_layer": f"network.{model.classifier_name}"} if method == "CAM" else {}
        extractor = getattr(methods, method)(
            module, target_layer=f"network.{model.target_layer_name}", input_shape=(3, *model.input_size),
            **extra, **options,
        )
        grads = method != "CAM"

        def run(images: Tensor, targets: Tensor) -> Tensor:
            with torch.set_grad_enabled(grads):
                scores = module(images)
                return extractor(targets.tolist(), scores)[0]

        return run

    return build


def grad_cam(method: str) -> Factory:
    def build(model: Model) -> Callable[[Tensor, Tensor], Tensor]:
        import pytorch_grad_cam
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        module = Normalized(model).eval()
        cam = getattr(pytorch_grad_cam, method)(model=module, target_layers=[model.target_layer])

        def run(images: Tensor, targets: Tensor) -> Tensor:
            return torch.from_numpy(cam(input_tensor=images, targets=[ClassifierOutputTarget(int(t)) for t in targets]))

        return run

    return build


def captum(method: str, **options: object) -> Factory:
    def build(model: Model) -> Callable[[Tensor, Tensor], Tensor]:
        from captum import attr

        module = Normalized(model).eval()
        layer = method.startswith("Layer")
        algorithm = getattr(attr, method)(module, model.target_layer) if layer else getattr(attr, method)(module)

        def run(images: Tensor, targets: Tensor) -> Tensor:
            inputs = images.clone().requires_grad_(not layer)
            return algorithm.attribute(inputs, target=targets, **options).detach()

        return run

    return build


PEERS: dict[str, list[tuple[str, Factory]]] = {
    "cam": [("torchcam", torchcam("CAM"))],
    "gradcam": [("torchcam", torchcam("GradCAM")), ("grad-cam", grad_cam("GradCAM")),
                ("captum", captum("LayerGradCam", relu_attributions=True))],
    "saliency": [("captum", captum("Saliency", abs=True))],
}
