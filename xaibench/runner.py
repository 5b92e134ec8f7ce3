"""A benchmark run as one library call: :class:`RunSpec` in, a finished run folder out.

:func:`run` does everything ``xaibench run`` does, in this order: it checks the spec (one-line
:class:`~xaibench.errors.XaibenchError` s, before anything heavy is loaded), seeds torch, loads the
models, their explainers and the data set, chooses the images (the first ``n``, or a
:class:`~xaibench.data.selection.Selection`), expands the metrics (``default``, ``all``, the metrics
they require, the run's seed for those that take one), records ``config.json``, evaluates every model
into the folder (:func:`xaibench.harness.evaluate`), and writes the summary
(:func:`xaibench.report.write_summary`), the overlay figures and ``report.html``. The command line
fills a :class:`RunSpec` from its arguments and calls :func:`run`, so both write the same folder.

    >>> import xaibench
    >>> result = xaibench.run(xaibench.RunSpec(methods="cam,gradcam", n=16, out="reports/quick"))
    >>> result.summary.query("metric == 'pointing'")[["method", "value"]]
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from xaibench import __version__, data, explainer, harness, metric, models, report
from xaibench.common_options import (
    DEFAULT_METHODS, REPORTS, Methods, check_common, check_methods, create, default_name, fewer_images_note, image_size, load, model_names,
    names_all, parse_specs, with_seed,
)
from xaibench.data.pixel_limit import check_pixel_limit, current_pixel_limit, pixel_limit
from xaibench.data.selection import Selection, describe, select_indices
from xaibench.distributed import ProcessGroup, ReportedByRankZero, Share, current_share, rank_device
from xaibench.errors import XaibenchError
from xaibench.kept_maps import KeepMaps, parse_keep_maps
from xaibench.method_spec import MethodSpec, effective_options, repeated
from xaibench.precision import FULL, check_precision
from xaibench.run_folder import (
    DEFINITIONS, DEFINITIONS_FIELD, IDS_FIELD, MODES, PER_IMAGE, REPORT_HTML, SKIPPED, RunFolder, overlays_file,
    unique_folder,
)

@dataclass(frozen=True)
class RunSpec:
    """Everything a benchmark run is told; each field is the ``xaibench run`` option of its name.

    Attributes:
        models: One model or several (``"builtin"``, ``"efficientnet_lite0,efficientnet_lite1"``, or a
            list): ``builtin``, ``efficientnet_lite0/1/2`` or a torchvision name.
        dataset: ``KIND`` or ``KIND:PATH``, e.g. ``builtin``, ``imagenet:DIR``.
        methods: Method names with options, as one text (``"cam,scorecam(batch_size=64)"``), a list of
            such texts or :class:`~xaibench.method_spec.MethodSpec` s, or ``"all"``.
        metrics: Metric names with options, ``"default"`` (the localization set), ``"all"``, or
            ``default`` plus names (``"default,deletion_auc(steps=100)"``); text or list.
        n: The first ``n`` images (None: all; the built-in data set makes 500); with a selection, the
            images it chooses among.
        selection: Choose images by class, id or seeded sample (None: the first ``n``).
        batch_size: Images per batch.
        target: The class each map explains: ``"label"`` or ``"prediction"``.
        seed: Seed of torch, generated data, random methods and metrics, the sample and the bootstrap.
        device: A torch device, e.g. ``"cpu"``, ``"cuda:0"``.
        weights: ``"default"`` (the model's trained weights), ``"none"`` (random) or a state-dict file.
        target_layer: Dotted name of the feature layer (None: found automatically).
        image_size: Side the images are resized to, no crop (None: the model's).
        out: The run's folder (None: a new ``reports/<time>-<model>-<kind>``).
        mode: ``"new"`` (``out`` must hold no run), ``"resume"`` (continue the run in ``out``) or
            ``"overwrite"`` (replace it).
        report: Draw the overlay figures and ``report.html`` after the summary.
        max_image_pixels: Skip image files of more pixels (None: Pillow's limit, about 89 million).
        progress: Show a progress bar.
        keep_maps: Keep every scored map in the run's ``kept_maps/`` table, at ``"SIDE[:DTYPE]"`` (e.g.
            ``"224"``, ``"56:uint8"``, ``"full:float32"``; the default dtype float16) or a
            :class:`~xaibench.kept_maps.KeepMaps` (None: keep only the reports' thumbnails).
        workers: Processes that read and decode the next batches while the network runs, and with
            them threads that score the metrics that run no network meanwhile (None: one process per
            core but one, at most 4; 0: none, everything in turn). The results are the same.
        precision: The network's precision: ``"fp32"``, or ``"bf16"`` / ``"fp16"`` mixed precision
            (:mod:`xaibench.precision`; methods whose maps it would change in meaning refuse it).

    Errors name each field by its option (``batch_size`` is ``--batch-size``).
    """

    models: str | Sequence[str] = "builtin"
    dataset: str = "builtin"
    methods: Methods = DEFAULT_METHODS
    metrics: Methods = "default"
    n: int | None = None
    selection: Selection | None = None
    batch_size: int = 32
    target: str = "label"
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
    mode: str = "new"
    report: bool = True
    max_image_pixels: int | None = None
    progress: bool = False
    keep_maps: str | KeepMaps | None = None
    workers: int | None = None
    precision: str = FULL

    def __post_init__(self) -> None:
        for name in ("models", "methods", "metrics"):  # a list given becomes a tuple: the spec stays frozen
            value = getattr(self, name)
            if not isinstance(value, (str, tuple)):
                object.__setattr__(self, name, tuple(value))
        if isinstance(self.weights, os.PathLike):
            object.__setattr__(self, "weights", os.fspath(self.weights))


@dataclass(frozen=True)
class RunStart:
    """What :func:`run` tells ``on_start`` once the folder is locked and ``config.json`` recorded.

    Attributes:
        folder: The run's folder.
        config: Its configuration, as ``config.json`` holds it.
        notes: Lines for the user: fewer images than ``n`` asked for, methods ``all`` left out.
    """

    folder: Path
    config: dict[str, Any]
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class RunResult:
    """A finished run.

    Attributes:
        folder: The run's folder.
        summary: The long-format summary, as ``summary.csv`` holds it.
        config: The configuration, as ``config.json`` holds it.
        skipped: The indices of the images that could not be read (listed in the ``skipped/`` table).
        notes: As :attr:`RunStart.notes`.
    """

    folder: Path
    summary: pd.DataFrame
    config: dict[str, Any]
    skipped: list[int] = field(default_factory=list)
    notes: tuple[str, ...] = ()
    #: The process's place in a run split by torchrun (None: the run's only process). Only rank 0
    #: writes the summary; the others' ``summary`` is empty.
    share: Share | None = None


@dataclass(frozen=True)
class _Checked:
    """A spec's methods, parsed and checked, and its metrics, built."""

    methods: list[MethodSpec]
    metrics: list[metric.Metric]
    every: bool  # ``all``: a method a model cannot serve is left out, not an error


@dataclass
class _Setup:
    """One model of the run with its explainers and its data set (resized to its input size)."""

    model: models.Model
    explainers: list[explainer.Explainer]
    dataset: Sequence
    image_size: tuple[int, int]


def check_run_spec(spec: RunSpec) -> tuple[list[MethodSpec], list[metric.Metric]]:
    """Check every field that can be checked without loading anything: the methods, parsed, and the
    metrics, built.

    Raises:
        XaibenchError: the first field that is wrong, in one line that says what to do.
    """
    checked = _check(spec)
    return checked.methods, checked.metrics


def _check(spec: RunSpec, share: Share | None = None) -> _Checked:
    check_pixel_limit(spec.max_image_pixels)
    specs = check_methods(spec.methods)
    check_common(spec)
    if spec.target not in harness.TARGETS:
        raise XaibenchError(f"--target must be one of {', '.join(harness.TARGETS)}, got {spec.target!r}")
    if spec.workers is not None and (isinstance(spec.workers, bool) or not isinstance(spec.workers, int) or spec.workers < 0):
        raise XaibenchError(f"--workers must be a whole number, 0 or more, got {spec.workers!r}")
    if spec.keep_maps is not None and not isinstance(spec.keep_maps, KeepMaps):
        parse_keep_maps(spec.keep_maps)
    check_precision(spec.precision)
    if spec.mode not in MODES:
        raise XaibenchError(f"mode must be one of {', '.join(MODES)}, got {spec.mode!r}")
    if spec.mode == "resume" and spec.out is None:
        raise XaibenchError("--resume needs --out DIR, the folder of the run to continue")
    # (Under torchrun, rank 0 alone: the others may look when it has started the run there.)
    if spec.out and spec.mode == "new" and (share is None or share.rank == 0) and RunFolder(spec.out).holds_a_run():
        raise XaibenchError(
            f"{spec.out} holds the results of another run; pass --resume to continue it, --overwrite to "
            "replace it, or choose another --out"
        )
    if spec.selection is not None:
        if not isinstance(spec.selection, Selection):
            raise XaibenchError(f"selection must be a xaibench.Selection or None, got {type(spec.selection).__name__}")
        spec.selection.check()
    return _Checked(specs, expand_metrics(spec.metrics, spec.seed), names_all(parse_specs(spec.methods)))


def expand_metrics(metrics: Methods, seed: int) -> list[metric.Metric]:
    """``--metrics``: ``default`` (the localization set), ``all``, or names with options, ``default``
    and ``all`` allowed among them; the metrics they require are added. A metric that takes a
    ``seed`` and was given none gets the run's.

    >>> [m.name for m in expand_metrics("pointing", 0)]
    ['pointing']

    Raises:
        XaibenchError: no metric, one named twice, an unknown name or option.
    """
    specs = parse_specs(metrics)
    if not specs:
        raise XaibenchError("--metrics names no metric; e.g. --metrics default,deletion_auc, or leave it out")
    twice = repeated([s.name for s in specs])
    if twice:
        raise XaibenchError(f"--metrics names {', '.join(map(repr, twice))} more than once; name each metric once, with all its options")
    expanded: list[MethodSpec] = []
    for spec in specs:
        if spec.name in ("default", "all"):
            if spec.options:
                raise XaibenchError(f"--metrics {spec.name} takes no options; name the metrics to give them options")
            names = list(metric.DEFAULT_METRICS)
            if spec.name == "all":
                names += [n for n in metric.available_metrics() if n not in names]
            expanded += [MethodSpec(n) for n in names if n not in {s.name for s in expanded}]
        elif spec.name in {s.name for s in expanded}:
            if spec.options:  # the same metric with options replaces its default
                expanded = [spec if s.name == spec.name else s for s in expanded]
        else:
            expanded.append(spec)
    built = []
    for spec in expanded:
        spec = with_seed(spec, seed, metric.get_metric)
        built.append(metric.create_metric(spec.name, **spec.options))
    return harness.build_metrics(built)


def run(spec: RunSpec, *, on_start: Callable[[RunStart], None] | None = None) -> RunResult:
    """Run the benchmark ``spec`` describes into its folder, as ``xaibench run`` does.

    Under torchrun with several processes (:mod:`xaibench.distributed`), every process calls it with the
    same spec: each evaluates its share of the batches; rank 0 locks the folder, records the
    configuration, calls ``on_start`` and writes the summary and report; the other ranks return an
    empty summary (:attr:`RunResult.share` says which process returned).

    Args:
        spec: What to run.
        on_start: Called once the folder is locked and ``config.json`` recorded, before the first
            image (the command line says there what it runs, and where).

    Returns:
        The folder, the summary and the configuration.

    Raises:
        XaibenchError: a field is wrong (before anything is loaded), the folder holds another run or
            another configuration (resume), a method or the data set failed (the rows computed so far
            are kept: the message says how to continue), or no image could be read.
        KeyboardInterrupt: Ctrl-C (or SIGTERM where the caller raises it so): the rows computed so far
            are kept in the folder's ``per_image`` table; ``mode="resume"`` continues the run.
    """
    share = current_share()
    # Under torchrun, the ranks meet first: one that stops early then never leaves the others waiting
    # where a signal cannot reach them.
    group = ProcessGroup(share, rank_device(spec.device, share)) if share is not None else None
    with pixel_limit(spec.max_image_pixels), group or contextlib.nullcontext():
        try:
            checked = _check(spec, share)
        except XaibenchError as error:  # under torchrun, every rank finds it: rank 0 says it
            if share is None or share.rank == 0:
                raise
            raise ReportedByRankZero(str(error)) from error
        return _run_checked(spec, checked, on_start, group)


def _run_checked(
    spec: RunSpec, checked: _Checked, on_start: Callable[[RunStart], None] | None, group: ProcessGroup | None
) -> RunResult:
    share = None if group is None else group.share
    torch.manual_seed(spec.seed)
    here = replace(spec, device=rank_device(spec.device, share))  # config.json records the device as given
    loaded = [load(name, here) for name in model_names(spec.models)]
    twice = repeated([model.name for model in loaded])
    if twice:  # two names of one model (builtin, shapes_net): its rows are told apart by model.name alone
        raise XaibenchError(f"--model names the model {', '.join(twice)} more than once (by another name); name it once")
    notes: list[str] = []
    specs, built = _explainers_for(loaded, checked.methods, seed=spec.seed, leave_out_misfits=checked.every, notes=notes,
                                   precision=spec.precision)
    setups = []
    for model, explainers in zip(loaded, built):
        size = image_size(spec, model)
        dataset = data.load_dataset(spec.dataset, image_size=size, size=spec.n, seed=spec.seed, class_names=model.class_names)
        setups.append(_Setup(model, explainers, dataset, size))
    first = setups[0].dataset
    n = min(spec.n, len(first)) if spec.n is not None else len(first)
    note = fewer_images_note(spec.n, len(first), "the run scores" if spec.selection is None else "the selection draws from")
    notes += [note] if note else []
    indices = None
    if spec.selection is not None:
        indices = select_indices(first, spec.selection, n=spec.n, seed=spec.seed, class_names=setups[0].model.class_names)
    config = _config(spec, setups, specs, checked.metrics, n, indices)
    start = _Start(config, tuple(notes), on_start)
    if share is None:
        out = Path(spec.out) if spec.out else unique_folder(REPORTS, default_name(spec.models, spec.dataset))
        with RunFolder(out, mode=spec.mode) as folder:
            start.record(folder, out)
            _evaluate(spec, setups, checked.metrics, n, indices, out)
            summary = _finish(spec, setups, out)
    else:
        out, summary = _run_shared(spec, setups, checked.metrics, n, indices, start, group)
        if share.rank != 0:
            return RunResult(out, summary, config, [], tuple(notes), share)
    skipped = [int(i) for i in dict.fromkeys(harness.read_skipped(out)["index"])]
    if summary.empty and skipped:
        raise XaibenchError(
            f"none of the {len(skipped)} images could be read (each is listed, with why, in {out / SKIPPED}/); "
            "nothing was scored: fix the images or --dataset, then run again with --overwrite"
        )
    return RunResult(out, summary, config, skipped, tuple(notes), share)


@dataclass
class _Start:
    """The configuration to record and what to tell the caller once it is."""

    config: dict[str, Any]
    notes: tuple[str, ...]
    on_start: Callable[[RunStart], None] | None

    def record(self, folder: RunFolder, out: Path) -> None:
        folder.start(self.config)
        if self.on_start is not None:
            self.on_start(RunStart(out, self.config, self.notes))


def _run_shared(
    spec: RunSpec, setups: list[_Setup], metrics: list[metric.Metric], n: int, indices: list[int] | None,
    start: _Start, group: ProcessGroup,
) -> tuple[Path, pd.DataFrame]:
    """The run as one of the processes torchrun started: rank 0 locks the folder, records the
    configuration and prepares the tables, alone; then every rank evaluates its share of the batches
    into the folder; when all have finished, rank 0 writes the summary and the report. The folder and
    the summary (empty on the other ranks)."""
    share = group.share
    if share.rank != 0:
        out = Path(group.broadcast(None))  # once rank 0 has recorded the run
        _evaluate(spec, setups, metrics, n, indices, out, share)
        group.barrier()
        return out, pd.DataFrame(columns=report.SUMMARY_COLUMNS)
    out = Path(spec.out) if spec.out else unique_folder(REPORTS, default_name(spec.models, spec.dataset))
    with RunFolder(out, mode=spec.mode) as folder:
        start.record(folder, out)
        harness.RunTables.open(out, metrics, keep_maps=spec.keep_maps is not None)  # converted, cleaned up
        group.broadcast(os.fspath(out))
        _evaluate(spec, setups, metrics, n, indices, out, share)
        group.barrier()  # every rank's parts are written
        return out, _finish(spec, setups, out)


def _config(
    spec: RunSpec, setups: list[_Setup], specs: list[MethodSpec], metrics: list[metric.Metric], n: int,
    indices: list[int] | None,
) -> dict[str, Any]:
    """What ``config.json`` records: everything that determines the run's numbers."""
    first = setups[0]
    return {
        "models": [
            {
                "name": s.model.name,
                "weights": spec.weights,
                "weights_sha256": models.weights_digest(s.model.network),
                "target_layer": s.model.target_layer_name,
                "classifier": s.model.classifier_name,
                "image_size": list(s.image_size),
                # a vision transformer's: how its tokens are the explained maps (absent for a feature map)
                **({"feature_grid": s.model.feature_grid.describe()} if s.model.feature_grid else {}),
            }
            for s in setups
        ],
        "dataset": spec.dataset,
        IDS_FIELD: data.sample_ids_digest(first.dataset, n, indices),
        DEFINITIONS_FIELD: DEFINITIONS,
        "n": n if indices is None else len(indices),
        "selection": describe(spec.selection, indices or [], first.model.class_names),
        "keep_maps": None if spec.keep_maps is None else _keep_maps(spec).describe(),
        "image_resize": "bilinear to image_size, no crop; boxes scaled and truncated to int (wsolevaluation)",
        "map_postprocessing": "bilinear upsampling to image_size (align_corners=False), per-map min-max to [0, 1]",
        "constant_map_rtol": explainer.CONSTANT_RTOL,
        "maxboxacc_thresholds": "0.00:0.99:0.01",
        "methods": [s.name for s in specs],
        "method_options": {
            s.name: effective_options(explainer.get_explainer(s.name), with_seed(s, spec.seed).options) for s in specs
        },
        "metrics": [m.name for m in metrics],
        "metric_options": {m.name: m.options for m in metrics},
        "batch_size": spec.batch_size,
        "target": spec.target,
        "seed": spec.seed,
        "max_image_pixels": current_pixel_limit(),
        "device": spec.device,
        "precision": spec.precision,
        "torch": torch.__version__,
        "xaibench": __version__,
    }


def _evaluate(
    spec: RunSpec, setups: list[_Setup], metrics: list[metric.Metric], n: int, indices: list[int] | None, out: Path,
    share: Share | None = None,
) -> None:
    """Evaluate every model of the run into ``out`` (this process's share of the batches)."""
    chosen: dict[str, Any] = {"n": n} if indices is None else {"indices": indices}
    for setup in setups:
        try:
            harness.evaluate(
                setup.model, setup.dataset, setup.explainers, metrics=metrics, batch_size=spec.batch_size,
                target=spec.target, out=out, progress=spec.progress and (share is None or share.rank == 0),
                read_back=False, workers=spec.workers, keep_maps=None if spec.keep_maps is None else _keep_maps(spec),
                share=share, precision=spec.precision, **chosen,
            )
        except (XaibenchError, OSError) as error:
            message = str(error) if isinstance(error, XaibenchError) else f"{error.strerror or error}"
            raise XaibenchError(
                f"{message} (the rows computed so far are in {out / PER_IMAGE}/; fix the cause, then continue "
                f"with --resume --out {out})"
            ) from error


def _finish(spec: RunSpec, setups: list[_Setup], out: Path) -> pd.DataFrame:
    """Write the run's summary and, with ``spec.report``, its overlay figures and page; the summary."""
    summary = report.write_summary(out)
    if spec.report:
        _draw(spec, setups, out, summary)
    return summary


def _keep_maps(spec: RunSpec) -> KeepMaps:
    """The spec's ``keep_maps``, as a :class:`~xaibench.kept_maps.KeepMaps`."""
    return spec.keep_maps if isinstance(spec.keep_maps, KeepMaps) else parse_keep_maps(spec.keep_maps)


def _draw(spec: RunSpec, setups: list[_Setup], out: Path, summary: pd.DataFrame) -> None:
    """The run's overlay figures (one per model in a run of several) and ``report.html``."""
    from xaibench import comparison, comparison_report, viz

    for setup in setups:
        samples, maps = harness.figure_maps(out, setup.model.name, setup.dataset, [e.name for e in setup.explainers])
        if not samples:  # no image could be read: nothing to draw
            continue
        figure = overlays_file(setup.model.name if len(setups) > 1 else None)
        viz.overlay_grid(samples, maps, out / figure, class_names=setup.model.class_names)
    if not summary.empty:  # no image could be read: nothing to show
        names = ", ".join(s.model.name for s in setups)
        run_report = comparison_report.build_report(comparison.combine([comparison.load_run(out)]), vectors=False)
        comparison_report.write_html(run_report, out / REPORT_HTML, title=f"xaibench: {names} on {spec.dataset}")


def _explainers_for(
    loaded: list[models.Model], specs: list[MethodSpec], *, seed: int, leave_out_misfits: bool, notes: list[str],
    precision: str = FULL,
) -> tuple[list[MethodSpec], list[list[explainer.Explainer]]]:
    """The methods every model can serve, and each model's explainers for them, each built once.

    A method a model cannot serve (or that refuses ``precision``) is an error, except with ``--methods
    all``, which leaves it out for every model, with a note.
    """
    kept, built = [], []
    for spec in specs:
        try:
            per_model = [create(spec, model, seed) for model in loaded]
            check_precision(precision, per_model[:1])
        except XaibenchError as error:
            if not leave_out_misfits:
                raise
            notes.append(f"--methods all: left out {spec.name}: {' '.join(str(error).split())}")
            continue
        kept.append(spec)
        built.append(per_model)
    return kept, [list(explainers) for explainers in zip(*built)] if built else [[] for _ in loaded]
