"""Methods made for vision transformers: attention rollout.

Abnar & Zuidema, "Quantifying Attention Flow in Transformers", ACL 2020, Sec. 3 ("attention rollout"):
the attention weights of block l, fused over the heads, with the residual connection added as an
identity and the rows normalised again,

    Ã_l = normalise_rows((A_l + I) / 2),

are multiplied from the first block to the last, ``R = Ã_L Ã_(L-1) ... Ã_1``: ``R[i, j]`` is how much
of token j's input reaches token i's output along every path. The map is the class token's row over
the patch tokens, on the patch grid (:class:`xaibench.feature_maps.TokenGrid`). It looks at no class:
every target gets the same map.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from xaibench import Explainer, options, register_explainer
from xaibench.errors import LayerError
from xaibench.models import Model, eval_mode

#: How the heads' attention weights are fused: the paper averages them.
HEAD_FUSIONS = ("mean", "max", "min")


@register_explainer("attention_rollout")
class AttentionRollout(Explainer):
    """Attention rollout (Abnar & Zuidema, ACL 2020): the class token's row of the product of every
    block's head-averaged attention with the residual added, ``R = prod_l normalise_rows((A_l + I) / 2)``,
    over the patch grid. Class-agnostic.

    The attention weights are read from the network's ``nn.MultiheadAttention`` modules (torchvision's
    ViTs), asked for their per-head weights during one forward pass (hooks that live for the call);
    ``head_fusion`` ``mean`` (the paper's), ``max`` or ``min`` fuses the heads.

    Example:
        >>> rollout = AttentionRollout(model)  # doctest: +SKIP
        >>> rollout(images, targets).shape  # doctest: +SKIP
        torch.Size([2, 224, 224])
    """

    def __init__(self, model: Model, head_fusion: str = "mean") -> None:
        super().__init__(model)
        self.head_fusion = options.choice("head_fusion", head_fusion, HEAD_FUSIONS)
        grid = model.feature_grid
        if grid is None or grid.prefix < 1:
            raise LayerError(
                f"attention rollout needs a vision transformer with a class token (the map is its row); model "
                f"'{model.name}''s target layer '{model.target_layer_name}' does not output such tokens"
            )
        self.attention = [m for m in model.network.modules() if isinstance(m, nn.MultiheadAttention)]
        if not self.attention:
            raise LayerError(
                f"attention rollout reads the attention weights of torch's nn.MultiheadAttention modules (torchvision's "
                f"ViTs); model '{model.name}' has none"
            )

    def attribute(self, images: Tensor, targets: Tensor) -> Tensor:
        weights: list[Tensor] = []

        def ask(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
            return args, {**kwargs, "need_weights": True, "average_attn_weights": False}

        def keep(module: nn.Module, args: tuple, output: tuple) -> None:
            weights.append(output[1].detach().float())

        handles = []
        try:
            for module in self.attention:
                handles.append(module.register_forward_pre_hook(ask, with_kwargs=True))
                handles.append(module.register_forward_hook(keep))
            with eval_mode(self.model.network), torch.no_grad():
                self.model(images)
        finally:
            for handle in handles:
                handle.remove()
        return rollout(weights, self.model.feature_grid, self.head_fusion)


def rollout(weights: list[Tensor], grid, head_fusion: str = "mean") -> Tensor:
    """The rollout maps (N, h, w) of the blocks' attention ``weights`` (each (N, heads, L, L), in the
    order the blocks run): ``R = prod_l normalise_rows((fuse(A_l) + I) / 2)``, the class token's row
    (token 0) over the patch tokens of ``grid``."""
    fuse = {"mean": lambda a: a.mean(1), "max": lambda a: a.amax(1), "min": lambda a: a.amin(1)}[head_fusion]
    n, length = weights[0].shape[0], weights[0].shape[-1]
    identity = torch.eye(length, device=weights[0].device)
    result = identity.expand(n, length, length)
    for attention in weights:
        residual = (fuse(attention) + identity) / 2
        residual = residual / residual.sum(-1, keepdim=True)
        result = residual @ result
    return result[:, 0, grid.prefix:].reshape(n, grid.height, grid.width)
