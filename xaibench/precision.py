"""The numeric precision the network runs in: fp32, or bf16 / fp16 mixed precision by ``torch.autocast``.

Under ``--precision bf16`` (or ``fp16``) the methods' passes of the network and those of the metrics
that run it (deletion, insertion, ROAD, ...) run in ``torch.autocast`` with that dtype: matrix
products and convolutions in 16 bits, reductions in float32, as PyTorch chooses per operation
(https://pytorch.org/docs/stable/amp.html). Backward passes follow the dtypes of their forward
passes. Maps and metric values leave the run as float32; the maps are min-max scaled in float32 as
always. bf16 keeps float32's range with 8 significant bits, fp16 has 11 bits and a range of about
6e-5 to 65,504. The batch's classification pass stays fp32: one pass a batch, whose top-1 and top-5
classes decide what is explained and what counts as localised (run in bf16, it moved top-1 accuracy on
the 300 shared photos with EfficientNet-Lite0 by 0.67 point). CAM weighs that pass's features in the
reduced precision like any method.

Two kinds of method refuse a reduced precision, since 8 or 11 significant bits do not resolve what
their maps mean (:attr:`~xaibench.explainer.Explainer.full_precision_only` says why):

- maps of gradients with respect to the pixels (saliency, SmoothGrad, VarGrad, guided backpropagation,
  deconvolution, guided Grad-CAM, input x gradient, integrated gradients, GradientSHAP, DeepLIFT,
  FullGrad): back-propagated through every layer, each pixel's value is a sum of many terms of both
  signs, and the fine structure the map is read for goes (bf16 against fp32 on EfficientNet-Lite0,
  two shared photos: Pearson r 0.86 for saliency, 0.88 input x gradient, 0.92 integrated gradients);
- maps of differences between near-equal scores: occlusion, and Ablation-CAM's general path (its
  closed form on a GAP -> linear head has none).

The maps of the feature layer's activations and gradients (CAM, Grad-CAM and its family) and of
forward passes alone (Score-CAM, RISE, LIME, Kernel SHAP) move in their last digits (r >= 0.998 for
the CAM family on two shared photos with EfficientNet-Lite0; 1.0000 to four digits for the forward-only
methods on the built-in network), and a run's summary by a fraction of a point
(``benchmarks/gpu_check.py`` measures both).

Example:
    >>> import torch
    >>> with autocast(torch.device("cpu"), "bf16"):
    ...     y = torch.nn.Linear(4, 2)(torch.ones(1, 4))
    >>> y.dtype
    torch.bfloat16
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import torch

from xaibench.errors import XaibenchError

if TYPE_CHECKING:
    from xaibench.explainer import Explainer

#: Why the methods whose maps are gradients with respect to the pixels refuse a reduced precision.
PIXEL_GRADIENTS = (
    "its map is a gradient with respect to the pixels, back-propagated through every layer: each pixel's value is "
    "a sum of many terms of both signs, which 8 or 11 significant bits do not resolve (bf16 against fp32 on "
    "EfficientNet-Lite0: Pearson r 0.86 for saliency)"
)

#: ``--precision``: the network's precision; ``fp32`` is PyTorch's default and the reference.
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
FULL = "fp32"


def check_precision(precision: str, methods: Sequence[Explainer] = ()) -> None:
    """``--precision``: one of :data:`PRECISIONS`, and, below fp32, no method of ``methods`` that refuses
    reduced precision (:attr:`~xaibench.explainer.Explainer.full_precision_only`).

    Raises:
        XaibenchError: an unknown precision, or methods that refuse it (each named with its reason).
    """
    if precision not in PRECISIONS:
        raise XaibenchError(f"--precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    if precision == FULL:
        return
    refused = [m for m in methods if m.full_precision_only]
    if refused:
        reasons = "; ".join(f"{m.name} ({m.full_precision_only})" for m in refused)
        raise XaibenchError(
            f"--precision {precision} would change what these methods' maps mean: {reasons}; leave them out, or "
            f"run them with --precision {FULL}"
        )


def reduced() -> bool:
    """Whether the calling code runs under a reduced precision (``torch.autocast`` on the CPU or a GPU)."""
    return torch.is_autocast_enabled("cpu") or torch.is_autocast_enabled("cuda")


def compute_dtype(tensor: torch.Tensor) -> torch.dtype:
    """The dtype products of ``tensor`` are computed in here: autocast's on its device when it is on
    (and ``tensor`` is floating point), else its own (the lower of the two, in significant bits)."""
    own = tensor.dtype
    if tensor.is_floating_point() and torch.is_autocast_enabled(tensor.device.type):
        cast = torch.get_autocast_dtype(tensor.device.type)
        return cast if torch.finfo(cast).eps > torch.finfo(own).eps else own
    return own


@contextlib.contextmanager
def autocast(device: torch.device, precision: str) -> Iterator[None]:
    """``torch.autocast`` on ``device`` in ``precision``'s dtype for the block; nothing for fp32."""
    dtype = PRECISIONS[precision]
    if dtype is None:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield
