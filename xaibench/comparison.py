"""Several runs side by side: checked to be comparable, then tables, rankings, paired tests and
per-class breakdowns (pandas), the numbers behind ``xaibench report``.

Runs may differ in methods, models and data sets; rows are keyed by ``(dataset, model, method)``.
Runs are refused (:func:`check_comparable`) when their numbers would not mean the same thing:

- every run must share the protocol (:data:`PROTOCOL_FIELDS`: image resizing, map post-processing,
  the map-threshold grid, the explained class) and the options of the metrics they share;
- runs on the same data set must have scored the same images (``n``, the ids' digest, the seed that
  draws generated data and seeds random methods);
- a model in several runs on one data set must be the same (weights, target layer, image size);
- a ``(dataset, model, method)`` that several runs hold must have been computed alike in each
  (:func:`copies_differ`: the method's options, the precision, the metrics, the images); the report
  keeps the first run's copy and says so (:class:`SharedCopy`), e.g. CAM run as the reference in
  every run of a study.

Paired tests (:mod:`xaibench.significance`) compare every two methods of a ``(dataset, model)`` on the
images both scored: hits and misses (0/1 per image: localization accuracy, pointing) by McNemar's exact
test, other scores by the paired sign-flip permutation test; the difference's interval is a paired
bootstrap; p-values are Holm-corrected within each ``(dataset, model, metric)``. The ranks
(:func:`rank`) follow the tests: a method's rank is 1 + the number of methods significantly better.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd

from xaibench import significance, thumbnails
from xaibench.allocator import return_freed_memory
from xaibench.errors import XaibenchError
from xaibench.harness import (
    DIGEST, THUMBNAIL_ARRAYS, prepared_groups, read_skipped, read_thumbnails, read_timings, thumbnail_arrays,
)
from xaibench.metric import FAMILIES, Metric, Prepared
from xaibench.report import box_accuracy_curves, given, mean_curves, run_metrics, seconds_per_image, summarize
from xaibench.run_folder import IDS_FIELD, SKIPPED, definitions, read_config
from xaibench.text import displayable

#: config.json fields that every combined run must share: they change what a number means.
PROTOCOL_FIELDS = ("image_resize", "map_postprocessing", "constant_map_rtol", "maxboxacc_thresholds", "target")
#: Fields that runs on the same data set must share: they decide which images were scored.
DATA_FIELDS = ("n", IDS_FIELD, "seed")
#: Fields of a model that must agree wherever it appears on one data set.
MODEL_FIELDS = ("weights", "weights_sha256", "target_layer", "image_size")
#: Significance level at which a Holm-corrected difference is called significant.
ALPHA = 0.05

KEYS = ["dataset", "model", "method"]
SUMMARY_COLUMNS = ["dataset", "model", "method", "metric", "value", "ci_low", "ci_high", "n", "rank"]
PAIRWISE_COLUMNS = ["dataset", "model", "metric", "method_a", "method_b", "n", "mean_a", "mean_b", "difference",
                    "ci_low", "ci_high", "test", "p_value", "p_holm", "significant"]
PER_CLASS_COLUMNS = ["dataset", "model", "method", "class_name", "label", "metric", "value", "n"]
AGREEMENT_COLUMNS = ["dataset", "model", "method_a", "method_b", "pearson", "n"]
#: The map-agreement matrix is computed over at most this many images: the first (by index) whose map
#: every method of the (dataset, model) kept.
AGREEMENT_IMAGES = 1000


@dataclass
class Run:
    """One run's folder, read: its configuration, metrics, summary, thumbnails (without their pictures:
    :func:`thumbnails_of` reads those shown), and per-image rows without their arrays, which are read a
    method at a time into what the report needs of them: each data-set-level metric's per-image values
    (:func:`per_image_scores`), the box-accuracy curves and the metrics' mean curves."""

    folder: Path
    config: dict
    metrics: list[Metric]
    per_image: pd.DataFrame
    summary: pd.DataFrame
    seconds: pd.Series
    images: pd.DataFrame
    maps: pd.DataFrame
    box_curves: pd.DataFrame = field(default_factory=pd.DataFrame)
    metric_curves: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: (model, index) -> the digest of the image scored there (:func:`image_digests`), kept once per
    #: image rather than on each method's row; empty for a run of xaibench 0.2.
    digests: pd.Series = field(default_factory=lambda: pd.Series(dtype=object))

    @property
    def dataset(self) -> str:
        """The data set as ``config.json`` names it, a path's undecodable bytes written ``\\xNN`` (a
        table's text)."""
        return displayable(str(self.config.get("dataset", "")))

    @property
    def model_names(self) -> list[str]:
        return list(_models(self))


def load_run(folder: str | Path, *, n_boot: int = 1000) -> Run:
    """Read the run in ``folder`` and summarise it exactly as its ``summary.csv`` (same bootstrap seed).

    Raises:
        XaibenchError: the folder holds no run, or a run with no rows yet.
    """
    folder = Path(folder)
    config = read_config(folder)
    metrics = run_metrics(config)
    seed = int(config.get("seed", 0))
    rows, summaries, box_curves, metric_curves = [], [], [], []
    digests = pd.Series(dtype=object)
    for group, prepared in prepared_groups(folder, metrics):  # a method at a time
        summaries.append(summarize(group, metrics, n_boot=n_boot, seed=seed, prepared=prepared))
        box_curves.append(box_accuracy_curves(group, prepared))
        metric_curves.append(mean_curves(group, metrics))
        kept = _without_arrays(group, metrics, prepared)
        del group, prepared  # a method's arrays: gone before the next method's are read
        found = image_digests(kept)  # per image, not on every method's row
        digests = pd.concat([digests, found[~found.index.isin(digests.index)]]) if len(digests) else found
        rows.append(kept.drop(columns=[DIGEST], errors="ignore"))
    per_image = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()
    rows.clear()
    if per_image.empty:
        skipped = len(read_skipped(folder))
        if skipped:
            raise XaibenchError(
                f"{folder} holds a run whose {skipped} image(s) could not be read (see its {SKIPPED}/ table); nothing to "
                "report: fix the images or the data set, then run it again with --overwrite"
            )
        raise XaibenchError(f"{folder} holds a run with no scored image yet; run it (or --resume it) first")
    return_freed_memory()  # what the parts streamed through memory left free: the report needs little of it
    summary = pd.concat(summaries, ignore_index=True)
    images, maps = read_thumbnails(folder, arrays=False)  # the galleries read the pictures they show
    box = [c for c in box_curves if not c.empty]
    return Run(folder, config, metrics, per_image, summary, seconds_per_image(read_timings(folder)), images, maps,
               pd.concat(box, ignore_index=True) if box else pd.DataFrame(),
               pd.concat(metric_curves, ignore_index=True), digests)


#: The column of a method's rows that holds a data-set-level metric's per-image values, once the
#: arrays they come from are dropped (:func:`load_run`).
PER_IMAGE_VALUES = "{}:per_image"


def _without_arrays(rows: pd.DataFrame, metrics: list[Metric], prepared: dict[str, Prepared]) -> pd.DataFrame:
    """One (model, method)'s rows with each metric's per-image values (:meth:`Metric.per_image_values`,
    from its ``prepared`` arrays where it has them) as a column of their own and no array column."""
    rows = rows.copy()
    for metric in metrics:
        if metric.unit != "count" and (metric.name in prepared or set(metric.columns) <= set(rows.columns)):
            values = metric.per_image_values(rows, *given(prepared, metric))
            if values is not None:
                rows[PER_IMAGE_VALUES.format(metric.name)] = np.asarray(values, dtype=np.float64)
    arrays = [c for metric in metrics for c, kind in metric.columns.items() if kind == "array" and c in rows]
    return rows.drop(columns=arrays)


def thumbnails_of(comparison: Comparison, dataset: str, model: str, table: str, keys: pd.DataFrame) -> pd.DataFrame:
    """The thumbnails (``images`` or ``maps``, arrays included) of ``keys`` (``index``, and ``method``
    for maps) of one (dataset, model), read from the runs that hold them (the last run wins where two do)."""
    keys = keys.assign(model=model)
    frames = []
    for k, run in enumerate(comparison.runs):
        if run.dataset != dataset or model not in run.model_names:
            continue
        mine = keys
        if "method" in keys and comparison.holders:  # a map from the run whose copy the comparison holds
            mine = keys[[comparison.holders.get((dataset, model, m)) == k for m in keys.method]]
        if len(mine):
            frames.append(thumbnail_arrays(run.folder, table, mine))
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame(columns=[*keys.columns, THUMBNAIL_ARRAYS[table]])
    rows = pd.concat(frames, ignore_index=True)
    return rows.drop_duplicates(subset=[c for c in ("model", "index", "method") if c in rows], keep="last")


def _models(run: Run) -> dict[str, dict]:
    """The run's models by name (a run written before several models per run: its one ``model``)."""
    if "models" not in run.config and "model" in run.config:
        return {str(run.config["model"]): {key: run.config.get(key) for key in MODEL_FIELDS}}
    return {m.get("name", ""): m for m in run.config.get("models", [])}


def _differ(what: str, a: Run, b: Run, key: str, va: object, vb: object) -> XaibenchError:
    return XaibenchError(
        f"cannot compare {a.folder} and {b.folder}: {what}'{key}' differs ({json.dumps(va)} vs {json.dumps(vb)}); "
        "report runs made with the same setting"
    )


def check_comparable(runs: list[Run]) -> None:
    """Refuse runs whose numbers cannot stand side by side (see the module's docstring).

    Raises:
        XaibenchError: naming the two runs, the field and both values.
    """
    first = runs[0]
    for run in runs[1:]:
        if definitions(first.config) != definitions(run.config):
            raise XaibenchError(
                f"cannot compare {first.folder} and {run.folder}: they were computed with different definitions of "
                f"the metrics and methods ({definitions(first.config)} and {definitions(run.config)}, xaibench "
                f"{first.config.get('xaibench', '0.1')} and {run.config.get('xaibench', '0.1')}); run the older again "
                "with this version"
            )
        for key in PROTOCOL_FIELDS:
            if first.config.get(key) != run.config.get(key):
                raise _differ("the protocol's ", first, run, key, first.config.get(key), run.config.get(key))
    for a, b in combinations(runs, 2):
        shared = set(a.config.get("metric_options", {})) & set(b.config.get("metric_options", {}))
        for name in sorted(shared):
            va, vb = a.config["metric_options"][name], b.config["metric_options"][name]
            if va != vb:
                raise _differ(f"metric '{name}': its options ", a, b, "options", va, vb)
        if a.dataset != b.dataset:
            continue
        for key in DATA_FIELDS:
            if a.config.get(key) != b.config.get(key):
                raise _differ(f"on {a.dataset}, ", a, b, key, a.config.get(key), b.config.get(key))
        _check_same_images(a, b)
        for name in sorted(set(_models(a)) & set(_models(b))):
            for key in MODEL_FIELDS:
                va, vb = _models(a)[name].get(key), _models(b)[name].get(key)
                if va != vb:
                    raise _differ(f"model {name}: ", a, b, key, va, vb)
        for model, method in sorted(_held(a) & _held(b)):
            how = copies_differ(a, b, model, method)
            if how:
                raise XaibenchError(
                    f"{a.folder} and {b.folder} both hold {method} ({model}) on {a.dataset}, computed differently: "
                    f"{how}; report one of them (leave the other out, or report it on its own)"
                )


def _held(run: Run) -> set[tuple[str, str]]:
    """The (model, method) pairs a run holds rows of."""
    return set(zip(run.per_image.model, run.per_image.method))


def copies_differ(a: Run, b: Run, model: str, method: str) -> str | None:
    """How two runs' copies of one (model, method) on one data set differ, or None where they are one
    result: the method's options, the precision, the metrics (their options are checked for every
    shared metric already) and the images scored must agree (the protocol, the data and the model
    are checked by :func:`check_comparable`)."""
    options_a = a.config.get("method_options", {}).get(method, {})
    options_b = b.config.get("method_options", {}).get(method, {})
    if options_a != options_b:
        return f"the method's options ({json.dumps(options_a)} vs {json.dumps(options_b)})"
    if a.config.get("precision", "fp32") != b.config.get("precision", "fp32"):
        return f"the precision ({a.config.get('precision', 'fp32')} vs {b.config.get('precision', 'fp32')})"
    metrics_a, metrics_b = [m.name for m in a.metrics], [m.name for m in b.metrics]
    if set(metrics_a) != set(metrics_b):
        only_a = ", ".join(m for m in metrics_a if m not in metrics_b) or "none"
        only_b = ", ".join(m for m in metrics_b if m not in metrics_a) or "none"
        return f"the metrics (only in the first: {only_a}; only in the second: {only_b})"
    scored_a, scored_b = (set(r.per_image.loc[(r.per_image.model == model) & (r.per_image.method == method), "index"])
                          for r in (a, b))
    if scored_a != scored_b:
        return (f"the images scored ({len(scored_a)} and {len(scored_b)}, {len(scored_a ^ scored_b)} in one only: "
                "resume the partial run first)")
    return None


@dataclass(frozen=True)
class SharedCopy:
    """A (dataset, model, method) held by several runs with one configuration: the report keeps the
    copy of the first run named (``kept``) and leaves out the others'; ``difference`` is the largest
    absolute difference between their summary values (0 where the copies are the same numbers)."""

    dataset: str
    model: str
    method: str
    kept: Path
    left_out: tuple[Path, ...]
    difference: float

    def describe(self, name) -> str:
        """One sentence for the report's page, each run called by ``name(folder)``."""
        others = ", ".join(name(f) for f in self.left_out)
        same = ("the same numbers" if self.difference == 0 else
                f"summaries that differ by at most {self.difference:.3g}")
        return (f"{self.method} ({self.model} on {self.dataset}) is in {name(self.kept)} and {others} with the same "
                f"configuration and images ({same}); the report shows {name(self.kept)}'s copy")


def image_digests(rows: pd.DataFrame) -> pd.Series:
    """(model, index) -> the digest of the image scored there, from per-image ``rows`` (none for a run
    of xaibench 0.2)."""
    if DIGEST not in rows:
        return pd.Series(dtype=object)
    rows = rows[rows[DIGEST].notna()].drop_duplicates(["model", "index"])
    return pd.Series(rows[DIGEST].to_numpy(), index=pd.MultiIndex.from_arrays([rows["model"], rows["index"].astype(int)]))


def _check_same_images(a: Run, b: Run) -> None:
    """Refuse two runs that name one data set alike but scored other images under the same indices: their
    rows would be paired image by image. Images are told apart by the digest of their bytes and
    annotations (:data:`~xaibench.harness.DIGEST`), never by their names.

    Raises:
        XaibenchError: naming the runs, how many shared images differ, and one of them.
    """
    da, db = a.digests, b.digests
    shared = da.index.intersection(db.index)
    differ = [key for key in shared if da[key] != db[key]]
    if differ:
        model, index = differ[0]
        ids = a.per_image[(a.per_image.model == model) & (a.per_image["index"] == index)].image_id
        name = f"'{ids.iloc[0]}'" if len(ids) else f"index {index}"
        raise XaibenchError(
            f"cannot compare {a.folder} and {b.folder}: both name the data set {a.dataset!r}, but {len(differ)} of the "
            f"{len(shared)} images they share differ in their bytes or annotations (e.g. image {name}); they are "
            "different data sets: report them separately, or run both on the same files"
        )


@dataclass
class Comparison:
    """The combined runs: per-image rows and thumbnails with a ``dataset`` column, and the metrics. Its
    ``summary`` has no ``rank``: ranks follow the paired tests (:func:`rank`, done by the report)."""

    runs: list[Run]
    per_image: pd.DataFrame
    summary: pd.DataFrame
    metrics: dict[str, Metric]
    seconds: pd.Series
    images: pd.DataFrame
    maps: pd.DataFrame
    groups: list[tuple[str, str]] = field(default_factory=list)  # (dataset, model), in order
    box_curves: pd.DataFrame = field(default_factory=pd.DataFrame)  # with a dataset column
    metric_curves: pd.DataFrame = field(default_factory=pd.DataFrame)  # with a dataset column
    #: (dataset, model, method) -> the position in ``runs`` of the run whose copy the rows are.
    holders: dict[tuple[str, str, str], int] = field(default_factory=dict)
    #: The (dataset, model, method)s that several runs held, each kept once.
    shared: list[SharedCopy] = field(default_factory=list)
    #: :func:`score_table`'s tables, made once per (dataset, model, metric) for the paired tests, the
    #: critical differences and the image browser alike.
    score_tables: dict[tuple[str, str, str], pd.DataFrame] = field(default_factory=dict, repr=False)

    def holder(self, dataset: str, model: str, method: str) -> Run:
        """The run whose copy of (dataset, model, method) the comparison holds."""
        return self.runs[self.holders[dataset, model, method]]


def combine(runs: list[Run]) -> Comparison:
    """Check that ``runs`` are comparable and put them together."""
    if not runs:
        raise XaibenchError("name at least one run folder to report")
    check_comparable(runs)
    holders: dict[tuple[str, str, str], int] = {}
    for k, run in enumerate(runs):  # the first run named keeps a copy that several hold
        for model, method in sorted(_held(run)):
            holders.setdefault((run.dataset, model, method), k)

    def own(k: int, frame: pd.DataFrame) -> pd.DataFrame:
        """The rows of ``runs[k]``'s part ``frame`` whose (model, method) the comparison keeps from it."""
        if frame.empty or "method" not in frame:
            return frame
        dataset = runs[k].dataset
        keep = np.array([holders[dataset, m, method] == k for m, method in zip(frame.model, frame.method)], dtype=bool)
        return frame if keep.all() else frame[keep]

    def stacked(part: str) -> pd.DataFrame:
        frames = [own(k, getattr(r, part)).assign(dataset=r.dataset) for k, r in enumerate(runs)
                  if not getattr(r, part).empty]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["dataset", "model"])

    metrics: dict[str, Metric] = {}
    for run in runs:
        for metric in run.metrics:
            metrics.setdefault(metric.name, metric)
    seconds = pd.Series({(r.dataset, *key): value for k, r in enumerate(runs) for key, value in r.seconds.items()
                         if holders.get((r.dataset, *key)) == k}, dtype=float)
    summary = stacked("summary")
    summary = summary[["dataset"] + [c for c in summary.columns if c != "dataset"]]
    images = stacked("images")
    datasets = {d: k for k, d in enumerate(dict.fromkeys(r.dataset for r in runs))}
    order = {name: k for k, name in enumerate(metrics)}
    box_curves = stacked("box_curves")
    if len(box_curves):  # by data set, then as the runs came
        box_curves = box_curves.iloc[np.argsort(box_curves.dataset.map(datasets).to_numpy(), kind="stable")]
    metric_curves = stacked("metric_curves")
    if len(metric_curves):  # by metric, then as the runs came
        metric_curves = metric_curves.iloc[np.argsort(metric_curves.metric.map(order).to_numpy(), kind="stable")]
    comparison = Comparison(
        runs, stacked("per_image"), summary, metrics, seconds,
        images.drop_duplicates(subset=["dataset", "model", "index"], keep="last") if not images.empty else images,
        stacked("maps"), box_curves=box_curves.reset_index(drop=True), metric_curves=metric_curves.reset_index(drop=True),
    )
    comparison.groups = list(dict.fromkeys(zip(comparison.summary.dataset, comparison.summary.model)))
    comparison.holders = holders
    comparison.shared = _shared_copies(runs, holders)
    return comparison


def _shared_copies(runs: list[Run], holders: dict[tuple[str, str, str], int]) -> list[SharedCopy]:
    """The (dataset, model, method)s that several of ``runs`` hold, and how far their summaries differ."""
    shared = []
    for (dataset, model, method), k in holders.items():
        others = [r for j, r in enumerate(runs) if j != k and r.dataset == dataset and (model, method) in _held(r)]
        if not others:
            continue

        def values(run: Run) -> pd.Series:
            rows = run.summary[(run.summary.model == model) & (run.summary.method == method)]
            return pd.Series(rows.value.to_numpy(dtype=np.float64), index=rows.metric.to_numpy())

        kept = values(runs[k])
        gaps = [(kept - values(r).reindex(kept.index)).abs().max() for r in others]
        shared.append(SharedCopy(dataset, model, method, runs[k].folder, tuple(r.folder for r in others),
                                 float(np.nanmax(gaps)) if len(kept) and not np.isnan(gaps).all() else 0.0))
    return shared


#: What a rank means, for the report's captions (:func:`rank`).
RANK_RULE = (f"A method's rank is 1 + the number of methods significantly better than it (paired test, Holm, "
             f"alpha {ALPHA}), so methods whose paired difference is not significant share a rank; their ranks can "
             "differ only where a third method is significantly better than one of them and not the other. Metrics "
             "without a paired test (PxAP, the per-class pointing game, counts) are not ranked")


def rank(summary: pd.DataFrame, metrics: dict[str, Metric], pairs: pd.DataFrame) -> pd.DataFrame:
    """``summary`` with a ``rank`` column that claims no more than the paired tests (:func:`pairwise`).

    Within each (dataset, model, metric), a method's rank is one plus the number of methods
    *significantly better* than it::

        rank(m) = 1 + |{m' : p_holm(m, m') < ALPHA and m' better than m}|

    where "better" is the sign of the paired mean difference read by the metric's direction (higher
    or lower is better), and ``p_holm`` is the Holm-corrected p-value of the pair in ``pairs``
    (McNemar's exact test for hits, the sign-flip test otherwise). This is the rule of the Chatbot
    Arena leaderboard's "rank (UB)" (Chiang et al., ICML 2024): "one + the number of models that are
    statistically better than the target model", where "statistically better" is a paired test here
    and two 95% intervals that do not overlap there. Why this rule:

    * methods that no test separates share a rank: two methods tied in every test both rank 1, and
      with every pair significant the ranks are the plain order ``1, 2, ..., k``;
    * a rank is a claim the tests make about each method: rank r says r - 1 methods were shown
      better than it, with the family-wise error of the metric's tests controlled by Holm;
    * the method with the best mean ranks 1: a method with a worse mean is never "better".

    Significance is not transitive: A significantly above C, with neither A nor C separated from B,
    gives A 1, B 1, C 2. B and C are not separated yet do not share a rank; no single number per
    method can make every unseparated pair share one there (A and C would have to tie), so the rule
    keeps what is shown for each method, not for each pair (``pairwise.csv`` has every pair).

    No rank (NA) for a metric with no direction, for classification (the model's, the same for every
    method), for a metric the paired tests do not cover (no per-image values: PxAP pools pixels,
    the per-class pointing game averages classes, counts of maps), and for a method that has no
    tested pair on the metric.

    Args:
        summary: The runs' summary rows (:attr:`Comparison.summary`).
        metrics: The metrics by name.
        pairs: :func:`pairwise` of the same comparison.

    Returns:
        ``summary`` with ``rank`` (nullable integer), in :data:`SUMMARY_COLUMNS` order.
    """
    ranks = pd.Series(pd.NA, index=summary.index, dtype="Int64")
    keys = ["dataset", "model", "metric"]
    groups = {key: rows for key, rows in pairs.groupby(keys, sort=False)} if len(pairs) else {}
    for key, rows in summary.groupby(keys, sort=False):
        name = key[2]
        better = metrics[name].higher_is_better if name in metrics else None
        if better is None or metrics[name].family == "classification" or key not in groups:
            continue
        family = groups[key]
        beaten: dict[str, int] = {m: 0 for m in pd.concat([family.method_a, family.method_b])}
        for a, b, difference, significant in zip(family.method_a, family.method_b, family.difference,
                                                 family.significant):
            if significant and difference != 0:
                a_better = (difference > 0) == bool(better)
                beaten[b if a_better else a] += 1
        for index, method in zip(rows.index, rows.method):
            if method in beaten:
                ranks[index] = 1 + beaten[method]
    return summary.assign(rank=ranks)[SUMMARY_COLUMNS]


def rows_of(per_image: pd.DataFrame, dataset: str, model: str, columns: list[str] | None = None) -> pd.DataFrame:
    """The rows of ``per_image`` (a :class:`Comparison`'s) for one (dataset, model), only ``columns``
    (default: all). Nothing is copied that is not asked for: a column subset shares its columns, and
    where every row belongs to the pair (a report of one run of one model) the rows are not filtered."""
    chosen = (per_image.dataset == dataset) & (per_image.model == model)
    rows = per_image if columns is None else per_image[columns]
    return rows if chosen.all() else rows[chosen.to_numpy()]


def per_image_scores(rows: pd.DataFrame, metric: Metric) -> pd.Series | None:
    """One method's per-image values of ``metric`` in the unit of its summary value (so their mean is
    the summary's value), indexed by image index; None for a metric with no per-image value (e.g.
    PxAP, which pools pixels, or a count)."""
    if metric.unit == "count":
        return None
    kept = PER_IMAGE_VALUES.format(metric.name)
    values = rows[kept].to_numpy() if kept in rows else metric.per_image_values(rows)
    if values is None:
        scalars = [c for c, kind in metric.columns.items() if kind == "scalar"]
        if len(scalars) != 1 or scalars[0] not in rows or metric.requires:
            return None
        if type(metric).aggregate is not Metric.aggregate:  # not the mean of its column: no per-image value
            return None
        values = rows[scalars[0]].to_numpy(dtype=np.float64) * metric.scale
    return pd.Series(np.asarray(values, dtype=np.float64), index=rows["index"].to_numpy())


def score_table(comparison: Comparison, dataset: str, model: str, metric: Metric) -> pd.DataFrame:
    """Per-image scores of every method of ``(dataset, model)``: images x methods (NaN: not scored);
    made once per comparison (:attr:`Comparison.score_tables`), to be read, not changed."""
    key = (dataset, model, metric.name)
    if key not in comparison.score_tables:
        comparison.score_tables[key] = _score_table(comparison, dataset, model, metric)
    return comparison.score_tables[key]


def _score_table(comparison: Comparison, dataset: str, model: str, metric: Metric) -> pd.DataFrame:
    rows = rows_of(comparison.per_image, dataset, model)
    columns = {}
    for method, group in rows.groupby("method", sort=False):
        scores = per_image_scores(group.reset_index(drop=True), metric)
        if scores is not None:
            columns[method] = scores
    return pd.DataFrame(columns)


def pairwise(comparison: Comparison, *, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> pd.DataFrame:
    """Every two methods of each (dataset, model), on each metric with per-image values, on the images
    both scored: the means, the difference ``a - b`` with its paired bootstrap interval, the test's
    p-value and its Holm correction within the (dataset, model, metric); long format
    (:data:`PAIRWISE_COLUMNS`)."""
    rows = []
    for dataset, model in comparison.groups:
        methods = list(dict.fromkeys(comparison.summary[(comparison.summary.dataset == dataset)
                                                        & (comparison.summary.model == model)].method))
        families, pairs = [], []  # each metric's tests; every pair's scores (one bootstrap for them all)
        for name in dict.fromkeys(comparison.summary.metric):
            metric = comparison.metrics.get(name)
            if metric is None or metric.family == "classification":  # the same for every method
                continue
            table = score_table(comparison, dataset, model, metric)
            family = []
            for a, b in combinations([m for m in methods if m in table], 2):
                both = table[[a, b]].dropna()
                if both.empty:
                    continue
                x, y = both[a].to_numpy(), both[b].to_numpy()
                binary = significance.is_binary(np.concatenate([x, y]))
                family.append([dataset, model, name, a, b, len(both), float(x.mean()), float(y.mean()),
                               "exact McNemar" if binary else "sign-flip permutation",
                               significance.exact_mcnemar(x, y) if binary else None])
                pairs.append(significance.compact(np.asarray(x, dtype=np.float64) - np.asarray(y, dtype=np.float64)))
            families.append(family)
        tests = [r for family in families for r in family]
        flips = [k for k, r in enumerate(tests) if r[-1] is None]  # sign-flip tests, their signs drawn once
        for k, p in zip(flips, significance.sign_flip_tests([pairs[k] for k in flips], seed=seed)):
            tests[k][-1] = p
        intervals = iter(significance.paired_bootstraps(pairs, n_boot=n_boot, seed=seed, level=level))
        for family in families:
            adjusted = significance.holm(np.array([r[-1] for r in family])) if family else []
            for r, q in zip(family, adjusted):
                difference, low, high = next(intervals)
                rows.append(r[:8] + [difference, low, high] + r[8:] + [float(q), bool(q < ALPHA)])
    return pd.DataFrame(rows, columns=PAIRWISE_COLUMNS)


def per_class(comparison: Comparison) -> pd.DataFrame:
    """Per class (the true label): each method's mean per-image value of each metric with per-image
    values, and how many images it rests on; long format (:data:`PER_CLASS_COLUMNS`). Class names
    come from the run's thumbnails, else the label index is used."""
    names = {}
    if not comparison.images.empty:
        names = {(d, m, int(k)): n for d, m, k, n in comparison.images[["dataset", "model", "label", "class_name"]]
                 .itertuples(index=False)}
    frames = []
    for (dataset, model, method), rows in comparison.per_image.groupby(KEYS, sort=False):
        rows = rows.reset_index(drop=True)
        labels = rows.label.to_numpy(dtype=int)
        for name, metric in comparison.metrics.items():
            scores = per_image_scores(rows, metric)
            if scores is None:
                continue
            frame = pd.DataFrame({"label": labels, "value": scores.to_numpy()}).groupby("label").value.agg(["mean", "count"])
            frames.append(pd.DataFrame({
                "dataset": dataset, "model": model, "method": method,
                "class_name": [names.get((dataset, model, int(k)), str(k)) for k in frame.index],
                "label": frame.index, "metric": name, "value": frame["mean"].to_numpy(), "n": frame["count"].to_numpy(),
            }))
    return pd.concat(frames, ignore_index=True)[PER_CLASS_COLUMNS] if frames else pd.DataFrame(columns=PER_CLASS_COLUMNS)


def families(comparison: Comparison) -> list[tuple[str, list[str]]]:
    """The metric families present, in :data:`~xaibench.metric.FAMILIES` order, with their metrics."""
    names = list(dict.fromkeys(comparison.summary.metric))
    return [(f, [n for n in names if comparison.metrics[n].family == f]) for f in FAMILIES
            if any(comparison.metrics[n].family == f for n in names)]


def map_agreement(comparison: Comparison, *, images: int = AGREEMENT_IMAGES) -> pd.DataFrame:
    """How alike the methods' maps are: per (dataset, model), every two methods' mean Pearson
    correlation between their maps of the same image, over the first ``images`` images (by index)
    whose map every method kept; long format (:data:`AGREEMENT_COLUMNS`, ``n`` the images averaged).

    The maps are the run's thumbnails (:mod:`xaibench.thumbnails`: the scored map, area-averaged to at
    most 96 pixels and rounded to 1/255; the few kept larger for the run's figure are area-averaged to
    the others' size), so two methods whose maps are equal up to a positive scale
    correlate at 1 (up to that rounding). An image where either map is constant has no correlation
    and is left out of that pair's mean::

        r(a, b) = mean over images i of  sum_p (a_ip - mean a_i)(b_ip - mean b_i) / (|a_i - mean a_i| |b_i - mean b_i|)

    Example: a method and a copy of it agree at 1.0; a map and its negation at -1.0.
    """
    rows = []
    for dataset, model in comparison.groups:
        kept = comparison.maps
        if kept.empty:
            break
        kept = kept[(kept.dataset == dataset) & (kept.model == model)]
        methods = list(dict.fromkeys(comparison.summary[(comparison.summary.dataset == dataset)
                                                        & (comparison.summary.model == model)].method))
        methods = [m for m in methods if m in set(kept.method)]
        if len(methods) < 2:
            continue
        counts = kept[kept.method.isin(methods)].drop_duplicates(["index", "method"]).groupby("index").size()
        chosen = np.sort(counts.index[counts.to_numpy() == len(methods)].to_numpy(dtype=np.int64))[:images]
        if not len(chosen):
            continue
        keys = pd.DataFrame([(int(i), m) for i in chosen for m in methods], columns=["index", "method"])
        found = thumbnails_of(comparison, dataset, model, "maps", keys).set_index(["index", "method"])["map"]
        shapes = pd.Series([c.shape for c in found.to_numpy()])
        shape = shapes.mode().iloc[0] if len(shapes) else (1, 1)  # the thumbnails' (the first images' are kept larger)
        standard = {}
        for method in methods:
            cells = [found.get((int(i), method)) for i in chosen]
            stack = np.stack([np.full(int(np.prod(shape)), np.nan, np.float32) if c is None
                              else c.astype(np.float32).ravel() if c.shape == shape
                              else 255 * thumbnails.map_image(c, shape).ravel() for c in cells])
            stack -= stack.mean(axis=1, keepdims=True)
            norms = np.linalg.norm(stack, axis=1, keepdims=True)
            with np.errstate(invalid="ignore", divide="ignore"):
                standard[method] = np.where(norms > 0, stack / norms, np.nan)
        for a, b in combinations(methods, 2):
            if standard[a].shape != standard[b].shape:
                continue
            r = np.einsum("ij,ij->i", standard[a], standard[b], dtype=np.float64)
            valid = ~np.isnan(r)
            rows.append([dataset, model, a, b, float(r[valid].mean()) if valid.any() else float("nan"), int(valid.sum())])
    return pd.DataFrame(rows, columns=AGREEMENT_COLUMNS)
