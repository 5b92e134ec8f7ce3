"""Class Activation Mapping (Zhou et al., CVPR 2016, "Learning Deep Features for Discriminative Localization")."""

from __future__ import annotations

import torch
from torch import Tensor

from xaibench import Explainer, register_explainer
from xaibench.errors import LayerError
from xaibench.forward_pass import ForwardPass
from xaibench.hooks import capture
from xaibench.models import Model, eval_mode, head_tolerance


@register_explainer("cam")
class CAM(Explainer):
    """Class Activation Mapping: the classifier's weights for class c applied to the last feature maps.

    For a network whose last feature maps A_k (K, h, w) are globally average-pooled and fed to one
    linear layer with weights W (n_classes, K), the class activation map of class c is

        M_c(x, y) = sum_k W[c, k] * A_k(x, y)

    (Zhou et al. 2016, Eq. 2). The bias is left out, as in the paper: it shifts every pixel alike and
    vanishes in the min-max scaling. Costs one forward pass and no gradient; none in a run, whose
    classification pass of the batch gives the feature maps and logits (:attr:`uses_forward_pass`).

    Raises:
        LayerError: the model has no linear classifier, or the classifier's input is not the spatial
            mean of the target layer's output. Checked when the explainer is built (on one random
            image) and again on every batch.
    """

    uses_forward_pass = True

    def __init__(self, model: Model) -> None:
        super().__init__(model)
        if model.classifier is None:
            raise LayerError(
                f"CAM needs the network to end in global average pooling and one nn.Linear layer; "
                f"model '{model.name}' has no nn.Linear classifier (pass classifier=NAME if it has one)"
            )
        probe = torch.rand(1, 3, *model.input_size, generator=torch.Generator().manual_seed(0))
        self._features_and_logits(probe.to(model.device))

    def attribute(self, images: Tensor, targets: Tensor) -> Tensor:
        features, _ = self._features_and_logits(images)
        return self._maps(features, targets)

    def attribute_from_pass(self, forward: ForwardPass, targets: Tensor) -> Tensor:
        self._check_head(forward.features, forward.logits)
        return self._maps(forward.features, targets)

    def _maps(self, features: Tensor, targets: Tensor) -> Tensor:
        weights = self.model.classifier.weight.detach()[targets]  # (N, K)
        return torch.einsum("nk,nkhw->nhw", weights, features)

    def _features_and_logits(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """One forward pass without gradients; the target layer's output and the logits, head checked."""
        with eval_mode(self.model.network), torch.no_grad(), capture(
            self.model.target_layer, self.model.target_layer_name, reshape=self.model.feature_grid
        ) as feats:
            logits = self.model(images)
        self._check_head(feats.output, logits)
        return feats.output, logits

    def _check_head(self, features: Tensor, logits: Tensor) -> None:
        """Verify ``logits == W @ mean_xy(A) + b``, i.e. that the head really is GAP -> linear."""
        head, model = self.model.classifier, self.model
        if features.dim() != 4 or features.shape[1] != head.in_features:
            raise LayerError(
                f"CAM needs global average pooling between target layer '{model.target_layer_name}' "
                f"(output {tuple(features.shape[1:])}) and classifier '{model.classifier_name}' "
                f"(in_features={head.in_features}); the model has no such GAP -> linear head"
            )
        if not head.weight.detach().any():
            raise LayerError(
                f"CAM cannot tell whether model '{model.name}' is GAP -> linear: the weights of its classifier "
                f"'{model.classifier_name}' are all zero (torchvision initialises a vision transformer's head so), so "
                "every logit and every CAM map is constant; load trained weights (--weights PATH)"
            )
        pooled = features.mean((2, 3)) @ head.weight.detach().T
        if head.bias is not None:
            pooled = pooled + head.bias.detach()
        if (pooled - logits).abs().max().item() > head_tolerance(features, logits):
            raise LayerError(
                f"CAM needs the logits to be classifier '{model.classifier_name}' applied to the spatial "
                f"mean of target layer '{model.target_layer_name}', but model '{model.name}' computes "
                "something else in between; CAM does not apply (use gradcam)"
            )
