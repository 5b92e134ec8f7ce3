"""Baselines that look at no pixel: every report shows the floor a method must beat."""

from __future__ import annotations

import torch
from torch import Tensor

from xaibench import Explainer, options, register_explainer
from xaibench.errors import OptionError
from xaibench.models import Model
from xaibench.seeding import image_generator


@register_explainer("center")
class CenterGaussian(Explainer):
    """A centred Gaussian, the same for every image and class (wsolevaluation's centre baseline).

    ``M(x, y) = exp(-((x - W/2)^2 / (2 (s W)^2) + (y - H/2)^2 / (2 (s H)^2)))`` with ``s = sigma``,
    a fraction of the image's side (default 1/4), at pixel centres ``x + 0.5``.
    """

    def __init__(self, model: Model, sigma: float = 0.25) -> None:
        super().__init__(model)
        self.sigma = options.number("sigma", sigma, 0.0, open_low=True)

    def attribute(self, images: Tensor, targets: Tensor) -> Tensor:
        height, width = images.shape[-2:]
        ys = (torch.arange(height, device=images.device) + 0.5 - height / 2) / (self.sigma * height)
        xs = (torch.arange(width, device=images.device) + 0.5 - width / 2) / (self.sigma * width)
        gaussian = torch.exp(-0.5 * (ys[:, None] ** 2 + xs[None, :] ** 2))
        return gaussian.expand(images.shape[0], height, width)


@register_explainer("random")
class RandomMap(Explainer):
    """Uniform noise on a coarse ``grid`` x ``grid`` lattice, upsampled like every other map.

    A random class activation map: the default lattice, 7 x 7, is the size of the last feature map
    of ImageNet CNNs at 224 px. Seeded by ``seed`` and the image's bytes, so the same image always
    gets the same map, whatever the batch it comes in.
    """

    def __init__(self, model: Model, seed: int = 0, grid: int = 7) -> None:
        super().__init__(model)
        self.seed = options.seed("seed", seed)
        self.grid = options.integer("grid", grid, 1)
        if self.grid > max(model.input_size):
            raise OptionError(
                f"option grid must be at most the model's input side, {max(model.input_size)} px, got {grid!r}"
            )

    def attribute(self, images: Tensor, targets: Tensor) -> Tensor:
        maps = []
        for image in images:
            maps.append(torch.rand(self.grid, self.grid, generator=image_generator(image, self.seed)))
        return torch.stack(maps).to(images.device)
