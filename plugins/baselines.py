"""Baselines that look at no pixel: every report shows the floor a method must beat."""

from __future__ import annotations

import zlib

import torch
from torch import Tensor

from xaibench import Explainer, register_explainer
from xaibench.models import Model


@register_explainer("center")
class CenterGaussian(Explainer):
    """A centred Gaussian, the same for every image and class (wsolevaluation's centre baseline).

    ``M(x, y) = exp(-((x - W/2)^2 / (2 (s W)^2) + (y - H/2)^2 / (2 (s H)^2)))`` with ``s = sigma``,
    a fraction of the image's side (default 1/4), at pixel centres ``x + 0.5``.
    """

    def __init__(self, model: Model, sigma: float = 0.25) -> None:
        super().__init__(model)
        self.sigma = sigma

    def attribute(self, images: Tensor, targets: Tensor) -> Tensor:
        height, width = images.shape[-2:]
        ys = (torch.arange(height, device=images.device) + 0.5 - height / 2) / (self.sigma * height)
        xs = (torch.arange(width, device=images.device) + 0.5 - width / 2) / (self.sigma * width)
        gaussian = torch.exp(-0.5 * (ys[:, None] ** 2 + xs[None, :] ** 2))
        return gaussian.expand(images.shape[0], height, width)


@register_explainer("random")
class RandomMap(Explainer):
    """Uniform noise, one value per pixel, seeded by ``seed`` and the image's bytes.

    The same image always gets the same map, whatever the batch it comes in.
    """

    def __init__(self, model: Model, seed: int = 0) -> None:
        super().__init__(model)
        self.seed = seed

    def attribute(self, images: Tensor, targets: Tensor) -> Tensor:
        maps = []
        for image in images.detach().cpu():
            generator = torch.Generator().manual_seed(zlib.crc32(image.numpy().tobytes(), self.seed))
            maps.append(torch.rand(image.shape[-2:], generator=generator))
        return torch.stack(maps).to(images.device)
