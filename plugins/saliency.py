"""Gradient saliency (Simonyan et al., ICLR 2014 workshop, "Deep Inside Convolutional Networks")."""

from __future__ import annotations

import torch
from torch import Tensor

from xaibench import Explainer, register_explainer
from xaibench.precision import PIXEL_GRADIENTS


@register_explainer("saliency")
class Saliency(Explainer):
    """Image-specific class saliency: the magnitude of the score's gradient with respect to the pixels.

    With S_c the class score (logit) and I the image (in [0, 1], before normalisation),

        w = d S_c / d I,    M(x, y) = max_channel |w(channel, x, y)|

    (Simonyan et al. 2014, Sec. 3.1). Costs one forward and one full backward pass to the input.
    """

    full_precision_only = PIXEL_GRADIENTS

    def attribute(self, images: Tensor, targets: Tensor) -> Tensor:
        pixels = images.detach().requires_grad_(True)
        with torch.enable_grad():
            logits = self.model(pixels)
            score = logits.gather(1, targets[:, None]).sum()
            (grads,) = torch.autograd.grad(score, pixels)
        return grads.abs().amax(1)
