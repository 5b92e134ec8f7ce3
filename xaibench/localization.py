"""Localization metrics: pure functions of maps and ground truth (the metric plugins call them).

No model and no explainer is seen here. Maps are (H, W) or (N, H, W) arrays or tensors, already at
the image's resolution. Boxes are ``(x0, y0, x1, y1)`` with inclusive pixel corners, as in ILSVRC and
wsolevaluation, so a box covers ``(x1 - x0 + 1) * (y1 - y0 + 1)`` pixels.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from xaibench.errors import XaibenchError

#: The CAM paper's box threshold (Zhou et al. 2016, Sec. 3.1: "above 20% of the max value"), applied
#: to the min-max scaled map: pixels >= 0.2 (:func:`cam_box`).
CAM_TAU = 0.2
#: The IoU at which a box counts as right (the CAM paper's and ILSVRC's rule; MaxBoxAcc's V1).
IOU_THRESHOLD = 0.5
#: The pointing game's tolerance in pixels (Zhang et al. 2016; TorchRay's default).
POINTING_TOLERANCE = 15


def as_numpy(x: object) -> np.ndarray:
    """A numpy view of an array or a (CPU or GPU) tensor."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def box_ious(boxes: np.ndarray, gt_boxes: np.ndarray) -> np.ndarray:
    """(k, m) IoUs of ``boxes`` (k, 4) with ``gt_boxes`` (m, 4); inclusive corners, as :func:`box_iou`."""
    a = np.asarray(boxes, dtype=np.float64).reshape(-1, 1, 4)
    b = np.asarray(gt_boxes, dtype=np.float64).reshape(1, -1, 4)
    return _iou(a, b)


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoUs of float64 boxes ``a`` and ``b`` (..., 4), broadcast against each other (inclusive corners)."""
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]) + 1, 0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]) + 1, 0, None)
    inter = iw * ih
    area_a = (a[..., 2] - a[..., 0] + 1) * (a[..., 3] - a[..., 1] + 1)
    area_b = (b[..., 2] - b[..., 0] + 1) * (b[..., 3] - b[..., 1] + 1)
    return inter / (area_a + area_b - inter)


def box_iou(box: Sequence[float], gt_boxes: np.ndarray) -> np.ndarray:
    """Intersection over union of one box with each of ``gt_boxes`` (K, 4), inclusive corners.

    ``IoU = |A n B| / (|A| + |B| - |A n B|)`` with ``|A| = (x1 - x0 + 1) * (y1 - y0 + 1)``, the
    ILSVRC / wsolevaluation convention.
    """
    return box_ious(np.asarray(box, dtype=np.float64), gt_boxes)[0]


def largest_component_box(region: np.ndarray) -> tuple[int, int, int, int] | None:
    """Tight box (inclusive corners) around the largest 8-connected component of a boolean map.

    Ties in size go to the component met first in row-major order. None for an empty region.

    Example:
        >>> largest_component_box(np.array([[1, 0, 0], [0, 0, 1], [0, 1, 1]], dtype=bool))
        (1, 1, 2, 2)
    """
    boxes, found = _largest_component_boxes(np.asarray(region, dtype=bool)[None])
    return tuple(int(v) for v in boxes[0]) if found[0] else None


#: 8-connectivity within each map of a stack, none across maps: labels each (H, W) map of an
#: (N, H, W) stack as it would be labelled alone, numbered on from the maps before it.
_EIGHT_CONNECTED_PER_MAP = np.zeros((3, 3, 3), dtype=bool)
_EIGHT_CONNECTED_PER_MAP[1] = True


def _largest_component_boxes(regions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`largest_component_box` of each (H, W) boolean map of ``regions`` (N, H, W), all at once.

    Returns:
        (N, 4) int64 boxes ``x0, y0, x1, y1`` (zeros where the map is empty) and (N,) whether the map
        has a component.
    """
    n, height, width = regions.shape
    labels, _ = ndimage.label(regions, structure=_EIGHT_CONNECTED_PER_MAP)
    last = np.maximum.accumulate(labels.reshape(n, -1).max(1, initial=0))  # map k's labels: first[k]+1 .. last[k]
    first = np.concatenate([[0], last[:-1]])
    found = last > first
    sizes = np.bincount(labels.ravel())[1:]
    chosen = np.full(n, -1, dtype=np.int64)
    # ndimage numbers components in row-major order of their first pixel: the first largest is the tie's winner.
    chosen[found] = _first_argmax(sizes, np.append(first[found], last[-1] if n else 0)) + 1
    chosen_pixels = labels == chosen[:, None, None]
    rows, cols = chosen_pixels.any(2), chosen_pixels.any(1)
    boxes = np.stack(
        [cols.argmax(1), rows.argmax(1), width - 1 - cols[:, ::-1].argmax(1), height - 1 - rows[:, ::-1].argmax(1)],
        axis=1,
    ).astype(np.int64)
    boxes[~found] = 0
    return boxes, found


def _cam_regions(maps: np.ndarray, tau: float) -> np.ndarray:
    """The pixels the CAM box keeps, per map of ``maps`` (N, H, W): min-max scaled, ``>= tau``."""
    m = np.array(as_numpy(maps), dtype=np.float64)  # a copy, scaled in place
    low, high = m.min(axis=(-2, -1), keepdims=True), m.max(axis=(-2, -1), keepdims=True)
    varied = high > low
    m -= low
    m /= np.where(varied, high - low, 1.0)
    regions = m >= tau
    regions[~varied[..., 0, 0]] = np.float64(1.0) >= tau  # a flat map scales to ones
    return regions


def cam_box(saliency: np.ndarray, tau: float = CAM_TAU) -> tuple[int, int, int, int]:
    """The CAM paper's box for one map (Zhou et al. 2016, Sec. 3.1).

    Min-max normalise the map to [0, 1], keep the pixels ``>= tau`` (0.2 by default: the paper's "20% of
    the max value", on the scaled map), and box the largest connected component. A flat map keeps every
    pixel, so its box is the image.

    Example:
        >>> m = np.zeros((6, 8)); m[1:3, 2:5] = 1.0
        >>> cam_box(m)
        (2, 1, 4, 2)
    """
    return largest_component_box(_cam_regions(as_numpy(saliency)[None], tau)[0])


def cam_box_iou(maps: object, gt_boxes: Sequence[object], tau: float = CAM_TAU) -> np.ndarray:
    """Per image, the IoU of :func:`cam_box` with the best-matching ground-truth box.

    ``IoU_i = max_k IoU(cam_box(M_i, tau), B_ik)``; localization is correct when it is >= 0.5. The
    maps (N, H, W) are scaled, thresholded and labelled as one stack.

    Example:
        >>> m = np.zeros((1, 10, 10)); m[0, 2:6, 2:6] = 1.0
        >>> cam_box_iou(m, [np.array([[2, 2, 5, 5], [0, 0, 9, 9]])]).tolist()
        [1.0]
    """
    maps = as_numpy(maps)
    if len(maps) != len(gt_boxes):
        raise XaibenchError(f"cam_box_iou got {len(maps)} maps and ground truth for {len(gt_boxes)} images; give one per map")
    if not len(maps):
        return np.zeros(0)
    boxes, found = _largest_component_boxes(_cam_regions(maps, tau))
    if not found.all():
        raise XaibenchError(
            f"map {int(np.argmin(found))} keeps no pixel at tau={tau}: the CAM box needs a finite map and tau <= 1"
        )
    gts = [as_numpy(b).astype(np.float64).reshape(-1, 4) for b in gt_boxes]
    counts = np.array([len(g) for g in gts])
    if not counts.all():
        raise XaibenchError(f"image {int(np.argmin(counts))} has no ground-truth box: the CAM box's IoU needs one")
    ious = _iou(boxes.astype(np.float64)[np.repeat(np.arange(len(maps)), counts)], np.concatenate(gts))
    return np.maximum.reduceat(ious, np.concatenate([[0], np.cumsum(counts)[:-1]]))


def boxes_to_mask(boxes: object, shape: tuple[int, int]) -> np.ndarray:
    """Boolean (H, W) union of the boxes' pixels (inclusive corners, clipped to the image)."""
    mask = np.zeros(shape, dtype=bool)
    for x0, y0, x1, y1 in as_numpy(boxes).reshape(-1, 4):
        x0, y0 = max(int(np.floor(x0)), 0), max(int(np.floor(y0)), 0)
        x1, y1 = int(np.floor(x1)), int(np.floor(y1))
        if x1 >= x0 and y1 >= y0:  # a box wholly left of or above the image marks nothing
            mask[y0 : y1 + 1, x0 : x1 + 1] = True
    return mask


def max_point(saliency: np.ndarray) -> tuple[int, int]:
    """``(y, x)`` of the map's maximum; among ties, the first in row-major order."""
    m = as_numpy(saliency)
    return tuple(int(v) for v in np.unravel_index(int(np.argmax(m)), m.shape))


def pointing_hit(saliency: np.ndarray, region: np.ndarray, tolerance: float = POINTING_TOLERANCE) -> bool:
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
    reach = int(np.ceil(tolerance))  # only the region's pixels this close can count: look there alone
    top, left = max(y - reach, 0), max(x - reach, 0)
    ys, xs = np.nonzero(region[top : y + reach + 1, left : x + reach + 1])
    return bool(ys.size) and bool(((ys + top - y) ** 2 + (xs + left - x) ** 2).min() < tolerance**2)


def pointing_hits(maps: object, regions: object, tolerance: float = POINTING_TOLERANCE) -> np.ndarray:
    """:func:`pointing_hit` of each map of ``maps`` (N, H, W) with its region of ``regions`` (N, H, W).

    The same test, ``min_{p in region} ||argmax M - p||^2 < tolerance^2``, played for all maps at
    once: each map's region is looked up at the offsets ``(dy, dx)`` from its maximum with
    ``dy^2 + dx^2 < tolerance^2`` (those within the image). An empty region is a miss.

    Example:
        >>> m = np.zeros((2, 30, 30)); m[:, 10, 10] = 1.0
        >>> r = np.zeros((2, 30, 30), dtype=bool); r[0, 10, 25] = True; r[1, 10, 24] = True
        >>> pointing_hits(m, r).tolist()
        [False, True]
    """
    maps, regions = as_numpy(maps), as_numpy(regions)
    regions = regions if regions.dtype == bool else regions.astype(bool)
    if maps.shape != regions.shape or maps.ndim != 3:
        raise XaibenchError(f"pointing_hits needs (N, H, W) maps and regions of one shape; got {maps.shape} and {regions.shape}")
    n, height, width = maps.shape
    ys, xs = np.divmod(maps.reshape(n, -1).argmax(1), width)  # the first maximum in row-major order
    reach = min(int(np.ceil(tolerance)), max(height, width))  # farther, no pixel is in the image
    dy, dx = np.mgrid[-reach : reach + 1, -reach : reach + 1]
    near = dy**2 + dx**2 < tolerance**2
    dy, dx = dy[near], dx[near]
    hits = np.zeros(n, dtype=bool)
    step = max(1, _POINTING_LOOKUPS // max(len(dy), 1))  # maps per pass
    for start in range(0, n, step):
        y, x = ys[start : start + step, None] + dy, xs[start : start + step, None] + dx
        inside = (y >= 0) & (y < height) & (x >= 0) & (x < width)
        which = np.arange(start, start + len(y))[:, None]
        hits[start : start + step] = (regions[which, y.clip(0, height - 1), x.clip(0, width - 1)] & inside).any(1)
    return hits


#: Region lookups per pass of :func:`pointing_hits`.
_POINTING_LOOKUPS = 1 << 20


# ------------------------------------------------------------------ wsolevaluation (Choe et al. 2020)

#: wsolevaluation's map thresholds, ``np.arange(0, 1, cam_curve_interval)`` with interval 0.01.
CAM_THRESHOLDS = np.arange(0, 1, 0.01)
#: MaxBoxAccV2's IoU thresholds.
V2_IOU_THRESHOLDS = (0.3, 0.5, 0.7)
#: The column of MaxBoxAcc's (V1) accuracy-versus-threshold curve in ``box_accuracy_curves.csv``.
V1_CURVE = f"maxboxacc@{IOU_THRESHOLD}"


def wsol_boxes(scoremap: np.ndarray, thresholds: np.ndarray = CAM_THRESHOLDS) -> list[tuple[np.ndarray, int]]:
    """Boxes of a [0, 1] map at each threshold, exactly as wsolevaluation's ``compute_bboxes_from_scoremaps``.

    The map is cast to uint8 (``(M * 255).astype(np.uint8)``, truncating), thresholded with OpenCV at
    ``int(t * max)`` (strictly greater passes), and the outer and inner contours are found
    (``cv2.RETR_TREE``, ``cv2.CHAIN_APPROX_SIMPLE``). Each contour's box is ``x0, y0 = x, y`` and
    ``x1, y1 = x + w, y + h`` of ``cv2.boundingRect``, clipped to the last pixel, as there. No contour
    gives the box ``(0, 0, 0, 0)``.

    Returns:
        Per threshold, ``(boxes, largest)``: the (k, 4) boxes of every contour and the index of the
        contour of largest ``cv2.contourArea`` (the first among equals), which MaxBoxAcc (V1) uses.

    Example:
        >>> m = np.zeros((20, 20), np.float32); m[5:10, 5:10] = 1.0
        >>> boxes, largest = wsol_boxes(m, np.array([0.5]))[0]
        >>> boxes.tolist(), largest
        ([[5.0, 5.0, 10.0, 10.0]], 0)
    """
    search = _ContourSearch(scoremap, thresholds)
    return [
        (search.boxes[search.starts[g] : search.starts[g + 1]].copy(), int(search.largest[g] - search.starts[g]))
        for g in search.which
    ]


#: Bytes of the binary maps :class:`_ContourSearch` makes at once (all 100 of a 64 x 64 map; a
#: 4096 x 4096 map's one by one).
_BINARY_MAP_BYTES = 1 << 22


class _ContourSearch:
    """wsolevaluation's contours of one map at many thresholds, searched once per distinct binary map.

    Thresholds ``int(t * max)`` that no pixel value lies between give the same binary map, hence the
    same contours: the search runs once for each distinct set of passing pixels (the sets are nested,
    so their sizes tell them apart), and the boxes and areas of all the contours are computed at once.

    Attributes:
        boxes: (K, 4) float64 boxes of the contours of every distinct binary map, one map after the
            other (``(0, 0, 0, 0)`` alone for the empty map), as :func:`wsol_boxes` gives them.
        areas: (K,) their ``cv2.contourArea`` (exact: half an integer).
        starts: (G + 1,) where each distinct map's rows begin, and K.
        largest: (G,) the row of each map's contour of largest area (the first among equals).
        which: (T,) the distinct map of each threshold.
    """

    def __init__(self, scoremap: np.ndarray, thresholds: np.ndarray) -> None:
        import cv2

        height, width = np.shape(scoremap)
        image = (np.asarray(scoremap) * 255).astype(np.uint8)
        # OpenCV's 8-bit THRESH_BINARY at int(t * peak): every pixel passes below 0, none from 255 up.
        cuts = np.clip(np.trunc(np.asarray(thresholds) * np.max(image)), -1, 255).astype(np.int64).reshape(-1)
        passing = image.size - np.cumsum(np.bincount(image.ravel(), minlength=256))  # pixels > v
        passing = np.append(passing, image.size)  # index -1: cut below 0
        sizes, first, self.which = np.unique(passing[cuts], return_index=True, return_inverse=True)
        self.which = self.which.reshape(-1)
        lows = (cuts[first[sizes > 0]] + 1).astype(np.uint8)  # pixel >= low <=> pixel > cut
        found = []
        step = max(1, _BINARY_MAP_BYTES // max(image.size, 1))  # binary maps made per numpy op
        for start in range(0, len(lows), step):
            binaries = (image[None] >= lows[start : start + step, None, None]).view(np.uint8)
            found += [cv2.findContours(b, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[0] for b in binaries]
        counts = [len(contours) for contours in found]
        empty = len(found) < len(sizes)  # the map where no pixel passes: no contour, the box (0, 0, 0, 0)
        contours = [c for group in found for c in group]
        boxes, areas = _contour_boxes_and_areas(contours) if contours else (np.zeros((0, 4)), np.zeros(0))
        np.minimum(boxes[:, 2], width - 1, out=boxes[:, 2])
        np.minimum(boxes[:, 3], height - 1, out=boxes[:, 3])
        if empty:
            boxes, areas, counts = np.concatenate([np.zeros((1, 4)), boxes]), np.append(0.0, areas), [1, *counts]
        self.boxes, self.areas = boxes, areas
        self.starts = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)])
        self.largest = _first_argmax(areas, self.starts)


def _first_argmax(values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Per segment ``values[starts[g]:starts[g + 1]]`` (none empty), the index of its first maximum."""
    if len(starts) < 2:
        return np.zeros(0, dtype=np.int64)
    counts = np.diff(starts)
    peaks = np.repeat(np.maximum.reduceat(values, starts[:-1]), counts)
    rows = np.flatnonzero(values == peaks)
    segment = np.repeat(np.arange(len(counts)), counts)[rows]
    return rows[np.searchsorted(segment, np.arange(len(counts)))]


def _contour_boxes_and_areas(contours: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """``cv2.boundingRect`` as ``(x, y, x + w, y + h)`` and ``cv2.contourArea`` of many contours at once.

    ``boundingRect`` of integer points is ``(min x, min y, max x - min x + 1, max y - min y + 1)``;
    ``contourArea`` is the shoelace formula ``|sum_i x_i y_{i+1} - x_{i+1} y_i| / 2`` over the closed
    polygon. Vectorised over all contours with ``np.*.reduceat``, since maps such as gradients can
    have thousands of contours per threshold.
    """
    lengths = np.fromiter(map(len, contours), dtype=np.int64, count=len(contours))
    points = np.concatenate(contours).reshape(-1, 2).astype(np.float64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    x, y = points[:, 0], points[:, 1]
    boxes = np.empty((len(contours), 4))
    np.minimum.reduceat(x, starts, out=boxes[:, 0])
    np.minimum.reduceat(y, starts, out=boxes[:, 1])
    np.maximum.reduceat(x, starts, out=boxes[:, 2])
    np.maximum.reduceat(y, starts, out=boxes[:, 3])
    boxes[:, 2:] += 1
    following = np.arange(1, len(points) + 1)
    following[starts + lengths - 1] = starts  # each polygon closes on its first point
    cross = x * y[following] - x[following] * y
    areas = np.abs(np.add.reduceat(cross, starts)) / 2
    return boxes, areas


def box_iou_curves(scoremap: np.ndarray, gt_boxes: object) -> tuple[np.ndarray, np.ndarray]:
    """Per map threshold, the best IoU with the ground-truth boxes: of the largest contour's box (V1)
    and of any contour's box (V2). Two arrays of shape (len(CAM_THRESHOLDS),).

    ``v1[t] = max_k IoU(box_largest(t), B_k)``, ``v2[t] = max_{c, k} IoU(box_c(t), B_k)`` over the
    contours c of :func:`wsol_boxes` at threshold t; each distinct binary map is searched once.

    Example:
        >>> m = np.zeros((10, 10), np.float32); m[2:6, 2:6] = 1.0
        >>> v1, v2 = box_iou_curves(m, np.array([[2, 2, 6, 6]]))
        >>> float(v1[0]), float(v2[50])
        (1.0, 1.0)
    """
    gt = as_numpy(gt_boxes).astype(np.float64).reshape(-1, 4)
    search = _ContourSearch(scoremap, CAM_THRESHOLDS)
    best = box_ious(search.boxes, gt).max(1)
    return best[search.largest][search.which], np.maximum.reduceat(best, search.starts[:-1])[search.which]


def _weighted_mean(values: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
    """Mean over the first axis of whole-number ``values`` (hits, counts); with (B, N) bootstrap
    ``weights``, one mean per row."""
    if weights is None:
        values = np.asarray(values)
        if not len(values):
            return np.asarray(values, dtype=np.float64).mean(0)
        # the sums are whole numbers, exact in float64: mean(0)'s bits, without a float64 copy of ``values``
        return values.sum(0, dtype=np.float64) / len(values)
    with np.errstate(invalid="ignore", divide="ignore"):  # a resample that drew no image: NaN
        return weighted_sums(values, weights) / weights.sum(1).reshape((-1,) + (1,) * (np.ndim(values) - 1))


#: Rows of whole-number values converted to float64 at a time by :func:`weighted_sums`.
_SUM_ROWS = 4096


def weighted_sums(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``weights @ values`` over the first axis of whole-number ``values`` (N, ...) (booleans, counts)
    and (B, N) whole-number bootstrap ``weights``: (B, ...) float64, ``_SUM_ROWS`` rows of ``values``
    converted at a time. Every partial sum is a whole number below 2**53, so the result is exact,
    the same whatever the order of the sums and whether ``values`` are held as bool, int or float."""
    values = np.asarray(values)
    flat = values.reshape(len(values), -1)
    sums = np.zeros((len(weights), flat.shape[1]))
    for start in range(0, len(flat), _SUM_ROWS):
        sums += weights[:, start : start + _SUM_ROWS] @ flat[start : start + _SUM_ROWS].astype(np.float64)
    return sums.reshape((len(weights),) + values.shape[1:])


def max_box_acc(ious: np.ndarray, iou_threshold: float = IOU_THRESHOLD, weights: np.ndarray | None = None) -> float | np.ndarray:
    """MaxBoxAcc (Choe et al., CVPR 2020, Eq. 2): the best box accuracy over map thresholds.

    ``MaxBoxAcc(delta) = max_t 100 / N * sum_i [IoU(box_i(t), B_i) >= delta]`` with ``ious`` (N, T)
    from :func:`box_iou_curves`. ``weights`` (B, N) gives one value per bootstrap resample.
    """
    return best_box_accuracy(np.asarray(ious) >= iou_threshold, weights)


def best_box_accuracy(hits: np.ndarray, weights: np.ndarray | None = None) -> float | np.ndarray:
    """``max_t 100 / N * sum_i hits[i, t]``: MaxBoxAcc from the (N, T) booleans ``IoU >= delta``, the
    only thing of the IoU curves that it reads (so a bootstrap can keep them, 1 byte a value, instead
    of the curves). ``weights`` (B, N) gives one value per resample: the weighted counts are whole
    numbers, exact in float64 whatever the order of the sums."""
    return (100 * _weighted_mean(hits, weights)).max(-1)


def max_box_acc_v2(ious: np.ndarray, weights: np.ndarray | None = None) -> float | np.ndarray:
    """MaxBoxAccV2 (Choe et al. 2020, Sec. 4.1): mean of MaxBoxAcc over IoU thresholds 0.3, 0.5, 0.7,
    each at its own best map threshold, with boxes of every contour (the V2 ``ious`` curves)."""
    return best_box_accuracy(box_hits(ious, V2_IOU_THRESHOLDS), weights).mean(-1)


def box_acc_curve(ious: np.ndarray, iou_threshold: float = IOU_THRESHOLD) -> np.ndarray:
    """Box accuracy (%) at each map threshold: the curve whose maximum is MaxBoxAcc."""
    return box_accuracy_curve(np.asarray(ious) >= iou_threshold)


def box_accuracy_curve(hits: np.ndarray) -> np.ndarray:
    """:func:`box_acc_curve` from the (N, T) hits ``IoU >= delta``: ``100 / N sum_i hits[i, t]``."""
    return 100 * np.asarray(hits).mean(0)


def box_hits(ious: np.ndarray, iou_thresholds: Sequence[float]) -> np.ndarray:
    """The (N, len(iou_thresholds), T) booleans ``ious[i, t] >= delta``: all that MaxBoxAcc (V1: delta 0.5;
    V2: 0.3, 0.5, 0.7) reads of the (N, T) IoU curves, 1 byte a value.

    Example:
        >>> box_hits(np.array([[0.2, 0.6]]), (0.5,)).tolist()
        [[[False, True]]]
    """
    ious = np.asarray(ious)
    return np.stack([ious >= d for d in iou_thresholds], axis=1)


def compact_counts(counts: np.ndarray) -> np.ndarray:
    """Whole-number ``counts`` (e.g. PxAP's histograms) in the smallest integer dtype that holds them
    all (a float array, or an empty one, as it is): the same numbers in as few bytes as they need."""
    counts = np.asarray(counts)
    if counts.dtype.kind not in "iub" or not counts.size:
        return counts
    return counts.astype(np.result_type(np.min_scalar_type(counts.min()), np.min_scalar_type(counts.max())))


#: Right bin edges of wsolevaluation's PxAP histograms: the thresholds, then 1, 2, 3.
PXAP_EDGES = np.append(CAM_THRESHOLDS, [1.0, 2.0, 3.0])


def pxap_histograms(scoremap: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(2, 102) counts of the map's values on object pixels (row 0) and background pixels (row 1),
    in wsolevaluation's bins (:data:`PXAP_EDGES`); summed over images they give :func:`pxap`.

    As ``np.histogram(values, bins=PXAP_EDGES)`` of each set of pixels: bin i holds
    ``PXAP_EDGES[i] <= v < PXAP_EDGES[i + 1]``, the last bin ``2 <= v <= 3``; other values (and NaN)
    are not counted. Maps (N, H, W) with masks (N, H, W) give (N, 2, 102), counted in one pass.

    Example:
        >>> m = np.array([[0.0, 0.5], [0.505, 1.0]]); mask = np.array([[False, True], [True, True]])
        >>> h = pxap_histograms(m, mask); h[0, 50], h[0, 100], h[1, 0]
        (np.int64(2), np.int64(1), np.int64(1))
    """
    scoremap, mask = np.asarray(scoremap), as_numpy(mask).astype(bool)
    if scoremap.shape != mask.shape or scoremap.ndim not in (2, 3):
        raise XaibenchError(f"pxap_histograms needs maps and masks of one shape, (H, W) or (N, H, W); got {scoremap.shape} and {mask.shape}")
    n, bins = (len(scoremap) if scoremap.ndim == 3 else 1), len(PXAP_EDGES) - 1
    values, background = scoremap.reshape(n, -1), ~mask.reshape(n, -1)
    stride = 3 * bins + 1  # per map: object bins, background bins, values not counted (2 * bins and up)
    counts = np.empty((n, stride), dtype=np.intp)
    step = max(1, _PXAP_CHUNK // max(values.shape[1], 1))  # maps per pass, so that the pass stays in cache
    for start in range(0, n, step):
        cells = _pxap_bins(values[start : start + step])
        cells += background[start : start + step].view(np.uint8) * np.uint8(bins)
        cells += np.arange(0, len(cells) * stride, stride)[:, None]
        counts[start : start + step] = np.bincount(cells.ravel(), minlength=len(cells) * stride).reshape(len(cells), stride)
    counts = counts[:, : 2 * bins].reshape(n, 2, bins)
    return counts if scoremap.ndim == 3 else counts[0]


#: Pixels binned per pass of :func:`pxap_histograms`.
_PXAP_CHUNK = 1 << 17


def _pxap_bins(values: np.ndarray) -> np.ndarray:
    """Each value's :data:`PXAP_EDGES` bin as ``np.histogram`` assigns it, and ``2 * bins`` (past
    every cell of :func:`pxap_histograms`) for a value it does not count."""
    bins = len(PXAP_EDGES) - 1
    edges = _PXAP_EDGES_AS.get(values.dtype)
    if edges is None or not values.size or not (values.min() >= 0 and values.max() <= 1):
        found = np.searchsorted(PXAP_EDGES, values, side="right") - 1
        found[values == PXAP_EDGES[-1]] = bins - 1  # the last bin is closed
        found[(found < 0) | (found >= bins)] = 2 * bins
        return found
    # In [0, 1] the bin is floor(100 v) give or take one (the edges are i * 0.01 to rounding): one
    # comparison with each neighbouring edge settles it exactly.
    found = (values * 100).astype(np.intp)
    found -= values < edges[found]
    found += values >= edges[found + 1]
    return found


def _edges_for_float32(edges: np.ndarray) -> np.ndarray:
    """The least float32 >= each float64 edge: for a float32 v, ``v >= e`` exactly when ``v >= e32``."""
    rounded = edges.astype(np.float32)
    return np.where(rounded < edges, np.nextafter(rounded, np.float32(np.inf)), rounded).astype(np.float32)


#: :data:`PXAP_EDGES` in the dtypes whose comparisons with them are exact (float32 compares with
#: float32 stand-ins, without converting every pixel).
_PXAP_EDGES_AS = {np.dtype(np.float64): PXAP_EDGES, np.dtype(np.float32): _edges_for_float32(PXAP_EDGES)}


def pxap(histograms: np.ndarray, weights: np.ndarray | None = None) -> float | np.ndarray:
    """Pixel average precision, PxAP (Choe et al. 2020, Sec. 4.2), as wsolevaluation's ``MaskEvaluator``.

    Pixels of all images are pooled; at each threshold t (from high to low) a pixel is positive when
    its value is >= t. With precision P_t and recall R_t,
    ``PxAP = 100 * sum_t P_t (R_t - R_{t-1})`` over the thresholds where something is predicted.
    ``histograms`` (N, 2, K) from :func:`pxap_histograms`.
    """
    histograms = np.asarray(histograms)
    # Whole numbers (pixel counts times draws), exact in float64 whatever the order of the sums.
    totals = histograms.sum(0, dtype=np.float64)[None] if weights is None else weighted_sums(histograms, weights)
    tp = totals[:, 0, ::-1].cumsum(-1)
    fp = totals[:, 1, ::-1].cumsum(-1)
    fn = totals[:, 0].sum(-1, keepdims=True) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = tp / (tp + fp)
        recall = tp / (tp + fn)
    predicted = (tp + fp) != 0
    terms = np.where(predicted[:, 1:], precision[:, 1:] * np.diff(recall, axis=-1), 0.0)
    result = 100 * terms.sum(-1)
    return float(result[0]) if weights is None else result


def class_mean(values: np.ndarray, classes: np.ndarray, weights: np.ndarray | None = None) -> float | np.ndarray:
    """Mean over classes of the per-class mean of ``values`` (TorchRay's class-averaged pointing game).

    ``sum_c mean_{i: class_i = c} values_i / C`` over the C classes present; NaN values are left out.
    """
    values, classes = np.asarray(values, dtype=np.float64), np.asarray(classes)
    kept = np.flatnonzero(~np.isnan(values))
    values, classes = values[kept], classes[kept]
    if not len(values):
        return float("nan") if weights is None else np.full(len(weights), np.nan)
    # Per-class sums over the images sorted by class (no N x C one-hot matrix: 50,000 images of 1,000
    # classes would take 400 MB per resample chunk), the chunk's weights copied once, in that order.
    present, inverse = np.unique(classes, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    starts = np.searchsorted(inverse[order], np.arange(len(present)))
    w = np.ones((1, len(values))) if weights is None else np.asarray(weights)[:, kept[order]]
    counts = np.add.reduceat(w, starts, axis=1)
    sums = np.add.reduceat(np.multiply(w, values[order], out=w), starts, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a resample that draws no scored image: NaN
        result = np.nanmean(sums / counts, axis=-1)
    return float(result[0]) if weights is None else result


def energy_pointing(saliency: np.ndarray, region: np.ndarray) -> float:
    """Energy-based pointing game (Wang et al., CVPR-W 2020, Score-CAM, Sec. 5.2).

    The share of the map's mass inside the ground truth: ``sum_{p in region} M(p) / sum_p M(p)``;
    NaN for a map with no mass.
    """
    m = np.asarray(saliency, dtype=np.float64)
    total = m.sum()
    return float(m[as_numpy(region).astype(bool)].sum() / total) if total > 0 else float("nan")
