"""Localization metrics: pure functions of maps and ground truth.

No model and no explainer is seen here. Maps are (H, W) or (N, H, W) arrays or tensors, already at
the image's resolution. Boxes are ``(x0, y0, x1, y1)`` with inclusive pixel corners, as in ILSVRC and
wsolevaluation, so a box covers ``(x1 - x0 + 1) * (y1 - y0 + 1)`` pixels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def as_numpy(x: object) -> np.ndarray:
    """A numpy view of an array or a (CPU or GPU) tensor."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def box_iou(box: Sequence[float], gt_boxes: np.ndarray) -> np.ndarray:
    """Intersection over union of one box with each of ``gt_boxes`` (K, 4), inclusive corners.

    ``IoU = |A n B| / (|A| + |B| - |A n B|)`` with ``|A| = (x1 - x0 + 1) * (y1 - y0 + 1)``, the
    ILSVRC / wsolevaluation convention.
    """
    gt = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    x0, y0, x1, y1 = (float(v) for v in box)
    iw = np.clip(np.minimum(x1, gt[:, 2]) - np.maximum(x0, gt[:, 0]) + 1, 0, None)
    ih = np.clip(np.minimum(y1, gt[:, 3]) - np.maximum(y0, gt[:, 1]) + 1, 0, None)
    inter = iw * ih
    area = (x1 - x0 + 1) * (y1 - y0 + 1)
    gt_area = (gt[:, 2] - gt[:, 0] + 1) * (gt[:, 3] - gt[:, 1] + 1)
    return inter / (area + gt_area - inter)


def largest_component_box(region: np.ndarray) -> tuple[int, int, int, int] | None:
    """Tight box (inclusive corners) around the largest 8-connected component of a boolean map.

    Ties in size go to the component met first in row-major order. None for an empty region.
    """
    labels, count = ndimage.label(region, structure=_EIGHT_CONNECTED)
    if count == 0:
        return None
    sizes = np.bincount(labels.ravel())[1:]
    ys, xs = np.nonzero(labels == (int(np.argmax(sizes)) + 1))
    return int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())


def cam_box(saliency: np.ndarray, tau: float = 0.2) -> tuple[int, int, int, int]:
    """The CAM paper's box for one map (Zhou et al. 2016, Sec. 3.1).

    Min-max normalise the map to [0, 1], keep the pixels ``>= tau`` (20% of the maximum by default),
    and box the largest connected component. A flat map keeps every pixel, so its box is the image.
    """
    m = as_numpy(saliency).astype(np.float64)
    low, high = m.min(), m.max()
    m = (m - low) / (high - low) if high > low else np.ones_like(m)
    return largest_component_box(m >= tau)


def cam_box_iou(maps: object, gt_boxes: Sequence[object], tau: float = 0.2) -> np.ndarray:
    """Per image, the IoU of :func:`cam_box` with the best-matching ground-truth box.

    ``IoU_i = max_k IoU(cam_box(M_i, tau), B_ik)``; localization is correct when it is >= 0.5.
    """
    maps = as_numpy(maps)
    return np.array(
        [box_iou(cam_box(m, tau), as_numpy(b)).max() for m, b in zip(maps, gt_boxes, strict=True)]
    )


def boxes_to_mask(boxes: object, shape: tuple[int, int]) -> np.ndarray:
    """Boolean (H, W) union of the boxes' pixels (inclusive corners, clipped to the image)."""
    mask = np.zeros(shape, dtype=bool)
    for x0, y0, x1, y1 in as_numpy(boxes).reshape(-1, 4):
        x0, y0 = max(int(np.floor(x0)), 0), max(int(np.floor(y0)), 0)
        mask[y0 : int(np.floor(y1)) + 1, x0 : int(np.floor(x1)) + 1] = True
    return mask


def max_point(saliency: np.ndarray) -> tuple[int, int]:
    """``(y, x)`` of the map's maximum; among ties, the first in row-major order."""
    m = as_numpy(saliency)
    return tuple(int(v) for v in np.unravel_index(int(np.argmax(m)), m.shape))


def pointing_hit(saliency: np.ndarray, region: np.ndarray, tolerance: float = 15) -> bool:
    """Pointing game (Zhang et al., ECCV 2016, "Top-down Neural Attention by Excitation Backprop").

    As TorchRay implements it: a hit when a pixel of the ground-truth ``region`` (H, W) bool lies
    *strictly* closer than ``tolerance`` pixels to the map's maximum,
    ``min_{p in region} ||argmax M - p||^2 < tolerance^2``; ties for the maximum go to the first pixel
    in row-major order. An empty region is a miss.
    """
    region = as_numpy(region).astype(bool)
    if not region.any():
        return False
    y, x = max_point(saliency)
    ys, xs = np.nonzero(region)
    return bool(((ys - y) ** 2 + (xs - x) ** 2).min() < tolerance**2)


def pointing_hits(
    maps: object, regions: Sequence[object], tolerance: float = 15
) -> np.ndarray:
    """:func:`pointing_hit` for each map of a batch (N, H, W) and its region."""
    return np.array(
        [pointing_hit(m, r, tolerance) for m, r in zip(as_numpy(maps), regions, strict=True)]
    )
