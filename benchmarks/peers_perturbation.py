"""captum's occlusion, LIME and Kernel SHAP as their users call them (for bench_peers.py).

Each factory takes a xaibench ``Model`` (and xaibench's options of the method, with its defaults) and
returns ``(images, targets) -> maps`` running captum's code the way its documentation shows: the
forward function returns the softmax probabilities (the output xaibench's methods explain by
default), captum's default ``perturbations_per_eval=1`` (one perturbation of the batch per pass), and
for LIME and Kernel SHAP one image at a time (captum loops over the images of a batch itself, and
recommends one at a time), with SLIC superpixels computed by the user as xaibench computes them. LIME
is configured with xaibench's definition (lime_image's kernel and ``Ridge(alpha=1)``) and Kernel SHAP
is captum's own, so both sides make the same passes. No peer implements RISE: its list is empty.

LIME and Kernel SHAP need photographs (``CONFIGS``): SLIC on uniform noise (``torch.rand`` images)
returns one superpixel, on which captum's Kernel SHAP fails.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from xaibench.models import Model

Factory = Callable[[Model], Callable[[Tensor, Tensor], Tensor]]


def _probabilities(model: Model) -> Callable[[Tensor], Tensor]:
    return lambda images: torch.softmax(model(images), dim=1)


def _slic(image: Tensor, n_segments: int, compactness: float) -> Tensor:
    from skimage.segmentation import slic

    labels = slic(image.permute(1, 2, 0).double().numpy(), n_segments=n_segments, compactness=compactness, start_label=0)
    return torch.from_numpy(np.unique(labels, return_inverse=True)[1].reshape(labels.shape)).long()


def captum_occlusion(model: Model, *, window: int = 32, stride: int = 16) -> Callable[[Tensor, Tensor], Tensor]:
    from captum.attr import Occlusion

    occlusion = Occlusion(_probabilities(model))

    def run(images: Tensor, targets: Tensor) -> Tensor:
        attributions = occlusion.attribute(
            images, sliding_window_shapes=(3, window, window), strides=(3, stride, stride), baselines=0.0,
            target=targets,
        )
        return attributions.mean(1)

    return run


def _lime_kernel(width: float) -> Callable[..., float]:
    """lime_image's kernel: sqrt(exp(-d^2 / w^2)), d the cosine distance of the coalition to all-ones."""

    def similarity(original: Tensor, perturbed: Tensor, interpretable: Tensor, **kwargs: object) -> float:
        k, m = float(interpretable.sum()), interpretable.numel()
        distance = 1 - math.sqrt(k / m)
        return math.sqrt(math.exp(-(distance**2) / width**2))

    return similarity


def _superpixel_runner(explainer, n_samples: int, n_segments: int, compactness: float):
    def run(images: Tensor, targets: Tensor) -> Tensor:
        maps = []
        for image, target in zip(images, targets.tolist()):
            segments = _slic(image, n_segments, compactness)
            attributions = explainer.attribute(
                image[None], baselines=0.0, target=target, feature_mask=segments[None, None], n_samples=n_samples
            )
            maps.append(attributions[0, 0])
        return torch.stack(maps)

    return run


def captum_lime(
    model: Model, *, n_samples: int = 1000, n_segments: int = 50, compactness: float = 10.0
) -> Callable[[Tensor, Tensor], Tensor]:
    from captum._utils.models.linear_model import SkLearnRidge
    from captum.attr import Lime

    explainer = Lime(_probabilities(model), interpretable_model=SkLearnRidge(alpha=1.0), similarity_func=_lime_kernel(0.25))
    return _superpixel_runner(explainer, n_samples, n_segments, compactness)


def captum_kernel_shap(
    model: Model, *, n_samples: int = 1000, n_segments: int = 50, compactness: float = 10.0
) -> Callable[[Tensor, Tensor], Tensor]:
    from captum.attr import KernelShap

    return _superpixel_runner(KernelShap(_probabilities(model)), n_samples, n_segments, compactness)


PEERS: dict[str, list[tuple[str, Factory]]] = {
    "occlusion": [("captum", captum_occlusion)],
    "lime": [("captum", captum_lime)],
    "kernelshap": [("captum", captum_kernel_shap)],
    "rise": [],
}

#: What bench_peers.py runs per method, instead of 16 random images and 5 repetitions: 169 passes per
#: image for occlusion, ``n_samples`` for LIME and Kernel SHAP (given to xaibench and to captum alike;
#: both sides' cost is linear in it), on photos for the superpixel methods.
CONFIGS: dict[str, dict] = {
    "occlusion": {"images": 4, "repeats": 3},
    "lime": {"images": 2, "photos": True, "repeats": 5, "options": {"n_samples": 200},
             "note": "default 1000, cost linear in it"},
    "kernelshap": {"images": 2, "photos": True, "repeats": 5, "options": {"n_samples": 200},
                   "note": "default 1000, cost linear in it"},
    "rise": {"images": 2, "photos": True, "repeats": 3, "options": {"n_masks": 500},
             "note": "default 4000, cost linear in it"},
}
