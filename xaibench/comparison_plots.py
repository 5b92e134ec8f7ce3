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
from xaibench.critical_difference import CriticalDifference
from xaibench.metric import Metric
from xaibench.text import literal
from xaibench.viz import DEFAULT_ALPHA, DEFAULT_CMAP, heatmap_overlay, line_style

#: The per-image column of the CAM-protocol IoU (the ``mean_iou`` metric's) and the columns of the
#: per-image box-IoU curves (``maxboxacc``, ``maxboxacc_v2``) that the localization plots read.
IOU_COLUMN = "mean_iou"
#: Inches of a figure across both columns of a two-column paper (a ``figure*``): the plots are drawn at
#: most this wide where their methods fit, so that their 7 and 8 point text prints at its size.
PAPER_WIDTH = 7.0
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
    """``text`` broken between words into lines that fit a panel of a figure ``inches`` wide (less the
    room of its axis labels) at ``points``, as drawn."""
    return "\n".join(_fitted(text, 0.92 * inches - 0.6, points))


def _method_ticks(ax, x, names: Sequence[str]) -> None:
    """Methods as an axis' tick labels: level when a few, slanted when many."""
    ax.set_xticks(x)
    many = len(names) > 6
    ax.set_xticklabels([literal(m) for m in names], rotation=40 if many else 0, ha="right" if many else "center",
                       fontsize=7)


def metric_bars(summary: pd.DataFrame, metrics: dict[str, Metric]) -> Figure | None:
    """One panel per metric (counts left out): each method's value as a bar with its 95% interval as a
    whisker, one colour per (dataset, model)."""
    names = [n for n in dict.fromkeys(summary.metric) if n in metrics and metrics[n].unit != "count"]
    if not names:
        return None
    groups = list(dict.fromkeys(zip(summary.dataset, summary.model)))
    methods = list(dict.fromkeys(summary.method))
    width = max(2.2, 0.12 * len(methods) * len(groups) + 0.8)  # a panel's, with room for its bars
    columns = max(1, min(len(names), 3, int(PAPER_WIDTH // width)))  # as many as fit a two-column figure
    rows = -(-len(names) // columns)
    fig_width = max(width * columns, PAPER_WIDTH if columns > 1 else width)
    fig = Figure(figsize=(fig_width, 2.6 * rows), layout="constrained")
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
        fig.legend(handles, labels, loc="outside upper center", ncol=min(len(groups), 3 if fig_width >= 6 else 1),
                   fontsize=8)
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
    fig = Figure(figsize=(PAPER_WIDTH, 3.4 * len(groups)), layout="constrained")
    axes = fig.subplots(len(groups), 1, squeeze=False).ravel()
    for ax, (dataset, model) in zip(axes, groups):
        part = curves[(curves.dataset == dataset) & (curves.model == model)]
        for k, (method, rows) in enumerate(part.groupby("method", sort=False)):
            best = rows[localization.V1_CURVE].to_numpy().argmax()
            at, value = rows.threshold.iloc[best], rows[localization.V1_CURVE].iloc[best]
            (line,) = ax.plot(rows.threshold, rows[localization.V1_CURVE], lw=1.2,
                              ls=line_style(k),
                              label=literal(method) + f" (best {at:.2f}: {value:.1f}%)")
            ax.plot(at, value, "o", color=line.get_color(), ms=5)
        ax.axvline(localization.CAM_TAU, color="grey", ls=":", lw=0.8)
        ax.set_title(literal(_wrapped(f"{_group_label(dataset, model, several)}: box accuracy at IoU {localization.IOU_THRESHOLD} "
                                      f"(dots: best threshold; dotted: the CAM paper's {localization.CAM_TAU})", 6.0)), fontsize=8)
        ax.set_xlabel("map threshold (on the min-max scaled map)", fontsize=8)
        ax.set_ylabel("box accuracy (%)", fontsize=8)
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, ncol=2 if part.method.nunique() > 8 else 1, loc="upper left", bbox_to_anchor=(1.01, 1),
                  borderaxespad=0, title="best threshold: accuracy", title_fontsize=6)
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
            bars = ax.bar(x + (k - 1) * step, part[column], width=step, label=f"IoU >= {d}")
            if len(part) <= 12:  # each bar's value written on it: a 0.0 bar shows as "0"
                ax.bar_label(bars, fmt="%.0f", fontsize=5, padding=1)
        _method_ticks(ax, x, list(part.method))
        ax.set_ylabel("box accuracy (%)", fontsize=8)
        ax.set_ylim(0, 118)  # the legend's row above the bars, never over one
        ax.set_yticks(range(0, 101, 20))
        ious = " / ".join(f"{d:g}" for d in localization.V2_IOU_THRESHOLDS)
        ax.set_title(literal(_wrapped(f"{_group_label(dataset, model, several)}: accuracy at IoU {ious} (best map "
                                      "threshold, any contour)", width)), fontsize=8)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7, loc="upper center", ncol=len(columns), borderaxespad=0.2)
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
        _method_ticks(ax, range(1, len(names) + 1), names)
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
    """A thumbnail at its photo's own aspect ratio, and the scale (sy, sx) from the photo's pixels to it."""
    image = thumbnails.at_own_aspect(thumbnails.decode_jpeg(row.jpeg), *thumbnails.photo_size(row))
    return image, (image.shape[0] / int(row.height), image.shape[1] / int(row.width))


def _colour_bar(fig: Figure, axes, cmap: str) -> None:
    fig.colorbar(ScalarMappable(Normalize(0, 1), cmap), ax=axes, shrink=0.5, label="map value (min-max scaled)")


#: The galleries' best and worst images are chosen among those whose largest ground-truth box covers
#: less than this share of the image: there, a map that lights up the whole image (whose box is the
#: whole frame, as ``random``'s often is) scores an IoU below 0.5 and fails, so the best image shows
#: a map that found the object, not a box that fills the frame.
ROOM_TO_FAIL = 0.5


def box_fractions(images: pd.DataFrame) -> pd.Series:
    """Per image (rows of a run's ``images`` thumbnails: ``boxes``, ``height``, ``width``), the share of
    the image its largest ground-truth box covers (inclusive pixel corners), 1.0 without a box."""
    def fraction(boxes, height, width) -> float:
        areas = [(float(x1) - float(x0) + 1) * (float(y1) - float(y0) + 1) for x0, y0, x1, y1 in boxes]
        return min(1.0, max(areas) / (float(height) * float(width))) if len(areas) else 1.0

    return pd.Series([fraction(b, h, w) for b, h, w in zip(images.boxes, images.height, images.width)],
                     index=images.index, dtype=float)


def gallery_picks(comparison: Comparison, dataset: str, model: str, methods: list[str]) -> dict[int, list[str]]:
    """The images of a gallery: each method's best and worst image by the CAM protocol's IoU, among
    those whose box leaves room to fail (:data:`ROOM_TO_FAIL`; where none does, among all, and said):
    index -> why (``"best: cam"``, ...), in the methods' order."""
    per_image = rows_of(comparison.per_image, dataset, model, ["dataset", "model", "index", "method", IOU_COLUMN])
    images = comparison.images
    images = images[(images.dataset == dataset) & (images.model == model)].set_index("index")
    roomy = set(images.index[box_fractions(images) < ROOM_TO_FAIL])
    picks: dict[int, list[str]] = {}
    for method in methods:
        scored = per_image[(per_image.method == method)].dropna(subset=[IOU_COLUMN])
        scored = scored[scored["index"].isin(images.index)]
        if scored.empty:
            continue
        chosen = scored[scored["index"].isin(roomy)]
        big = chosen.empty  # every image's box covers most of the frame: chosen anyway, and marked
        chosen = scored if big else chosen
        for kind, at in (("best", chosen[IOU_COLUMN].idxmax()), ("worst", chosen[IOU_COLUMN].idxmin())):
            picks.setdefault(int(chosen.loc[at, "index"]), []).append(
                f"{kind}: {method}" + (f" (box >= {ROOM_TO_FAIL:.0%} of the image)" if big else ""))
    return picks


def gallery(
    comparison: Comparison, dataset: str, model: str, *, methods: list[str] | None = None,
    rows: int = GALLERY_ROWS, cmap: str = DEFAULT_CMAP, alpha: float = DEFAULT_ALPHA, tau: float = localization.CAM_TAU,
) -> Figure | None:
    """The same images for every method, one column per method (``methods``, default: all of the
    group's): each method's best and worst image by the CAM protocol's IoU (up to ``rows`` images),
    the ground truth in green, each method's CAM box (threshold ``tau``, the run's, drawn from the
    thumbnail of the map) in white and the IoU it was scored with over the map. None without
    thumbnails or IoU."""
    if IOU_COLUMN not in comparison.per_image or comparison.images.empty or comparison.maps.empty:
        return None
    per_image = rows_of(comparison.per_image, dataset, model, ["dataset", "model", "index", "method", IOU_COLUMN])
    methods = list(dict.fromkeys(per_image.method)) if methods is None else methods
    chosen = list(gallery_picks(comparison, dataset, model, methods).items())[:rows]
    if not chosen:
        return None
    shown = [index for index, _ in chosen]
    images = thumbnails_of(comparison, dataset, model, "images", pd.DataFrame({"index": shown})).set_index("index")
    maps = thumbnails_of(comparison, dataset, model, "maps", pd.DataFrame(
        [(i, m) for i in shown for m in methods], columns=["index", "method"])).set_index(["index", "method"])
    iou = per_image[per_image["index"].isin(shown)].set_index(["index", "method"])[IOU_COLUMN]
    # panels of about 1.1 inches: the 96-pixel thumbnails at about their size in the 100 dpi JPEG, not blown up
    fig = Figure(figsize=(1.1 * (len(methods) + 1) + 2.0, 1.2 * len(chosen) + 0.8), layout="constrained")
    axes = fig.subplots(len(chosen), len(methods) + 1, squeeze=False)
    for r, (index, why) in enumerate(chosen):
        row = images.loc[index]
        image, scale = _thumbnail(row)
        axes[r, 0].imshow(image)
        for box in row.boxes:
            _box(axes[r, 0], box, scale, "lime")
        axes[r, 0].set_ylabel(literal("\n".join([row.class_name, *why[:3]])), fontsize=7, rotation=0, ha="right",
                              va="center", labelpad=4)
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


#: The critical-difference diagram's sizes, in inches: its width (a two-column figure), the space
#: between two methods' names, and the space between two clique bars; and its fonts, in points.
CD_WIDTH = 6.5
CD_NAME_STEP = 0.22
CD_CLIQUE_STEP = 0.1
CD_NAME_POINTS = 8
CD_LABEL_POINTS = 9
CD_TITLE_POINTS = 10
_CD_MARGIN = 0.06  # the edges of the figure
_CD_GAP = 0.05  # between an elbow's end and its name
_CD_STUB = 0.12  # an elbow's run beyond rank 1 (or k)
_CD_MIN_STEP = 0.2  # the least width of one rank


def _text_inches(text: str, points: float, weight: str = "normal") -> float:
    """The drawn width of ``text`` (as :func:`literal` gives it) at ``points``, with 4% to spare
    (the Agg renderer's hinting makes text up to about 1.5% wider than its outline)."""
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import TextToPath

    width, _, _ = TextToPath().get_text_width_height_descent(
        text.replace("\\$", "$"), FontProperties(size=points, weight=weight), ismath=False)
    return 1.04 * width / 72


def _fitted(text: str, inches: float, points: float, weight: str = "normal") -> list[str]:
    """``text`` (as :func:`literal` gives it) in lines no wider than ``inches`` at ``points``, broken
    between words, and inside a word too long for a line."""
    lines: list[str] = []
    for word in text.split():
        joined = f"{lines[-1]} {word}" if lines else word
        if lines and _text_inches(joined, points, weight) <= inches:
            lines[-1] = joined
            continue
        while len(word) > 1 and _text_inches(word, points, weight) > inches:
            cut = next(i for i in range(len(word) - 1, 0, -1) if _text_inches(word[:i], points, weight) <= inches
                       or i == 1)
            cut -= word[cut - 1] == "\\" and cut > 1  # never split the escape of a $
            lines.append(word[:cut])
            word = word[cut:]
        lines.append(word)
    return lines


def _cd_names(result: CriticalDifference) -> tuple[list[str], list[str]]:
    """The texts of the better half's methods (their names, then their average ranks: the rank next to
    the line) and of the other half's (rank, then name), best first and worst first."""
    half = -(-result.k // 2)
    left = [f"{literal(m)}  {r:.2f}" for m, r in zip(result.methods[:half], result.average_ranks[:half])]
    right = [f"{r:.2f}  {literal(m)}" for m, r in zip(result.methods[half:], result.average_ranks[half:])][::-1]
    return left, right


def critical_difference_diagram(results: list[tuple[str, CriticalDifference]], *,
                                title: str | None = None) -> Figure | None:
    """Demšar's critical-difference diagram (JMLR 7, 2006, Fig. 1), one panel per ``(label, result)``
    (:func:`xaibench.critical_difference.compare`), stacked: the average ranks on an axis from 1 (the
    best, at the left) to k, the Nemenyi critical difference as a scale bar above it ("CD = 1.25"),
    each method a line from its average rank down to its name and average rank (the better half at the
    left, the other half at the right), and a thick bar under each clique of methods that are not
    significantly different. 6.5 inches wide (wider only when the names need it), about
    :data:`CD_NAME_STEP` inches in height per two methods; every size is computed here (no layout
    engine), so that nothing is clipped. None for an empty list."""
    if not results:
        return None
    panels = []
    width = CD_WIDTH
    for label, result in results:
        left, right = _cd_names(result)
        left_room = _CD_MARGIN + max(_text_inches(t, CD_NAME_POINTS) for t in left) + _CD_GAP + _CD_STUB
        right_room = _CD_STUB + _CD_GAP + max((_text_inches(t, CD_NAME_POINTS) for t in right), default=0) + _CD_MARGIN
        width = max(width, left_room + right_room + _CD_MIN_STEP * (result.k - 1))
        panels.append((label, result, left, right, left_room, right_room))
    title_lines = _fitted(literal(title), width - 2 * _CD_MARGIN, CD_TITLE_POINTS) if title else []
    top = 0.2 * len(title_lines) + (0.08 if title_lines else 0)
    heights = []
    for label, result, left, right, *_ in panels:
        label_lines = len(_fitted(literal(label), width - 2 * _CD_MARGIN, CD_LABEL_POINTS, "bold")) if label else 0
        # label, CD bar, axis: 0.67; then the cliques, the names and 0.11 to spare
        heights.append(0.18 * label_lines + 0.67 + CD_CLIQUE_STEP * len(result.cliques)
                       + CD_NAME_STEP * max(len(left), len(right)) + 0.11)
    height = top + sum(heights)
    fig = Figure(figsize=(width, height), layout="none")
    for line, text in enumerate(title_lines):
        fig.text(0.5, 1 - (0.06 + 0.2 * line) / height, text, ha="center", va="top", fontsize=CD_TITLE_POINTS)
    below = height - top
    for (label, result, left, right, left_room, right_room), panel in zip(panels, heights):
        below -= panel
        ax = fig.add_axes((0, below / height, 1, panel / height))
        ax.set_xlim(0, width)
        ax.set_ylim(-panel, 0)
        ax.set_axis_off()
        _cd_panel(ax, label, result, left, right, left_room, right_room, width)
    return fig


def _cd_panel(ax, label: str, result: CriticalDifference, left: list[str], right: list[str], left_room: float,
              right_room: float, width: float) -> None:
    """One panel of :func:`critical_difference_diagram`, in inches from its top left corner."""
    k, cd = result.k, result.cd
    cd_text = f"CD = {cd:.2f}"
    half_cd_text = _text_inches(cd_text, CD_NAME_POINTS) / 2
    # inches per rank: ranks 1..k between the names, and the CD bar (from rank 1) and its text in the figure
    step = (width - left_room - right_room) / max(k - 1, 1)
    room = width - _CD_MARGIN - left_room
    step = min(step, room / cd, (room - half_cd_text) / (cd / 2)) if cd > 0 else step
    x0 = left_room

    def x(rank: float) -> float:
        return x0 + (rank - 1) * step

    y = -0.04
    if label:
        for line in _fitted(literal(label), width - 2 * _CD_MARGIN, CD_LABEL_POINTS, "bold"):
            ax.text(width / 2, y, line, ha="center", va="top", fontsize=CD_LABEL_POINTS, fontweight="bold")
            y -= 0.18
    # the critical difference as a scale bar from rank 1, its value above it
    y_cd = y - 0.25
    ax.plot([x(1), x(1 + cd)], [y_cd, y_cd], color="k", lw=1, solid_capstyle="butt")
    ax.plot([x(1), x(1)], [y_cd - 0.04, y_cd + 0.04], color="k", lw=1)
    ax.plot([x(1 + cd), x(1 + cd)], [y_cd - 0.04, y_cd + 0.04], color="k", lw=1)
    ax.text(x(1 + cd / 2), y_cd + 0.05, cd_text, ha="center", va="bottom", fontsize=CD_NAME_POINTS)
    # the axis of ranks, ticks (and their labels) at the integers, small ticks at the halves
    y_axis = y_cd - 0.38
    ax.plot([x(1), x(k)], [y_axis, y_axis], color="k", lw=1, solid_capstyle="butt")
    for rank in np.arange(1, k + 0.25, 0.5):
        whole = float(rank).is_integer()
        ax.plot([x(rank), x(rank)], [y_axis, y_axis + (0.07 if whole else 0.04)], color="k", lw=0.8)
        if whole:
            ax.text(x(rank), y_axis + 0.09, f"{int(rank)}", ha="center", va="bottom", fontsize=CD_NAME_POINTS)
    # the cliques: a thick bar from the first to the last member's average rank, one below the other
    ranks = dict(zip(result.methods, result.average_ranks))
    y = y_axis - 0.12
    for clique in result.cliques:
        ax.plot([x(ranks[clique[0]]) - 0.04, x(ranks[clique[-1]]) + 0.04], [y, y], color="k", lw=2.5,
                solid_capstyle="butt", gid="clique")
        y -= CD_CLIQUE_STEP
    # each method: down from its average rank, then out to its name (the nearest to the edge the highest)
    y_names = y - 0.02
    half = len(left)
    for side, texts, members in (("left", left, range(half)), ("right", right, range(k - 1, half - 1, -1))):
        for row, (text, j) in enumerate(zip(texts, members)):
            rank, y_row = result.average_ranks[j], y_names - row * CD_NAME_STEP
            end = x(1) - _CD_STUB if side == "left" else x(k) + _CD_STUB
            ax.plot([x(rank), x(rank), end], [y_axis, y_row, y_row], color="k", lw=0.8)
            ax.text(end - _CD_GAP if side == "left" else end + _CD_GAP, y_row, text, va="center",
                    ha="right" if side == "left" else "left", fontsize=CD_NAME_POINTS)
