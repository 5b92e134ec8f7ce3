"""Small copies of a run's images and maps, kept so that reports can show them without the data set
or the model.

A run's report draws galleries (each method's best and worst images, a few images per class) long after
the run, possibly on another machine, for methods that take minutes per image. So the harness keeps,
beside the numbers, a thumbnail of every image it scored (JPEG, with its ground-truth boxes and class
name) and of every map (8-bit grey levels), each at most :data:`THUMBNAIL_SIDE` pixels on its longer
side, in two append-only journals of the run's folder: ``images.csv`` and ``maps.csv``.
A map thumbnail is the scored map (upsampled and min-max scaled), area-averaged down and rounded to
1/255: for looking at, never for scoring.

The maps of the first :data:`FIGURE_IMAGES` readable images of the data set are kept at full size
(the size the model saw; the harness says which), so that the run's overlay figure shows the maps
that were scored without running the methods again (for SS-CAM on an ImageNet network, minutes per
image). Readers that draw a map over an image thumbnail resize it with :func:`map_image`.
"""

from __future__ import annotations

import io
from collections.abc import Collection, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from PIL import Image

from xaibench.errors import XaibenchError
from xaibench.text import displayable

#: The longer side of a thumbnail, in pixels (smaller images are kept at their size).
THUMBNAIL_SIDE = 96
#: JPEG quality of the image thumbnails.
JPEG_QUALITY = 90
#: The run's overlay figure shows the first this many readable images; their maps are kept at full size.
FIGURE_IMAGES = 6

IMAGE_COLUMNS = ["model", "index", "image_id", "label", "class_name", "height", "width", "boxes", "jpeg",
                 "photo_height", "photo_width"]
#: The columns of ``images`` that xaibench 0.4 did not write: the size of the photo before the
#: protocol resized it to the model's input (its aspect ratio, for showing the thumbnail).
PHOTO_SIZE_COLUMNS = ["photo_height", "photo_width"]
MAP_COLUMNS = ["model", "index", "method", "map"]


def thumbnail_size(height: int, width: int, side: int = THUMBNAIL_SIDE) -> tuple[int, int]:
    """(h, w) of the thumbnail of an image of ``height`` x ``width``: the longer side at most ``side``."""
    scale = min(1.0, side / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def _shrink(tensor: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) area-averaged down to the thumbnail size (unchanged if already small enough)."""
    size = thumbnail_size(*tensor.shape[-2:])
    if size == tuple(tensor.shape[-2:]):
        return tensor
    return F.interpolate(tensor, size=size, mode="area")


def encode_jpeg(image: np.ndarray) -> np.ndarray:
    """(h, w, 3) uint8 RGB -> the bytes of a JPEG file, as a uint8 array (for a journal's array column)."""
    buffer = io.BytesIO()
    Image.fromarray(image, mode="RGB").save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return np.frombuffer(buffer.getvalue(), dtype=np.uint8)


def decode_jpeg(data: np.ndarray) -> np.ndarray:
    """The inverse of :func:`encode_jpeg`: (h, w, 3) float32 RGB in [0, 1]. (Decoded with OpenCV, so the
    pixel limit a run sets on PIL for the data set's files does not apply to the run's own thumbnails.)"""
    import cv2

    data = np.asarray(data, dtype=np.uint8)
    size = jpeg_size(data.tobytes())  # first: a crafted thumbnail must not make the decoder allocate gigabytes
    if size is None or max(size) > THUMBNAIL_SIDE:
        shown = "not a JPEG" if size is None else f"a JPEG of {size[1]} x {size[0]} pixels"
        raise XaibenchError(f"a thumbnail of the run is {shown}, where a JPEG of at most {THUMBNAIL_SIDE} pixels a "
                            "side belongs; the run's images.csv is damaged: delete that line or run again with --overwrite")
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if bgr is None:
        raise XaibenchError("a thumbnail of the run cannot be decoded; the run's images.csv is damaged: delete that "
                            "line or run again with --overwrite")
    return np.ascontiguousarray(bgr[..., ::-1], dtype=np.float32) / 255.0


def jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(height, width) from a JPEG's frame header (its first SOF marker), without decoding it; None when
    ``data`` is not a JPEG with one."""
    if data[:2] != b"\xff\xd8":
        return None
    k = 2
    while k + 4 <= len(data):
        if data[k] != 0xFF:
            return None
        marker, length = data[k + 1], int.from_bytes(data[k + 2:k + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # start of frame: P, Y, X
            if k + 9 > len(data):
                return None
            return int.from_bytes(data[k + 5:k + 7], "big"), int.from_bytes(data[k + 7:k + 9], "big")
        if length < 2:
            return None
        k += 2 + length
    return None


def image_rows(
    model: str,
    indices: Sequence[int],
    ids: Sequence[str],
    images: torch.Tensor,
    labels: Sequence[int],
    boxes: Sequence[torch.Tensor],
    class_names: Sequence[str],
    photo_sizes: Sequence[tuple[int, int] | None] | None = None,
) -> pd.DataFrame:
    """The rows of ``images.csv`` for a batch: each image's JPEG thumbnail, its size as the model saw it,
    its boxes (inclusive corners, in pixels of that size), its class name, and the (height, width) of
    its photo before it was resized (``photo_sizes``; None, or missing: the size the model saw)."""
    small = (_shrink(images.detach().float().cpu()).clamp(0, 1) * 255).round().to(torch.uint8)
    height, width = images.shape[-2:]
    sizes = [size or (int(height), int(width)) for size in (photo_sizes or [None] * len(indices))]
    return pd.DataFrame(
        {
            "model": model,
            "index": list(indices),
            "image_id": [displayable(i) for i in ids],
            "label": [int(k) for k in labels],
            "class_name": [displayable(class_names[int(k)]) if 0 <= int(k) < len(class_names) else str(int(k))
                           for k in labels],
            "height": int(height),
            "width": int(width),
            "boxes": [b.detach().cpu().numpy().astype(np.float32).reshape(-1, 4) for b in boxes],
            "jpeg": [encode_jpeg(im.permute(1, 2, 0).numpy()) for im in small],
            "photo_height": [int(h) for h, _ in sizes],
            "photo_width": [int(w) for _, w in sizes],
        }
    )


def photo_size(row) -> tuple[int, int]:
    """The (height, width) of the photo an ``images`` row shows: its file's size where the run kept it
    (xaibench 0.5 and later), else the size the model saw."""
    height, width = (getattr(row, c, None) for c in PHOTO_SIZE_COLUMNS)
    if height is None or width is None or pd.isna(height) or pd.isna(width) or height < 1 or width < 1:
        return int(row.height), int(row.width)
    return int(height), int(width)


def map_rows(
    model: str, indices: Sequence[int], method: str, maps: np.ndarray, full_size: Collection[int] = ()
) -> pd.DataFrame:
    """The rows of ``maps.csv`` for one method on a batch: (N, H, W) maps in [0, 1] -> uint8 cells,
    thumbnails except for the images whose index is in ``full_size`` (kept at their size)."""
    full = torch.as_tensor(np.nan_to_num(maps, nan=0.0), dtype=torch.float32)[:, None]
    small = _shrink(full)[:, 0]
    cells = [
        _quantise(full[k, 0] if index in full_size else small[k]).numpy() for k, index in enumerate(indices)
    ]
    return pd.DataFrame({"model": model, "index": list(indices), "method": method, "map": cells})


def _quantise(saliency: torch.Tensor) -> torch.Tensor:
    return (saliency.clamp(0, 1) * 255).round().to(torch.uint8)


def at_own_aspect(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """An image thumbnail (h, w, 3), kept from the model's input (square for most models), resized to
    the aspect ratio of the ``height`` x ``width`` photo it shows, its longer side kept (bilinear,
    antialiased): a 451 x 300 photo's 96 x 96 thumbnail is shown 96 x 64.

    Example:
        >>> at_own_aspect(np.zeros((96, 96, 3), np.float32), 300, 451).shape
        (64, 96, 3)
    """
    size = thumbnail_size(int(height), int(width), side=max(image.shape[:2]))
    if size == tuple(image.shape[:2]):
        return image
    tensor = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1)[None]
    resized = F.interpolate(tensor, size=size, mode="bilinear", align_corners=False, antialias=True)
    return resized[0].permute(1, 2, 0).clamp(0, 1).numpy()


def map_image(cell: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
    """A ``maps.csv`` cell as a float map in [0, 1], resized to ``size`` (h, w) if given: area-averaged
    down (as the thumbnails are made) or, if either side grows, bilinearly (a thumbnail drawn over a
    larger image)."""
    saliency = np.asarray(cell, dtype=np.float32) / 255.0
    if size is None or tuple(size) == saliency.shape:
        return saliency
    grown = size[0] > saliency.shape[0] or size[1] > saliency.shape[1]
    resized = F.interpolate(
        torch.from_numpy(saliency)[None, None], size=tuple(size),
        **({"mode": "bilinear", "align_corners": False} if grown else {"mode": "area"}),
    )
    return resized[0, 0].clamp(0, 1).numpy()


def latest(rows: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """``rows`` with one row per ``keys`` (the last written: a resumed run may have written one twice)."""
    return rows.drop_duplicates(subset=list(keys), keep="last").reset_index(drop=True)
