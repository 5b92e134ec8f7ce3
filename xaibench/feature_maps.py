"""Token outputs seen as feature maps: a vision transformer's (N, L, C) tokens as (N, C, h, w).

The CAM family explains a layer's output as K maps over the image. A convolutional network's target
layer gives them as (N, K, h, w); a vision transformer's gives tokens (N, L, C): ``prefix`` tokens of
its own (the class token; DeiT's distillation token; registers) followed by one token per patch, row
by row, of the (h, w) grid the input size implies (224 / 16 = 14 x 14 for ViT-B/16). :class:`TokenGrid`
turns such an output into maps and back, as pytorch-grad-cam's documented ``reshape_transform`` does
(``result = tensor[:, 1:, :].reshape(N, h, w, C)``, channels first)::

    maps[n, c, i, j] = tokens[n, prefix + i * w + j, c]

:func:`infer_token_grid` finds the prefix and the grid from the output's length and the input size.

Example:
    >>> import torch
    >>> tokens = torch.arange(2 * 5 * 3.).reshape(2, 5, 3)  # 1 class token, then a 2 x 2 grid
    >>> grid = infer_token_grid(tokens.shape, (32, 32))
    >>> grid
    TokenGrid(prefix=1, height=2, width=2)
    >>> grid.to_maps(tokens)[0, :, 0, 1].tolist()  # the second patch's 3 channels
    [6.0, 7.0, 8.0]
    >>> bool((grid.restore(grid.to_maps(tokens), tokens) == tokens).all())
    True
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

#: The most tokens of its own a transformer puts before the patches that :func:`infer_token_grid`
#: considers (class, distillation and up to 14 register tokens).
MAX_PREFIX = 16


@dataclass(frozen=True)
class TokenGrid:
    """A token layout: ``prefix`` tokens, then ``height x width`` patch tokens row by row."""

    prefix: int
    height: int
    width: int

    def to_maps(self, tokens: Tensor) -> Tensor:
        """(N, prefix + h * w, C) tokens -> (N, C, h, w) maps of the patch tokens (a view where it can)."""
        patches = tokens[:, self.prefix:, :]
        return patches.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], self.height, self.width)

    def restore(self, maps: Tensor, like: Tensor) -> Tensor:
        """(B, C, h, w) maps back into tokens, the ``prefix`` tokens taken from ``like`` (N, L, C)
        (broadcast to B copies where N is 1): the inverse of :meth:`to_maps`."""
        patches = maps.flatten(2).transpose(1, 2)
        prefix = like[:, : self.prefix, :].to(patches.dtype)
        if prefix.shape[0] != patches.shape[0]:
            prefix = prefix.expand(patches.shape[0], *prefix.shape[1:])
        return torch.cat([prefix, patches], dim=1)

    def describe(self) -> str:
        """As ``config.json`` and the log say it."""
        own = f"{self.prefix} token{'s' if self.prefix != 1 else ''} of its own, then " if self.prefix else ""
        return f"tokens (N, L, C): {own}a {self.height} x {self.width} grid of patches, as maps (N, C, h, w)"


def infer_token_grid(shape: tuple[int, ...] | torch.Size, input_size: tuple[int, int]) -> TokenGrid | None:
    """The :class:`TokenGrid` of a (N, L, C) output for an input of ``input_size`` (H, W): the fewest
    prefix tokens p such that L - p patches tile the input in square patches of a whole number of pixels
    (``(H / s) * (W / s) = L - p``); None for another shape or no such grid."""
    if len(shape) != 3:
        return None
    length = int(shape[1])
    height, width = (int(v) for v in input_size)
    for prefix in range(0, min(MAX_PREFIX, length - 1) + 1):
        patches = length - prefix
        for side in range(1, min(height, width) + 1):
            if height % side == 0 and width % side == 0 and (height // side) * (width // side) == patches:
                if (height // side) * (width // side) > 1:
                    return TokenGrid(prefix, height // side, width // side)
    return None
