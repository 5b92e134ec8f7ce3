"""The figures of ``xaibench report``: metric bars with interval whiskers, box accuracy against the map
threshold, the distribution of per-image IoU, accuracy at IoU 0.3 / 0.5 / 0.7, and the galleries
(each method's best and worst images; a few images per class, as the CAM paper's Figure 3).

Every function returns a :class:`matplotlib.figure.Figure` (no pyplot, no global state), or None when
the runs hold nothing to draw; :func:`png` and :func:`jpeg` turn one into a file's bytes. Names of
methods, models, data sets and classes are drawn as written (:func:`xaibench.text.literal`).
"""

from __future__ import annotations

import io
import logging
import textwrap
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from xaibench import localization, thumbnails
from xaibench.comparison import Comparison, rows_of, thumbnails_of
from xaibench.metric import Metric
from xaibench.text import literal
from xaibench.viz import DEFAULT_ALPHA, DEFAULT_CMAP, heatmap_overlay

#: The per-image column of the CAM-protocol IoU (the ``mean_iou`` metric's) and the columns of the
#: per-image box-IoU curves (``maxboxacc``, ``maxboxacc_v2``) that the localization plots read.
IOU_COLUMN = "mean_iou"
#: Rows of a gallery at most (each method's best and worst image, then capped).
GALLERY_ROWS = 16
#: Methods of one gallery at most: more are split into galleries of about equal width, so that every
#: method's best and worst image fit in :data:`GALLERY_ROWS` rows and the page can show the columns.
GALLERY_METHODS = 8


def gallery_groups(methods: list[str], most: int | None = None) -> list[list[str]]:
    """``methods`` in order, split into the fewest groups of at most ``most`` (default
    :data:`GALLERY_METHODS`), their sizes differing by one at most (33 methods in groups of 8: 7, 6,
    7, 6, 7)."""
    most = most or GALLERY_METHODS
    count = -(-len(methods) // most) if methods else 0
    bounds = [round(i * len(methods) / count) for i in range(count + 1)] if count else [0]
    return [methods[a:b] for a, b in zip(bounds, bounds[1:])]


def png(fig: Figure, dpi: int = 100) -> bytes:
    """The figure as PNG bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


#: JPEG quality of the figures of photos (the galleries: a fifth of the PNG's size, no visible loss).
JPEG_QUALITY = 88


def jpeg(fig: Figure, dpi: int = 100, quality: int = JPEG_QUALITY) -> bytes:
    """The figure as JPEG bytes (for figures of photos, where PNG is several times larger)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="jpg", dpi=dpi, facecolor="white", pil_kwargs={"quality": quality})
    return buffer.getvalue()


#: The vector formats every figure is also written in, and what they are saved with: TrueType fonts
#: embedded in the PDF (fonttype 42: Type 3 fonts are refused by some publishers), the SVG's text as
#: paths (it needs no font), no date in either (the same figure gives the same bytes), and the photos
#: of the galleries at :data:`VECTOR_DPI`.
VECTOR_FORMATS = ("pdf", "svg")
VECTOR_DPI = 200
_VECTOR_STYLE = {"pdf.fonttype": 42, "svg.fonttype": "path", "svg.hashsalt": "xaibench"}
_NO_DATE = {"pdf": {"CreationDate": None}, "svg": {"Date": None}}


def vector(fig: Figure, fmt: str) -> bytes:
    """The figure as PDF or SVG bytes (``fmt``, one of :data:`VECTOR_FORMATS`), its fonts embedded."""
    buffer = io.BytesIO()
    subsetting = logging.getLogger("fontTools")  # the PDF's font subsetting logs every glyph at INFO
    level = subsetting.level
    subsetting.setLevel(logging.WARNING)
    try:
        with matplotlib.rc_context(_VECTOR_STYLE):
            fig.savefig(buffer, format=fmt, dpi=VECTOR_DPI, facecolor="white", metadata=_NO_DATE[fmt])
    finally:
        subsetting.setLevel(level)
    return buffer.getvalue()


def dataset_label(dataset: str) -> str:
    """A data set as figures name it: its kind and the last part of its path (``imagenet:imagenet-val-300``)."""
    kind, _, path = dataset.partition(":")
    name = Path(path.rstrip("/\\")).name if path else ""
    return f"{kind}:{name}" if name else dataset


def _group_label(dataset: str, model: str, several: bool) -> str:
    return f"{model} on {dataset_label(dataset)}" if several else model


def _wrapped(text: str, inches: float, points: float = 8) -> str:
    """``text`` broken into lines that fit ``inches`` at ``points`` (about half an em per character)."""
    return textwrap.fill(text, max(20, int(inches * 72 / (0.5 * points))))


def metric_bars(summary: pd.DataFrame, metrics: dict[str, Metric]) -> Figure | None:
    """One panel per metric (counts left out): each method's value as a bar with its 95% interval as a
    whisker, one colour per (dataset, model)."""
    names = [n for n in dict.fromkeys(summary.metric) if n in metrics and metrics[n].unit != "count"]
    if not names:
        return None
    groups = list(dict.fromkeys(zip(summary.dataset, summary.model)))
    methods = list(dict.fromkeys(summary.method))
    columns = min(len(names), 3)
    rows = -(-len(names) // columns)
    width = max(4.2, 0.28 * len(methods) * len(groups) + 1.5)
    fig = Figure(figsize=(width * columns, 3.3 * rows), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    step = 0.8 / len(groups)
    colours = colormaps["tab10"].colors
    for ax, name in zip(axes, names):
        metric = metrics[name]
        part = summary[summary.metric == name]
        for g, (dataset, model) in enumerate(groups):
            rows_g = part[(part.dataset == dataset) & (part.model == model)].set_index("method").reindex(methods)
            x = np.arange(len(methods)) + (g - (len(groups) - 1) / 2) * step
            ax.bar(x, rows_g.value.to_numpy(dtype=float), width=step, color=colours[g % len(colours)],
                   label=literal(_group_label(dataset, model, len({d for d, _ in groups}) > 1)))
            # The interval as drawn lines, not yerr: a bootstrap interval need not contain the value
            # (MaxBoxAcc re-picks its threshold per resample; rounding), which yerr cannot show.
            low, high = rows_g.ci_low.to_numpy(dtype=float), rows_g.ci_high.to_numpy(dtype=float)
            ax.vlines(x, low, high, color="k", lw=0.8)
            ax.hlines(np.concatenate([low, high]), np.tile(x - step / 6, 2), np.tile(x + step / 6, 2), color="k", lw=0.8)
        ax.set_title(literal(f"{metric.title or name}{f' ({metric.direction})' if metric.direction else ''}"), fontsize=9)
        ax.set_ylabel(literal(metric.unit), fontsize=8)
        ax.set_xticks(range(len(methods)))
        ax.set_xticklabels([literal(m) for m in methods], rotation=60, ha="right", fontsize=7)
        ax.grid(axis="y", alpha=0.3)
    for ax in axes[len(names):]:
        ax.set_visible(False)
    if len(groups) > 1:
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside upper center", ncol=min(len(groups), 3), fontsize=8)
    else:
        fig.suptitle("Each method's value with its 95% bootstrap interval", fontsize=10)
    return fig


def box_accuracy_vs_threshold(curves: pd.DataFrame) -> Figure | None:
    """Box accuracy (IoU >= 0.5, wsolevaluation's box of the largest contour) against the map threshold,
    one line per method and one panel per (dataset, model): the curves MaxBoxAcc maximises, each
    method's best threshold marked; ``curves`` as :func:`xaibench.report.box_accuracy_curves` gives
    them, with ``dataset`` (methods without the curve, NaN, are left out)."""
    if curves.empty or localization.V1_CURVE not in curves or curves[localization.V1_CURVE].isna().all():
        return None
    curves = curves.dropna(subset=[localization.V1_CURVE])
    groups = list(dict.fromkeys(zip(curves.dataset, curves.model)))
    several = len({d for d, _ in groups}) > 1
    fig = Figure(figsize=(6.0, 4.0 * len(groups)), layout="constrained")
    axes = fig.subplots(len(groups), 1, squeeze=False).ravel()
    for ax, (dataset, model) in zip(axes, groups):
        part = curves[(curves.dataset == dataset) & (curves.model == model)]
        for method, rows in part.groupby("method", sort=False):
            (line,) = ax.plot(rows.threshold, rows[localization.V1_CURVE], lw=1.2, label=literal(method))
            best = rows[localization.V1_CURVE].to_numpy().argmax()
            ax.plot(rows.threshold.iloc[best], rows[localization.V1_CURVE].iloc[best], "o", color=line.get_color(), ms=5)
            ax.annotate(f"{rows.threshold.iloc[best]:.2f}", (rows.threshold.iloc[best], rows[localization.V1_CURVE].iloc[best]),
                        textcoords="offset points", xytext=(3, 3), fontsize=6, color=line.get_color())
        ax.axvline(localization.CAM_TAU, color="grey", ls=":", lw=0.8)
        ax.set_title(literal(_wrapped(f"{_group_label(dataset, model, several)}: box accuracy at IoU {localization.IOU_THRESHOLD} "
                                      f"(dots: best threshold; dotted: the CAM paper's {localization.CAM_TAU})", 6.0)), fontsize=8)
        ax.set_xlabel("map threshold (on the min-max scaled map)", fontsize=8)
        ax.set_ylabel("box accuracy (%)", fontsize=8)
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, ncol=2 if part.method.nunique() > 8 else 1)
    return fig


def accuracy_at_iou(curves: pd.DataFrame) -> Figure | None:
    """Box accuracy at IoU 0.3, 0.5 and 0.7, each at its best map threshold (the three terms whose mean
    is MaxBoxAccV2, Choe et al. 2020), per method, one panel per (dataset, model)."""
    columns = [f"maxboxacc_v2@{d}" for d in localization.V2_IOU_THRESHOLDS]
    if curves.empty or not set(columns) <= set(curves.columns) or curves[columns].isna().all().all():
        return None
    best = curves.dropna(subset=columns).groupby(["dataset", "model", "method"], sort=False)[columns].max().reset_index()
    groups = list(dict.fromkeys(zip(best.dataset, best.model)))
    several = len({d for d, _ in groups}) > 1
    width = max(5.0, 0.35 * best.method.nunique() * 3 / 2 + 1.5)
    fig = Figure(figsize=(width, 3.4 * len(groups)), layout="constrained")
    axes = fig.subplots(len(groups), 1, squeeze=False).ravel()
    step = 0.8 / len(columns)
    for ax, (dataset, model) in zip(axes, groups):
        part = best[(best.dataset == dataset) & (best.model == model)]
        x = np.arange(len(part))
        for k, (column, d) in enumerate(zip(columns, localization.V2_IOU_THRESHOLDS)):
            ax.bar(x + (k - 1) * step, part[column], width=step, label=f"IoU >= {d}")
        ax.set_xticks(x)
        ax.set_xticklabels([literal(m) for m in part.method], rotation=60, ha="right", fontsize=7)
        ax.set_ylabel("box accuracy (%)", fontsize=8)
        ax.set_ylim(0, 100)
        ious = " / ".join(f"{d:g}" for d in localization.V2_IOU_THRESHOLDS)
        ax.set_title(literal(_wrapped(f"{_group_label(dataset, model, several)}: accuracy at IoU {ious} (best map "
                                      "threshold, any contour)", width)), fontsize=8)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7)
    return fig


def iou_distribution(per_image: pd.DataFrame, *, tau: float = localization.CAM_TAU) -> Figure | None:
    """The distribution of per-image IoU (the CAM protocol's box at threshold ``tau``, the run's, against
    the best ground-truth box), one box plot with the images as dots per method, one panel per (dataset,
    model); None when no image has an IoU."""
    if IOU_COLUMN not in per_image or per_image[IOU_COLUMN].isna().all():
        return None
    groups = list(dict.fromkeys(zip(per_image.dataset, per_image.model)))
    several = len({d for d, _ in groups}) > 1
    methods = max(per_image.method.nunique(), 1)
    width = max(5.0, 0.45 * methods + 1.5)
    fig = Figure(figsize=(width, 3.4 * len(groups)), layout="constrained")
    axes = fig.subplots(len(groups), 1, squeeze=False).ravel()
    rng = np.random.default_rng(0)
    for ax, (dataset, model) in zip(axes, groups):
        part = rows_of(per_image, dataset, model, ["dataset", "model", "method", IOU_COLUMN])
        names, values = [], []
        for method, rows in part.groupby("method", sort=False):
            names.append(method)
            values.append(rows[IOU_COLUMN].dropna().to_numpy(dtype=float))
        ax.boxplot(values, showfliers=False, widths=0.6)
        for k, v in enumerate(values, start=1):
            # every image a dot, drawn as a raster layer in the PDF and SVG (as vector paths, 500,000 dots made
            # a 66 MB SVG and a 7.5 MB PDF)
            ax.plot(k + rng.uniform(-0.18, 0.18, v.size), v, ".", ms=2, alpha=0.5, color="k", rasterized=True)
        ax.axhline(localization.IOU_THRESHOLD, color="grey", ls=":", lw=0.8)
        ax.set_xticks(range(1, len(names) + 1))
        ax.set_xticklabels([literal(m) for m in names], rotation=60, ha="right", fontsize=7)
        ax.set_ylim(-0.02, 1.02)
        ax.set_ylabel("IoU", fontsize=8)
        ax.set_title(literal(_wrapped(f"{_group_label(dataset, model, several)}: per-image IoU of the CAM box "
                                      f"(threshold {tau:g}; dotted: {localization.IOU_THRESHOLD:g})", width)), fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    return fig


def _box(ax, box: Sequence[float], scale: tuple[float, float], colour: str) -> None:
    sy, sx = scale
    x0, y0, x1, y1 = (float(v) for v in box)
    ax.add_patch(Rectangle(((x0 - 0.5) * sx - 0.5, (y0 - 0.5) * sy - 0.5), (x1 - x0 + 1) * sx, (y1 - y0 + 1) * sy,
                           fill=False, color=colour, lw=1.2))


def _thumbnail(row: pd.Series) -> tuple[np.ndarray, tuple[float, float]]:
    image = thumbnails.decode_jpeg(row.jpeg)
    return image, (image.shape[0] / int(row.height), image.shape[1] / int(row.width))


def _colour_bar(fig: Figure, axes, cmap: str) -> None:
    fig.colorbar(ScalarMappable(Normalize(0, 1), cmap), ax=axes, shrink=0.5, label="map value (min-max scaled)")


def gallery(
    comparison: Comparison, dataset: str, model: str, *, methods: list[str] | None = None,
    rows: int = GALLERY_ROWS, cmap: str = DEFAULT_CMAP, alpha: float = DEFAULT_ALPHA, tau: float = localization.CAM_TAU,
) -> Figure | None:
    """The same images for every method, one column per method (``methods``, default: all of the
    group's): each method's best and worst image by the CAM protocol's IoU (up to ``rows`` images),
    the ground truth in green, each method's CAM box (threshold ``tau``, the run's, drawn from the
    thumbnail of the map) in white and the IoU it was scored with over the map. None without
    thumbnails or IoU."""
    images = comparison.images
    if IOU_COLUMN not in comparison.per_image or images.empty or comparison.maps.empty:
        return None
    per_image = rows_of(comparison.per_image, dataset, model, ["dataset", "model", "index", "method", IOU_COLUMN])
    images = images[(images.dataset == dataset) & (images.model == model)].set_index("index")
    methods = list(dict.fromkeys(per_image.method)) if methods is None else methods
    picks: dict[int, list[str]] = {}
    for method in methods:
        scored = per_image[(per_image.method == method)].dropna(subset=[IOU_COLUMN])
        scored = scored[scored["index"].isin(images.index)]
        if scored.empty:
            continue
        for kind, at in (("best", scored[IOU_COLUMN].idxmax()), ("worst", scored[IOU_COLUMN].idxmin())):
            picks.setdefault(int(scored.loc[at, "index"]), []).append(f"{kind}: {method}")
    chosen = list(picks.items())[:rows]
    if not chosen:
        return None
    shown = [index for index, _ in chosen]
    images = thumbnails_of(comparison, dataset, model, "images", pd.DataFrame({"index": shown})).set_index("index")
    maps = thumbnails_of(comparison, dataset, model, "maps", pd.DataFrame(
        [(i, m) for i in shown for m in methods], columns=["index", "method"])).set_index(["index", "method"])
    iou = per_image[per_image["index"].isin(shown)].set_index(["index", "method"])[IOU_COLUMN]
    fig = Figure(figsize=(1.35 * (len(methods) + 1) + 1.2, 1.45 * len(chosen) + 0.6), layout="constrained")
    axes = fig.subplots(len(chosen), len(methods) + 1, squeeze=False)
    for r, (index, why) in enumerate(chosen):
        row = images.loc[index]
        image, scale = _thumbnail(row)
        axes[r, 0].imshow(image)
        for box in row.boxes:
            _box(axes[r, 0], box, scale, "lime")
        axes[r, 0].set_ylabel(literal("\n".join([row.class_name, *why[:3]])), fontsize=6)
        for c, method in enumerate(methods, start=1):
            ax = axes[r, c]
            if (index, method) not in maps.index:
                ax.set_visible(False)
                continue
            saliency = thumbnails.map_image(maps.loc[(index, method), "map"], image.shape[:2])
            ax.imshow(heatmap_overlay(image, saliency, cmap=cmap, alpha=alpha))
            for box in row.boxes:
                _box(ax, box, scale, "lime")
            x0, y0, x1, y1 = localization.cam_box(saliency, tau)
            ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0 + 1, y1 - y0 + 1, fill=False, color="white", lw=1.0))
            value = iou.get((index, method), np.nan)
            ax.text(1, 1, f"IoU {value:.2f}", color="white", fontsize=6, va="top",
                    bbox={"facecolor": "black", "alpha": 0.6, "pad": 1, "lw": 0})
    for c, title in enumerate(["image, ground truth", *methods]):
        axes[0, c].set_title(literal(title), fontsize=7)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    _colour_bar(fig, axes, cmap)
    fig.suptitle(literal(textwrap.fill(f"{model} on {dataset_label(dataset)}: each method's best and worst image by IoU "
                                       "(green: ground truth; white: the method's box)", 20 * (len(methods) + 1))), fontsize=9)
    return fig


def class_gallery(
    comparison: Comparison, dataset: str, model: str, method: str, *, classes: int = 6, per_class: int = 4,
    cmap: str = DEFAULT_CMAP, alpha: float = DEFAULT_ALPHA,
) -> Figure | None:
    """The CAM paper's Figure 3: for the ``classes`` classes with the most images, up to ``per_class``
    of their images with ``method``'s map of the class it explained (the run's target), class names
    as row titles. None without thumbnails."""
    images = comparison.images
    if images.empty or comparison.maps.empty:
        return None
    images = images[(images.dataset == dataset) & (images.model == model)]
    maps = comparison.maps[(comparison.maps.dataset == dataset) & (comparison.maps.model == model)
                           & (comparison.maps.method == method)].set_index("index")
    images = images[images["index"].isin(maps.index)]
    if images.empty:
        return None
    counts = images.groupby("label", sort=True).size().sort_values(ascending=False, kind="stable")
    labels = list(counts.index[:classes])
    width = min(per_class, int(counts.iloc[0]))
    fig = Figure(figsize=(1.6 * width + 1.4, 1.6 * len(labels) + 0.6), layout="constrained")
    axes = fig.subplots(len(labels), width, squeeze=False)
    shown = pd.concat([images[images.label == label].head(width) for label in labels])
    pictures = thumbnails_of(comparison, dataset, model, "images", shown[["index"]]).set_index("index").jpeg
    maps = thumbnails_of(comparison, dataset, model, "maps", shown[["index"]].assign(method=method)).set_index("index")
    images = shown.assign(jpeg=shown["index"].map(pictures))
    for r, label in enumerate(labels):
        members = images[images.label == label].head(width)
        for c in range(width):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(members):
                ax.set_visible(False)
                continue
            row = members.iloc[c]
            image, _ = _thumbnail(row)
            saliency = thumbnails.map_image(maps.loc[row["index"], "map"], image.shape[:2])
            ax.imshow(heatmap_overlay(image, saliency, cmap=cmap, alpha=alpha))
        axes[r, 0].set_ylabel(literal(members.iloc[0].class_name), fontsize=8)
    _colour_bar(fig, axes, cmap)
    fig.suptitle(literal(textwrap.fill(f"{method} maps of the explained class, {model} on {dataset_label(dataset)}",
                                       22 * width + 10)), fontsize=9)
    return fig
