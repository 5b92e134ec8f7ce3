"""Summaries of a run: per-method means with bootstrap confidence intervals, written as CSV and Markdown.

:func:`write_summary` owns ``summary.csv``, ``summary.md``, ``box_accuracy_curves.csv``, ``curves.csv``
and ``curves.png``. It reads the run's folder only (``config.json`` and the journals the harness
appends to), so it summarises a finished run, an interrupted one (``xaibench summarize DIR``) and a
resumed one alike, and a resumed run's summary is byte for byte that of an uninterrupted run.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from xaibench import localization
from xaibench.errors import XaibenchError
from xaibench.harness import (
    COLUMNS, build_metrics, metric_columns, prepared_groups, read_per_image, read_per_image_keys, read_timings,
)
from xaibench.metric import DEFAULT_METRICS, FAMILIES, Metric, Prepared, create_metric, get_metric
from xaibench.run_folder import (
    BOX_ACCURACY_CURVES, CURVES_CSV, CURVES_PNG, PER_IMAGE_CSV, SUMMARY_CSV, SUMMARY_MD, atomic_write_text, read_config,
)
from xaibench.significance import bootstrap_weight_chunks
from xaibench.text import csv_text

SUMMARY_COLUMNS = ["model", "method", "metric", "value", "ci_low", "ci_high", "n"]


def run_metrics(config: dict) -> list[Metric]:
    """The metrics of the run whose ``config.json`` is ``config``, with their options."""
    names = config.get("metrics", DEFAULT_METRICS)
    options = config.get("metric_options", {})
    return build_metrics([create_metric(name, **options.get(name, {})) for name in names])


def metrics_in(per_image: pd.DataFrame) -> list[Metric]:
    """The default metrics whose columns ``per_image`` holds (for a table that comes with no config)."""
    metrics = build_metrics(None)
    present = [m for m in metrics if set(m.columns) <= set(per_image.columns)]
    names = {m.name for m in present}
    return [m for m in present if set(m.requires) <= names]


def bootstrap_weights(n: int, *, n_boot: int = 1000, seed: int = 0) -> np.ndarray:
    """(n_boot, n) counts: how often each of n images is drawn in each resample with replacement (all
    of :func:`~xaibench.significance.bootstrap_weight_chunks`, which the summary uses a chunk at a time)."""
    return np.concatenate(list(bootstrap_weight_chunks(n, n_boot=n_boot, seed=seed)))


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
    means = np.concatenate([w @ values / values.size for w in bootstrap_weight_chunks(values.size, n_boot=n_boot, seed=seed)])
    low, high = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def summarize(
    per_image: pd.DataFrame,
    metrics: list[Metric] | None = None,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    prepared: Mapping[str, Prepared] | None = None,
) -> pd.DataFrame:
    """Long-format summary: one row per (model, method, metric) with ``value, ci_low, ci_high, n``.

    Every metric of ``metrics`` (default: those of the localization set whose columns ``per_image``
    holds) that the data allow (PxAP needs masks), aggregated as the metric says
    (:meth:`~xaibench.metric.Metric.aggregate`): the value on all images, and a percentile bootstrap
    interval from resampling the images, the same resamples for every metric of a method. Data-set-level
    metrics (MaxBoxAcc, PxAP, the class-averaged pointing game) are recomputed on each resample,
    thresholds included. ``prepared`` (metric name -> :class:`~xaibench.metric.Prepared`, for rows of
    one (model, method), as :func:`~xaibench.harness.prepared_groups` gives them) stands for the
    arrays those metrics read, which the rows then need not hold.
    """
    metrics = metrics_in(per_image) if metrics is None else metrics
    prepared = _one_group(per_image, prepared)
    rows = []
    for (model, method), group in _by_model_and_method(per_image):
        group = group.reset_index(drop=True)
        scored = [(metric, metric.count(group, *given(prepared, metric))) for metric in metrics]
        scored = [(metric, n) for metric, n in scored if n]
        values: dict[str, float] = {}
        resamples: dict[str, list[np.ndarray]] = {metric.name: [] for metric, _ in scored}
        metric = None
        try:
            statistics = {}
            for metric, _ in scored:
                statistics[metric.name] = metric.resampled(group, *given(prepared, metric))
                values[metric.name] = float(statistics[metric.name](None))
            # The same resamples for every metric, a bounded chunk of them at a time.
            for weights in bootstrap_weight_chunks(len(group), n_boot=n_boot, seed=seed):
                for metric, _ in scored:
                    resamples[metric.name].append(np.asarray(statistics[metric.name](weights), dtype=np.float64))
        except (ValueError, TypeError, IndexError, KeyError) as error:  # rows read back that do not fit
            raise XaibenchError(
                f"metric '{metric.name}' cannot aggregate the rows of {method} ({model}): "
                f"{type(error).__name__}: {' '.join(str(error).split())[:200]}; if they were read from a run "
                "folder, its per-image rows are damaged"
            ) from error
        for metric, n in scored:
            value, resampled = values[metric.name], np.concatenate(resamples[metric.name])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # every resample NaN: a NaN interval
                low, high = np.nanquantile(resampled, [(1 - level) / 2, (1 + level) / 2])
            rows.append([model, method, metric.name, value, float(low), float(high), n])
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def given(prepared: Mapping[str, Prepared] | None, metric: Metric) -> tuple[Prepared, ...]:
    """``(prepared[metric.name],)`` to pass on to the metric, or ``()`` when it has none (so a metric
    written without prepared arrays is called as it expects)."""
    return (prepared[metric.name],) if prepared and metric.name in prepared else ()


def _one_group(per_image: pd.DataFrame, prepared: Mapping[str, Prepared] | None) -> Mapping[str, Prepared]:
    """``prepared`` (none: empty), checked to be given for the rows of one (model, method) only."""
    if prepared and len(_by_model_and_method(per_image)) > 1:
        raise ValueError("prepared arrays stand for the rows of one (model, method); give them a method at a time")
    return prepared or {}


def per_image_table(per_image: pd.DataFrame, metrics: list[Metric] | None = None) -> pd.DataFrame:
    """The per-image rows with one column per metric and no array columns, for reading.

    The metrics' scalar columns, then a column named after each data-set-level metric that can say
    what each image contributes (:meth:`~xaibench.metric.Metric.per_image_values`, e.g. ``maxboxacc``:
    100 when the image's box is right at its method's best map threshold), so that their means are the
    summary's values (NaN where a map was not scored).
    """
    metrics = metrics_in(per_image) if metrics is None else metrics
    scalars = [c for c, kind in metric_columns(metrics).items() if kind == "scalar" and c in per_image]
    parts = []
    for _, group in _by_model_and_method(per_image):
        group = group.copy()
        for metric in metrics:
            values = metric.per_image_values(group)
            if values is not None:
                group[metric.name] = values
        parts.append(group)
    table = pd.concat(parts) if parts else per_image
    added = [m.name for m in metrics if m.name in table and m.name not in scalars]
    return table[[c for c in COLUMNS if c in table] + scalars + added].sort_index()


def box_accuracy_curves(per_image: pd.DataFrame, prepared: Mapping[str, Prepared] | None = None) -> pd.DataFrame:
    """Box accuracy (%) against the map threshold, per method and IoU threshold (V1: 0.5; V2: 0.3/0.5/0.7).

    Over the method's scored maps (a non-finite map has no curve). A method without one kind of curve
    (e.g. rows of a run that did not score MaxBoxAccV2, combined with one that did) gets NaN there.
    ``prepared`` as in :func:`summarize`: the MaxBoxAcc metrics' hits (:func:`~xaibench.localization.box_hits`
    at their IoU thresholds) stand for the curves.
    """
    rows = []
    prepared = _one_group(per_image, prepared)
    # each curve column, the metric whose prepared hits stand for it, and its outputs (name, IoU threshold)
    columns = {"box_iou_curve": ("maxboxacc", [(localization.V1_CURVE, localization.IOU_THRESHOLD)]),
               "box_iou_curve_v2": ("maxboxacc_v2", [(f"maxboxacc_v2@{d}", d) for d in localization.V2_IOU_THRESHOLDS])}
    hits = {column: prepared[metric] for column, (metric, _) in columns.items()
            if metric in prepared and prepared[metric].column == column}
    if not set(columns) & (set(per_image.columns) | set(hits)):
        return pd.DataFrame()
    for (model, method), group in _by_model_and_method(per_image):
        frame = pd.DataFrame({"model": model, "method": method, "threshold": localization.CAM_THRESHOLDS.round(2)})
        for column, (_, outputs) in columns.items():
            if column in hits:  # the metric's (N, IoU thresholds, T) hits, in the order of ``outputs``
                found = hits[column].values
            else:
                scored = group[column].notna() if column in group else pd.Series(False, index=group.index)
                ious = np.stack(group[column][scored].to_list()) if scored.any() else None
                found = localization.box_hits(ious, [iou for _, iou in outputs]) if ious is not None else None
            for k, (name, _) in enumerate(outputs):
                frame[name] = localization.box_accuracy_curve(found[:, k]) if found is not None else np.nan
        if frame[[name for _, outputs in columns.values() for name, _ in outputs]].notna().any().any():
            rows.append(frame)
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()


CURVE_COLUMNS = ["model", "method", "metric", "x", "value", "n"]


def mean_curves(per_image: pd.DataFrame, metrics: list[Metric]) -> pd.DataFrame:
    """The mean per-image curve of each metric that keeps one (:attr:`~xaibench.metric.Metric.curve`,
    e.g. deletion's probability against the fraction of pixels removed), per (model, method), over
    the images it was scored on: long format ``model, method, metric, x, value, n``."""
    frames = []
    for metric in metrics:
        if metric.curve is None or metric.curve not in per_image:
            continue
        for (model, method), group in _by_model_and_method(per_image):
            curves = [
                np.atleast_1d(np.asarray(c, dtype=np.float64)) for c in group[metric.curve]
                if c is not None and not _is_nan(c)
            ]
            if not curves or len({len(c) for c in curves}) != 1:
                continue
            mean = np.stack(curves).mean(0)
            frames.append(pd.DataFrame({"model": model, "method": method, "metric": metric.name,
                                        "x": metric.curve_x(len(mean)), "value": mean, "n": len(curves)}))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=CURVE_COLUMNS)


def _is_nan(value: object) -> bool:
    return isinstance(value, float) and np.isnan(value)


def seconds_per_image(timings: pd.DataFrame, column: str = "seconds") -> pd.Series:
    """Seconds per image of each (model, method) over a run's ``timings`` rows (a resumed run: the
    work done): ``sum(column) / sum(images)``.

    ``column``: ``seconds``, the method's own time, or ``metric_seconds``, the time its maps spent in
    the metrics (rows without it, written by xaibench 0.3.0 and earlier, are left out).

    Example: two batches of 32 images, 4.0 and 2.4 s in the method: 0.1 s per image.
    """
    if timings.empty or column not in timings:
        return pd.Series(dtype=float)
    rows = timings[timings[column].notna()]
    if rows.empty:
        return pd.Series(dtype=float)
    totals = rows.groupby(["model", "method"], sort=False)[[column, "images"]].sum()
    return totals[column] / totals.images


#: Decimals shown for a metric's value by its unit (:attr:`xaibench.metric.Metric.unit`); others: 3.
DECIMALS = {"%": 1, "count": 0}


def format_value(value: float, unit: str, low: float | None = None, high: float | None = None) -> str:
    """``value [low, high]`` with the decimals of ``unit`` (a count without an interval)."""
    decimals = DECIMALS.get(unit, 3)
    if unit == "count" or low is None:
        return f"{value:.{decimals}f}"
    return f"{value:.{decimals}f} [{low:.{decimals}f}, {high:.{decimals}f}]"


def metric_unit(name: str) -> str:
    """The unit of the metric registered as ``name`` (from its class)."""
    return get_metric(name).unit


def summary_table(
    summary: pd.DataFrame, seconds: pd.Series | None = None, metric_seconds: pd.Series | None = None
) -> pd.DataFrame:
    """The summary as a wide table for reading: one row per method, ``value [ci_low, ci_high]`` cells
    with the decimals of each metric's unit.

    With several models, a ``model`` column comes first. With ``seconds`` (per (model, method), from
    :func:`seconds_per_image`), a ``s/img`` column is added; with ``metric_seconds`` (the same for
    ``metric_seconds``), a ``metric s/img`` column.
    """
    if "model" not in summary:
        summary = summary.assign(model="")
    units = {name: metric_unit(name) for name in dict.fromkeys(summary.metric)}
    cells = summary.assign(
        cell=[
            format_value(v, units[m], lo, hi)
            for m, v, lo, hi in zip(summary.metric, summary.value, summary.ci_low, summary.ci_high)
        ]
    )
    keys = list(dict.fromkeys(zip(summary.model, summary.method)))
    table = cells.pivot(index=["model", "method"], columns="metric", values="cell")
    table = table.reindex(index=pd.MultiIndex.from_tuples(keys, names=["model", "method"]),
                          columns=list(dict.fromkeys(summary.metric)))
    table.insert(0, "n", summary.groupby(["model", "method"], sort=False)["n"].max())
    for column, values in (("s/img", seconds), ("metric s/img", metric_seconds)):
        if values is not None and not values.empty:
            table[column] = [f"{values[k]:.3g}" if k in values.index else "" for k in table.index]
    table = table.reset_index(level="model")
    return table.drop(columns="model") if table.model.nunique() <= 1 else table


def family_tables(
    summary: pd.DataFrame, seconds: pd.Series | None = None, metric_seconds: pd.Series | None = None
) -> list[tuple[str, list[str], pd.DataFrame]]:
    """The summary split by metric family (:data:`~xaibench.metric.FAMILIES`, in that order): per
    family present, its metrics' names and its :func:`summary_table` (the first one with ``s/img`` and
    ``metric s/img``)."""
    names = list(dict.fromkeys(summary.metric))
    families = {name: get_metric(name).family for name in names}
    tables = []
    for family in FAMILIES:
        members = [name for name in names if families[name] == family]
        if members:
            part = summary[summary.metric.isin(members)]
            first = not tables
            tables.append((family, members, summary_table(part, seconds if first else None,
                                                          metric_seconds if first else None)))
    return tables


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


def write_summary(folder: str | Path, *, n_boot: int = 1000, level: float = 0.95) -> pd.DataFrame:
    """Summarise the run in ``folder`` and write ``summary.csv``, ``summary.md``, ``box_accuracy_curves.csv``
    and, for metrics that keep curves (deletion, insertion, ROAD), ``curves.csv`` and ``curves.png``.

    Reads ``config.json`` and the run's tables (``per_image`` one (model, method) at a time, its arrays
    one part at a time, so memory is bounded by one method's rows as the metrics keep them; ``skipped``,
    ``timings``); the run may be finished or not. Each file is
    written atomically. The bootstrap is seeded with the run's seed.

    Returns:
        The long-format summary (as in ``summary.csv``).

    Raises:
        XaibenchError: the folder holds no run (no ``config.json``).
    """
    folder = Path(folder)
    config = read_config(folder)
    metrics = run_metrics(config)
    seed = int(config.get("seed", 0))
    summaries, box_curves, metric_curves = [], [], []
    # A method at a time, the arrays of data-set-level metrics read a part at a time into what their
    # statistics read: the same numbers, in memory bounded by one method's prepared rows.
    for rows, prepared in prepared_groups(folder, metrics):
        summaries.append(summarize(rows, metrics, n_boot=n_boot, seed=seed, level=level, prepared=prepared))
        box_curves.append(box_accuracy_curves(rows, prepared))
        metric_curves.append(mean_curves(rows, metrics))
    summary = pd.concat(summaries, ignore_index=True) if summaries else pd.DataFrame(columns=SUMMARY_COLUMNS)
    atomic_write_text(folder / SUMMARY_CSV, csv_text(summary))
    curves = pd.concat([c for c in box_curves if not c.empty], ignore_index=True) if any(
        not c.empty for c in box_curves) else pd.DataFrame()
    atomic_write_text(folder / BOX_ACCURACY_CURVES, csv_text(curves))
    metric_curves = _by_metric([c for c in metric_curves if not c.empty], metrics)
    if not metric_curves.empty:
        from xaibench import viz  # matplotlib, only when there is something to draw

        atomic_write_text(folder / CURVES_CSV, csv_text(metric_curves))
        viz.metric_curves(metric_curves, {m.name: m for m in metrics}, folder / CURVES_PNG)
    keys = read_per_image_keys(folder)
    atomic_write_text(folder / SUMMARY_MD, summary_markdown(summary, config, keys, read_timings(folder), metrics))
    return summary


def _by_metric(frames: list[pd.DataFrame], metrics: list[Metric]) -> pd.DataFrame:
    """Mean curves computed a (model, method) at a time, in :func:`mean_curves`' order: by metric, then
    (model, method) as they came."""
    if not frames:
        return pd.DataFrame(columns=CURVE_COLUMNS)
    curves = pd.concat(frames, ignore_index=True)
    order = {m.name: k for k, m in enumerate(metrics)}
    return curves.iloc[np.argsort(curves["metric"].map(order).to_numpy(), kind="stable")].reset_index(drop=True)


def export_per_image(folder: str | Path, path: str | Path | None = None) -> Path:
    """Write the run's per-image table for spreadsheets: :func:`per_image_table` as CSV (text cells a
    spreadsheet would take for a formula escaped, :func:`xaibench.text.csv_text`), written atomically
    to ``path`` (default: ``per_image_table.csv`` in the run's folder).

    Example:
        ``xaibench export RUN`` then open ``RUN/per_image_table.csv``; or read the run's
        ``per_image/`` folder with ``pandas.read_parquet`` for the arrays too.
    """
    folder = Path(folder)
    metrics = run_metrics(read_config(folder))
    target = folder / PER_IMAGE_CSV if path is None else Path(path)
    atomic_write_text(target, csv_text(per_image_table(read_per_image(folder, metrics), metrics)))
    return target


def run_is_complete(config: dict, per_image: pd.DataFrame) -> bool:
    """Whether every (model, image, method) of the run's configuration has its row (skipped images aside)."""
    n, methods = config.get("n"), config.get("methods") or []
    models = config.get("models") or [{}]
    skipped = per_image.attrs.get("skipped_rows", len(per_image.attrs.get("skipped", [])) * len(models))
    return n is None or len(per_image) >= (int(n) * len(models) - skipped) * len(methods)


def summary_markdown(
    summary: pd.DataFrame,
    config: dict,
    per_image: pd.DataFrame,
    timings: pd.DataFrame | None = None,
    metrics: list[Metric] | None = None,
) -> str:
    """``summary.md``: a title, how complete the run is, then per metric family a table and what each
    of its metrics means (from the metrics themselves)."""
    models = ", ".join(m.get("name", "") for m in config.get("models", [])) or config.get("model", "")
    title = f"# xaibench: {models} on {config.get('dataset', '')}\n\n"
    metrics = {m.name: m for m in (run_metrics(config) if metrics is None else metrics)}
    options = config.get("metric_options", {})
    images = per_image["index"].nunique() if len(per_image) else 0
    skipped = len(per_image.attrs.get("skipped", []))
    status = f"{images} images scored"
    if skipped:
        status += f", {skipped} unreadable images skipped (the skipped/ table; --resume reads them again)"
    if not run_is_complete(config, per_image):
        status += f"; **partial run** of {config.get('n')} images: continue it with --resume"
    seconds = seconds_per_image(timings) if timings is not None else None
    metric_seconds = seconds_per_image(timings, "metric_seconds") if timings is not None else None
    sections = []
    for family, names, table in family_tables(summary, seconds, metric_seconds):
        legend = "\n".join(
            f"- {m.name} ({m.title}, {m.unit}{_direction(m)}): {m.description}{options_text(options.get(m.name))}"
            for m in (metrics.get(name) or get_metric(name) for name in names)
        )
        sections.append(f"## {family.capitalize()}\n\n{to_markdown(table)}\n{legend}\n")
    intervals = "Values with 95% bootstrap intervals over images.\n\n" if sections else ""
    return title + status + ".\n\n" + intervals + "\n".join(sections)


def _direction(metric: Metric) -> str:
    return f", {metric.direction}" if metric.direction else ""


def options_text(options: dict | None) -> str:
    """A metric's options as a legend gives them: `` (tolerance=15, ...)``, or nothing."""
    return f" ({', '.join(f'{k}={v}' for k, v in options.items())})" if options else ""
