"""Summaries of a run: per-method means with bootstrap confidence intervals, written as CSV and Markdown.

:func:`write_summary` owns ``summary.csv``, ``summary.md`` and ``box_accuracy_curves.csv``. It reads
the run's folder only (``config.json`` and the journals the harness appends to), so it summarises a
finished run, an interrupted one (``xaibench summarize DIR``) and a resumed one alike, and a resumed
run's summary is byte for byte that of an uninterrupted run.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from xaibench import metrics
from xaibench.errors import XaibenchError
from xaibench.harness import COLUMNS, read_per_image, read_timings
from xaibench.run_folder import BOX_ACCURACY_CURVES, CONFIG, SUMMARY_CSV, SUMMARY_MD, atomic_write, atomic_write_text

SUMMARY_COLUMNS = ["model", "method", "metric", "value", "ci_low", "ci_high", "n"]


def _scalar(column: str, scale: float = 100.0) -> Callable[[pd.DataFrame, np.ndarray | None], object]:
    """The mean of a per-image column (NaN rows left out), times ``scale``."""

    def statistic(group: pd.DataFrame, weights: np.ndarray | None) -> object:
        values = group[column].to_numpy(dtype=np.float64)
        keep = ~np.isnan(values)
        if weights is None:
            return scale * values[keep].mean() if keep.any() else np.nan
        w = weights[:, keep]
        with np.errstate(invalid="ignore", divide="ignore"):
            return scale * (w @ values[keep]) / w.sum(1)

    statistic.count = lambda group: int(group[column].notna().sum())
    return statistic


def _curves(column: str, metric: Callable) -> Callable[[pd.DataFrame, np.ndarray | None], object]:
    """A data-set-level metric of the per-image arrays in ``column`` (rows holding None left out)."""

    def statistic(group: pd.DataFrame, weights: np.ndarray | None) -> object:
        keep = group[column].notna().to_numpy()
        if not keep.any():
            return np.nan if weights is None else np.full(len(weights), np.nan)
        arrays = np.stack(group[column][keep].to_list())
        return metric(arrays, weights=None if weights is None else weights[:, keep])

    statistic.count = lambda group: int(group[column].notna().sum())
    return statistic


def _pointing_per_class(group: pd.DataFrame, weights: np.ndarray | None) -> object:
    return 100 * metrics.class_mean(group["pointing"].to_numpy(np.float64), group["label"].to_numpy(), weights)


_pointing_per_class.count = lambda group: int(group["pointing"].notna().sum())


def _status_count(status: str) -> Callable[[pd.DataFrame, np.ndarray | None], object]:
    """How many of the method's maps had ``status``: a count, not a percentage (resampled like the rest)."""

    def statistic(group: pd.DataFrame, weights: np.ndarray | None) -> object:
        hits = (group["status"] == status).to_numpy(np.float64)
        return float(hits.sum()) if weights is None else weights @ hits

    statistic.count = lambda group: len(group)
    return statistic


#: Every summary metric: name -> statistic(per-image rows of one method, bootstrap weights or None).
#: Percentages (0-100), named as in the papers' tables.
SUMMARY_METRICS: dict[str, Callable] = {
    "top1_cls": _scalar("top1_cls"),
    "gt_known_loc": _scalar("gt_known_loc"),
    "top1_loc": _scalar("top1_loc"),
    "top5_loc": _scalar("top5_loc"),
    "maxboxacc": _curves("box_iou_curve", metrics.max_box_acc),
    "maxboxacc_v2": _curves("box_iou_curve_v2", metrics.max_box_acc_v2),
    "pxap": _curves("pxap_hist", metrics.pxap),
    "pointing": _scalar("pointing"),
    "pointing_per_class": _pointing_per_class,
    "energy_pointing": _scalar("energy_pointing"),
    "mean_iou": _scalar("iou"),
    "nonfinite_maps": _status_count("nonfinite"),
    "constant_maps": _status_count("constant"),
}
#: Metrics that are counts of maps rather than percentages.
COUNT_METRICS = ("nonfinite_maps", "constant_maps")


def bootstrap_weights(n: int, *, n_boot: int = 1000, seed: int = 0) -> np.ndarray:
    """(n_boot, n) counts: how often each of n images is drawn in each resample with replacement."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n, np.full(n, 1 / n), size=n_boot).astype(np.float64)


def bootstrap_ci(
    values: np.ndarray, *, n_boot: int = 1000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean (Efron & Tibshirani 1993, ch. 13).

    Resamples ``values`` with replacement ``n_boot`` times and returns the ``(1 - level) / 2`` and
    ``(1 + level) / 2`` quantiles of the resampled means. NaN for an empty input.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return float("nan"), float("nan")
    means = bootstrap_weights(values.size, n_boot=n_boot, seed=seed) @ values / values.size
    low, high = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def summarize(per_image: pd.DataFrame, *, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> pd.DataFrame:
    """Long-format summary: one row per (model, method, metric) with ``value, ci_low, ci_high, n``.

    Every metric of :data:`SUMMARY_METRICS` that the data allow (PxAP needs masks): the value on all
    images, and a percentile bootstrap interval from resampling the images, the same resamples for
    every metric of a method. Data-set-level metrics (MaxBoxAcc, PxAP, the class-averaged pointing
    game) are recomputed on each resample, thresholds included.
    """
    rows = []
    for (model, method), group in _by_model_and_method(per_image):
        group = group.reset_index(drop=True)
        weights = bootstrap_weights(len(group), n_boot=n_boot, seed=seed)
        for metric, statistic in SUMMARY_METRICS.items():
            n = statistic.count(group)
            if n == 0:
                continue
            value = float(statistic(group, None))
            resampled = np.asarray(statistic(group, weights), dtype=np.float64)
            low, high = np.nanquantile(resampled, [(1 - level) / 2, (1 + level) / 2])
            rows.append([model, method, metric, value, float(low), float(high), n])
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def per_image_table(per_image: pd.DataFrame) -> pd.DataFrame:
    """The per-image rows with one column per metric and no array columns, for reading.

    Adds ``maxboxacc`` and ``maxboxacc_v2``: 100 when the image's box is right at its method's best
    map threshold (for V2, the mean over the three IoU thresholds, each at its own best threshold),
    so that their means are the summary's MaxBoxAcc and MaxBoxAccV2 (NaN where a map was not scored).
    """
    parts = []
    for _, group in _by_model_and_method(per_image):
        group = group.copy()
        group["maxboxacc"] = group["maxboxacc_v2"] = np.nan
        scored = group.box_iou_curve.notna().to_numpy()
        if scored.any():
            v1 = np.stack(group.box_iou_curve[scored].to_list())
            v2 = np.stack(group.box_iou_curve_v2[scored].to_list())
            best = metrics.box_acc_curve(v1, 0.5).argmax()
            group.loc[scored, "maxboxacc"] = 100.0 * (v1[:, best] >= 0.5)
            group.loc[scored, "maxboxacc_v2"] = np.mean(
                [100.0 * (v2[:, metrics.box_acc_curve(v2, d).argmax()] >= d) for d in metrics.V2_IOU_THRESHOLDS],
                axis=0,
            )
        parts.append(group)
    table = pd.concat(parts) if parts else per_image.assign(maxboxacc=[], maxboxacc_v2=[])
    return table[[c for c in COLUMNS if c in table] + ["maxboxacc", "maxboxacc_v2"]].sort_index()


def box_accuracy_curves(per_image: pd.DataFrame) -> pd.DataFrame:
    """Box accuracy (%) against the map threshold, per method and IoU threshold (V1: 0.5; V2: 0.3/0.5/0.7).

    Over the method's scored maps (a non-finite map has no curve).
    """
    rows = []
    for (model, method), group in _by_model_and_method(per_image):
        scored = group.box_iou_curve.notna()
        if not scored.any():
            continue
        v1 = np.stack(group.box_iou_curve[scored].to_list())
        v2 = np.stack(group.box_iou_curve_v2[scored].to_list())
        frame = pd.DataFrame({"model": model, "method": method, "threshold": metrics.CAM_THRESHOLDS.round(2),
                              "maxboxacc@0.5": metrics.box_acc_curve(v1, 0.5)})
        for d in metrics.V2_IOU_THRESHOLDS:
            frame[f"maxboxacc_v2@{d}"] = metrics.box_acc_curve(v2, d)
        rows.append(frame)
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()


def seconds_per_image(timings: pd.DataFrame) -> pd.Series:
    """Seconds per image of each (model, method) over a run's ``timings.csv`` rows (a resumed run: the
    work done)."""
    if timings.empty:
        return pd.Series(dtype=float)
    totals = timings.groupby(["model", "method"], sort=False)[["seconds", "images"]].sum()
    return totals.seconds / totals.images


def summary_table(summary: pd.DataFrame, seconds: pd.Series | None = None) -> pd.DataFrame:
    """The summary as a wide table for reading: one row per method, ``value [ci_low, ci_high]`` cells.

    With several models, a ``model`` column comes first. With ``seconds`` (per (model, method), from
    :func:`seconds_per_image`), a ``s/img`` column is added.
    """
    if "model" not in summary:
        summary = summary.assign(model="")
    cells = summary.assign(
        cell=[
            f"{v:.0f}" if m in COUNT_METRICS else f"{v:.1f} [{lo:.1f}, {hi:.1f}]"
            for m, v, lo, hi in zip(summary.metric, summary.value, summary.ci_low, summary.ci_high)
        ]
    )
    keys = list(dict.fromkeys(zip(summary.model, summary.method)))
    table = cells.pivot(index=["model", "method"], columns="metric", values="cell")
    table = table.reindex(index=pd.MultiIndex.from_tuples(keys, names=["model", "method"]),
                          columns=list(dict.fromkeys(summary.metric)))
    table.insert(0, "n", summary.groupby(["model", "method"], sort=False)["n"].max())
    if seconds is not None and not seconds.empty:
        table["s/img"] = [f"{seconds[k]:.3g}" if k in seconds.index else "" for k in table.index]
    table = table.reset_index(level="model")
    return table.drop(columns="model") if table.model.nunique() <= 1 else table


def to_markdown(table: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table of a DataFrame (index included)."""
    header = [table.index.name or ""] + [str(c) for c in table.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for index, row in table.iterrows():
        lines.append("| " + " | ".join([str(index)] + [str(v) for v in row]) + " |")
    return "\n".join(lines) + "\n"


def _by_model_and_method(per_image: pd.DataFrame):
    """``((model, method), rows)`` for each pair, in order of appearance (model "" if there is no column)."""
    if "model" not in per_image:
        per_image = per_image.assign(model="")
    return per_image.groupby(["model", "method"], sort=False)


def read_config(folder: str | Path) -> dict:
    """The ``config.json`` of the run in ``folder``.

    Raises:
        XaibenchError: the folder holds no run.
    """
    path = Path(folder) / CONFIG
    if not path.is_file():
        raise XaibenchError(f"{folder} holds no xaibench run (no {CONFIG}); name a run's output folder")
    return json.loads(path.read_text(encoding="utf-8"))


def write_summary(folder: str | Path, *, n_boot: int = 1000, level: float = 0.95) -> pd.DataFrame:
    """Summarise the run in ``folder`` and write ``summary.csv``, ``summary.md`` and ``box_accuracy_curves.csv``.

    Reads ``config.json`` and the journals (``per_image.csv``, ``skipped.csv``, ``timings.csv``); the
    run may be finished or not. Each file is written atomically. The bootstrap is seeded with the
    run's seed.

    Returns:
        The long-format summary (as in ``summary.csv``).

    Raises:
        XaibenchError: the folder holds no run (no ``config.json``).
    """
    folder = Path(folder)
    config = read_config(folder)
    per_image = read_per_image(folder)
    summary = summarize(per_image, n_boot=n_boot, seed=int(config.get("seed", 0)), level=level)
    atomic_write(folder / SUMMARY_CSV, lambda f: f.write(summary.to_csv(index=False, lineterminator="\n").encode()))
    curves = box_accuracy_curves(per_image)
    atomic_write(folder / BOX_ACCURACY_CURVES, lambda f: f.write(curves.to_csv(index=False, lineterminator="\n").encode()))
    atomic_write_text(folder / SUMMARY_MD, summary_markdown(summary, config, per_image, read_timings(folder)))
    return summary


def run_is_complete(config: dict, per_image: pd.DataFrame) -> bool:
    """Whether every (model, image, method) of the run's configuration has its row (skipped images aside)."""
    n, methods = config.get("n"), config.get("methods") or []
    models = config.get("models") or [{}]
    skipped = per_image.attrs.get("skipped_rows", len(per_image.attrs.get("skipped", [])) * len(models))
    return n is None or len(per_image) >= (int(n) * len(models) - skipped) * len(methods)


def summary_markdown(
    summary: pd.DataFrame, config: dict, per_image: pd.DataFrame, timings: pd.DataFrame | None = None
) -> str:
    """``summary.md``: a title, what the numbers mean, how complete the run is, and the table."""
    models = ", ".join(m.get("name", "") for m in config.get("models", [])) or config.get("model", "")
    title = f"# xaibench: {models} on {config.get('dataset', '')}\n\n"
    note = (
        "Values in %, with 95% bootstrap intervals over images. gt_known_loc, top1_loc, top5_loc: the CAM "
        f"paper's box (map >= {config.get('tau', metrics.CAM_TAU)} of its max, largest connected component) with IoU >= 0.5; "
        "maxboxacc, maxboxacc_v2, pxap: wsolevaluation (Choe et al. 2020); pointing: the map's maximum "
        f"within {config.get('tolerance', metrics.POINTING_TOLERANCE)} px of the object (pointing_per_class: averaged over classes, "
        "as TorchRay); energy_pointing: the map's share inside the boxes. nonfinite_maps: maps with NaN or "
        "inf (a failure of the method, not scored); constant_maps: constant maps (scored as all-zero maps).\n\n"
    )
    images = per_image["index"].nunique() if len(per_image) else 0
    skipped = len(per_image.attrs.get("skipped", []))
    status = f"{images} images scored"
    if skipped:
        status += f", {skipped} unreadable images skipped (skipped.csv)"
    if not run_is_complete(config, per_image):
        status += f"; **partial run** of {config.get('n')} images: continue it with --resume"
    seconds = seconds_per_image(timings) if timings is not None else None
    return title + note + status + ".\n\n" + to_markdown(summary_table(summary, seconds))
