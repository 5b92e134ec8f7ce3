"""The classification pass of a batch, run once and shared by the methods and metrics that need no other.

The harness runs the network once per batch to classify its images (top-1 and top-5). That one pass
``z = f(x)`` also holds:

- the target layer's output ``A`` (N, K, h, w), captured during the pass with
  :func:`xaibench.hooks.capture` (its hook removed when the pass ends): CAM's map
  ``M_c = sum_k W[c, k] A_k`` (Zhou et al., CVPR 2016), Eigen-CAM's first principal component of ``A``
  and Ablation-CAM's closed form need nothing else, so a method that says so
  (:attr:`xaibench.explainer.Explainer.uses_forward_pass`) runs no network of its own;
- the logits ``z`` (N, C), whose softmax gives the clean image's probability of the target,
  ``Y_i = softmax(z_i)[c_i]``, that Average Drop and Increase in Confidence (Chattopadhay et al.,
  WACV 2018) compare each method's masked image against: computed once per batch, not once per method.

The maps and values are the ones each method and metric computes with its own pass, bit for bit,
wherever the network gives each image the same logits whatever the batch around it (as oneDNN's CPU
kernels do for EfficientNet-Lite0 at batches of 12 images or more).

Example:
    >>> forward = classification_pass(model, images, features=True)
    >>> top5 = forward.logits.topk(5, dim=1).indices
    >>> maps = create_explainer("cam", model).explain(images, targets, forward=forward).maps  # no second pass
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from xaibench.hooks import capture
from xaibench.models import Model, eval_mode


@dataclass(frozen=True)
class ForwardPass:
    """One forward pass of the network on a batch, in eval mode and without gradients.

    Attributes:
        images: (N, 3, H, W) the [0, 1] images the network ran on (normalised by the model).
        logits: (N, C) the network's output.
        features: (N, K, h, w) the target layer's output, or None when it was not captured.
    """

    images: Tensor
    logits: Tensor
    features: Tensor | None = None


def classification_pass(model: Model, images: Tensor, *, features: bool = False) -> ForwardPass:
    """Run ``model`` on ``images`` once (eval mode, no gradients); with ``features``, keep the target
    layer's output too.

    Raises:
        LayerError: ``features`` and the target layer runs twice in the pass, or not at all.
    """
    with eval_mode(model.network), torch.no_grad():
        if not features:
            return ForwardPass(images, model(images))
        with capture(model.target_layer, model.target_layer_name, reshape=model.feature_grid) as captured:
            logits = model(images)
        return ForwardPass(images, logits, captured.output)
