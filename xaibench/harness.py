"""The evaluation harness: run methods over a data set and score their maps, one tidy row per (image, method).

The harness chooses each map's target class (the label, or the model's prediction), calls every
explainer once per batch, hands the maps and the ground truth to :mod:`xaibench.metrics`, and
collects the numbers in a pandas DataFrame. It knows no method by name.

With ``out`` given, the harness owns three append-only journals in that folder
(:mod:`xaibench.journal`): ``per_image.csv`` (the rows, including the compact per-image curves that
the data-set-level metrics need, so a partial run can be summarised), ``skipped.csv`` and
``timings.csv``. Each batch is committed whole, so a run killed at any point keeps every finished
batch, and running again on the same folder continues where it stopped: batches are fixed ranges of
data-set indices, finished (index, method) rows are not computed again, and the rows come out in the
same order and with the same values as those of an uninterrupted run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from xaibench import metrics
from xaibench.data.sample import Batch, Sample, collate
from xaibench.errors import UnreadableImageError, XaibenchError
from xaibench.explainer import Explainer, create_explainer
from xaibench.journal import Journal
from xaibench.models import Model, eval_mode
from xaibench.run_folder import PER_IMAGE, SKIPPED, TIMINGS

logger = logging.getLogger(__name__)

#: The scalar columns of the per-image table, in order. ``index`` is the sample's index in the data
#: set; ``status`` is ``ok``, ``constant`` (a constant raw map, scored as an all-zero map) or
#: ``nonfinite`` (NaN or inf in the raw map: a failure of the method, not scored).
COLUMNS = [
    "model", "index", "image_id", "method", "label", "prediction", "target", "status",
    "top1_cls", "gt_known_loc", "top1_loc", "top5_loc", "iou",
    "pointing", "energy_pointing",
]
#: Columns holding one array per row, for the data-set-level metrics (MaxBoxAcc, PxAP).
CURVE_COLUMNS = ["box_iou_curve", "box_iou_curve_v2", "pxap_hist"]
SKIPPED_COLUMNS = ["model", "index", "reason"]
TIMING_COLUMNS = ["model", "batch", "method", "images", "seconds"]
TARGETS = ("label", "prediction")
CAM_TAU = metrics.CAM_TAU
POINTING_TOLERANCE = metrics.POINTING_TOLERANCE
STATUSES = ("ok", "constant", "nonfinite")


@dataclass(frozen=True)
class Journals:
    """The three files the harness appends to in a run's folder."""

    per_image: Journal
    skipped: Journal
    timings: Journal

    @classmethod
    def open(cls, folder: str | Path) -> Journals:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        journals = cls(
            Journal(folder / PER_IMAGE, COLUMNS + CURVE_COLUMNS, array_columns=CURVE_COLUMNS,
                    text_columns=["model", "image_id", "method", "status"]),
            Journal(folder / SKIPPED, SKIPPED_COLUMNS, text_columns=["model", "reason"]),
            Journal(folder / TIMINGS, TIMING_COLUMNS, text_columns=["model", "method"]),
        )
        for journal in (journals.per_image, journals.skipped, journals.timings):
            journal.repair()
            journal.create()
        return journals


def read_per_image(folder: str | Path) -> pd.DataFrame:
    """The rows of a run's ``per_image.csv`` (finished or not).

    ``attrs["skipped"]`` lists the indices of the images that could not be read (once each), and
    ``attrs["skipped_rows"]`` counts the rows of ``skipped.csv`` (one per model and image).
    """
    journals = Journals.open(folder)
    rows = journals.per_image.read()
    skipped = journals.skipped.read()
    rows.attrs["skipped"] = [str(i) for i in dict.fromkeys(skipped["index"])]
    rows.attrs["skipped_rows"] = len(skipped)
    return rows


def read_timings(folder: str | Path) -> pd.DataFrame:
    """The rows of a run's ``timings.csv``."""
    return Journals.open(folder).timings.read()


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
        methods: Registered method names or ready :class:`Explainer` objects; names must be unique.
        batch_size: Images per forward/backward pass; batches are the index ranges
            ``[k * batch_size, (k + 1) * batch_size)``.
        n: Score only the first ``n`` images.
        target: ``"label"`` (explain the true class) or ``"prediction"`` (the top-1 class).
        tau: The CAM box threshold, a fraction of the map's maximum.
        tolerance: The pointing game's tolerance in pixels.
        out: A folder; each finished batch is appended to ``out/per_image.csv`` (and unreadable images
            to ``skipped.csv``, times to ``timings.csv``). Rows already there are kept and not computed
            again, so calling again on the same folder resumes an interrupted run (with the same
            arguments: the caller checks that, see :class:`xaibench.run_folder.RunFolder`).
        progress: Show a progress bar.

    Returns:
        One row per (image, method) with :data:`COLUMNS` and :data:`CURVE_COLUMNS` (with ``out``, the
        model's rows of ``per_image.csv`` as read back, earlier ones included; several models may
        write to one folder, one call each, and the ``model`` column tells them apart):

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
        - ``status``: ``nonfinite`` rows (the method returned NaN or inf) have no metric value.

        Images that could not be read are listed in ``result.attrs["skipped"]`` (their indices).

    Raises:
        XaibenchError: bad arguments; or a data set or a method failed (the message names the sample
            or the method and the cause; the rows of the batches before are kept in ``out``).
    """
    if target not in TARGETS:
        raise XaibenchError(f"target must be one of {', '.join(TARGETS)}, got '{target}'")
    if batch_size < 1:
        raise XaibenchError(f"batch size must be at least 1, got {batch_size}")
    if n is not None and n < 1:
        raise XaibenchError(f"n must be at least 1, got {n}")
    explainers = [m if isinstance(m, Explainer) else create_explainer(m, model) for m in methods]
    names = [e.name for e in explainers]
    if not names:
        raise XaibenchError("no method to evaluate; name at least one")
    if len(set(names)) != len(names):
        twice = sorted({name for name in names if names.count(name) > 1})
        raise XaibenchError(f"method names must be unique; named more than once: {', '.join(twice)}")
    total = len(dataset) if n is None else min(n, len(dataset))
    journals = Journals.open(out) if out is not None else None
    done, skipped = _done(journals, model.name)

    frames, skipped_now = [], []
    bar = tqdm(total=total, unit="img", disable=not progress, desc="evaluating")
    try:
        for start in range(0, total, batch_size):
            indices = [i for i in range(start, min(start + batch_size, total)) if i not in skipped]
            if all(set(names) <= done.get(i, set()) for i in indices):
                bar.update(min(start + batch_size, total) - start)
                continue
            samples, unreadable = _read(dataset, indices)
            if journals is not None:
                journals.skipped.append(
                    pd.DataFrame([(model.name, i, why) for i, why in unreadable], columns=SKIPPED_COLUMNS)
                )
            skipped_now += [str(i) for i, _ in unreadable]
            batch = collate([samples[i] for i in sorted(samples)]) if samples else None
            methods = () if batch is None else _evaluate_batch(
                model, batch, sorted(samples), explainers, done, target, tau, tolerance
            )
            for frame, timing in methods:  # each method's rows are kept as soon as they exist
                if journals is not None:
                    journals.per_image.append(frame)
                    journals.timings.append(pd.DataFrame([(model.name, *timing)], columns=TIMING_COLUMNS))
                else:
                    frames.append(frame)
            bar.update(min(start + batch_size, total) - start)
    finally:
        bar.close()
    if journals is not None:
        result = journals.per_image.read()
        result = result[result.model == model.name].reset_index(drop=True)
        skips = journals.skipped.read()
        result.attrs["skipped"] = [str(i) for i in skips[skips.model == model.name]["index"]]
        return result
    result = pd.concat(frames, ignore_index=True) if frames else _empty_rows()
    result.attrs["skipped"] = skipped_now
    return result


def _empty_rows() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in COLUMNS + CURVE_COLUMNS})


def _done(journals: Journals | None, model: str) -> tuple[dict[int, set[str]], set[int]]:
    """Which (index, method) rows and which skipped indices the journals already hold for ``model``."""
    if journals is None:
        return {}, set()
    done: dict[int, set[str]] = {}
    rows = journals.per_image.read()
    rows = rows[rows.model == model]
    for index, method in zip(rows["index"].astype(int), rows["method"]):
        done.setdefault(int(index), set()).add(method)
    skipped = journals.skipped.read()
    return done, {int(i) for i in skipped[skipped.model == model]["index"]}


def _read(dataset: Sequence[Sample], indices: Sequence[int]) -> tuple[dict[int, Sample], list[tuple[int, str]]]:
    """The readable samples of ``indices``, and (index, reason) for each unreadable one.

    Only :class:`~xaibench.errors.UnreadableImageError` (a missing, undecodable, truncated or oversized
    file) is skipped; any other error of the data set stops the run, naming the sample.
    """
    samples, unreadable = {}, []
    for index in indices:
        try:
            samples[index] = dataset[index]
        except UnreadableImageError as error:
            unreadable.append((index, str(error)))
            logger.warning("skipped image %d: %s", index, error)
        except XaibenchError as error:
            raise XaibenchError(f"sample {index} of the data set: {error}") from error
        except Exception as error:
            raise XaibenchError(
                f"the data set failed on sample {index} ({type(error).__name__}: {error}); this is not an "
                "unreadable image but an error in the data set's code or annotations"
            ) from error
    return samples, unreadable


def _evaluate_batch(
    model: Model,
    batch: Batch,
    indices: Sequence[int],
    explainers: Sequence[Explainer],
    done: dict[int, set[str]],
    target: str,
    tau: float,
    tolerance: float,
) -> Iterator[tuple[pd.DataFrame, tuple[int, str, int, float]]]:
    """For each method with an (image, method) of the batch not in ``done``, as soon as it is computed:
    the rows of those images, and (batch, method, images, seconds)."""
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
    for explainer in explainers:
        todo = np.array([explainer.name not in done.get(i, ()) for i in indices])
        if not todo.any():
            continue
        start = time.perf_counter()
        try:
            explanation = explainer.explain(images, targets.to(images.device))
        except Exception as error:
            where = f"images {batch.ids[0]} ... {batch.ids[-1]}" if len(batch) > 1 else f"image {batch.ids[0]}"
            raise XaibenchError(f"method '{explainer.name}' failed on {where}: {type(error).__name__}: {error}") from error
        timing = (indices[0], explainer.name, len(batch), time.perf_counter() - start)
        maps = metrics.as_numpy(explanation.maps)
        finite = metrics.as_numpy(explanation.finite).astype(bool)
        constant = metrics.as_numpy(explanation.constant).astype(bool)
        keep = np.flatnonzero(todo)
        valid = keep[finite[keep]]
        iou = np.full(len(batch), np.nan)
        iou[valid] = metrics.cam_box_iou(maps[valid], [batch.boxes[k] for k in valid], tau)
        box_correct = np.where(np.isnan(iou), np.nan, iou >= 0.5)
        undefined = np.full(len(batch), np.nan)
        pointing = np.full(len(batch), np.nan)
        pointing[valid] = np.where(
            scored[valid], metrics.pointing_hits(maps[valid], [regions[k] for k in valid], tolerance), np.nan
        )
        energy = np.full(len(batch), np.nan)
        energy[valid] = [metrics.energy_pointing(maps[k], box_regions[k]) for k in valid]
        curves: list[tuple[np.ndarray | None, np.ndarray | None]] = [(None, None)] * len(batch)
        hists: list[np.ndarray | None] = [None] * len(batch)
        for k in valid:
            curves[k] = metrics.box_iou_curves(maps[k], batch.boxes[k])
            if batch.masks[k] is not None:
                hists[k] = metrics.pxap_histograms(maps[k], batch.masks[k])
        frame = pd.DataFrame(
            {
                "model": model.name,
                "index": indices,
                "image_id": batch.ids,
                "method": explainer.name,
                "label": labels,
                "prediction": predictions.numpy(),
                "target": targets.numpy(),
                "status": np.where(~finite, "nonfinite", np.where(constant, "constant", "ok")),
                "top1_cls": top1_cls,
                "gt_known_loc": box_correct if target == "label" else undefined,
                "top1_loc": np.where(np.isnan(box_correct), np.nan, top1_cls & (box_correct == 1)),
                "top5_loc": np.where(np.isnan(box_correct), np.nan, in_top5 & (box_correct == 1))
                if target == "label" else undefined,
                "iou": iou,
                "pointing": pointing,
                "energy_pointing": energy,
                "box_iou_curve": [c[0] for c in curves],
                "box_iou_curve_v2": [c[1] for c in curves],
                "pxap_hist": hists,
            }
        )
        yield frame.iloc[keep], timing


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
        except UnreadableImageError:
            continue
    return samples


def explain_samples(
    model: Model, samples: Sequence[Sample], methods: Sequence[str | Explainer], target: str = "label"
) -> dict[str, np.ndarray]:
    """Maps (N, H, W) of each method for a few samples, e.g. for a figure (a non-finite map is all zeros)."""
    batch = collate(samples)
    images = batch.images.to(model.device)
    _, targets = _targets(model, images, batch.labels, target)
    explainers = [m if isinstance(m, Explainer) else create_explainer(m, model) for m in methods]
    return {e.name: metrics.as_numpy(e.explain(images, targets).maps) for e in explainers}
