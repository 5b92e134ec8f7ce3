"""Figures: heatmap overlays of each method beside the image and its ground truth."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from xaibench import localization
from xaibench.data.sample import Sample
from xaibench.run_folder import atomic_write


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
    method's column overlays its map (jet colour map) and draws its CAM-protocol box in white.
    """
    columns = ["image", "ground truth", *maps]
    fig = Figure(figsize=(2.2 * len(columns), 2.2 * len(samples)))
    axes = fig.subplots(len(samples), len(columns), squeeze=False)
    for row, sample in enumerate(samples):
        image = localization.as_numpy(sample.image).transpose(1, 2, 0).clip(0, 1)
        label = class_names[sample.label] if class_names else str(sample.label)
        axes[row, 0].imshow(image)
        axes[row, 0].set_ylabel(label, fontsize=8)
        axes[row, 1].imshow(image)
        if sample.mask is not None:
            axes[row, 1].imshow(np.ma.masked_where(~localization.as_numpy(sample.mask), np.ones(image.shape[:2])),
                                cmap="summer", alpha=0.45, vmin=0, vmax=1)
        for box in localization.as_numpy(sample.boxes):
            axes[row, 1].add_patch(_box_patch(box, "lime"))
        for col, (method, method_maps) in enumerate(maps.items(), start=2):
            saliency = method_maps[row]
            axes[row, col].imshow(image)
            axes[row, col].imshow(saliency, cmap="jet", alpha=alpha, vmin=0, vmax=1)
            axes[row, col].add_patch(_box_patch(localization.cam_box(saliency, tau), "white"))
    for col, title in enumerate(columns):
        axes[0, col].set_title(title, fontsize=9)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return atomic_write(path, lambda file: fig.savefig(file, format="png", dpi=110))
