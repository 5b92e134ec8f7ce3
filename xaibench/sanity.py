"""Sanity checks for saliency maps: does a map change when the model's weights or the labels it learnt do?

Adebayo, Gilmer, Muelly, Goodfellow, Hardt & Kim, "Sanity Checks for Saliency Maps", NeurIPS 2018:

- **Cascading model parameter randomization** (their Sec. 4, Fig. 2): randomize the trained network's
  blocks from the logits down, one more at each depth (:mod:`xaibench.randomization`), explain the
  same images for the same classes at every depth, and measure how alike each map is to the trained
  network's (:mod:`xaibench.map_similarity`). A method whose maps stay alike once the network is
  random does not depend on what the network learnt.
- **Data randomization** (their Sec. 5): compare the maps of the trained network with those of the same
  architecture trained on randomly permuted labels. For the built-in benchmark that network ships too
  (:func:`xaibench.shapes_net.load_shapes_net` with ``permuted_labels=True``).

The per-image similarities are aggregated into means with percentile bootstrap intervals over the
images (1000 resamples), written by :func:`write_sanity` as ``sanity.csv`` in long format
``method, depth, layer, similarity, value, ci_low, ci_high, n`` (depth 0 is the trained network,
``layer`` the block randomized last, ``n`` the images whose similarity is defined), beside
``sanity.md``, ``sanity.png`` (similarity against depth, one line per method, as their Fig. 2) and
``sanity_maps.png`` (the maps themselves across depths for a few images). The folder may hold other
files: only the files of an earlier check there, unchanged since, are replaced or removed
(:mod:`xaibench.output_folder`).

The ``spearman`` rows (ranks with signs) are written only for methods whose maps have signs (a
negative value on some image of the trained network); for the others they equal ``spearman_abs``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from torch import Tensor
from tqdm.auto import tqdm

from xaibench import map_similarity
from xaibench.explainer import create_explainer
from xaibench.method_spec import MethodSpec
from xaibench.models import Model
from xaibench.randomization import cascading_randomization, randomization_blocks
from xaibench.report import bootstrap_ci, to_markdown
from xaibench.output_folder import OutputFolder
from xaibench.text import csv_text

__all__ = [
    "SANITY_COLUMNS",
    "SanityMaps",
    "explain_raw",
    "reference_maps",
    "model_randomization",
    "data_randomization",
    "summarize_sanity",
    "write_sanity",
    "sanity_folder",
]

SANITY_CSV = "sanity.csv"
SANITY_PER_IMAGE = "sanity_per_image.csv"
DATA_RANDOMIZATION_CSV = "data_randomization.csv"
SANITY_MD = "sanity.md"
SANITY_CONFIG = "sanity_config.json"
SANITY_FIGURE = "sanity.png"
SANITY_MAPS = "sanity_maps.png"
#: Every file :func:`write_sanity` writes.
OUTPUTS = (SANITY_CSV, SANITY_PER_IMAGE, DATA_RANDOMIZATION_CSV, SANITY_MD, SANITY_CONFIG, SANITY_FIGURE, SANITY_MAPS)

ORIGINAL = "original"
"""The ``layer`` of depth 0, the trained network."""
SANITY_COLUMNS = ["method", "depth", "layer", "similarity", "value", "ci_low", "ci_high", "n"]
PER_IMAGE_COLUMNS = ["method", "depth", "layer", "image", "similarity", "value"]
DATA_COLUMNS = ["method", "similarity", "value", "ci_low", "ci_high", "n"]


@dataclass
class SanityMaps:
    """The maps the figure shows: per method, (depths + 1, k, H, W) ``|map| / max |map|`` for the
    first k images, depth 0 first; and the layer randomized last at each depth."""

    layers: list[str] = field(default_factory=lambda: [ORIGINAL])
    maps: dict[str, list[np.ndarray]] = field(default_factory=dict)

    def stacked(self) -> dict[str, np.ndarray]:
        return {method: np.stack(per_depth) for method, per_depth in self.maps.items()}


def explain_raw(model: Model, spec: MethodSpec, images: Tensor, targets: Tensor, batch_size: int) -> np.ndarray:
    """Raw maps (N, H, W), signs kept, of method ``spec`` on ``model``; NaN maps where the method's raw
    map was not finite (a constant map is all zeros, as in :class:`~xaibench.explainer.Explanation`)."""
    explainer = create_explainer(spec.name, model, **spec.options)
    out = []
    for start in range(0, len(images), batch_size):
        explanation = explainer.explain(images[start : start + batch_size], targets[start : start + batch_size])
        raw = explanation.raw.cpu().numpy().astype(np.float64)
        raw[~explanation.finite.cpu().numpy()] = np.nan
        out.append(raw)
    return np.concatenate(out)


def reference_maps(
    model: Model, methods: Sequence[MethodSpec], images: Tensor, targets: Tensor, batch_size: int = 16
) -> dict[str, np.ndarray]:
    """Each method's raw maps on the trained ``model`` (:func:`explain_raw`): what both tests compare with."""
    images, targets = images.to(model.device), targets.to(model.device)
    return {spec.name: explain_raw(model, spec, images, targets, batch_size) for spec in methods}


def _similarities(reference: np.ndarray, maps: np.ndarray, signed: bool) -> Iterator[tuple[int, str, float]]:
    for image, (a, b) in enumerate(zip(reference, maps)):
        defined = np.isfinite(a).all() and np.isfinite(b).all()
        for name, similarity in map_similarity.SIMILARITIES.items():
            if name == "spearman" and not signed:
                continue
            yield image, name, similarity(a, b) if defined else float("nan")


def _has_signs(maps: np.ndarray) -> bool:
    return bool(np.nanmin(maps, initial=0.0) < 0)


def model_randomization(
    model: Model,
    images: Tensor,
    targets: Tensor,
    methods: Sequence[MethodSpec],
    *,
    seed: int = 0,
    batch_size: int = 16,
    keep: int = 3,
    shown: SanityMaps | None = None,
    reference: Mapping[str, np.ndarray] | None = None,
    progress: bool = False,
) -> Iterator[pd.DataFrame]:
    """The cascading model parameter randomization test, one depth at a time.

    Args:
        model: The trained model; never changed (the randomized network is a copy).
        images: (N, 3, H, W) images in [0, 1].
        targets: (N,) the class explained on each image, the same at every depth.
        methods: The methods with their options (a method's ``seed`` must be among them).
        seed: Seed of the random weights.
        batch_size: Images per explanation call.
        keep: How many of the first images' maps to keep in ``shown``, for the figure.
        shown: Filled with those maps and the layers, if given.
        reference: The methods' maps on the trained model (:func:`reference_maps`), if already computed.
        progress: Show a progress bar.

    Yields:
        Per depth (0 = the trained network, then one more block randomized at each), the per-image
        similarities to the trained network's maps: columns ``method, depth, layer, image,
        similarity, value``.
    """
    images, targets = images.to(model.device), targets.to(model.device)
    shown = shown if shown is not None else SanityMaps()
    if reference is None:
        reference = reference_maps(model, methods, images, targets, batch_size)
    signed = {name: _has_signs(maps) for name, maps in reference.items()}

    def rows(depth: int, layer: str, current: Model, maps_of: Mapping[str, np.ndarray] | None = None) -> pd.DataFrame:
        out = []
        for spec in methods:
            maps = maps_of[spec.name] if maps_of else explain_raw(current, spec, images, targets, batch_size)
            if keep > 0:
                shown.maps.setdefault(spec.name, []).append(
                    np.stack([map_similarity.scaled_abs(np.nan_to_num(m)) for m in maps[:keep]])
                )
            out += [
                (spec.name, depth, layer, image, name, value)
                for image, name, value in _similarities(reference[spec.name], maps, signed[spec.name])
            ]
            bar.update()
        return pd.DataFrame(out, columns=PER_IMAGE_COLUMNS)

    blocks = randomization_blocks(model.network, model.normalize(images[:1]))
    with tqdm(total=(len(blocks) + 1) * len(methods), desc="sanity", unit="map set", disable=not progress) as bar:
        yield rows(0, ORIGINAL, model, reference)
        for depth, block, randomized in cascading_randomization(model, blocks, seed=seed):
            shown.layers.append(block.name)
            bar.set_postfix_str(block.name)
            yield rows(depth, block.name, randomized)


def data_randomization(
    model: Model,
    random_labels: Model,
    images: Tensor,
    targets: Tensor,
    methods: Sequence[MethodSpec],
    *,
    batch_size: int = 16,
    reference: Mapping[str, np.ndarray] | None = None,
) -> pd.DataFrame:
    """The data randomization test: per-image similarity of each method's maps on ``model`` and on
    ``random_labels`` (the same architecture trained on permuted labels), for the same classes;
    ``reference``: the maps on ``model`` (:func:`reference_maps`), if already computed.

    Returns:
        Columns ``method, image, similarity, value``.
    """
    if reference is None:
        reference = reference_maps(model, methods, images, targets, batch_size)
    images, targets = images.to(random_labels.device), targets.to(random_labels.device)
    out = []
    for spec in methods:
        maps = explain_raw(random_labels, spec, images, targets, batch_size)
        trained = reference[spec.name]
        out += [(spec.name, image, name, value) for image, name, value in _similarities(trained, maps, _has_signs(trained))]
    return pd.DataFrame(out, columns=["method", "image", "similarity", "value"])


def _interval(values: pd.Series, seed: int, level: float) -> tuple[float, float, float, int]:
    valid = values.to_numpy(dtype=np.float64)
    valid = valid[np.isfinite(valid)]
    if valid.size == 0:
        return float("nan"), float("nan"), float("nan"), 0
    low, high = bootstrap_ci(valid, seed=seed, level=level)
    return float(valid.mean()), low, high, int(valid.size)


def summarize_sanity(per_image: pd.DataFrame, *, seed: int = 0, level: float = 0.95) -> pd.DataFrame:
    """Mean similarity per (method, depth, similarity) over the images where it is defined, with a
    percentile bootstrap interval; ``per_image`` from :func:`model_randomization` (or, without depth
    columns, from :func:`data_randomization`)."""
    keys = [k for k in ("method", "depth", "layer") if k in per_image.columns] + ["similarity"]
    order = {name: i for i, name in enumerate(map_similarity.SIMILARITIES)}
    rows = [
        [*key, *_interval(group["value"], seed, level)]
        for key, group in per_image.groupby(keys, sort=False)
    ]
    columns = SANITY_COLUMNS if "depth" in keys else DATA_COLUMNS
    summary = pd.DataFrame(rows, columns=columns)
    methods = list(dict.fromkeys(per_image["method"]))
    summary["_m"] = summary["method"].map(methods.index)
    summary["_s"] = summary["similarity"].map(order)
    by = ["_m", "depth", "_s"] if "depth" in keys else ["_m", "_s"]
    return summary.sort_values(by, kind="stable").drop(columns=["_m", "_s"]).reset_index(drop=True)


def write_sanity(
    folder: str | Path | OutputFolder,
    config: dict,
    per_image: pd.DataFrame,
    shown: SanityMaps,
    images: Tensor,
    *,
    data_per_image: pd.DataFrame | None = None,
    complete: bool = True,
) -> pd.DataFrame:
    """Write the sanity check's files to ``folder`` (see the module's docstring); returns the summary.

    The folder may hold other files: only the files of an earlier sanity check there, unchanged since,
    are replaced, and those of them this check does not write again are removed
    (:mod:`xaibench.output_folder`). A folder given as a path is opened (and locked) for the call.

    Raises:
        XaibenchError: a file of one of the check's names that an earlier check did not write is there
            (nothing is written then).
    """
    from xaibench import viz

    if not isinstance(folder, OutputFolder):
        with sanity_folder(folder) as opened:
            return write_sanity(opened, config, per_image, shown, images, data_per_image=data_per_image,
                                complete=complete)
    folder.check(OUTPUTS)
    seed = int(config.get("seed", 0))
    summary = summarize_sanity(per_image, seed=seed)
    folder.write_text(SANITY_CONFIG, json.dumps(config, indent=2) + "\n")
    folder.write_text(SANITY_PER_IMAGE, csv_text(per_image))
    folder.write_text(SANITY_CSV, csv_text(summary))
    data_summary = None
    if data_per_image is not None:
        data_summary = summarize_sanity(data_per_image, seed=seed)
        folder.write_text(DATA_RANDOMIZATION_CSV, csv_text(data_summary))
    if not summary.empty:
        fig = viz.sanity_curves_figure(summary, title=f"Cascading randomization of {config.get('model')}")
        folder.write(SANITY_FIGURE, lambda file: fig.savefig(file, format="png", dpi=110))
    if shown.maps:
        stacked = shown.stacked()  # method -> (depths, k, H, W); a partial check has fewer depths
        depths, k = next(iter(stacked.values())).shape[:2]
        fig = viz.maps_across_depths_figure(images[:k], stacked, shown.layers[:depths])
        folder.write(SANITY_MAPS, lambda file: fig.savefig(file, format="png", dpi=100))
    folder.write_text(SANITY_MD, sanity_markdown(config, summary, data_summary, complete=complete))
    folder.remove_rest()  # an earlier check's files that this one does not have (e.g. data_randomization.csv)
    return summary


def sanity_folder(out: str | Path) -> OutputFolder:
    """The folder of a sanity check, to open (``with``) before the check: locked while the check runs,
    and holding no file of the check's names that an earlier check did not write
    (:class:`xaibench.output_folder.OutputFolder`)."""
    return OutputFolder(out, "sanity", names=OUTPUTS.__contains__)


def _cell(row: pd.Series) -> str:
    if not np.isfinite(row["value"]):
        return "n/a"
    return f"{row['value']:.2f} [{row['ci_low']:.2f}, {row['ci_high']:.2f}]"


def sanity_markdown(
    config: dict, summary: pd.DataFrame, data_summary: pd.DataFrame | None = None, *, complete: bool = True
) -> str:
    """``sanity.md``: what was randomized, the similarity at full randomization, and per measure the
    similarity at every depth (methods in columns, mean [95% interval])."""
    lines = [
        f"# Sanity checks: {config.get('model')} on {config.get('dataset')}",
        "",
        f"Adebayo et al., NeurIPS 2018. {config.get('n')} images, seed {config.get('seed')}; methods: "
        f"{', '.join(config.get('methods', []))}. Maps of the network with its blocks randomized from the "
        "top (depth d: the top d blocks) compared with the trained network's maps, per image, then averaged "
        "(95% bootstrap interval). Near 1 once the network is random: the map does not depend on the model.",
        "",
    ]
    if not complete:
        lines += ["**Partial**: the check stopped before the last depth; the rows below are those computed.", ""]
    if summary.empty:
        return "\n".join(lines + ["No similarity was computed."]) + "\n"
    lines += [f"## Every block randomized (depth {int(summary['depth'].max())})", "", deepest_table(summary), ""]
    for similarity in map_similarity.SIMILARITIES:
        part = summary[summary["similarity"] == similarity]
        if part.empty:
            continue
        part = part.assign(depth_layer=[f"{d} {layer}" for d, layer in zip(part["depth"], part["layer"])])
        lines += [f"## {similarity}", "", _pivot(part, "depth_layer", "method", index_name="depth, block randomized last"), ""]
    if data_summary is not None and not data_summary.empty:
        described = config.get("data_randomization") or {}
        fit = described.get("fit_to_permuted_labels")
        fit_text = f" (it fits {100 * fit:.1f}% of its {described.get('training_images')} permuted training labels)" if fit is not None else ""
        lines += [
            "## Data randomization",
            "",
            f"Maps of the network trained on permuted labels{fit_text} against the trained network's, "
            "same images and classes.",
            "",
            _pivot(data_summary, "method", "similarity"),
            "",
        ]
    lines += [
        "`spearman_abs`, `spearman`: Spearman rank correlation of the absolute and of the signed maps "
        "(signed only for methods whose maps have signs); `ssim`: structural similarity and `hog`: Pearson "
        "correlation of HOG features, both of |map| / max |map|. `n/a`: undefined on every image "
        "(constant maps). Files: sanity.csv (all rows), sanity_per_image.csv, sanity.png, sanity_maps.png.",
    ]
    return "\n".join(lines) + "\n"


def deepest_table(summary: pd.DataFrame) -> str:
    """Markdown: per method, each similarity at the deepest randomization (mean [95% interval])."""
    return _pivot(summary[summary["depth"] == summary["depth"].max()], "method", "similarity")


def _pivot(summary: pd.DataFrame, index: str, columns: str, index_name: str | None = None) -> str:
    cells = summary.assign(cell=summary.apply(_cell, axis=1))
    table = cells.pivot(index=index, columns=columns, values="cell")
    table = table.reindex(index=list(dict.fromkeys(cells[index])), columns=list(dict.fromkeys(cells[columns])))
    table.index.name = index_name or index
    return to_markdown(table.fillna(""))
