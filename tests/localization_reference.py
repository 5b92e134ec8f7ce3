"""The localization metrics of xaibench 0.3.0, one map at a time, kept verbatim as the reference that
the batched code in :mod:`xaibench.localization` and ``plugins/localization_metrics.py`` must equal
bit for bit (tests/test_localization_equivalence.py).

Nothing here is imported by xaibench; change it only to follow a deliberate change of definition.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy import ndimage

from xaibench.explainer import upsample_maps

_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)
CAM_TAU = 0.2
IOU_THRESHOLD = 0.5
POINTING_TOLERANCE = 15
CAM_THRESHOLDS = np.arange(0, 1, 0.01)
PXAP_EDGES = np.append(CAM_THRESHOLDS, [1.0, 2.0, 3.0])


def as_numpy(x: object) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def box_ious(boxes: np.ndarray, gt_boxes: np.ndarray) -> np.ndarray:
    a = np.asarray(boxes, dtype=np.float64).reshape(-1, 1, 4)
    b = np.asarray(gt_boxes, dtype=np.float64).reshape(1, -1, 4)
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]) + 1, 0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]) + 1, 0, None)
    inter = iw * ih
    area_a = (a[..., 2] - a[..., 0] + 1) * (a[..., 3] - a[..., 1] + 1)
    area_b = (b[..., 2] - b[..., 0] + 1) * (b[..., 3] - b[..., 1] + 1)
    return inter / (area_a + area_b - inter)


def box_iou(box: Sequence[float], gt_boxes: np.ndarray) -> np.ndarray:
    return box_ious(np.asarray(box, dtype=np.float64), gt_boxes)[0]


def largest_component_box(region: np.ndarray) -> tuple[int, int, int, int] | None:
    labels, count = ndimage.label(region, structure=_EIGHT_CONNECTED)
    if count == 0:
        return None
    sizes = np.bincount(labels.ravel())[1:]
    ys, xs = np.nonzero(labels == (int(np.argmax(sizes)) + 1))
    return int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())


def cam_box(saliency: np.ndarray, tau: float = CAM_TAU) -> tuple[int, int, int, int]:
    m = as_numpy(saliency).astype(np.float64)
    low, high = m.min(), m.max()
    m = (m - low) / (high - low) if high > low else np.ones_like(m)
    return largest_component_box(m >= tau)


def cam_box_iou(maps: object, gt_boxes: Sequence[object], tau: float = CAM_TAU) -> np.ndarray:
    maps = as_numpy(maps)
    return np.array(
        [box_iou(cam_box(m, tau), as_numpy(b)).max() for m, b in zip(maps, gt_boxes, strict=True)]
    )


def boxes_to_mask(boxes: object, shape: tuple[int, int]) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    for x0, y0, x1, y1 in as_numpy(boxes).reshape(-1, 4):
        x0, y0 = max(int(np.floor(x0)), 0), max(int(np.floor(y0)), 0)
        x1, y1 = int(np.floor(x1)), int(np.floor(y1))
        if x1 >= x0 and y1 >= y0:
            mask[y0 : y1 + 1, x0 : x1 + 1] = True
    return mask


def max_point(saliency: np.ndarray) -> tuple[int, int]:
    m = as_numpy(saliency)
    return tuple(int(v) for v in np.unravel_index(int(np.argmax(m)), m.shape))


def pointing_hit(saliency: np.ndarray, region: np.ndarray, tolerance: float = POINTING_TOLERANCE) -> bool:
    region = as_numpy(region).astype(bool)
    if not region.any():
        return False
    y, x = max_point(saliency)
    reach = int(np.ceil(tolerance))
    top, left = max(y - reach, 0), max(x - reach, 0)
    ys, xs = np.nonzero(region[top : y + reach + 1, left : x + reach + 1])
    return bool(ys.size) and bool(((ys + top - y) ** 2 + (xs + left - x) ** 2).min() < tolerance**2)


def wsol_boxes(scoremap: np.ndarray, thresholds: np.ndarray = CAM_THRESHOLDS) -> list[tuple[np.ndarray, int]]:
    import cv2

    height, width = scoremap.shape
    image = np.expand_dims((np.asarray(scoremap) * 255).astype(np.uint8), 2)
    peak = np.max(image)
    found = []
    for t in thresholds:
        _, binary = cv2.threshold(image, int(t * peak), 255, cv2.THRESH_BINARY)
        contours = cv2.findContours(binary, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[0]
        if len(contours) == 0:
            found.append((np.zeros((1, 4)), 0))
            continue
        boxes, areas = _contour_boxes_and_areas(contours)
        boxes[:, 2] = np.minimum(boxes[:, 2], width - 1)
        boxes[:, 3] = np.minimum(boxes[:, 3], height - 1)
        found.append((boxes, int(np.argmax(areas))))
    return found


def _contour_boxes_and_areas(contours: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.fromiter((len(c) for c in contours), dtype=np.int64, count=len(contours))
    points = np.concatenate(contours).reshape(-1, 2).astype(np.float64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    x, y = points[:, 0], points[:, 1]
    boxes = np.stack([
        np.minimum.reduceat(x, starts), np.minimum.reduceat(y, starts),
        np.maximum.reduceat(x, starts) + 1, np.maximum.reduceat(y, starts) + 1,
    ], axis=1)
    following = np.arange(len(points)) + 1
    following[starts + lengths - 1] = starts
    cross = x * y[following] - x[following] * y
    areas = np.abs(np.add.reduceat(cross, starts)) / 2
    return boxes, areas


def box_iou_curves(scoremap: np.ndarray, gt_boxes: object) -> tuple[np.ndarray, np.ndarray]:
    gt = as_numpy(gt_boxes).astype(np.float64).reshape(-1, 4)
    v1, v2 = [], []
    for boxes, largest in wsol_boxes(scoremap):
        ious = box_ious(boxes, gt).max(1)
        v1.append(ious[largest])
        v2.append(ious.max())
    return np.array(v1), np.array(v2)


def pxap_histograms(scoremap: np.ndarray, mask: np.ndarray) -> np.ndarray:
    scoremap, mask = np.asarray(scoremap), as_numpy(mask).astype(bool)
    return np.stack([
        np.histogram(scoremap[mask], bins=PXAP_EDGES)[0],
        np.histogram(scoremap[~mask], bins=PXAP_EDGES)[0],
    ])


def energy_pointing(saliency: np.ndarray, region: np.ndarray) -> float:
    m = np.asarray(saliency, dtype=np.float64)
    total = m.sum()
    return float(m[as_numpy(region).astype(bool)].sum() / total) if total > 0 else float("nan")


# ------------------------------------------------- the plugins' per-image loops (localization_metrics.py)


def _regions(batch) -> tuple[list[np.ndarray], list[np.ndarray]]:
    shape = batch.maps.shape[-2:]
    box_regions = [boxes_to_mask(b, shape) for b in batch.boxes]
    regions = [as_numpy(m) if m is not None else r for m, r in zip(batch.masks, box_regions)]
    return regions, box_regions


def _pointing_frame(batch, k: int, resolution: str) -> tuple[np.ndarray, np.ndarray]:
    original = batch.originals[k] if batch.originals is not None else None
    if original is None or resolution == "input":
        return batch.maps[k], _regions(batch)[0][k]
    own = batch.native_maps[k] if batch.native_maps is not None else batch.maps[k]
    saliency = upsample_maps(torch.from_numpy(np.ascontiguousarray(own, dtype=np.float32)[None]), original.size)[0].numpy()
    if original.mask is not None:
        return saliency, as_numpy(original.mask)
    return saliency, boxes_to_mask(original.boxes, original.size)


def columns(batch, *, tau: float = CAM_TAU, tolerance: float = POINTING_TOLERANCE, resolution: str = "file") -> dict:
    """Every per-image column the default localization metrics wrote for ``batch`` (a MetricInput)."""
    ious = cam_box_iou(batch.maps, batch.boxes, tau)
    correct = ious >= IOU_THRESHOLD
    top1 = batch.top5[:, 0] == batch.labels
    in_top5 = (batch.top5 == batch.labels[:, None]).any(1)
    label = batch.target == "label"
    curves = [box_iou_curves(m, b) for m, b in zip(batch.maps, batch.boxes)]
    hits = np.full(len(batch), np.nan)
    for k, difficult in enumerate(batch.difficult):
        if bool(np.asarray(difficult).all()):
            continue
        saliency, region = _pointing_frame(batch, k, resolution)
        hits[k] = pointing_hit(saliency, region, tolerance)
    _, box_regions = _regions(batch)
    return {
        "top1_cls": top1.astype(np.float64),
        "gt_known_loc": correct.astype(np.float64) if label else np.full(len(batch), np.nan),
        "top1_loc": (top1 & correct).astype(np.float64),
        "top5_loc": (in_top5 & correct).astype(np.float64) if label else np.full(len(batch), np.nan),
        "mean_iou": ious,
        "box_iou_curve": [v1 for v1, _ in curves],
        "box_iou_curve_v2": [v2 for _, v2 in curves],
        "pxap_hist": [pxap_histograms(m, mask) if mask is not None else None for m, mask in zip(batch.maps, batch.masks)],
        "pointing": hits,
        "energy_pointing": [energy_pointing(m, r) for m, r in zip(batch.maps, box_regions)],
    }
