"""Grad-CAM (Selvaraju et al., ICCV 2017, "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based Localization")."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from xaibench import Explainer, register_explainer
from xaibench.hooks import capture


@register_explainer("gradcam")
class GradCAM(Explainer):
    """Grad-CAM: feature maps weighted by their spatially averaged gradients, then ReLU.

    With y^c the score (logit, before softmax) of class c and A^k the target layer's feature maps,

        alpha_k^c = (1 / Z) * sum_ij d y^c / d A^k_ij,
        L^c = ReLU( sum_k alpha_k^c * A^k )

    (Selvaraju et al. 2017, Eqs. 1-2). On a GAP -> linear network alpha_k^c = W[c, k] / Z, so Grad-CAM
    is ReLU(CAM) up to scale. Costs one forward pass and the backward pass from the scores to the
    target layer only: the layers before it record no graph.
    """

    def attribute(self, images: Tensor, targets: Tensor) -> Tensor:
        layer, name = self.model.target_layer, self.model.target_layer_name
        with torch.no_grad(), capture(layer, name, graph=True, reshape=self.model.feature_grid) as feats:
            logits = self.model(images)
        # Samples are independent in eval mode, so one backward pass serves the whole batch.
        with torch.enable_grad():  # the caller may hold no_grad; the graph after the layer exists
            score = logits.gather(1, targets[:, None]).sum()
            (grads,) = torch.autograd.grad(score, feats.output)
        alpha = grads.mean((2, 3), keepdim=True)
        return F.relu((alpha * feats.output.detach()).sum(1))
