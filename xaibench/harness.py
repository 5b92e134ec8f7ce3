"""The evaluation harness: run methods over a data set and score their maps, one tidy row per (image, method).

The harness chooses each map's target class (the label, or the model's prediction), calls every
explainer once per batch, hands its maps and the ground truth to every metric
(:class:`xaibench.metric.Metric`), and collects the per-image values in a pandas DataFrame. It knows
no method and no metric by name: a metric says which columns it writes.

One forward pass per batch classifies the images (:mod:`xaibench.forward_pass`); the methods that need
nothing else take their maps from it, and the metrics take the clean images' logits from it. The next
batches are read and decoded meanwhile, in ``DataLoader`` workers where that pays
(:mod:`xaibench.loading`), and the metrics that run no network are scored on a worker thread while
the network runs the next method (:mod:`xaibench.metric_pool`), their rows written in the same order.
A long method's passes within a batch show on the progress bar (:mod:`xaibench.progress`), and the
``timings`` table holds each (batch, method)'s seconds in the method and in the metrics of its maps.

With ``out`` given, the harness owns five tables in that folder (:class:`RunTables`, Parquet part
files: :mod:`xaibench.results_store`): ``per_image`` (the rows, including the per-image curves that
the data-set-level metrics need, so a partial run can be summarised), ``skipped``, ``timings``, and
``images`` and ``maps`` (thumbnails of the images and of every map, for the reports' galleries, the
first images' maps at full size, for the run's overlay figure: :mod:`xaibench.thumbnails`); and, told
to keep them, ``kept_maps`` (every scored map: :mod:`xaibench.kept_maps`). A batch's rows are committed
as one part as soon as its methods are done (the finished methods' rows when a method fails or the run
is interrupted), so a run killed at any point loses at most the batch in flight (and the one before
it, while the metric threads still score its last metrics), and running again on the same folder
continues where it stopped: batches are fixed ranges of data-set indices (or of the chosen
``indices``), finished (index, method) rows are not computed again, and the rows come out in the same
order and with the same values as those of an uninterrupted run.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from xaibench import thumbnails
from xaibench.data.sample import Batch, Sample, collate, sample_digest
from xaibench.distributed import Share
from xaibench.errors import UnreadableImageError, XaibenchError
from xaibench.explainer import Explainer, create_explainer
from xaibench.forward_pass import classification_pass
from xaibench.journal import ArrayCell, Journal
from xaibench.kept_maps import KEPT_MAP_COLUMNS, KeepMaps, kept_map_rows
from xaibench.loading import span_reader
from xaibench.localization import as_numpy
from xaibench.method_spec import repeated
from xaibench.metric import DEFAULT_METRICS, Metric, MetricInput, Prepared, create_metric, with_requirements
from xaibench.metric_pool import MetricPool, default_threads
from xaibench.models import Model, eval_mode
from xaibench.precision import FULL, autocast, check_precision
from xaibench.progress import PassProgress
from xaibench.results_store import Table, convert_journal
from xaibench.run_folder import IMAGES, KEPT_MAPS, LEGACY_JOURNALS, MAPS, PER_IMAGE, SKIPPED, TIMINGS
from xaibench.text import displayable

logger = logging.getLogger(__name__)

#: The per-image column that says which image a row scored: :func:`xaibench.data.sample.sample_digest`,
#: a SHA-256 of the bytes read and the annotations (absent from the rows of xaibench 0.2).
DIGEST = "image_sha256"
#: The columns every per-image row has, before the metrics' own. ``index`` is the sample's index in
#: the data set; ``status`` is ``ok``, ``constant`` (a constant raw map, scored as an all-zero map) or
#: ``nonfinite`` (NaN or inf in the raw map: a failure of the method, not scored).
COLUMNS = ["model", "index", "image_id", DIGEST, "method", "label", "prediction", "target", "status"]
#: The keys of a per-image row: a row written again for the same key (an image that changed since a
#: resumed run scored it) replaces the earlier one, for every reader.
ROW_KEYS = ["model", "index", "method"]
SKIPPED_COLUMNS = ["model", "index", "reason"]
#: One row per (batch, method): ``seconds`` in the method, ``metric_seconds`` in the metrics of its maps
#: (absent from the rows of xaibench 0.3 and earlier).
TIMING_COLUMNS = ["model", "batch", "method", "images", "seconds", "metric_seconds"]
TARGETS = ("label", "prediction")
STATUSES = ("ok", "constant", "nonfinite")


def metric_columns(metrics: Sequence[Metric]) -> dict[str, str]:
    """The per-image columns the ``metrics`` write, in order: name -> ``"scalar"`` or ``"array"``."""
    return {column: kind for metric in metrics for column, kind in metric.columns.items()}


def build_metrics(metrics: Sequence[str | Metric] | None) -> list[Metric]:
    """Metric objects for names or objects (None: :data:`~xaibench.metric.DEFAULT_METRICS`), with the
    metrics they require."""
    names = DEFAULT_METRICS if metrics is None else metrics
    return with_requirements([m if isinstance(m, Metric) else create_metric(m) for m in names])


#: What the journals' array cells may hold: a metric's per-image curve, of one shape in every row; boxes
#: (K, 4) float32; a JPEG's bytes; a map's 8-bit grey levels (at most 4096 x 4096, the full-size maps of
#: the first images included).
_CURVE_CELL = ArrayCell(uniform=True)
_BOXES_CELL = ArrayCell("f", (2,), 4 * 65536)
_JPEG_CELL = ArrayCell("u", (1,), 1 << 20)
_MAP_CELL = ArrayCell("u", (2,), 1 << 24)
#: A kept map (:mod:`xaibench.kept_maps`): 8-bit or float, at most 4096 x 4096.
_KEPT_MAP_CELL = ArrayCell("uf", (2,), 1 << 24)


#: Per-image columns that earlier versions named otherwise (then -> now): their rows are read, and
#: converted, under today's names.
RENAMED_COLUMNS = {"iou": "mean_iou"}


def _table_specs(metrics: Sequence[Metric]) -> dict[str, dict]:
    """Each table's columns and checks (``per_image`` with the columns of ``metrics``)."""
    columns = metric_columns(metrics)
    arrays = {c: _CURVE_CELL for c, kind in columns.items() if kind == "array"}
    return {
        PER_IMAGE: dict(columns=COLUMNS + list(columns), array_columns=arrays,
                        text_columns=["model", "image_id", DIGEST, "method", "status"],
                        integer_columns=["index", "label", "prediction", "target"], choices={"status": STATUSES},
                        optional_columns=[DIGEST], renamed_columns=RENAMED_COLUMNS, lost="nothing: --resume computes those images and methods again"),
        SKIPPED: dict(columns=SKIPPED_COLUMNS, text_columns=["model", "reason"], integer_columns=["index"],
                      lost="the record that those images were skipped"),
        TIMINGS: dict(columns=TIMING_COLUMNS, text_columns=["model", "method"], integer_columns=["batch", "images"],
                      added_columns=["metric_seconds"], lost="those seconds from the timings"),
        IMAGES: dict(columns=thumbnails.IMAGE_COLUMNS, array_columns={"boxes": _BOXES_CELL, "jpeg": _JPEG_CELL},
                     text_columns=["model", "image_id", "class_name"],
                     integer_columns=["index", "label", "height", "width"], added_columns=thumbnails.PHOTO_SIZE_COLUMNS,
                     lost="those images from the report's galleries"),
        MAPS: dict(columns=thumbnails.MAP_COLUMNS, array_columns={"map": _MAP_CELL},
                   text_columns=["model", "method"], integer_columns=["index"],
                   lost="those maps from the report's galleries"),
    }


_KEPT_MAPS_SPEC = dict(columns=KEPT_MAP_COLUMNS, array_columns={"map": _KEPT_MAP_CELL}, text_columns=["model", "method"],
                       integer_columns=["index"], lost="those kept maps")


@dataclass(frozen=True)
class RunTables:
    """The tables the harness writes in a run's folder (:mod:`xaibench.results_store`); in a run of
    xaibench 0.3 or earlier, the CSV journals that held them (:mod:`xaibench.journal`), read as they are."""

    per_image: Table | Journal
    skipped: Table | Journal
    timings: Table | Journal
    images: Table | Journal
    maps: Table | Journal
    #: Every scored map, in a run told to keep them (:mod:`xaibench.kept_maps`); absent otherwise.
    kept_maps: Table

    @classmethod
    def at(cls, folder: str | Path, metrics: Sequence[Metric] = (), *, legacy: bool = True) -> RunTables:
        """The tables of ``folder`` (``per_image`` with the columns of ``metrics``), as they are; with
        ``legacy``, a CSV journal where a run of xaibench 0.3 or earlier left one instead of the table."""
        folder = Path(folder)
        tables = {}
        for name, spec in _table_specs(metrics).items():
            table, old = Table(folder / name, **spec), folder / LEGACY_JOURNALS[name]
            tables[name] = Journal(old, **spec) if legacy and not table.exists() and os.path.lexists(old) else table
        return cls(**tables, kept_maps=Table(folder / KEPT_MAPS, **_KEPT_MAPS_SPEC))

    @classmethod
    def open(
        cls, folder: str | Path, metrics: Sequence[Metric], *, keep_maps: bool = False, shared: bool = False
    ) -> RunTables:
        """The tables of ``folder``, ready to write to: created if new (``kept_maps`` only with
        ``keep_maps``); the CSV journals of a run of xaibench 0.3 converted to tables, once (with a message).

        With ``shared``, other processes write to the tables at the same time (a run split by torchrun):
        they are written so (:attr:`~xaibench.results_store.Table.shared`), and nothing is converted or
        cleaned up, which the run's first process did, alone, before the others started.
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tables = cls.at(folder, metrics, legacy=False)
        if shared:
            for table in (*tables.all(), tables.kept_maps):
                table.shared = True
            return tables
        for name, spec in _table_specs(metrics).items():
            if os.path.lexists(folder / LEGACY_JOURNALS[name]):
                convert_journal(Journal(folder / LEGACY_JOURNALS[name], **spec), getattr(tables, name))
        for table in (*tables.all(), *([tables.kept_maps] if keep_maps else [])):
            table.repair()
            table.create()
        return tables

    def all(self) -> tuple[Table | Journal, ...]:
        """Every table, in the order of :data:`xaibench.run_folder.TABLES`."""
        return (self.per_image, self.skipped, self.timings, self.images, self.maps)


def read_per_image(folder: str | Path, metrics: Sequence[Metric] | None = None) -> pd.DataFrame:
    """The rows of a run's ``per_image`` table (finished or not), scored with ``metrics`` (default: the
    default set; a run's own are :func:`xaibench.report.run_metrics` of its ``config.json``).

    ``attrs["skipped"]`` lists the indices of the images that could not be read (once each), and
    ``attrs["skipped_rows"]`` counts the rows of the ``skipped`` table (one per model and image).
    """
    journals = RunTables.at(folder, build_metrics(None) if metrics is None else metrics)
    return _with_skipped(latest_rows(journals.per_image.read()), journals.skipped.read())


def per_image_groups(folder: str | Path, metrics: Sequence[Metric] | None = None) -> Iterator[pd.DataFrame]:
    """The rows of :func:`read_per_image`, one (model, method) at a time, in the order the pairs first
    appear: each pair's latest rows, read alone, so memory is bounded by one method's rows, not the run's."""
    table = RunTables.at(folder, build_metrics(None) if metrics is None else metrics).per_image
    for where in _pairs(table):
        yield latest_rows(table.read(where))


def prepared_groups(
    folder: str | Path, metrics: Sequence[Metric] | None = None
) -> Iterator[tuple[pd.DataFrame, dict[str, Prepared]]]:
    """:func:`per_image_groups` for the summary: ``(rows, prepared)`` per (model, method), where each
    metric of ``metrics`` with a :attr:`~xaibench.metric.Metric.prepared_column` gets its
    :class:`~xaibench.metric.Prepared` arrays of the rows, made a part of the table at a time, and the
    rows do not hold that column: memory is bounded by what the metrics keep of the arrays (MaxBoxAcc:
    1 byte a map threshold), not by the arrays (8 bytes a threshold, and a Python object per row).
    """
    metrics = build_metrics(None) if metrics is None else list(metrics)
    table = RunTables.at(folder, metrics).per_image
    streamed = [m for m in metrics if m.prepared_column is not None and m.prepared_column in table.columns]
    drop = list(dict.fromkeys(m.prepared_column for m in streamed))
    for where in _pairs(table):
        frames, parts = [], {m.name: [] for m in streamed}
        metric: Metric | None = None
        try:
            # A part of the store at a time (a 0.2 folder's journal: all of it at once).
            for chunk in table.chunks(where) if isinstance(table, Table) else [table.read(where)]:
                for metric in streamed:
                    parts[metric.name].append(metric.prepared(chunk))
                frames.append(chunk.drop(columns=drop))
            metric = None
            if not frames:
                continue
            rows = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
            rows[_POSITION] = np.arange(len(rows))
            rows = latest_rows(rows)
            order = rows.pop(_POSITION).to_numpy()
            for metric in streamed:
                parts[metric.name] = Prepared.concat(parts[metric.name]).take(order)
        except (ValueError, TypeError, IndexError) as error:  # arrays read back that do not fit together
            whose = f"metric '{metric.name}' cannot aggregate" if metric is not None else "cannot read"
            raise XaibenchError(
                f"{whose} the rows of {where.method} ({where.model}): "
                f"{type(error).__name__}: {' '.join(str(error).split())[:200]}; the run folder's per-image rows "
                "are damaged"
            ) from error
        yield rows, parts


@dataclass(frozen=True)
class _Pair:
    """The rows of one (model, method), as a filter of a part's rows (``where`` of :meth:`Table.read`)."""

    model: str
    method: str

    def __call__(self, rows: pd.DataFrame) -> pd.Series:
        return (rows["model"] == self.model) & (rows["method"] == self.method)


def _pairs(table: Table | Journal) -> list[_Pair]:
    """The (model, method) pairs of ``table``'s rows, in the order they first appear."""
    keys = table.keys(["model", "method"])
    return [_Pair(model, method) for model, method in dict.fromkeys(zip(keys["model"], keys["method"]))]


#: A column :func:`prepared_groups` adds for a moment: each row's place as read.
_POSITION = "__position__"


def read_per_image_keys(folder: str | Path) -> pd.DataFrame:
    """The (model, index, method) of every latest per-image row (no metric is read), with the ``attrs``
    of :func:`read_per_image`: what a run's completeness and counts need."""
    tables = RunTables.at(folder)
    return _with_skipped(latest_rows(tables.per_image.keys(["model", "index", "method"])), tables.skipped.read())


def latest_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """Per-image rows with one row per :data:`ROW_KEYS`, the last written (a resumed run writes an image's
    rows again when the image changed since it was scored).

    Rows keep the order they were written in while each (model, method)'s images come in increasing
    index, as in an uninterrupted run; rows of an image scored later than the ones after it (one
    skipped, then restored; one that changed) are put back in that order: models and methods as they
    first appear, each image's rows together, images by index. The summary's bootstrap draws images
    in this order, so it gives the same numbers as an uninterrupted run.
    """
    if rows.empty:
        return rows
    if rows.duplicated(subset=ROW_KEYS).any():
        rows = rows.drop_duplicates(subset=ROW_KEYS, keep="last")
    index = rows["index"].astype(int)
    if index.groupby([rows["model"], rows["method"]], sort=False).apply(lambda i: i.is_monotonic_increasing).all():
        return rows.reset_index(drop=True)
    model_rank = rows["model"].map({m: k for k, m in enumerate(dict.fromkeys(rows["model"]))})
    method_rank = rows["method"].map({m: k for k, m in enumerate(dict.fromkeys(rows["method"]))})
    order = np.lexsort((method_rank.to_numpy(), index.to_numpy(), model_rank.to_numpy()))
    return rows.iloc[order].reset_index(drop=True)


def _with_skipped(rows: pd.DataFrame, skipped: pd.DataFrame) -> pd.DataFrame:
    """``rows`` with ``attrs["skipped"]``, the indices of the images that could not be read (once each), and
    ``attrs["skipped_rows"]``, the (model, image) pairs of them; an image skipped once and scored after
    it was restored is not among them."""
    scored = set(zip(rows["model"], rows["index"].astype(int))) if len(rows) else set()
    pairs = dict.fromkeys((m, int(i)) for m, i in zip(skipped["model"], skipped["index"]) if (m, int(i)) not in scored)
    rows.attrs["skipped"] = [str(i) for i in dict.fromkeys(i for _, i in pairs)]
    rows.attrs["skipped_rows"] = len(pairs)
    return rows


#: The thumbnails' arrays, which :func:`read_thumbnails` leaves out unless asked (the galleries read
#: those of the images they show, :func:`thumbnail_arrays`).
THUMBNAIL_ARRAYS = {IMAGES: "jpeg", MAPS: "map"}
_THUMBNAIL_KEYS = {IMAGES: ["model", "index"], MAPS: ["model", "index", "method"]}


def read_thumbnails(folder: str | Path, *, arrays: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The thumbnails a run kept: the ``images`` table (one row per (model, index)) and the ``maps``
    table (one row per (model, index, method)); empty frames for a run made before they were kept.
    Without ``arrays``, the images come without their JPEG and the maps without their map: what a
    report chooses its images by, in memory that does not grow with the pictures (read the chosen
    ones with :func:`thumbnail_arrays`)."""
    tables = RunTables.at(folder)
    frames = []
    for name, table in ((IMAGES, tables.images), (MAPS, tables.maps)):
        columns = [c for c in table.columns if arrays or c != THUMBNAIL_ARRAYS[name]]
        rows = table.read() if isinstance(table, Journal) else table.read(columns=columns)
        frames.append(thumbnails.latest(rows[columns] if len(rows) else rows, _THUMBNAIL_KEYS[name]))
    return frames[0], frames[1]


def thumbnail_arrays(folder: str | Path, table: str, keys: pd.DataFrame) -> pd.DataFrame:
    """The rows of the thumbnail ``table`` (``images`` or ``maps``) with the given ``keys`` ((model, index)
    or (model, index, method) columns), arrays included; only their arrays are decoded."""
    columns = _THUMBNAIL_KEYS[table]
    wanted = pd.MultiIndex.from_frame(keys[columns].astype({"index": int}))
    thumbs = getattr(RunTables.at(folder), table)
    rows = thumbs.read(lambda part: pd.MultiIndex.from_frame(part[columns].astype({"index": int})).isin(wanted))
    return thumbnails.latest(rows, columns)


def figure_maps(
    folder: str | Path, model: str, dataset: Sequence[Sample], methods: Sequence[str]
) -> tuple[list[Sample], dict[str, np.ndarray]]:
    """The run's maps for its overlay figure: the first :data:`~xaibench.thumbnails.FIGURE_IMAGES`
    images of ``model`` that every one of ``methods`` has a map of (read again from ``dataset``, for
    their full size and masks; one that cannot be read any more is passed over, with a warning, for
    one of the next as many), and each method's maps of them (N, H, W) as the run journaled them: the
    maps that were scored, rounded to 1/255, not computed again. The harness keeps the first images'
    maps at full size; a thumbnail (an image further down, or a run journaled by an older version) is
    resized to the image. A non-finite map is all zeros, as in the journal."""
    wanted = set(methods)
    candidates = 2 * thumbnails.FIGURE_IMAGES  # decoded at most

    def first_complete(frame: pd.DataFrame) -> pd.Series:
        mine = (frame.model == model) & frame.method.isin(wanted)
        counts = frame[mine].groupby("index").method.nunique()
        complete = sorted(counts.index[counts == len(wanted)])[:candidates]
        return mine & frame["index"].isin(complete)

    rows = thumbnails.latest(RunTables.at(folder).maps.read(first_complete), ["index", "method"])
    by_key = rows.set_index(["index", "method"])["map"]
    indices, samples = [], []
    for index in sorted({int(i) for i in rows["index"]}):
        if len(samples) == thumbnails.FIGURE_IMAGES:
            break
        try:
            samples.append(dataset[index])
            indices.append(index)
        except UnreadableImageError as error:
            logger.warning("overlay figure: image %d, scored earlier, cannot be read now (%s); left out", index, error)
    if not samples:
        return [], {}
    sizes = [tuple(sample.image.shape[-2:]) for sample in samples]
    return samples, {
        method: np.stack([thumbnails.map_image(by_key[i, method], size) for i, size in zip(indices, sizes)])
        for method in methods
    }


def read_kept_maps(folder: str | Path, where: Callable[[pd.DataFrame], Sequence[bool]] | None = None) -> pd.DataFrame:
    """The maps a run kept (``xaibench run --keep-maps``, :mod:`xaibench.kept_maps`): one row per
    (model, index, method) with :data:`KEPT_MAP_COLUMNS`, ``map`` a 2-d numpy array (None for a
    non-finite map); ``where`` chooses rows from the keys before any map is decoded.

    Example:
        >>> maps = read_kept_maps("reports/run", lambda keys: keys.method == "cam")

    Raises:
        XaibenchError: the run kept no maps.
    """
    table = RunTables.at(folder).kept_maps
    if not table.exists():
        raise XaibenchError(f"{folder} keeps no maps: the run was not told to; run it with --keep-maps SIDE[:DTYPE]")
    return thumbnails.latest(table.read(where), ["model", "index", "method"])


def read_timings(folder: str | Path) -> pd.DataFrame:
    """The rows of a run's ``timings`` table."""
    return RunTables.at(folder).timings.read()


def read_skipped(folder: str | Path) -> pd.DataFrame:
    """The rows of a run's ``skipped`` table: the images that could not be read, per model (the last
    record of each; an image that was scored after it was restored is left out)."""
    journals = RunTables.at(folder)
    skipped = thumbnails.latest(journals.skipped.read(), ["model", "index"])
    scored = _scored_pairs(journals.per_image)
    keep = np.array([(m, int(i)) not in scored for m, i in zip(skipped["model"], skipped["index"])], dtype=bool)
    return skipped.loc[keep].reset_index(drop=True)


def _scored_pairs(per_image: Journal) -> set[tuple[str, int]]:
    """The (model, index) pairs that have rows in a per-image journal (read without its arrays)."""
    rows = per_image.keys(["model", "index"])
    return set(zip(rows["model"], rows["index"].astype(int)))


def evaluate(
    model: Model,
    dataset: Sequence[Sample],
    methods: Sequence[str | Explainer],
    *,
    metrics: Sequence[str | Metric] | None = None,
    batch_size: int = 32,
    n: int | None = None,
    indices: Sequence[int] | None = None,
    target: str = "label",
    out: str | Path | None = None,
    progress: bool = False,
    read_back: bool = True,
    workers: int | None = None,
    keep_maps: KeepMaps | None = None,
    share: Share | None = None,
    precision: str = FULL,
) -> pd.DataFrame | None:
    """Explain and score every image of ``dataset`` with every method.

    Args:
        model: The classifier, as :func:`xaibench.load_model` returns it.
        dataset: Indexable samples (:class:`xaibench.data.Sample`).
        methods: Registered method names or ready :class:`Explainer` objects; names must be unique.
        metrics: Registered metric names or ready :class:`~xaibench.metric.Metric` objects (default:
            :data:`~xaibench.metric.DEFAULT_METRICS`, the localization set); the metrics they require
            are added.
        batch_size: Images per forward/backward pass; batches are the index ranges
            ``[k * batch_size, (k + 1) * batch_size)`` (of ``indices``, when given).
        n: Score only the first ``n`` images.
        indices: Score only these images (data-set indices among the first ``n``, e.g. from
            :func:`xaibench.data.selection.select_indices`); batches are then consecutive runs of
            ``batch_size`` of them, in increasing index.
        target: ``"label"`` (explain the true class) or ``"prediction"`` (the top-1 class).
        out: A folder; each batch's rows are written to ``out/per_image/`` as soon as they are computed
            (and unreadable images to ``skipped/``, times to ``timings/``: :class:`RunTables`). Rows
            already there are kept and not computed again, so calling again on the same folder resumes
            an interrupted run (with the same arguments: the caller checks that, see
            :class:`xaibench.run_folder.RunFolder`).
        progress: Show a progress bar (with the method and metric at work, and a long method's passes
            within the batch: done, rate and time left).
        read_back: With ``out``, read the model's rows back and return them; False returns None,
            and the run's memory stays that of a batch (the rows are in ``out``, for
            :func:`read_per_image` or :func:`per_image_groups`).
        workers: Processes reading and decoding the next batches while the network runs (None: one
            per core but one, at most 4), started only when reading is slow enough to pay for them
            (:mod:`xaibench.loading`); and threads scoring the metrics that run no network meanwhile
            (:mod:`xaibench.metric_pool`: half the cores, at least 1). 0: neither, everything in turn in
            the calling thread. The rows are the same.
        keep_maps: With ``out``, keep every scored map in ``out/kept_maps/`` at this size and dtype
            (:mod:`xaibench.kept_maps`; read them with :func:`read_kept_maps`).
        share: Evaluate only this process's batches (:class:`xaibench.distributed.Share`: batch ``k``,
            counted over all the batches, done or not, where ``k % world == rank``), for a run split
            over processes that write to one ``out``; the other batches are left to the others.
        precision: The network's precision, ``"fp32"``, ``"bf16"`` or ``"fp16"``: the methods and the
            metrics that run the network run under ``torch.autocast`` (:mod:`xaibench.precision`); the
            classification pass stays fp32. Methods that refuse it are an error.

    Returns:
        One row per (image, method) with :data:`COLUMNS` and the metrics' columns (with ``out``, the
        model's rows of ``per_image/`` as read back, earlier ones included; several models may
        write to one folder, one call each, and the ``model`` column tells them apart). ``status``
        ``nonfinite`` rows (the method returned NaN or inf) have no value for the metrics of maps.
        Images that could not be read are listed in ``result.attrs["skipped"]`` (their indices).

    Raises:
        XaibenchError: bad arguments; or a data set or a method failed (the message names the sample
            or the method and the cause; the rows of the batches before are kept in ``out``).
    """
    if target not in TARGETS:
        raise XaibenchError(f"target must be one of {', '.join(TARGETS)}, got '{target}'")
    if batch_size < 1:
        raise XaibenchError(f"batch size must be at least 1, got {batch_size}")
    if n is not None and n < 1:
        raise XaibenchError(f"n must be at least 1, got {n}")
    explainers = [m if isinstance(m, Explainer) else create_explainer(m, model) for m in methods]
    scorers = build_metrics(metrics)
    names = [e.name for e in explainers]
    if not names:
        raise XaibenchError("no method to evaluate; name at least one")
    twice = repeated(names)
    if twice:
        raise XaibenchError(f"method names must be unique; named more than once: {', '.join(twice)}")
    check_precision(precision, explainers)
    total = len(dataset) if n is None else min(n, len(dataset))
    chosen = list(range(total)) if indices is None else sorted({int(i) for i in indices})
    if chosen and not 0 <= chosen[0] <= chosen[-1] < total:
        raise XaibenchError(f"indices must lie in [0, {total}) (the first n images of the data set); got {chosen[-1]}")
    if keep_maps is not None and out is None:
        raise XaibenchError("keep_maps needs out, the folder to keep the maps in")
    if share is not None and out is None:
        raise XaibenchError("share needs out, the folder the processes write to")
    journals = None if out is None else RunTables.open(out, scorers, keep_maps=keep_maps is not None, shared=share is not None)
    spans = [chosen[start:start + batch_size] for start in range(0, len(chosen), batch_size)]
    others: list[int] = []  # the images of the other processes' batches
    if share is not None:  # this process's batches only: their rows done, their images identified again
        others = [i for k, span in enumerate(spans) if not share.owns(k) for i in span]
        spans = [span for k, span in enumerate(spans) if share.owns(k)]
    done = _unchanged(dataset, _done(journals, model.name, {i for span in spans for i in span}), out)

    # Images skipped earlier are read again: one restored since is scored now.
    # The first readable images: maps kept at full size. Another process's images are taken as
    # readable (an unreadable one among the first few leaves the figure an image short).
    figure = sorted(set(done) | set(others))[: thumbnails.FIGURE_IMAGES]
    todo = [span for span in spans if not all(set(names) <= done.get(i, set()) for i in span)]
    frames, skipped_now = [], []
    # A resumed run's bar starts at the images already done, so its rate and ETA are those of this run.
    mine = sum(map(len, spans))  # this process's images
    bar = tqdm(total=mine, initial=mine - sum(map(len, todo)), unit="img", disable=not progress, desc="evaluating")
    batches: dict[int, _BatchWork] = {}  # the batches not written yet, in order

    def collect(results: Iterator[_MethodResult]) -> None:
        """Keep each method's result; write (or keep) the batches whose results are all back, in order."""
        for result in results:
            batches[result.batch].computed.append(result)
        while batches:
            first = next(iter(batches.values()))
            if len(first.computed) < first.methods:
                break
            del batches[first.key]
            frames.extend(first.finish(journals))

    threads = 0 if workers == 0 else default_threads()
    pool: MetricPool[_MethodResult] = MetricPool(threads=threads, limit=max(len(explainers), threads))
    try:
        with bar, span_reader(dataset, todo, workers) as reads, pool:  # stopped and closed, whatever happens
            try:
                for span, read in zip(todo, reads):
                    kept, batch = read.indices, read.batch
                    skipped_now += [str(i) for i, _ in read.unreadable]
                    figure = sorted(set(figure) | set(kept))[: thumbnails.FIGURE_IMAGES]
                    work = _BatchWork(model.name, span[0], read.unreadable)
                    batches[span[0]] = work
                    if journals is not None and batch is not None and any(not done.get(i) for i in kept):
                        new = [k for k, i in enumerate(kept) if not done.get(i)]
                        work.images = thumbnails.image_rows(
                            model.name, [kept[k] for k in new], [batch.ids[k] for k in new], batch.images[new],
                            batch.labels[new].tolist(), [batch.boxes[k] for k in new], model.class_names,
                            [batch.originals[k].size if batch.originals[k] is not None else None for k in new],
                        )
                    if batch is not None:
                        _submit_batch(model, batch, kept, read.digests, explainers, scorers, done, target, bar,
                                      set(figure), pool, work, keep_maps, precision)
                    collect(pool.ready())
                    bar.update(len(span))
            finally:  # the methods computed so far are scored and kept, whatever stopped the run
                collect(pool.drain())
    finally:  # a method that failed or was interrupted loses only its own rows of its batch
        for work in batches.values():
            frames.extend(work.finish(journals))
    if journals is not None:
        if not read_back:
            return None
        result = latest_rows(journals.per_image.read(lambda frame: frame.model == model.name))
        skips = journals.skipped.read(lambda frame: frame.model == model.name)
        return _with_skipped(result, skips)
    columns = COLUMNS + list(metric_columns(scorers))
    result = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        {c: pd.Series(dtype=object) for c in columns}
    )
    result.attrs["skipped"] = skipped_now
    return result


@dataclass
class _MethodResult:
    """One method's work on a batch: its rows, its maps' thumbnails, and (batch, method, images, seconds
    in the method, seconds in the metrics of its maps)."""

    batch: int
    rows: pd.DataFrame
    maps: pd.DataFrame
    timing: tuple[int, str, int, float, float]
    kept: pd.DataFrame | None = None  # the maps kept, with ``keep_maps``


@dataclass
class _BatchWork:
    """A batch between its reading and its commit: what was read, and its methods' results as they come."""

    model: str
    key: int
    unreadable: list[tuple[int, str]]
    images: pd.DataFrame | None = None
    methods: int = 0  # results to come: one per method given to the metric pool
    computed: list[_MethodResult] = field(default_factory=list)

    def finish(self, tables: RunTables | None) -> list[pd.DataFrame]:
        """Write the batch's parts to ``tables`` (and return no rows), or, without tables, return its rows."""
        if tables is None:
            return [result.rows for result in self.computed]
        skipped = pd.DataFrame([(self.model, i, why) for i, why in self.unreadable], columns=SKIPPED_COLUMNS)
        _commit(tables, self.model, skipped, self.images, self.computed)
        return []


def _commit(
    tables: RunTables,
    model: str,
    skipped: pd.DataFrame,
    images: pd.DataFrame | None,
    computed: Sequence[_MethodResult],
) -> None:
    """Write one batch's parts: its unreadable images, its image thumbnails, then its methods' map
    thumbnails and timings, and last its per-image rows, which mark the batch's (index, method) pairs
    done (a run killed before that computes the batch again and writes its thumbnails again, read as
    the latest)."""
    tables.skipped.append(skipped)
    if images is not None:
        tables.images.append(images)
    if computed:
        tables.maps.append(pd.concat([result.maps for result in computed], ignore_index=True))
        kept = [result.kept for result in computed if result.kept is not None]
        if kept:
            tables.kept_maps.append(pd.concat(kept, ignore_index=True))
        tables.timings.append(pd.DataFrame([(model, *result.timing) for result in computed], columns=TIMING_COLUMNS))
        tables.per_image.append(pd.concat([result.rows for result in computed], ignore_index=True))


def _clock(device: torch.device) -> float:
    """``time.perf_counter()`` once the device's queued work is done: CUDA runs asynchronously, so a
    method's time on a GPU is read after its kernels have run, not after they were queued."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def _done(journals: RunTables | None, model: str, wanted: set[int]) -> dict[int, dict[str, str | None]]:
    """The rows the journals already hold for ``model`` among the ``wanted`` images: index ->
    method -> the digest of the image the row scored (None in rows of xaibench 0.2, which kept none)."""
    if journals is None:
        return {}
    done: dict[int, dict[str, str | None]] = {}
    rows = journals.per_image.keys(["model", "index", "method", DIGEST])
    rows = rows[rows.model == model]
    for index, method, digest in zip(rows["index"].astype(int), rows["method"], rows[DIGEST]):
        if index in wanted:
            done.setdefault(int(index), {})[method] = digest if isinstance(digest, str) else None
    return done


def _unchanged(
    dataset: Sequence[Sample], done: dict[int, dict[str, str | None]], out: str | Path | None
) -> dict[int, set[str]]:
    """The (index -> methods) rows of ``done`` whose image is still the one they scored.

    Each image with rows is identified again (``dataset.sample_digest(i)`` where the data set can
    do it without decoding, else by reading the sample): an image whose bytes or annotations changed
    since is scored again, with a warning that names it, and its new rows replace the old ones.

    Raises:
        XaibenchError: an image with rows can no longer be read, or rows without a digest (written by
            xaibench 0.2): nothing says that they still stand for the images on disk.
    """
    if not done:
        return {}
    if any(digest is None for methods in done.values() for digest in methods.values()):
        raise XaibenchError(
            f"the rows in {out} were written by an earlier version of xaibench, which did not record what each "
            "image was, so they cannot be checked against the images now; summarize and report read them, but "
            "continue the run with that version, or start it again with --overwrite"
        )
    fast = getattr(dataset, "sample_digest", None)
    kept: dict[int, set[str]] = {}
    changed, lost = [], []
    for index, methods in sorted(done.items()):
        try:
            digest = fast(index) if fast is not None else sample_digest(dataset[index])
        except UnreadableImageError as error:
            lost.append(f"{index} ({' '.join(str(error).split())})")
            continue
        kept[index] = {method for method, before in methods.items() if before == digest}
        if len(kept[index]) < len(methods):
            changed.append(index)
    if lost:
        raise XaibenchError(
            f"{len(lost)} image(s) scored earlier in {out} cannot be read now, e.g. {lost[0]}; restore them to resume "
            "the run, or start it again with --overwrite"
        )
    if changed:
        name = getattr(dataset, "sample_id", None)
        shown = [f"{name(i)} (index {i})" if name is not None else f"index {i}" for i in changed[:10]]
        more = f" and {len(changed) - 10} more" if len(changed) > 10 else ""
        logger.warning(
            "%d image(s) changed since the run scored them (their bytes or annotations): %s%s; their rows are "
            "computed again and replace the old ones", len(changed), ", ".join(shown), more,
        )
    return kept


def _submit_batch(
    model: Model,
    batch: Batch,
    indices: Sequence[int],
    digests: Sequence[str],
    explainers: Sequence[Explainer],
    metrics: Sequence[Metric],
    done: dict[int, set[str]],
    target: str,
    bar: tqdm,
    full_size: set[int],
    pool: MetricPool[_MethodResult],
    work: _BatchWork,
    keep_maps: KeepMaps | None = None,
    precision: str = FULL,
) -> None:
    """The network work of a batch, in the calling thread: its classification pass, then for each method
    with an (image, method) not in ``done``, in order, the method and the metrics that run the network;
    the method's other metrics, its rows (``digests``: each image's :func:`sample_digest`) and its maps'
    thumbnails (full size for the indices in ``full_size``) and, with ``keep_maps``, its maps as kept, are
    a job for ``pool``, whose result (a :class:`_MethodResult`) ``work`` counts.

    One forward pass classifies the batch; the methods that need nothing else
    (:attr:`~xaibench.explainer.Explainer.uses_forward_pass`) take their maps from it, and the metrics
    take the clean images' logits from it (:attr:`~xaibench.metric.MetricInput.logits`). That pass is
    fp32 whatever the ``precision`` the methods and the metrics' passes run in: one pass a batch, whose
    top-1 and top-5 classes say what is explained and what counts as localised (in bf16, top-1 accuracy
    on the 300 shared photos moves by 0.67 point with EfficientNet-Lite0).
    """
    todo = {e.name: np.array([e.name not in done.get(i, ()) for i in indices]) for e in explainers}
    images = batch.images.to(model.device)
    forward = classification_pass(model, images, features=any(e.uses_forward_pass and todo[e.name].any() for e in explainers))
    top5 = forward.logits.topk(min(5, model.num_classes), dim=1).indices.cpu()
    predictions = top5[:, 0]
    targets = batch.labels if target == "label" else predictions
    where = f"images {batch.ids[0]} ... {batch.ids[-1]}" if len(batch) > 1 else f"image {batch.ids[0]}"
    for explainer in explainers:
        if not todo[explainer.name].any():
            continue
        bar.set_postfix_str(explainer.name)
        start = _clock(images.device)
        try:
            with autocast(images.device, precision):
                explanation = explainer.explain(
                    images, targets.to(images.device), forward=forward, progress=PassProgress(bar, explainer.name)
                )
        except Exception as error:
            raise XaibenchError(f"method '{explainer.name}' failed on {where}: {type(error).__name__}: {error}") from error
        seconds = _clock(images.device) - start
        maps, native = as_numpy(explanation.maps), as_numpy(explanation.native)
        finite = as_numpy(explanation.finite).astype(bool)
        constant = as_numpy(explanation.constant).astype(bool)
        keep = np.flatnonzero(todo[explainer.name])
        # Metrics of maps see the finite maps; metrics of the image alone see every row to write.
        rows = {True: keep[finite[keep]], False: keep}
        inputs = {
            needs_maps: _metric_input(model, batch, images, forward.logits, maps, native, targets, top5, rows[needs_maps], target)
            for needs_maps in {m.needs_maps for m in metrics}
        }
        values = {}
        for metric in metrics:
            if metric.passes_per_image:  # the metrics that run the network, here; they take time: say which
                bar.set_postfix_str(f"{explainer.name}: {metric.name}")
                with autocast(images.device, precision):
                    values[metric.name] = _score(metric, inputs, rows, explainer.name, where)
        network_seconds = _clock(images.device) - start - seconds
        frame = pd.DataFrame(
            {
                "model": model.name,
                "index": indices,
                "image_id": [displayable(i) for i in batch.ids],  # a file name's undecodable bytes as \\xNN
                DIGEST: list(digests),
                "method": explainer.name,
                "label": batch.labels.numpy(),
                "prediction": predictions.numpy(),
                "target": targets.numpy(),
                "status": np.where(~finite, "nonfinite", np.where(constant, "constant", "ok")),
            }
        )

        def rest(frame=frame, maps=maps, finite=finite, keep=keep, values=values, method=explainer.name, seconds=seconds,
                 network_seconds=network_seconds, inputs=inputs, rows=rows) -> _MethodResult:
            """The metrics that run no network (on inputs of their own: a cache apart from the calling
            thread's), the columns in the metrics' order, the thumbnails."""
            start = time.perf_counter()
            own = {needs_maps: replace(given, cache={}) for needs_maps, given in inputs.items()}
            for metric in metrics:
                if not metric.passes_per_image:
                    values[metric.name] = _score(metric, own, rows, method, where)
            for metric in metrics:
                for column, kind in metric.columns.items():
                    frame[column] = _column(metric, column, kind, values[metric.name].get(column), rows[metric.needs_maps], frame.index)
            timing = (indices[0], method, len(batch), seconds, network_seconds + time.perf_counter() - start)
            shown = [indices[k] for k in keep]
            thumbs = thumbnails.map_rows(model.name, shown, method, maps[keep], full_size)
            kept = None if keep_maps is None else kept_map_rows(model.name, shown, method, maps[keep], finite[keep], keep_maps)
            return _MethodResult(work.key, frame.iloc[keep], thumbs, timing, kept)

        work.methods += 1
        pool.submit(rest)


def _score(metric: Metric, inputs: dict[bool, MetricInput], rows: dict[bool, np.ndarray], method: str, where: str) -> dict:
    """``metric``'s values for its rows of a method's batch (none for no row)."""
    try:
        return metric.score(inputs[metric.needs_maps]) if len(rows[metric.needs_maps]) else {}
    except Exception as error:
        raise XaibenchError(
            f"metric '{metric.name}' failed on the maps of method '{method}' for {where}: "
            f"{type(error).__name__}: {error}"
        ) from error


def _column(
    metric: Metric, column: str, kind: str, values: Sequence | None, scored: np.ndarray, index: pd.Index
) -> pd.Series:
    """One metric column of a batch's frame: ``values`` at the rows ``scored``, NaN (or None for an
    array column) elsewhere."""
    if kind == "array":  # (pd.Series(None, dtype=object) is NaN in pandas 3: the list keeps None)
        cells = pd.Series([None] * len(index), index=index, dtype=object)
    else:
        cells = pd.Series(np.nan, index=index, dtype=float)
    if values is None or not len(scored):
        return cells
    if len(values) != len(scored):
        raise XaibenchError(f"metric '{metric.name}' returned {len(values)} values of '{column}' for {len(scored)} images")
    for k, value in zip(scored, values):
        cells.iloc[k] = value
    return cells


def _metric_input(
    model: Model,
    batch: Batch,
    images: torch.Tensor,
    logits: torch.Tensor,
    maps: np.ndarray,
    native: np.ndarray,
    targets: torch.Tensor,
    top5: torch.Tensor,
    rows: np.ndarray,
    target: str,
) -> MetricInput:
    """What the metrics see of the batch's ``rows``: their maps, images, logits, classes and ground truth."""
    on_device = torch.as_tensor(rows, dtype=torch.long, device=images.device)
    return MetricInput(
        maps=maps[rows],
        native_maps=native[rows],
        images=images[on_device],
        logits=logits[on_device],
        targets=targets[torch.as_tensor(rows, dtype=torch.long)].to(images.device),
        labels=batch.labels.numpy()[rows],
        top5=top5.numpy()[rows],
        boxes=[batch.boxes[k] for k in rows],
        difficult=[batch.difficult[k] for k in rows],
        masks=[batch.masks[k] for k in rows],
        target=target,
        model=model,
        originals=[batch.originals[k] for k in rows],
    )


def predictions_and_targets(model: Model, images: torch.Tensor, labels: torch.Tensor, target: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's top-1 predictions, and the class each map explains: the label or the prediction."""
    with eval_mode(model.network), torch.no_grad():
        predictions = model(images).argmax(1)
    return predictions, (labels.to(images.device) if target == "label" else predictions)


def first_samples(
    dataset: Sequence[Sample], k: int, skipped: list[tuple[int, str]] | None = None
) -> list[Sample]:
    """The first ``k`` readable samples of ``dataset`` (unreadable ones are skipped, as in :func:`evaluate`,
    and appended to ``skipped`` as ``(index, reason)`` if it is given)."""
    samples: list[Sample] = []
    for index in range(len(dataset)):
        if len(samples) == k:
            break
        try:
            samples.append(dataset[index])
        except UnreadableImageError as error:
            if skipped is not None:
                skipped.append((index, " ".join(str(error).split())))
    return samples


def explain_samples(
    model: Model, samples: Sequence[Sample], methods: Sequence[str | Explainer], target: str = "label"
) -> dict[str, np.ndarray]:
    """Maps (N, H, W) of each method for a few samples, e.g. for a figure (a non-finite map is all zeros)."""
    batch = collate(samples)
    images = batch.images.to(model.device)
    _, targets = predictions_and_targets(model, images, batch.labels, target)
    explainers = [m if isinstance(m, Explainer) else create_explainer(m, model) for m in methods]
    return {e.name: as_numpy(e.explain(images, targets).maps) for e in explainers}
