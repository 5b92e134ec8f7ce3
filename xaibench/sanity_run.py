"""The sanity checks as one library call: :class:`SanitySpec` in, a folder of sanity files out.

:func:`run_sanity` does what ``xaibench sanity`` does: it checks the spec, loads the model and the
first ``n`` readable images, explains them with the trained network (the reference), then at every
depth of the cascading randomization (and, for the built-in network, with the network trained on
permuted labels), and writes ``sanity.csv``, ``sanity.md`` and the figures (:mod:`xaibench.sanity`
has the measures and the files).

    >>> from xaibench.sanity_run import SanitySpec, run_sanity
    >>> result = run_sanity(SanitySpec(methods="cam,saliency", n=8, out="reports/sanity"))
    >>> result.summary.query("depth == depth.max()")
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from xaibench import __version__, data, explainer, harness, models, sanity
from xaibench.common_options import (
    REPORTS, Methods, check_common, check_methods, default_name, fewer_images_note, image_size, load, one_model, with_seed,
)
from xaibench.data.pixel_limit import check_pixel_limit, pixel_limit
from xaibench.errors import XaibenchError
from xaibench.method_spec import MethodSpec, effective_options
from xaibench.output_folder import OutputFolder
from xaibench.run_folder import DEFINITIONS, DEFINITIONS_FIELD, unique_folder

#: The methods a sanity check compares when it is not told.
DEFAULT_SANITY_METHODS = "cam,gradcam,saliency,guided_backprop"
#: The images a sanity check explains when it is not told.
DEFAULT_SANITY_IMAGES = 20


@dataclass(frozen=True)
class SanitySpec:
    """Everything a sanity check is told; each field is the ``xaibench sanity`` option of its name.

    Attributes:
        models: One model: ``builtin``, ``efficientnet_lite0/1/2`` or a torchvision name.
        methods: Method names with options (text or list), or ``"all"``.
        dataset: ``KIND`` or ``KIND:PATH``.
        n: Images (None: :data:`DEFAULT_SANITY_IMAGES`); the first readable ones.
        batch_size: Images per explanation call.
        target: The class explained at every depth: ``"label"`` or ``"prediction"``.
        show: Images whose maps ``sanity_maps.png`` shows.
        seed: Seed of the random weights, the data and the bootstrap.
        device: A torch device.
        weights: ``"default"``, ``"none"`` or a state-dict file.
        target_layer: Dotted name of the feature layer (None: found automatically).
        image_size: Side the images are resized to (None: the model's).
        out: The folder (None: a new ``reports/sanity-<time>-<model>-<kind>``).
        overwrite: Replace the sanity check in ``out`` (its own files only).
        max_image_pixels: Skip image files of more pixels (None: Pillow's limit).
        progress: Show a progress bar.
    """

    models: str | Sequence[str] = "builtin"
    methods: Methods = DEFAULT_SANITY_METHODS
    dataset: str = "builtin"
    n: int | None = None
    batch_size: int = 16
    target: str = "label"
    show: int = 3
    seed: int = 0
    device: str = "cpu"
    weights: str = "default"
    target_layer: str | None = None
    #: A network of your own (``--model FILE.py:FACTORY``): its input normalisation (three numbers each,
    #: or a text such as ``"0.485,0.456,0.406"``) and a file of its class names, one per line.
    mean: str | Sequence[float] | None = None
    std: str | Sequence[float] | None = None
    class_names: str | None = None
    image_size: int | None = None
    out: str | os.PathLike | None = None
    overwrite: bool = False
    max_image_pixels: int | None = None
    progress: bool = False


@dataclass(frozen=True)
class SanityStart:
    """What :func:`run_sanity` tells ``on_start`` before the first depth.

    Attributes:
        folder: The check's folder.
        config: What ``sanity_config.json`` will hold.
        notes: Lines for the user: fewer images than asked for, images that could not be read.
    """

    folder: Path
    config: dict[str, Any]
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class SanityResult:
    """A finished sanity check: its folder, summary (as ``sanity.csv``) and configuration."""

    folder: Path
    summary: pd.DataFrame
    config: dict[str, Any]


def check_sanity_spec(spec: SanitySpec) -> list[MethodSpec]:
    """Check every field that can be checked without loading anything; the methods, parsed.

    Raises:
        XaibenchError: the first field that is wrong, in one line.
    """
    check_pixel_limit(spec.max_image_pixels)
    specs = check_methods(spec.methods)
    check_common(spec)
    one_model(spec, "sanity")
    if spec.target not in harness.TARGETS:
        raise XaibenchError(f"--target must be one of {', '.join(harness.TARGETS)}, got {spec.target!r}")
    if spec.show < 0:
        raise XaibenchError(f"--show must be at least 0, got {spec.show}")
    return specs


def run_sanity(spec: SanitySpec, *, on_start: Callable[[SanityStart], None] | None = None) -> SanityResult:
    """Run the sanity checks ``spec`` describes into its folder, as ``xaibench sanity`` does.

    Args:
        spec: What to check.
        on_start: Called before the first depth (the command line says there what it checks).

    Raises:
        XaibenchError: a field is wrong (before anything is loaded), the folder holds another check
            (without ``overwrite``) or files of its names that no check wrote, or no image can be read.
        KeyboardInterrupt: the depths computed so far are written first, marked partial.
    """
    with pixel_limit(spec.max_image_pixels):
        specs = check_sanity_spec(spec)
        out = Path(spec.out) if spec.out else unique_folder(REPORTS, "sanity-" + default_name(spec.models, spec.dataset))
        with sanity.sanity_folder(out) as folder:  # locked, and checked before the work, not after it
            if folder.check(sanity.OUTPUTS) and not spec.overwrite:
                raise XaibenchError(f"{out} holds another sanity check; pass --overwrite to replace it, or choose another --out")
            return _sanity_into(folder, spec, specs, on_start)


def _sanity_into(
    folder: OutputFolder, spec: SanitySpec, specs: list[MethodSpec], on_start: Callable[[SanityStart], None] | None
) -> SanityResult:
    """The sanity check, written into ``folder`` (an open :class:`xaibench.output_folder.OutputFolder`)."""
    from xaibench.data.sample import collate

    n = DEFAULT_SANITY_IMAGES if spec.n is None else spec.n
    torch.manual_seed(spec.seed)
    model = load(one_model(spec, "sanity"), spec)
    size = image_size(spec, model)
    dataset = data.load_dataset(spec.dataset, image_size=size, size=n, seed=spec.seed, class_names=model.class_names)
    note = fewer_images_note(spec.n, len(dataset), "the sanity check uses")
    notes = [note] if note else []
    unreadable: list[tuple[int, str]] = []
    samples = harness.first_samples(dataset, n, unreadable)
    notes += [f"skipped unreadable image {index}: {reason}" for index, reason in unreadable]
    if not samples:
        raise XaibenchError(f"no image of --dataset {spec.dataset} could be read; nothing to check")
    batch = collate(samples)
    images = batch.images.to(model.device)
    _, targets = harness.predictions_and_targets(model, images, batch.labels, spec.target)
    specs = [with_seed(s, spec.seed) for s in specs]
    random_labels = _random_labels_model(model, spec)
    config = {
        "model": model.name,
        "weights": spec.weights,
        "weights_sha256": models.weights_digest(model.network),
        "target_layer": model.target_layer_name,
        "image_size": list(size),
        "dataset": spec.dataset,
        "image_ids": [s.id for s in samples],
        "skipped": [{"index": index, "reason": reason} for index, reason in unreadable],
        "n": len(samples),
        "methods": [s.name for s in specs],
        "method_options": {s.name: effective_options(explainer.get_explainer(s.name), s.options) for s in specs},
        "target": spec.target,
        "randomization": "cascading, blocks from the top, reset_parameters() seeded per block (xaibench.randomization)",
        "data_randomization": _random_labels_description() if random_labels is not None else None,
        "seed": spec.seed,
        "device": spec.device,
        "torch": torch.__version__,
        "xaibench": __version__,
        DEFINITIONS_FIELD: DEFINITIONS,
    }
    if on_start is not None:
        on_start(SanityStart(folder.path, config, tuple(notes)))
    frames, shown, complete = [], sanity.SanityMaps(), False
    data_rows = summary = None
    try:
        reference = sanity.reference_maps(model, specs, images, targets, spec.batch_size)
        for frame in sanity.model_randomization(
            model, images, targets, specs, seed=spec.seed, batch_size=spec.batch_size, keep=spec.show,
            shown=shown, reference=reference, progress=spec.progress,
        ):
            frames.append(frame)
        if random_labels is not None:
            data_rows = sanity.data_randomization(
                model, random_labels, images, targets, specs, batch_size=spec.batch_size, reference=reference
            )
        complete = True
    finally:  # interrupted or failed: the depths computed so far are written, marked partial
        if frames:
            per_image = pd.concat(frames, ignore_index=True)
            summary = sanity.write_sanity(
                folder, config, per_image, shown, images[: spec.show].cpu(), data_per_image=data_rows, complete=complete
            )
    return SanityResult(folder.path, summary, config)


def _random_labels_description() -> dict:
    from xaibench.shapes_net import PERMUTED_LABELS_CONFIG, shapes_net_accuracy

    return {
        "network": "the built-in network trained on permuted labels (xaibench.shapes_net.PERMUTED_LABELS_CONFIG)",
        "training_images": PERMUTED_LABELS_CONFIG.n_train,
        "fit_to_permuted_labels": shapes_net_accuracy(0, permuted_labels=True),
    }


def _random_labels_model(model: models.Model, spec: SanitySpec) -> models.Model | None:
    """The built-in network trained on permuted labels, for the data randomization test (only the
    built-in benchmark has one: other networks would need retraining)."""
    if one_model(spec, "sanity") not in ("builtin", "shapes_net") or spec.weights != "default":
        return None
    from xaibench.randomization import with_network
    from xaibench.shapes_net import load_shapes_net

    network = load_shapes_net(0, permuted_labels=True).to(model.device)
    return with_network(model, network, name=f"{model.name} (permuted labels)")
