"""Summaries of a run: per-method means with bootstrap confidence intervals, written as CSV and Markdown."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

#: Summary metric -> (per-image column, scale). Booleans become percentages.
SUMMARY_METRICS = {
    "loc_acc": ("loc_correct", 100.0),
    "mean_iou": ("iou", 100.0),
    "pointing": ("pointing_hit", 100.0),
    "seconds_per_image": ("seconds", 1.0),
}
SUMMARY_COLUMNS = ["method", "metric", "value", "ci_low", "ci_high", "n"]


def bootstrap_ci(
    values: np.ndarray, *, n_boot: int = 1000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean (Efron & Tibshirani 1993, ch. 13).

    Draws ``n_boot`` resamples of ``values`` with replacement and returns the ``(1 - level) / 2`` and
    ``(1 + level) / 2`` quantiles of their means. NaN for an empty input.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, size=(n_boot, values.size))].mean(1)
    alpha = (1 - level) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return float(low), float(high)


def summarize(per_image: pd.DataFrame, *, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Long-format summary: one row per (method, metric) with ``value, ci_low, ci_high, n``.

    ``loc_acc`` is the share (%) of images whose CAM-protocol box has IoU >= 0.5, ``mean_iou`` the
    mean IoU (%), ``pointing`` the pointing-game accuracy (%), each with a 95% percentile bootstrap
    interval; ``seconds_per_image`` is the method's mean time per image.
    """
    rows = []
    for method, group in per_image.groupby("method", sort=False):
        for metric, (column, scale) in SUMMARY_METRICS.items():
            values = group[column].to_numpy(dtype=np.float64) * scale
            low, high = bootstrap_ci(values, n_boot=n_boot, seed=seed)
            rows.append([method, metric, values.mean() if values.size else np.nan, low, high, values.size])
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


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
        "Values in %, with 95% bootstrap intervals; loc_acc: CAM-protocol box (tau = "
        f"{config.get('tau', 0.2)}) with IoU >= 0.5; pointing: maximum within {config.get('tolerance', 15)} px "
        "of the object.\n\n"
    )
    (out / "summary.md").write_text(title + note + to_markdown(summary_table(summary)))
    (out / "config.json").write_text(json.dumps(config, indent=2, default=str) + "\n")
