"""The evaluation harness: run methods over a data set and score their maps, one tidy row per (image, method).

The harness chooses each map's target class (the label, or the model's prediction), calls every
explainer once per batch, hands the maps and the ground truth to :mod:`xaibench.metrics`, and
collects the numbers in a pandas DataFrame. It knows no method by name. With ``out`` given, rows are
appended to ``per_image.csv`` batch by batch, so a run that stops half-way keeps what it computed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from xaibench import metrics
from xaibench.data.sample import Batch, Sample, collate
from xaibench.errors import XaibenchError
from xaibench.explainer import Explainer, create_explainer
from xaibench.models import Model, eval_mode

logger = logging.getLogger(__name__)

#: The scalar columns of the per-image table, in order (also those of ``per_image.csv``).
COLUMNS = [
    "image_id", "method", "label", "prediction", "target",
    "top1_cls", "gt_known_loc", "top1_loc", "top5_loc", "iou",
    "pointing", "energy_pointing", "seconds",
]
#: Columns holding one array per row, for the data-set-level metrics (MaxBoxAcc, PxAP).
CURVE_COLUMNS = ["box_iou_curve", "box_iou_curve_v2", "pxap_hist"]
TARGETS = ("label", "prediction")
#: The CAM paper's box threshold (a fraction of the map's maximum) and TorchRay's pointing tolerance (px).
CAM_TAU = 0.2
POINTING_TOLERANCE = 15


def evaluate(
    model: Model,
    dataset: Sequence[Sample],
    methods: Sequence[str | Explainer],
    *,
    batch_size: int = 32,
    n: int | None = None,
    target: str = "label",
    tau: float = CAM_TAU,
    tolerance: float = POINTING_TOLERANCE,
    out: str | Path | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """Explain and score every image of ``dataset`` with every method.

    Args:
        model: The classifier, as :func:`xaibench.load_model` returns it.
        dataset: Indexable samples (:class:`xaibench.data.Sample`).
        methods: Registered method names or ready :class:`Explainer` objects.
        batch_size: Images per forward/backward pass.
        n: Score only the first ``n`` images.
        target: ``"label"`` (explain the true class) or ``"prediction"`` (the top-1 class).
        tau: The CAM box threshold, a fraction of the map's maximum.
        tolerance: The pointing game's tolerance in pixels.
        out: A folder; rows are appended to ``out/per_image.csv`` as each batch finishes.
        progress: Show a progress bar.

    Returns:
        One row per (image, method) with :data:`COLUMNS` and :data:`CURVE_COLUMNS`:

        - ``top1_cls``: the top-1 prediction is the label.
        - ``iou``: IoU of the CAM-protocol box (threshold ``tau`` of the max, largest connected
          component) with the best-matching ground-truth box; ``gt_known_loc`` is ``iou >= 0.5``.
        - ``top1_loc`` / ``top5_loc``: the label is the top-1 / among the top-5 predictions and its
          map's box has IoU >= 0.5 (the CAM paper's localization accuracy: only the true class's box
          can be right). With ``target="prediction"`` the map explains the top-1 class, so
          ``top1_loc`` is the same definition and ``gt_known_loc`` / ``top5_loc`` are undefined (NaN).
        - ``pointing``: the map's maximum is within ``tolerance`` px of the object (NaN when all its
          boxes are ``difficult``); ``energy_pointing``: the map's share inside the boxes.
        - ``box_iou_curve`` / ``box_iou_curve_v2``: best IoU at each of wsolevaluation's 100 map
          thresholds (largest contour / any contour), for MaxBoxAcc and MaxBoxAccV2;
          ``pxap_hist``: the map's value histograms on object and background pixels when there is a
          mask (else None), for PxAP.
        - ``seconds``: the method's time per image.

        Images that could not be read are listed in ``result.attrs["skipped"]``.
    """
    if target not in TARGETS:
        raise XaibenchError(f"target must be one of {', '.join(TARGETS)}, got '{target}'")
    if batch_size < 1:
        raise XaibenchError(f"batch size must be at least 1, got {batch_size}")
    explainers = [m if isinstance(m, Explainer) else create_explainer(m, model) for m in methods]
    total = len(dataset) if n is None else min(n, len(dataset))
    csv_path = None
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        csv_path = Path(out) / "per_image.csv"
        csv_path.unlink(missing_ok=True)

    frames, skipped = [], []
    bar = tqdm(total=total, unit="img", disable=not progress, desc="evaluating")
    try:
        for batch in _batches(dataset, total, batch_size, skipped, bar):
            frame = _evaluate_batch(model, batch, explainers, target, tau, tolerance)
            frames.append(frame)
            if csv_path is not None:
                frame[COLUMNS].to_csv(csv_path, mode="a", header=not csv_path.exists(), index=False)
    finally:
        bar.close()
    result = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS + CURVE_COLUMNS)
    result.attrs["skipped"] = skipped
    return result


def _batches(
    dataset: Sequence[Sample], total: int, batch_size: int, skipped: list[str], bar: tqdm
) -> Iterator[Batch]:
    """Batches of readable samples; an unreadable one is logged, listed in ``skipped`` and left out."""
    pending: list[Sample] = []
    for index in range(total):
        try:
            pending.append(dataset[index])
        except (OSError, ValueError) as error:
            skipped.append(str(index))
            logger.warning("skipped image %d: %s", index, error)
            bar.update(1)
        if len(pending) == batch_size or (index == total - 1 and pending):
            yield collate(pending)
            bar.update(len(pending))
            pending = []


def _evaluate_batch(
    model: Model,
    batch: Batch,
    explainers: Sequence[Explainer],
    target: str,
    tau: float,
    tolerance: float,
) -> pd.DataFrame:
    images = batch.images.to(model.device)
    with eval_mode(model.network), torch.no_grad():
        top5 = model(images).topk(min(5, model.num_classes), dim=1).indices.cpu()
    predictions = top5[:, 0]
    targets = batch.labels if target == "label" else predictions
    labels = batch.labels.numpy()
    top1_cls = predictions.numpy() == labels
    in_top5 = (top5.numpy() == labels[:, None]).any(1)
    shape = tuple(images.shape[-2:])
    box_regions = [metrics.boxes_to_mask(b, shape) for b in batch.boxes]
    regions = [metrics.as_numpy(m) if m is not None else r for m, r in zip(batch.masks, box_regions)]
    # TorchRay scores no (image, class) whose boxes are all difficult, nor one with no object pixel.
    scored = np.array([not bool(d.all()) and r.any() for d, r in zip(batch.difficult, regions)])
    undefined = np.full(len(batch), np.nan)
    rows = []
    for explainer in explainers:
        start = time.perf_counter()
        maps = explainer(images, targets.to(images.device))
        seconds = (time.perf_counter() - start) / len(batch)
        maps = metrics.as_numpy(maps)
        iou = metrics.cam_box_iou(maps, batch.boxes, tau)
        box_correct = iou >= 0.5
        curves = [metrics.box_iou_curves(m, b) for m, b in zip(maps, batch.boxes)]
        pointing = np.where(scored, metrics.pointing_hits(maps, regions, tolerance), np.nan)
        rows.append(
            pd.DataFrame(
                {
                    "image_id": batch.ids,
                    "method": explainer.name,
                    "label": labels,
                    "prediction": predictions.numpy(),
                    "target": targets.numpy(),
                    "top1_cls": top1_cls,
                    "gt_known_loc": box_correct if target == "label" else undefined,
                    "top1_loc": top1_cls & box_correct,
                    "top5_loc": in_top5 & box_correct if target == "label" else undefined,
                    "iou": iou,
                    "pointing": pointing,
                    "energy_pointing": [metrics.energy_pointing(m, r) for m, r in zip(maps, box_regions)],
                    "seconds": np.full(len(batch), seconds),
                    "box_iou_curve": [c[0] for c in curves],
                    "box_iou_curve_v2": [c[1] for c in curves],
                    "pxap_hist": [
                        metrics.pxap_histograms(m, mask) if mask is not None else None
                        for m, mask in zip(maps, batch.masks)
                    ],
                }
            )
        )
    return pd.concat(rows, ignore_index=True)


def _targets(model: Model, images: torch.Tensor, labels: torch.Tensor, target: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's top-1 predictions, and the class each map explains: the label or the prediction."""
    with eval_mode(model.network), torch.no_grad():
        predictions = model(images).argmax(1)
    return predictions, (labels.to(images.device) if target == "label" else predictions)


def first_samples(dataset: Sequence[Sample], k: int) -> list[Sample]:
    """The first ``k`` readable samples of ``dataset`` (unreadable ones are skipped, as in :func:`evaluate`)."""
    samples: list[Sample] = []
    for index in range(len(dataset)):
        if len(samples) == k:
            break
        try:
            samples.append(dataset[index])
        except (OSError, ValueError):
            continue
    return samples


def explain_samples(
    model: Model, samples: Sequence[Sample], methods: Sequence[str | Explainer], target: str = "label"
) -> dict[str, np.ndarray]:
    """Maps (N, H, W) of each method for a few samples, e.g. for a figure."""
    batch = collate(samples)
    images = batch.images.to(model.device)
    _, targets = _targets(model, images, batch.labels, target)
    explainers = [m if isinstance(m, Explainer) else create_explainer(m, model) for m in methods]
    return {e.name: metrics.as_numpy(e(images, targets)) for e in explainers}
