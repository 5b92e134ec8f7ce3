"""Figures: heatmap overlays of each method beside the image and its ground truth; the sanity checks'
similarity curves and maps across randomization depths."""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from xaibench import localization
from xaibench.data.sample import Sample
from xaibench.errors import UnknownNameError, XaibenchError
from xaibench.run_folder import atomic_write
from xaibench.style import DEFAULT_ALPHA, DEFAULT_CMAP
from xaibench.text import literal



def check_style(cmap: str = DEFAULT_CMAP, alpha: float = DEFAULT_ALPHA) -> None:
    """Raise unless ``cmap`` is a matplotlib colour map name and ``alpha`` (the opacity) lies in [0, 1].

    Raises:
        UnknownNameError: an unknown colour map (the message suggests a close name).
        XaibenchError: ``alpha`` is not a number in [0, 1].
    """
    from matplotlib import colormaps

    if not isinstance(cmap, str) or cmap not in colormaps:
        close = difflib.get_close_matches(str(cmap), list(colormaps), n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise UnknownNameError(f"unknown colour map '{cmap}'; {hint}e.g. jet, viridis, inferno, turbo (matplotlib's names)")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 <= alpha <= 1.0:
        raise XaibenchError(f"--alpha must lie in [0, 1] (the map's opacity), got {alpha!r}")


def heatmap_overlay(
    image: np.ndarray, saliency: np.ndarray, *, cmap: str = DEFAULT_CMAP, alpha: float = DEFAULT_ALPHA
) -> np.ndarray:
    """``(1 - alpha) * image + alpha * cmap(map)``: the map, coloured, blended over the image.

    Args:
        image: (H, W, 3) RGB in [0, 1].
        saliency: (H, W) map in [0, 1] (values outside are clipped).
        cmap: A matplotlib colour map name.
        alpha: The map's opacity in [0, 1].

    Returns:
        (H, W, 3) float32 RGB in [0, 1].
    """
    from matplotlib import colormaps

    colours = colormaps[cmap](np.clip(saliency, 0.0, 1.0))[..., :3]
    return ((1.0 - alpha) * np.asarray(image, dtype=np.float32) + alpha * colours).astype(np.float32)


def _box_patch(box: Sequence[float], color: str) -> Rectangle:
    x0, y0, x1, y1 = (float(v) for v in box)
    # Inclusive pixel corners: the box spans from the left edge of x0 to the right edge of x1.
    return Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0 + 1, y1 - y0 + 1, fill=False, color=color, lw=1.5)


def overlay_grid(
    samples: Sequence[Sample],
    maps: Mapping[str, np.ndarray],
    path: str | Path,
    *,
    class_names: Sequence[str] | None = None,
    tau: float = localization.CAM_TAU,
    alpha: float = 0.5,
) -> Path:
    """Save a PNG grid: one row per sample; columns image, ground truth, then one per method.

    The ground-truth column shades the mask (when there is one) and draws the boxes in green; each
    method's column overlays its map (jet colour map) and draws its CAM-protocol box in white. Names
    (classes, methods) are drawn as written (:func:`xaibench.text.literal`), here and in every figure.
    """
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    columns = ["image", "ground truth", *maps]
    fig = Figure(figsize=(2.2 * len(columns) + 0.8, 2.2 * len(samples)), layout="constrained")
    axes = fig.subplots(len(samples), len(columns), squeeze=False)
    for row, sample in enumerate(samples):
        image = localization.as_numpy(sample.image).transpose(1, 2, 0).clip(0, 1)
        label = class_names[sample.label] if class_names else str(sample.label)
        aspect = photo_aspect(sample, image.shape[:2])
        axes[row, 0].imshow(image, aspect=aspect)
        axes[row, 0].set_ylabel(literal(label), fontsize=8)
        axes[row, 1].imshow(image, aspect=aspect)
        if sample.mask is not None:
            axes[row, 1].imshow(np.ma.masked_where(~localization.as_numpy(sample.mask), np.ones(image.shape[:2])),
                                cmap="summer", alpha=0.45, vmin=0, vmax=1, aspect=aspect)
        for box in localization.as_numpy(sample.boxes):
            axes[row, 1].add_patch(_box_patch(box, "lime"))
        for col, (method, method_maps) in enumerate(maps.items(), start=2):
            saliency = method_maps[row]
            axes[row, col].imshow(image, aspect=aspect)
            axes[row, col].imshow(saliency, cmap="jet", alpha=alpha, vmin=0, vmax=1, aspect=aspect)
            axes[row, col].add_patch(_box_patch(localization.cam_box(saliency, tau), "white"))
    for col, title in enumerate(columns):
        axes[0, col].set_title(literal(title), fontsize=9)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    if maps:
        fig.colorbar(ScalarMappable(Normalize(0, 1), "jet"), ax=axes[:, 2:].ravel().tolist(), shrink=0.6,
                     label="map value (min-max scaled)")
    return atomic_write(path, lambda file: fig.savefig(file, format="png", dpi=110))


def photo_aspect(sample: Sample, shape: tuple[int, int]) -> float:
    """The ``aspect`` that draws a sample's (H, W) input image (``shape``) at its file's own aspect
    ratio (a pixel drawn this many times as tall as it is wide): the protocol resizes without a crop,
    so a 451 x 300 photo becomes a square input. 1 for a sample made at its size (no file)."""
    if sample.original is None:
        return 1.0
    height, width = sample.original.size
    return (height / width) * (shape[1] / shape[0])


def sanity_curves(summary: pd.DataFrame, path: str | Path, *, title: str = "") -> Path:
    """Save :func:`sanity_curves_figure` as a PNG."""
    fig = sanity_curves_figure(summary, title=title)
    return atomic_write(path, lambda file: fig.savefig(file, format="png", dpi=110))


def sanity_curves_figure(summary: pd.DataFrame, *, title: str = "") -> Figure:
    """A figure in the style of Adebayo et al.'s Fig. 2: per similarity measure, the mean similarity
    to the trained network's maps against the randomization depth, one line per method with its 95%
    interval shaded; ``summary`` as :func:`xaibench.sanity.summarize_sanity` returns it."""
    measures = list(dict.fromkeys(summary["similarity"]))
    layers = summary.drop_duplicates("depth").sort_values("depth")["layer"].tolist()
    fig = Figure(figsize=(max(6.0, 0.32 * len(layers)) * min(len(measures), 2), 4.2 * -(-len(measures) // 2)))
    axes = fig.subplots(-(-len(measures) // 2), min(len(measures), 2), squeeze=False).ravel()
    for ax, measure in zip(axes, measures):
        part = summary[summary["similarity"] == measure]
        for method, rows in part.groupby("method", sort=False):
            rows = rows.sort_values("depth")
            (line,) = ax.plot(rows["depth"], rows["value"], marker="o", ms=3, label=literal(method))
            ax.fill_between(rows["depth"], rows["ci_low"], rows["ci_high"], color=line.get_color(), alpha=0.2, lw=0)
        ax.set_title(literal(measure), fontsize=10)
        ax.set_xticks(range(len(layers)))
        ax.set_xticklabels([literal(layer) for layer in layers], rotation=90, fontsize=6)
        ax.set_ylim(-1.05 if part["value"].min() < 0 else -0.05, 1.05)
        ax.set_ylabel("similarity to the trained network's maps", fontsize=8)
        ax.axhline(0, color="grey", lw=0.5)
        ax.legend(fontsize=7)
    for ax in axes[len(measures):]:
        ax.set_visible(False)
    if title:
        fig.suptitle(literal(f"{title}: blocks randomized from the top (left: none)"), fontsize=11)
    fig.tight_layout()
    return fig


def maps_across_depths(
    images: torch.Tensor | np.ndarray, maps: Mapping[str, np.ndarray], layers: Sequence[str], path: str | Path,
    *, cmap: str = "gray",
) -> Path:
    """Save :func:`maps_across_depths_figure` as a PNG."""
    fig = maps_across_depths_figure(images, maps, layers, cmap=cmap)
    return atomic_write(path, lambda file: fig.savefig(file, format="png", dpi=100))


def maps_across_depths_figure(
    images: torch.Tensor | np.ndarray, maps: Mapping[str, np.ndarray], layers: Sequence[str], *, cmap: str = "gray",
) -> Figure:
    """A figure of the maps themselves across randomization depths: one row per (image, method), the
    image first, then one column per depth (``maps[method]``: (depths, k, H, W) in [0, 1]). Each map is
    shown scaled to its 99th percentile and clipped, as Adebayo et al.'s figures (``saliency``'s
    ``VisualizeImageGrayscale``), so that a few extreme pixels do not leave a gradient map black."""
    images = localization.as_numpy(images)
    rows = [(i, method) for i in range(len(images)) for method in maps]
    fig = Figure(figsize=(1.3 * (len(layers) + 1), 1.4 * len(rows) + 1.2), layout="constrained")
    axes = fig.subplots(len(rows), len(layers) + 1, squeeze=False)
    for r, (i, method) in enumerate(rows):
        axes[r, 0].imshow(images[i].transpose(1, 2, 0).clip(0, 1))
        axes[r, 0].set_ylabel(literal(method), fontsize=7)
        for d in range(len(layers)):
            saliency = maps[method][d, i]
            top = np.percentile(saliency, 99)
            saliency = np.clip(saliency / top, 0, 1) if top > 0 else saliency
            shown = axes[r, d + 1].imshow(saliency, cmap=cmap, vmin=0, vmax=1)
    for d, layer in enumerate(["image", *layers]):
        axes[0, d].set_title(literal(layer), fontsize=6, rotation=90 if d else 0)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    if rows:
        fig.colorbar(shown, ax=axes, fraction=0.02, shrink=0.5, label="|map| / its 99th percentile")
    return fig


#: Line styles the curve figures cycle through beside the colours.
LINE_STYLES = ("-", "--", ":", "-.")


def line_style(k: int) -> str:
    """The style of a figure's ``k``-th line: the next style with every tenth line, when matplotlib's ten
    colours come round again, so that no two lines share both."""
    return LINE_STYLES[(k // 10) % len(LINE_STYLES)]


def metric_curves(curves: pd.DataFrame, metrics: Mapping[str, object], path: str | Path) -> Path:
    """Save :func:`metric_curves_figure` as a PNG."""
    fig = metric_curves_figure(curves, metrics)
    return atomic_write(path, lambda file: fig.savefig(file, format="png", dpi=110))


def metric_curves_figure(curves: pd.DataFrame, metrics: Mapping[str, object]) -> Figure:
    """The metrics' mean curves (e.g. RISE's deletion and insertion), one panel per metric and one line
    per (model, method); ``curves`` as :func:`xaibench.report.mean_curves` returns it, ``metrics`` by
    name for their titles and axis labels."""
    names = list(dict.fromkeys(curves["metric"]))
    columns = min(len(names), 2)
    fig = Figure(figsize=(5.2 * columns, 3.8 * -(-len(names) // columns)), layout="constrained")
    axes = fig.subplots(-(-len(names) // columns), columns, squeeze=False).ravel()
    several_models = curves["model"].nunique() > 1
    for ax, name in zip(axes, names):
        metric = metrics[name]
        for k, ((model, method), rows) in enumerate(curves[curves["metric"] == name].groupby(["model", "method"], sort=False)):
            x, y = rows["x"].to_numpy(dtype=float), rows["value"].to_numpy(dtype=float)
            area = float(np.trapezoid(y, x) / (x.max() - x.min())) if len(x) > 1 and x.max() > x.min() else float("nan")
            # line styles cycle too, so that a curve drawn over another (equal maps) still shows
            ax.plot(x, y, ls=line_style(k),
                    lw=1.3, label=literal(f"{model}: {method}" if several_models else method) + f" (AUC {area:.3f})")
        ax.set_title(literal(metric.title or name), fontsize=10)
        ax.set_xlabel(literal(metric.curve_axes[0]), fontsize=8)
        ax.set_ylabel(literal(metric.curve_axes[1]), fontsize=8)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, title="AUC of the mean curve", title_fontsize=7)
    for ax in axes[len(names):]:
        ax.set_visible(False)
    return fig
