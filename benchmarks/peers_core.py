"""The peers' implementations of CAM, Grad-CAM and saliency, as their users call them (for bench_peers.py).

Each factory takes a xaibench ``Model`` and returns ``(images, targets) -> maps`` running the peer's
code: torchcam's extractors and pytorch-grad-cam's ``GradCAM`` (its ``__call__`` with
``ClassifierOutputTarget``), each built per call in a ``with`` block, as both libraries' READMEs show,
so that no hook outlives the call (a hook left on the network would also run in every other side's
passes); captum's ``LayerGradCam`` and ``Saliency`` (hooks only inside ``attribute``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from xaibench.models import Model

Factory = Callable[[Model], Callable[[Tensor, Tensor], Tensor]]


class Normalized(nn.Module):
    """What a peer's user hands to the peer: normalise [0, 1] images, then run the network (``network``,
    by default the model's own)."""

    def __init__(self, model: Model, network: nn.Module | None = None) -> None:
        super().__init__()
        self.model = model
        self.network = network if network is not None else model.network

    def forward(self, images: Tensor) -> Tensor:
        return self.network(self.model.normalize(images))


def torchcam(method: str, **options: object) -> Factory:
    def build(model: Model) -> Callable[[Tensor, Tensor], Tensor]:
        from torchcam import methods

        module = Normalized(model).eval()
        cls = getattr(methods, method)
        extra = {"fc_layer": f"network.{model.classifier_name}"} if method == "CAM" else {}

        def run(images: Tensor, targets: Tensor) -> Tensor:
            layer = f"network.{model.target_layer_name}"
            with cls(module, target_layer=layer, input_shape=(3, *model.input_size), **extra, **options) as extractor:
                with torch.set_grad_enabled(method != "CAM"):
                    scores = module(images)
                    return extractor(targets.tolist(), scores)[0].detach()

        return run

    return build


def grad_cam(method: str) -> Factory:
    def build(model: Model) -> Callable[[Tensor, Tensor], Tensor]:
        import pytorch_grad_cam
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        module = Normalized(model).eval()
        cls = getattr(pytorch_grad_cam, method)

        def run(images: Tensor, targets: Tensor) -> Tensor:
            wanted = [ClassifierOutputTarget(int(t)) for t in targets]
            with cls(model=module, target_layers=[model.target_layer]) as cam:
                return torch.from_numpy(cam(input_tensor=images, targets=wanted))

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
    "gradcam": [("torchcam", torchcam("GradCAM")), ("pytorch-grad-cam", grad_cam("GradCAM")),
                ("captum", captum("LayerGradCam", relu_attributions=True))],
    "saliency": [("captum", captum("Saliency", abs=True))],
}
