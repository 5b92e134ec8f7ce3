"""The localization metrics as plugins: the CAM paper's box protocol, wsolevaluation's MaxBoxAcc and
PxAP, the pointing games; with top-1 classification and the counts of maps that could not be scored.

Each class wraps the pure functions of :mod:`xaibench.localization`, which give the formulas and
the papers; the classes say which per-image column they write and how it aggregates. Declared in the
entry-point group ``xaibench.metrics`` like any third-party metric.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from xaibench import localization, options
from xaibench.localization import CAM_TAU, IOU_THRESHOLD, POINTING_TOLERANCE
from xaibench.errors import OptionError
from xaibench.explainer import upsample_maps
from xaibench.metric import Metric, MetricInput, Prepared, register_metric

__all__ = [
    "ConstantMaps", "EnergyPointing", "GtKnownLoc", "MaxBoxAcc", "MaxBoxAccV2", "MeanIoU", "NonfiniteMaps",
    "Pointing", "PointingPerClass", "PxAP", "Top1Cls", "Top1Loc", "Top5Loc",
]


@register_metric("top1_cls")
class Top1Cls(Metric):
    """Top-1 classification accuracy: the model's top-1 class is the label (per image: 0 or 1)."""

    title = "Top-1 cls"
    description = "the model's top-1 class is the label"
    family = "classification"
    columns = {"top1_cls": "scalar"}
    scale = 100.0
    needs_maps = False

    def score(self, batch: MetricInput) -> dict[str, Sequence]:
        return {"top1_cls": (batch.top5[:, 0] == batch.labels).astype(np.float64)}


class _CamBox(Metric):
    """The CAM paper's box (Zhou et al., CVPR 2016, Sec. 3.1): the map min-max scaled to [0, 1], its
    pixels >= ``tau`` kept (the paper's "20% of the max value"), the largest 8-connected component boxed (:func:`xaibench.localization.cam_box`);
    its IoU with the best-matching ground-truth box, ``IoU_i = max_k IoU(box_i, B_ik)``."""

    scale = 100.0

    def __init__(self, *, tau: float = CAM_TAU) -> None:
        self.tau = options.number("tau", tau, 0.0)
        if self.tau > 1:
            raise OptionError(f"option tau must be a threshold of the min-max scaled map, in [0, 1], got {tau!r}")

    def ious(self, batch: MetricInput) -> np.ndarray:
        """The CAM box's IoU for each map of ``batch`` (shared by the metrics with the same ``tau``)."""
        return batch.shared(f"cam_box_iou@{self.tau}", lambda: localization.cam_box_iou(batch.maps, batch.boxes, self.tau))

    def correct(self, batch: MetricInput) -> np.ndarray:
        """Whether the box is right: IoU >= 0.5."""
        return self.ious(batch) >= IOU_THRESHOLD


@register_metric("gt_known_loc")
class GtKnownLoc(_CamBox):
    """GT-known localization accuracy: the CAM box of the true class's map has IoU >= 0.5.

    Per image ``[IoU_i >= 0.5]`` with the CAM paper's box (threshold ``tau`` = 0.2 of the min-max scaled map);
    undefined (NaN) when the maps explain the prediction (``--target prediction``).
    """

    title = "GT-known Loc"
    description = f"the CAM box (min-max scaled map >= tau, largest component) of the label's map has IoU >= {IOU_THRESHOLD:g}"
    columns = {"gt_known_loc": "scalar"}

    def score(self, batch: MetricInput) -> dict[str, Sequence]:
        if batch.target != "label":
            return {"gt_known_loc": np.full(len(batch), np.nan)}
        return {"gt_known_loc": self.correct(batch).astype(np.float64)}


@register_metric("top1_loc")
class Top1Loc(_CamBox):
    """Top-1 localization accuracy (the CAM paper's Table 2): the top-1 class is the label and its
    map's CAM box has IoU >= 0.5 (``[top1_i = y_i] [IoU_i >= 0.5]``)."""

    title = "Top-1 Loc"
    description = f"top-1 class is the label and its map's CAM box has IoU >= {IOU_THRESHOLD:g}"
    columns = {"top1_loc": "scalar"}

    def score(self, batch: MetricInput) -> dict[str, Sequence]:
        top1 = batch.top5[:, 0] == batch.labels
        return {"top1_loc": (top1 & self.correct(batch)).astype(np.float64)}


@register_metric("top5_loc")
class Top5Loc(_CamBox):
    """Top-5 localization accuracy: the label is among the top-5 classes and its map's CAM box has
    IoU >= 0.5 (only the true class's box can be right); NaN with ``--target prediction``."""

    title = "Top-5 Loc"
    description = f"label among the top-5 classes and its map's CAM box has IoU >= {IOU_THRESHOLD:g}"
    columns = {"top5_loc": "scalar"}

    def score(self, batch: MetricInput) -> dict[str, Sequence]:
        if batch.target != "label":
            return {"top5_loc": np.full(len(batch), np.nan)}
        in_top5 = (batch.top5 == batch.labels[:, None]).any(1)
        return {"top5_loc": (in_top5 & self.correct(batch)).astype(np.float64)}


@register_metric("mean_iou")
class MeanIoU(_CamBox):
    """Mean IoU of the CAM paper's box with the best-matching ground-truth box (per image: ``IoU_i``, in
    the column ``mean_iou``, named as the metric like every per-image value; ``iou`` up to xaibench 0.3)."""

    title = "mean IoU"
    description = "mean IoU of the CAM box with the best-matching ground-truth box"
    columns = {"mean_iou": "scalar"}

    def score(self, batch: MetricInput) -> dict[str, Sequence]:
        return {"mean_iou": self.ious(batch)}


def _box_iou_curves(batch: MetricInput) -> list[tuple[np.ndarray, np.ndarray]]:
    return batch.shared(
        "box_iou_curves", lambda: [localization.box_iou_curves(m, b) for m, b in zip(batch.maps, batch.boxes)]
    )


class _Curves(Metric):
    """A data-set-level metric of per-image arrays (one array column; rows holding None left out),
    whose statistic reads what :meth:`~xaibench.metric.Metric.prepare` makes of them."""

    def statistic(self, prepared: np.ndarray, weights: np.ndarray | None) -> float | np.ndarray:
        raise NotImplementedError

    @property
    def prepared_column(self) -> str:
        return next(iter(self.columns))

    def aggregate(self, rows: pd.DataFrame, weights: np.ndarray | None) -> float | np.ndarray:
        return self.resampled(rows)(weights)

    def resampled(self, rows: pd.DataFrame, prepared: Prepared | None = None) -> Callable[[np.ndarray | None], float | np.ndarray]:
        """The arrays stacked and prepared once (or ``prepared``), for every chunk of resamples."""
        prepared = self.prepared(rows) if prepared is None else prepared
        if prepared.values is None:
            return lambda weights: np.nan if weights is None else np.full(len(weights), np.nan)
        keep, every = prepared.scored, prepared.scored.all()
        return lambda weights: self.statistic(prepared.values, weights if weights is None or every else weights[:, keep])


class _BoxAccuracy(_Curves):
    """MaxBoxAcc at each of :attr:`iou_thresholds`, from per-image IoU-versus-map-threshold curves,
    prepared as the (N, len(iou_thresholds), T) hits ``IoU >= delta``
    (:func:`xaibench.localization.box_hits`): all that MaxBoxAcc reads of the curves."""

    iou_thresholds: tuple[float, ...] = ()

    def prepare(self, arrays: np.ndarray) -> np.ndarray:
        return localization.box_hits(arrays, self.iou_thresholds)

    def statistic(self, prepared: np.ndarray, weights: np.ndarray | None) -> float | np.ndarray:
        return localization.best_box_accuracy(prepared, weights).mean(-1)  # (N, K, T) hits: the mean over the K IoUs

    def per_image_values(self, rows: pd.DataFrame, prepared: Prepared | None = None) -> np.ndarray:
        """Per row, the mean over the IoU thresholds delta of 100 x [IoU >= delta at the map threshold where
        the method's box accuracy at delta is best] (NaN where the row has no curve)."""
        prepared = self.prepared(rows) if prepared is None else prepared
        values = np.full(len(prepared.scored), np.nan)
        if prepared.values is not None:
            hits = prepared.values  # (N, K, T)
            best = localization.box_accuracy_curve(hits).argmax(-1)  # per IoU threshold, its best map threshold
            values[prepared.scored] = (100.0 * hits[:, np.arange(hits.shape[1]), best]).mean(1)
        return values


@register_metric("maxboxacc")
class MaxBoxAcc(_BoxAccuracy):
    """MaxBoxAcc (Choe et al., CVPR 2020, "Evaluating Weakly Supervised Object Localization Methods
    Right", Eq. 2): the best box accuracy over wsolevaluation's 100 map thresholds, the box of the
    largest contour, IoU >= 0.5: ``max_t 100/N sum_i [IoU(box_i(t), B_i) >= 0.5]``.

    Per image: the best IoU at each threshold (``box_iou_curve``); the maximum over thresholds is
    taken over the data set (each bootstrap resample picks its own best threshold).
    """

    title = "MaxBoxAcc"
    description = f"wsolevaluation: box accuracy (IoU >= {IOU_THRESHOLD:g}, largest contour) at the best map threshold"
    columns = {"box_iou_curve": "array"}
    iou_thresholds = (IOU_THRESHOLD,)

    def score(self, batch: MetricInput) -> dict[str, Sequence]:
        return {"box_iou_curve": [v1 for v1, _ in _box_iou_curves(batch)]}


@register_metric("maxboxacc_v2")
class MaxBoxAccV2(_BoxAccuracy):
    """MaxBoxAccV2 (Choe et al. 2020, Sec. 4.1): the mean over IoU thresholds 0.3, 0.5 and 0.7 of the
    best box accuracy, each at its own map threshold, with the boxes of every contour."""

    title = "MaxBoxAccV2"
    description = (
        f"wsolevaluation: mean over IoU {'/'.join(f'{d:g}' for d in localization.V2_IOU_THRESHOLDS)} of the best "
        "box accuracy, any contour"
    )
    columns = {"box_iou_curve_v2": "array"}
    iou_thresholds = localization.V2_IOU_THRESHOLDS

    def score(self, batch: MetricInput) -> dict[str, Sequence]:
        return {"box_iou_curve_v2": [v2 for _, v2 in _box_iou_curves(batch)]}


@register_metric("pxap")
class PxAP(_Curves):
    """Pixel average precision, PxAP (Choe et al. 2020, Sec. 4.2), over the pooled pixels of the images
    with an object mask: ``100 sum_t P_t (R_t - R_{t-1})`` (:func:`xaibench.localization.pxap`)."""

    title = "PxAP"
    description = "wsolevaluation: average precision of the map's pixels against the object mask"
    columns = {"pxap_hist": "array"}

    def score(self, batch: MetricInput) -> dict[str, Sequence]:
        masked = [k for k, mask in enumerate(batch.masks) if mask is not None]
        hists: list[np.ndarray | None] = [None] * len(batch)
        if masked:  # the images with a mask, binned in one pass
            masks = np.stack([localization.as_numpy(batch.masks[k]) for k in masked])
            for k, hist in zip(masked, localization.pxap_histograms(batch.maps[masked], masks)):
                hists[k] = hist
        return {"pxap_hist": hists}

    def prepare(self, arrays: np.ndarray) -> np.ndarray:
        return localization.compact_counts(arrays)  # pixel counts in the fewest bytes that hold them

    def statistic(self, prepared: np.ndarray, weights: np.ndarray | None) -> float | np.ndarray:
        return localization.pxap(prepared, weights=weights)


def _regions(batch: MetricInput) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per image: the object's region (its mask, else its boxes' union) and its boxes' union."""

    def compute() -> tuple[list[np.ndarray], list[np.ndarray]]:
        shape = batch.maps.shape[-2:]
        box_regions = [localization.boxes_to_mask(b, shape) for b in batch.boxes]
        regions = [localization.as_numpy(m) if m is not None else r for m, r in zip(batch.masks, box_regions)]
        return regions, box_regions

    return batch.shared("regions", compute)


#: Where the pointing game measures its tolerance: in the image file's pixels (TorchRay), or at the
#: resolution the network is fed (that of the maps the metrics receive).
POINTING_RESOLUTIONS = ("file", "input")


def _pointing_frame(batch: MetricInput, k: int, resolution: str) -> tuple[np.ndarray, np.ndarray]:
    """Image ``k``'s map and object region where the pointing game is played. ``"file"``, as TorchRay:
    in the image file's pixels, the method's map resized once from its own resolution to the file's
    size (bilinear, ``align_corners=False``: TorchRay's ``resize=image_size``) and the region from the
    file's boxes or mask; at the input's resolution for ``"input"`` and for an image without
    :class:`~xaibench.data.sample.Original` ground truth (e.g. generated data, made at that size)."""
    if _at_input_resolution(batch, k, resolution):
        return batch.maps[k], _regions(batch)[0][k]
    original = batch.originals[k]
    own = batch.native_maps[k] if batch.native_maps is not None else batch.maps[k]
    saliency = upsample_maps(torch.from_numpy(np.ascontiguousarray(own, dtype=np.float32)[None]), original.size)[0].numpy()
    if original.mask is not None:
        return saliency, localization.as_numpy(original.mask)
    return saliency, localization.boxes_to_mask(original.boxes, original.size)


def _at_input_resolution(batch: MetricInput, k: int, resolution: str) -> bool:
    """Whether image ``k``'s pointing game is played at the input's resolution (:func:`_pointing_frame`)."""
    return resolution == "input" or batch.originals is None or batch.originals[k] is None


@register_metric("pointing")
class Pointing(Metric):
    """Pointing game (Zhang et al., ECCV 2016, "Top-down Neural Attention by Excitation Backprop"), as
    TorchRay: a hit when the map's maximum lies strictly closer than ``tolerance`` pixels to the object
    (its mask, else its boxes) (:func:`xaibench.localization.pointing_hit`), both in the pixels of the
    image file, as TorchRay's benchmark resizes the map to the original image (:func:`_pointing_frame`;
    so 15 px is 15 of the photo's pixels, whatever size the network is fed). Like TorchRay, an image
    whose boxes are all ``difficult`` is not scored (NaN), and one whose object has no pixel in the
    frame (an empty mask, a box cropped away) is a miss.

    Options: ``tolerance`` (15 px; any finite number >= 0, e.g. ``pointing(tolerance=7.5)``);
    ``resolution``: ``"file"`` (TorchRay's) or ``"input"``, the resolution the network is fed, where
    15 px is a larger part of a photo fed smaller than it is stored.

    A fractional tolerance: TorchRay's ``PointingGame`` (``torchray/benchmark/pointing_game.py``)
    asserts an integer one, but its test, ``(v + u) < tolerance**2`` on squared pixel offsets, is
    the same for any real tolerance, and that test is applied here. Squared distances between pixels
    are integers, so with 7.5 (56.25) a pixel 7.28 px away (53) is a hit and one 7.62 px away (58) a
    miss; a pixel exactly at the tolerance (5 px from ``tolerance=5.0``) is a miss, as at 15. The
    default stays the integer 15, which ``config.json`` records as ``15``.
    """

    title = "Pointing"
    description = "the map's maximum lies within tolerance px of the object (TorchRay: in the photo's pixels)"
    columns = {"pointing": "scalar"}
    scale = 100.0

    def __init__(self, *, tolerance: float = POINTING_TOLERANCE, resolution: str = "file") -> None:
        self.tolerance = options.number("tolerance", tolerance, 0.0)
        self.resolution = options.choice("resolution", resolution, POINTING_RESOLUTIONS)

    def score(self, batch: MetricInput) -> dict[str, Sequence]:
        hits = np.full(len(batch), np.nan)
        scored = [k for k, difficult in enumerate(batch.difficult) if not bool(np.asarray(difficult).all())]
        at_input = [k for k in scored if _at_input_resolution(batch, k, self.resolution)]
        if at_input:  # played on the maps as they are: all at once
            regions = np.stack([localization.as_numpy(_regions(batch)[0][k]) for k in at_input])
            maps = batch.maps if len(at_input) == len(batch) else batch.maps[at_input]
            hits[at_input] = localization.pointing_hits(maps, regions, self.tolerance)
        for k in sorted(set(scored) - set(at_input)):
            saliency, region = _pointing_frame(batch, k, self.resolution)
            hits[k] = localization.pointing_hit(saliency, region, self.tolerance)
        return {"pointing": hits}


@register_metric("pointing_per_class")
class PointingPerClass(Metric):
    """The pointing game averaged over classes, as TorchRay reports it: the mean over the classes
    present of each class's hit rate, ``1/C sum_c mean_{i: y_i = c} hit_i``
    (:func:`xaibench.localization.class_mean`); reads the ``pointing`` metric's hits."""

    title = "Pointing (per class)"
    description = "the pointing game's hit rate averaged over classes (TorchRay)"
    columns: dict[str, str] = {}
    requires = ("pointing",)

    def score(self, batch: MetricInput) -> dict[str, Sequence]:
        return {}

    def aggregate(self, rows: pd.DataFrame, weights: np.ndarray | None) -> float | np.ndarray:
        return 100 * localization.class_mean(rows["pointing"].to_numpy(np.float64), rows["label"].to_numpy(), weights)

    def count(self, rows: pd.DataFrame) -> int:
        return int(rows["pointing"].notna().sum())


@register_metric("energy_pointing")
class EnergyPointing(Metric):
    """Energy-based pointing game (Wang et al., CVPR-W 2020, Score-CAM, Sec. 5.2): the map's share of
    mass inside the ground-truth boxes, ``sum_{p in boxes} M(p) / sum_p M(p)`` (NaN for a map with no
    mass)."""

    title = "Energy pointing"
    description = "the map's share of mass inside the ground-truth boxes (Score-CAM)"
    columns = {"energy_pointing": "scalar"}
    scale = 100.0

    def score(self, batch: MetricInput) -> dict[str, Sequence]:
        _, box_regions = _regions(batch)
        return {"energy_pointing": [localization.energy_pointing(m, r) for m, r in zip(batch.maps, box_regions)]}


class _StatusCount(Metric):
    """How many of the method's maps had a status: a count, not a percentage (resampled like the rest)."""

    unit = "count"
    family = "maps"
    higher_is_better = False
    columns: dict[str, str] = {}
    needs_maps = False
    status = ""

    def score(self, batch: MetricInput) -> dict[str, Sequence]:
        return {}

    def aggregate(self, rows: pd.DataFrame, weights: np.ndarray | None) -> float | np.ndarray:
        hits = (rows["status"] == self.status).to_numpy(np.float64)
        return float(hits.sum()) if weights is None else weights @ hits

    def count(self, rows: pd.DataFrame) -> int:
        return len(rows)


@register_metric("nonfinite_maps")
class NonfiniteMaps(_StatusCount):
    """Maps with a NaN or infinite pixel: a failure of the method on that image, never scored."""

    title = "non-finite maps"
    description = "maps with NaN or inf (a failure of the method, not scored)"
    status = "nonfinite"


@register_metric("constant_maps")
class ConstantMaps(_StatusCount):
    """Maps that were constant before scaling: the method singled out no region (scored as all-zero maps)."""

    title = "constant maps"
    description = "constant maps (scored as all-zero maps)"
    status = "constant"

