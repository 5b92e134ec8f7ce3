"""Summaries of a run: per-method means with bootstrap confidence intervals, written as CSV and Markdown."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from xaibench import metrics

SUMMARY_COLUMNS = ["method", "metric", "value", "ci_low", "ci_high", "n"]


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
    "seconds_per_image": _scalar("seconds", 1.0),
}


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
    """Long-format summary: one row per (method, metric) with ``value, ci_low, ci_high, n``.

    Every metric of :data:`SUMMARY_METRICS` that the data allow (PxAP needs masks): the value on all
    images, and a percentile bootstrap interval from resampling the images, the same resamples for
    every metric of a method. Data-set-level metrics (MaxBoxAcc, PxAP, the class-averaged pointing
    game) are recomputed on each resample, thresholds included.
    """
    rows = []
    for method, group in per_image.groupby("method", sort=False):
        group = group.reset_index(drop=True)
        weights = bootstrap_weights(len(group), n_boot=n_boot, seed=seed)
        for metric, statistic in SUMMARY_METRICS.items():
            n = statistic.count(group)
            if n == 0:
                continue
            value = float(statistic(group, None))
            resampled = np.asarray(statistic(group, weights), dtype=np.float64)
            low, high = np.nanquantile(resampled, [(1 - level) / 2, (1 + level) / 2])
            rows.append([method, metric, value, float(low), float(high), n])
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def per_image_table(per_image: pd.DataFrame) -> pd.DataFrame:
    """The per-image table with one column per metric, ready for CSV.

    Adds ``maxboxacc`` and ``maxboxacc_v2``: 100 when the image's box is right at its method's best
    map threshold (for V2, the mean over the three IoU thresholds, each at its own best threshold),
    so that their means are the summary's MaxBoxAcc and MaxBoxAccV2. The array columns are dropped.
    """
    from xaibench.harness import COLUMNS

    parts = []
    for _, group in per_image.groupby("method", sort=False):
        group = group.copy()
        v1 = np.stack(group.box_iou_curve.to_list())
        v2 = np.stack(group.box_iou_curve_v2.to_list())
        best = metrics.box_acc_curve(v1, 0.5).argmax()
        group["maxboxacc"] = 100.0 * (v1[:, best] >= 0.5)
        group["maxboxacc_v2"] = np.mean(
            [100.0 * (v2[:, metrics.box_acc_curve(v2, d).argmax()] >= d) for d in metrics.V2_IOU_THRESHOLDS], axis=0
        )
        parts.append(group)
    table = pd.concat(parts) if parts else per_image.assign(maxboxacc=[], maxboxacc_v2=[])
    return table[COLUMNS[:9] + ["maxboxacc", "maxboxacc_v2"] + COLUMNS[9:]].sort_index()


def box_accuracy_curves(per_image: pd.DataFrame) -> pd.DataFrame:
    """Box accuracy (%) against the map threshold, per method and IoU threshold (V1: 0.5; V2: 0.3/0.5/0.7)."""
    rows = []
    for method, group in per_image.groupby("method", sort=False):
        v1 = np.stack(group.box_iou_curve.to_list())
        v2 = np.stack(group.box_iou_curve_v2.to_list())
        frame = pd.DataFrame({"method": method, "threshold": metrics.CAM_THRESHOLDS.round(2),
                              "maxboxacc@0.5": metrics.box_acc_curve(v1, 0.5)})
        for d in metrics.V2_IOU_THRESHOLDS:
            frame[f"maxboxacc_v2@{d}"] = metrics.box_acc_curve(v2, d)
        rows.append(frame)
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()


def summary_table(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary as a wide table for reading: one row per method, ``value [ci_low, ci_high]`` cells."""
    cells = summary.assign(
        cell=[
            f"{v:.3g}" if m == "seconds_per_image" else f"{v:.1f} [{lo:.1f}, {hi:.1f}]"
            for m, v, lo, hi in zip(summary.metric, summary.value, summary.ci_low, summary.ci_high)
        ]
    )
    table = cells.pivot(index="method", columns="metric", values="cell")
    table = table.reindex(index=list(dict.fromkeys(summary.method)), columns=list(dict.fromkeys(summary.metric)))
    n = summary.groupby("method", sort=False)["n"].max()
    table.insert(0, "n", n)
    return table


def to_markdown(table: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table of a DataFrame (index included)."""
    header = [table.index.name or ""] + [str(c) for c in table.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for index, row in table.iterrows():
        lines.append("| " + " | ".join([str(index)] + [str(v) for v in row]) + " |")
    return "\n".join(lines) + "\n"


def write_summary(out: str | Path, summary: pd.DataFrame, config: dict) -> None:
    """Write ``summary.csv`` (long format), ``summary.md`` and ``config.json`` into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary.to_csv(out / "summary.csv", index=False)
    title = f"# xaibench: {config.get('model', '')} on {config.get('dataset', '')}\n\n"
    note = (
        "Values in %, with 95% bootstrap intervals over images. gt_known_loc, top1_loc, top5_loc: the CAM "
        f"paper's box (map >= {config.get('tau', 0.2)} of its max, largest connected component) with IoU >= 0.5; "
        "maxboxacc, maxboxacc_v2, pxap: wsolevaluation (Choe et al. 2020); pointing: the map's maximum "
        f"within {config.get('tolerance', 15)} px of the object (pointing_per_class: averaged over classes, "
        "as TorchRay); energy_pointing: the map's share inside the boxes.\n\n"
    )
    (out / "summary.md").write_text(title + note + to_markdown(summary_table(summary)))
    (out / "config.json").write_text(json.dumps(config, indent=2, default=str) + "\n")
