"""How many copies of an image go through the network in one pass when a method's batch option is None.

Score-CAM, RISE, occlusion, LIME, Kernel SHAP, integrated gradients, SmoothGrad and the deletion and
insertion metrics run the network on many perturbed, masked or noisy copies of each image, a batch of
``batch_size`` copies a pass. Left as None, the batch size is chosen by the device the model is on:

- **CPU**: a fixed number of input pixels a pass (:data:`~xaibench.options.PASS_PIXELS`, 4 copies at
  224 x 224; :data:`~xaibench.options.GRADIENT_PASS_PIXELS` for forward and backward passes, 8 at
  224 x 224), the fastest on a CPU: small passes stay in its caches.
- **CUDA GPU**: as many copies as :data:`GPU_MEMORY_SHARE` of the GPU's free memory holds, at most
  :data:`MAX_GPU_ROWS`. What one copy costs is measured once per (network, input size, pass kind) on
  the device: the peak memory of a pass on ``PROBE_ROWS[1]`` copies less that on ``PROBE_ROWS[0]``,
  per copy (the network's weights and fixed workspace cancel out). With bytes_per_row that cost and
  free the free memory (what the device has free plus what PyTorch's allocator holds unused)::

      rows = clamp(floor(GPU_MEMORY_SHARE * free / bytes_per_row), 1, MAX_GPU_ROWS)

A method's maps do not depend on its batch size (each copy's noise or mask is drawn per image and
per copy, not per batch), so the choice moves time and memory only. An explicit ``batch_size``
always wins. ``benchmarks/gpu_check.py`` prints the sizes chosen on its GPU.

Example:
    >>> from xaibench.models import load_model
    >>> builtin = load_model("builtin")  # 64 x 64, on the CPU
    >>> pass_batch_size("batch_size", None, builtin), pass_batch_size("batch_size", None, builtin, backward=True)
    (49, 98)
    >>> pass_batch_size("batch_size", 8, builtin)
    8
"""

from __future__ import annotations

import weakref

import torch

from xaibench import options
from xaibench.models import Model, eval_mode

#: The share of a GPU's free memory that one pass of a method's default batch may take; the rest is
#: left for the run's images, the method's masks and the metrics' own passes.
GPU_MEMORY_SHARE = 0.5

#: The most copies a default batch holds on a GPU: past a few hundred 224 x 224 copies a pass, a GPU's
#: throughput no longer grows, and the last batch of a method with few passes would be mostly padding.
MAX_GPU_ROWS = 256

#: The two batch sizes whose peak memories' difference gives what one copy costs on a GPU.
PROBE_ROWS = (1, 3)

_BYTES_PER_ROW: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # network -> {(size, backward, device): bytes}


def pass_batch_size(
    name: str, value: object, model: Model, *, backward: bool = False, input_size: tuple[int, int] | None = None
) -> int:
    """``value`` if it is an integer >= 1 (else an :class:`~xaibench.errors.OptionError` naming
    ``name``); for None, :func:`default_rows`."""
    if value is not None:
        return options.integer(name, value, 1)
    return default_rows(model, backward=backward, input_size=input_size)


def default_rows(model: Model, *, backward: bool = False, input_size: tuple[int, int] | None = None) -> int:
    """Copies of a ``input_size`` image (default: the model's) a pass of ``model``'s network runs on by
    default on its device: forward passes only, or forward and backward (``backward``)."""
    size = tuple(input_size or model.input_size)
    device = model.device
    if device.type != "cuda":
        pixels = options.GRADIENT_PASS_PIXELS if backward else options.PASS_PIXELS
        return options.pass_batch_size("batch_size", None, size, pixels)
    per_row = bytes_per_row(model, size, backward=backward)
    free, _ = torch.cuda.mem_get_info(device)
    free += torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    return gpu_rows(free, per_row)


def gpu_rows(free_bytes: int, bytes_per_row: int) -> int:
    """``clamp(floor(GPU_MEMORY_SHARE * free_bytes / bytes_per_row), 1, MAX_GPU_ROWS)``.

    >>> gpu_rows(40 * 2**30, 100 * 2**20)  # 40 GiB free, 100 MiB a copy: 204 copies
    204
    >>> gpu_rows(2**30, 2**31), gpu_rows(2**40, 1)
    (1, 256)
    """
    return max(1, min(MAX_GPU_ROWS, int(GPU_MEMORY_SHARE * free_bytes // max(1, bytes_per_row))))


def bytes_per_row(model: Model, input_size: tuple[int, int], *, backward: bool = False) -> int:
    """What one more copy of a ``input_size`` image adds to the peak memory of a pass of the network
    on its CUDA device (with the backward pass to the input if ``backward``), measured once and kept
    for as long as the network lives."""
    device = model.device
    key = (tuple(input_size), backward, str(device))
    known = _BYTES_PER_ROW.setdefault(model.network, {})
    if key not in known:
        peaks = [_peak_bytes(model, rows, input_size, backward) for rows in PROBE_ROWS]
        known[key] = max(1, (peaks[1] - peaks[0]) // (PROBE_ROWS[1] - PROBE_ROWS[0]))
    return known[key]


def _peak_bytes(model: Model, rows: int, input_size: tuple[int, int], backward: bool) -> int:
    """The peak memory allocated on the model's CUDA device by one pass on ``rows`` zero images, above
    what was allocated before it."""
    device = model.device
    torch.cuda.synchronize(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    images = torch.zeros(rows, 3, *input_size, device=device, requires_grad=backward)
    with eval_mode(model.network), torch.set_grad_enabled(backward):
        logits = model(images)
        if backward:
            torch.autograd.grad(logits[:, 0].sum(), images)
    del logits, images
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - before
