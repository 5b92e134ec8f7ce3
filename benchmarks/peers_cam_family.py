"""The peers of the gradient-based CAM family (plugins/cam_family.py), run as their users run them.

``PEERS`` maps each xaibench method name to ``(library, factory)`` pairs; ``factory(model)`` returns a
callable ``(images, targets) -> maps`` that runs the peer's own implementation on a xaibench
:class:`~xaibench.Model`: its network, its target layer, the images normalised as the network expects,
one class per image. Each call builds the peer's extractor in a ``with`` block, as both libraries'
READMEs show, so that no hook outlives the call (pytorch-grad-cam's hooks, left on the model, would
also record every xaibench forward pass). The peers' own batching is kept: pytorch-grad-cam and
torchcam explain the whole batch in one call; pytorch-grad-cam's FullGrad ignores the target layer.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from xaibench import Model

Run = Callable[[Tensor, Tensor], Tensor]
Factory = Callable[[Model], Run]


def _pytorch_grad_cam(name: str, **options: object) -> Factory:
    """A pytorch-grad-cam CAM class, the target's logit (``ClassifierOutputTarget``) as the score."""

    def factory(model: Model) -> Run:
        import pytorch_grad_cam
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        cls = getattr(pytorch_grad_cam, name)
        layers = [] if name == "FullGrad" else [model.target_layer]

        def run(images: Tensor, targets: Tensor) -> Tensor:
            with cls(model=model.network, target_layers=layers, **options) as cam:
                wanted = [ClassifierOutputTarget(int(t)) for t in targets]
                maps = cam(input_tensor=model.normalize(images), targets=wanted)
            return torch.from_numpy(maps)

        return run

    return factory


def _pytorch_grad_cam_finer(model: Model) -> Run:
    """pytorch-grad-cam's FinerCAM with its defaults (alpha 1, the 3 classes whose logits are closest to
    the target's). Its automatic choice of references takes one target for the whole batch, so, with one
    class per image, a user computes the logits first and passes one ``FinerWeightedTarget`` per image."""
    from pytorch_grad_cam import FinerCAM
    from pytorch_grad_cam.utils.model_targets import FinerWeightedTarget

    def run(images: Tensor, targets: Tensor) -> Tensor:
        inputs = model.normalize(images)
        with torch.no_grad():
            logits = model.network(inputs).numpy()
        finer = []
        for row, target in zip(logits, targets.tolist()):
            order = np.argsort(np.abs(row - row[target]))
            finer.append(FinerWeightedTarget(target, [int(c) for c in order if c != target][:3], 1.0))
        with FinerCAM(model=model.network, target_layers=[model.target_layer]) as cam:
            maps = cam(inputs, targets=finer)
        return torch.from_numpy(maps)

    return run


def _torchcam(name: str, **options: object) -> Factory:
    """A torchcam extractor: forward pass with its hooks, then the maps for one class per image."""

    def factory(model: Model) -> Run:
        from torchcam import methods

        cls = getattr(methods, name)

        def run(images: Tensor, targets: Tensor) -> Tensor:
            inputs = model.normalize(images)
            with cls(model.network, model.target_layer_name, **options) as extractor:
                scores = model.network(inputs)
                if name == "SmoothGradCAMpp":  # draws its own noisy passes; uses no scores
                    maps = extractor(class_idx=targets.tolist())
                else:
                    maps = extractor(targets.tolist(), scores)
            return maps[0].detach()

        return run

    return factory


PEERS: dict[str, list[tuple[str, Factory]]] = {
    "gradcampp": [("pytorch-grad-cam", _pytorch_grad_cam("GradCAMPlusPlus")), ("torchcam", _torchcam("GradCAMpp"))],
    "smoothgradcampp": [("torchcam", _torchcam("SmoothGradCAMpp"))],
    "xgradcam": [("pytorch-grad-cam", _pytorch_grad_cam("XGradCAM")), ("torchcam", _torchcam("XGradCAM"))],
    "layercam": [("pytorch-grad-cam", _pytorch_grad_cam("LayerCAM")), ("torchcam", _torchcam("LayerCAM"))],
    "hirescam": [("pytorch-grad-cam", _pytorch_grad_cam("HiResCAM"))],
    "gradcam_elementwise": [("pytorch-grad-cam", _pytorch_grad_cam("GradCAMElementWise"))],
    "eigencam": [("pytorch-grad-cam", _pytorch_grad_cam("EigenCAM"))],
    "eigengradcam": [("pytorch-grad-cam", _pytorch_grad_cam("EigenGradCAM"))],
    "fullgrad": [("pytorch-grad-cam", _pytorch_grad_cam("FullGrad"))],
    "finercam": [("pytorch-grad-cam", _pytorch_grad_cam_finer), ("torchcam", _torchcam("FinerCAM"))],
    "shapleycam": [("pytorch-grad-cam", _pytorch_grad_cam("ShapleyCAM"))],
}

#: What bench_peers.py runs per method, instead of 16 random images and 5 repetitions: pytorch-grad-cam's
#: FullGrad takes about 4 s per image (about 100 times xaibench's), hence 4 images.
CONFIGS: dict[str, dict] = {"fullgrad": {"images": 4, "repeats": 3}}
