"""Every map a run scored, kept for later analysis (``xaibench run --keep-maps SIDE[:DTYPE]``).

A run keeps small thumbnails of its maps for its reports (:mod:`xaibench.thumbnails`: at most 96 pixels,
8-bit). For analysis after the run (another metric, maps compared across methods or models, a figure of
any image), ``--keep-maps`` keeps every scored map at a stated resolution and dtype in the run's table
``kept_maps/`` (one row per (model, index, method): ``map``, a 2-d array):

- the map is the one the metrics scored: the method's map upsampled to the model's input and min-max
  scaled to [0, 1] (:meth:`xaibench.explainer.Explainer.explain`);
- resized so that its longer side is ``side`` pixels (the other in proportion, at least 1): area
  averaging where it shrinks, bilinear interpolation (``align_corners=False``) where it grows;
  ``full`` keeps the model's input size;
- stored as ``float32`` (as scored), ``float16`` (the default: relative error at most 2**-11, 2 bytes a
  pixel) or ``uint8`` (``round(255 * m)``, 1 byte a pixel);
- a map with NaN or inf (``status`` ``nonfinite``) is not a map: its cell is empty.

Storage: ``side**2 * bytes`` per (image, method) before compression; 50,000 images x 3 methods at
``224:float16`` is 15 GB, at ``56:uint8`` 0.5 GB.

Example:
    >>> keep = parse_keep_maps("56:uint8")
    >>> keep.side, keep.dtype
    (56, 'uint8')
    >>> kept_map_cells(np.ones((2, 224, 224), np.float32), np.array([True, False]), keep)[0].shape
    (56, 56)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from xaibench.errors import XaibenchError

#: The dtypes a kept map may have, and the default.
DTYPES = ("float16", "float32", "uint8")
DEFAULT_DTYPE = "float16"
#: ``side`` for the model's input size.
FULL = "full"
#: The longest side a kept map may have (as the thumbnails' full-size maps).
MAX_SIDE = 4096
#: The columns of ``kept_maps/``.
KEPT_MAP_COLUMNS = ["model", "index", "method", "map"]


@dataclass(frozen=True)
class KeepMaps:
    """How a run keeps its maps: the longer side in pixels (None: the model's input size) and the dtype."""

    side: int | None = None
    dtype: str = DEFAULT_DTYPE

    def describe(self) -> dict:
        """As ``config.json`` records it."""
        return {"side": FULL if self.side is None else self.side, "dtype": self.dtype}


def parse_keep_maps(text: str) -> KeepMaps:
    """``SIDE[:DTYPE]`` (``224``, ``56:uint8``, ``full:float32``) as a :class:`KeepMaps`.

    Raises:
        XaibenchError: a side that is not ``full`` or a whole number in [1, 4096], or another dtype.
    """
    side_text, _, dtype = str(text).strip().partition(":")
    dtype = dtype.strip() or DEFAULT_DTYPE
    side_text = side_text.strip()
    problem = None
    if dtype not in DTYPES:
        problem = f"its dtype is {dtype!r}, not one of {', '.join(DTYPES)}"
    elif side_text != FULL and not (side_text.isdigit() and 1 <= int(side_text) <= MAX_SIDE):
        problem = f"its side is {side_text!r}, not {FULL} or a whole number of pixels in [1, {MAX_SIDE}]"
    if problem:
        raise XaibenchError(f"--keep-maps takes SIDE[:DTYPE], e.g. 224 or 56:uint8; {text!r}: {problem}")
    return KeepMaps(None if side_text == FULL else int(side_text), dtype)


def kept_size(height: int, width: int, side: int | None) -> tuple[int, int]:
    """(h, w) of a kept map of a ``height`` x ``width`` map: its longer side ``side`` (None: as it is)."""
    if side is None:
        return height, width
    scale = side / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def kept_map_cells(maps: np.ndarray, finite: np.ndarray, keep: KeepMaps) -> list[np.ndarray | None]:
    """The cells of (N, H, W) scored maps in [0, 1]: each resized and cast as ``keep`` says; None where
    ``finite`` is False."""
    size = kept_size(maps.shape[1], maps.shape[2], keep.side)
    resized = torch.as_tensor(np.nan_to_num(maps, nan=0.0, posinf=0.0, neginf=0.0), dtype=torch.float32)[:, None]
    if size != tuple(maps.shape[1:]):
        grown = size[0] > maps.shape[1] or size[1] > maps.shape[2]
        resized = F.interpolate(
            resized, size=size, **({"mode": "bilinear", "align_corners": False} if grown else {"mode": "area"})
        )
    resized = resized[:, 0].clamp(0, 1)
    if keep.dtype == "uint8":
        cells = (resized * 255).round().to(torch.uint8).numpy()
    else:
        cells = resized.numpy().astype(keep.dtype)
    return [cells[k] if finite[k] else None for k in range(len(cells))]


def kept_map_rows(
    model: str, indices: Sequence[int], method: str, maps: np.ndarray, finite: np.ndarray, keep: KeepMaps
) -> pd.DataFrame:
    """The rows of ``kept_maps/`` for one method on a batch (the images ``indices``, their maps)."""
    return pd.DataFrame({"model": model, "index": list(indices), "method": method,
                         "map": kept_map_cells(maps, finite, keep)}, columns=KEPT_MAP_COLUMNS)
