"""The one interface every metric implements, and the registry that finds metrics by name.

A metric scores the maps of one method on a batch (:meth:`Metric.score`: per-image values, written
as columns of the ``per_image`` table) and says how those values aggregate over a data set
(:meth:`Metric.aggregate`: a mean, or a data-set-level statistic such as MaxBoxAcc's best threshold
or PxAP's pooled pixels). The harness and the report call these two and read the metric's
:attr:`~Metric.title`, :attr:`~Metric.unit`, :attr:`~Metric.family` and :attr:`~Metric.description`;
neither knows a metric by name, so adding one is one class and one entry point.

Metrics are found through the entry-point group ``xaibench.metrics`` (:mod:`xaibench.registry`),
where xaibench declares its own exactly as a third-party package would::

    [project.entry-points."xaibench.metrics"]
    my_metric = "my_package.metrics:MyMetric"

A metric's options are its constructor's keyword parameters (``--metrics "deletion_auc(steps=100)"``),
checked like a method's and recorded in ``config.json``.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import torch

from xaibench.data.sample import Original
from xaibench.errors import OptionError, XaibenchError
from xaibench.method_spec import check_options, effective_options
from xaibench.models import Model
from xaibench.registry import PluginInfo, Registry

ENTRY_POINT_GROUP = "xaibench.metrics"

#: The families a metric belongs to; the report shows one table per family, in this order.
FAMILIES = ("classification", "localization", "faithfulness", "maps")

#: The metrics a run scores when none are named: the localization set, in the order of the summary's
#: rows. ``--metrics all`` adds every other installed metric after them.
DEFAULT_METRICS = (
    "top1_cls", "gt_known_loc", "top1_loc", "top5_loc", "maxboxacc", "maxboxacc_v2", "pxap", "pointing",
    "pointing_per_class", "energy_pointing", "mean_iou", "nonfinite_maps", "constant_maps",
)


@dataclass
class MetricInput:
    """What a metric sees of one method's maps on one batch: only the images to score.

    Attributes:
        maps: (n, H, W) float32 maps in [0, 1] at the images' resolution (finite ones only).
        images: (n, 3, H, W) the [0, 1] images, on the model's device.
        targets: (n,) the class each map explains.
        labels: (n,) the true classes.
        top5: (n, k) the model's top-5 classes (k <= 5), best first.
        boxes: per image, its (m, 4) ground-truth boxes, inclusive pixel corners.
        difficult: per image, (m,) bool: the box is marked difficult.
        masks: per image, an (H, W) bool object mask, or None.
        target: ``"label"`` or ``"prediction"``: what ``targets`` are.
        model: the classifier, for the metrics that run it.
        originals: per image, its ground truth at the image file's resolution
            (:class:`xaibench.data.sample.Original`), or None; None: none for any image.
        native_maps: (n, h, w) the method's raw maps at its own resolution, before upsampling
            (:attr:`xaibench.explainer.Explanation.native`), or None when not given.
        logits: (n, C) the network's output on ``images``, on the model's device, from the batch's
            classification pass (:mod:`xaibench.forward_pass`): shared by every method's metrics, so
            a metric that needs the clean image's probability does not run the network for it; or
            None when not given (the metric computes it).
        cache: values shared by the metrics of one (batch, method) (see :meth:`shared`).
    """

    maps: np.ndarray
    images: torch.Tensor
    targets: torch.Tensor
    labels: np.ndarray
    top5: np.ndarray
    boxes: Sequence[np.ndarray]
    difficult: Sequence[np.ndarray]
    masks: Sequence[np.ndarray | None]
    target: str
    model: Model
    originals: Sequence[Original | None] | None = None
    native_maps: np.ndarray | None = None
    logits: torch.Tensor | None = None
    cache: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.maps)

    def shared(self, key: str, compute: Callable[[], Any]) -> Any:
        """``compute()``, once per (batch, method) for every metric asking with the same ``key``
        (e.g. MaxBoxAcc and MaxBoxAccV2 share one contour search per map)."""
        if key not in self.cache:
            self.cache[key] = compute()
        return self.cache[key]


class Metric(abc.ABC):
    """A score of explanation maps: per image (:meth:`score`), then over a data set (:meth:`aggregate`).

    Subclasses set the class attributes below and implement :meth:`score`; the default
    :meth:`aggregate` is the mean of the metric's one scalar column (NaN left out) times ``scale``.
    Options are keyword parameters of ``__init__`` (with defaults, recorded in ``config.json``).
    """

    #: The name the metric is registered under (set by :func:`register_metric`).
    name: str = ""
    #: How tables title it, e.g. ``MaxBoxAccV2``.
    title: str = ""
    #: One sentence: what is measured, for the reports' legends.
    description: str = ""
    #: The unit of the aggregated value: ``%``, ``AUC`` (an area under a probability curve), ``count``,
    #: ``probability`` or ``ratio``.
    unit: str = "%"
    #: True if higher is better, False if lower is, None if neither.
    higher_is_better: bool | None = True
    #: One of :data:`FAMILIES`.
    family: str = "localization"
    #: Extra forward passes of the network per image and map (for the README and the progress bar).
    passes_per_image: int = 0
    #: The per-image columns the metric writes: name -> ``"scalar"`` or ``"array"``. A column has one
    #: owner: two metrics of a run may not declare the same column.
    columns: dict[str, str] = {}
    #: Other metrics whose columns :meth:`aggregate` reads (they are scored too when this one is).
    requires: tuple[str, ...] = ()
    #: The factor from the mean of the scalar column to the aggregated value (100: fractions to %).
    scale: float = 1.0
    #: False for a metric of the image alone (classification), scored even where the map is not finite.
    needs_maps: bool = True
    #: Every option with the value used, set by :func:`create_metric` (for ``config.json``).
    options: dict[str, object] = {}
    #: The ``"array"`` column holding a per-image curve the reports plot (mean per method), or None.
    curve: str | None = None
    #: For a data-set-level metric of one ``"array"`` column: that column, which :meth:`prepare`
    #: reduces row by row to what the statistic reads. The summary then reads the column a part of the
    #: results store at a time and keeps only the prepared rows (:class:`Prepared`), so its memory does
    #: not grow with the arrays. None: the metric reads its rows as they are.
    prepared_column: str | None = None

    @property
    def direction(self) -> str:
        """``"higher is better"``, ``"lower is better"``, or ``""`` for a metric with neither (a count)."""
        return {True: "higher is better", False: "lower is better"}.get(self.higher_is_better, "")
    #: What the curve's axes show, for the plots' labels.
    curve_axes: tuple[str, str] = ("", "")

    @abc.abstractmethod
    def score(self, batch: MetricInput) -> dict[str, Sequence]:
        """Per-image values for ``batch``: one sequence of ``len(batch)`` per column of :attr:`columns`
        (NaN or None where the metric is undefined for an image)."""

    def aggregate(self, rows: pd.DataFrame, weights: np.ndarray | None) -> float | np.ndarray:
        """The data-set value from one method's rows; with bootstrap ``weights`` (B, n), one value per
        resample (the same resamples for every metric). The default: ``scale`` x the mean of the one
        scalar column, NaN rows left out."""
        return mean_of(rows[self._scalar_column()], weights, self.scale)

    def resampled(self, rows: pd.DataFrame, prepared: Prepared | None = None) -> Callable[[np.ndarray], np.ndarray]:
        """:meth:`aggregate` of ``rows`` as a function of bootstrap weights (B, n): what the summary's
        bootstrap calls once per chunk of resamples, giving ``aggregate(rows, weights)``. The default
        calls :meth:`aggregate`; a metric with a :attr:`prepared_column` reads ``prepared`` (the rows'
        arrays :meth:`prepare` made, which the rows then need not hold) or prepares the rows' arrays once.

        Example:
            ``statistic = metric.resampled(rows)``, then ``statistic(weights)`` for each chunk of
            :func:`xaibench.significance.bootstrap_weight_chunks`.
        """
        return lambda weights: self.aggregate(rows, weights)

    def count(self, rows: pd.DataFrame, prepared: Prepared | None = None) -> int:
        """How many of ``rows`` the aggregated value rests on (the ``n`` of ``summary.csv``): those with
        a value in the metric's scalar column, or an array in its :attr:`prepared_column`."""
        if prepared is not None:
            return prepared.count
        column = self.prepared_column or self._scalar_column()
        return int(rows[column].notna().sum()) if column in rows else 0

    def prepare(self, arrays: np.ndarray) -> np.ndarray:
        """What the statistic reads of the stacked (n, ...) arrays of :attr:`prepared_column`, row by
        row (so that parts prepared apart and concatenated are the whole prepared; default: all of it)."""
        return arrays

    def prepared(self, rows: pd.DataFrame) -> Prepared:
        """:meth:`prepare` of the arrays of ``rows``' :attr:`prepared_column` (rows without one left out)."""
        column = self.prepared_column
        if column is None:
            raise NotImplementedError(f"metric '{self.name}' has no prepared column")
        scored = rows[column].notna().to_numpy(dtype=bool) if column in rows else np.zeros(len(rows), dtype=bool)
        values = self.prepare(np.stack(rows[column][scored].to_list())) if scored.any() else None
        return Prepared(column, scored, values)

    def curve_x(self, points: int) -> np.ndarray:
        """The x positions of a :attr:`curve` of ``points`` values (default: evenly spaced over [0, 1])."""
        return np.linspace(0.0, 1.0, points)

    def per_image_values(self, rows: pd.DataFrame, prepared: Prepared | None = None) -> np.ndarray | None:
        """For a data-set-level metric, what each of one method's rows contributes, so that their mean
        is :meth:`aggregate` (for the per-image table; ``prepared`` as in :meth:`resampled`); None for a
        metric whose own column says it."""
        return None

    def _scalar_column(self) -> str:
        scalars = [c for c, kind in self.columns.items() if kind == "scalar"]
        if len(scalars) != 1:
            raise NotImplementedError(f"metric '{self.name}' must define aggregate() and count()")
        return scalars[0]


@dataclass(frozen=True)
class Prepared:
    """What a data-set-level metric keeps of one method's arrays (:meth:`Metric.prepare`), in the rows' order.

    Attributes:
        column: The array column it was prepared from (:attr:`Metric.prepared_column`).
        scored: (N,) bool, per row: whether it holds an array (a map not scored has none).
        values: (scored.sum(), ...) the prepared arrays of those rows; None when there is none.

    Example:
        >>> p = Prepared.concat([Prepared("c", np.array([True, False]), np.array([[1]])),
        ...                      Prepared("c", np.array([True]), np.array([[3]]))])
        >>> p.take(np.array([2, 1, 0])).values.tolist(), p.count
        ([[3], [1]], 2)
    """

    column: str
    scored: np.ndarray
    values: np.ndarray | None

    @property
    def count(self) -> int:
        return int(self.scored.sum())

    @staticmethod
    def concat(parts: Sequence[Prepared]) -> Prepared:
        """The parts' rows one after the other (parts of one column; at least one part)."""
        values = [p.values for p in parts if p.values is not None]
        return Prepared(parts[0].column, np.concatenate([p.scored for p in parts]),
                        np.concatenate(values) if values else None)

    def take(self, rows: np.ndarray) -> Prepared:
        """The prepared rows at positions ``rows`` (a selection and order of the rows, as ``iloc``)."""
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) == len(self.scored) and np.array_equal(rows, np.arange(len(rows))):
            return self
        scored = self.scored[rows]
        if self.values is None:
            return Prepared(self.column, scored, None)
        at = np.cumsum(self.scored) - 1  # each scored row's place among the values
        return Prepared(self.column, scored, self.values[at[rows[scored]]])


def mean_of(values: pd.Series | np.ndarray, weights: np.ndarray | None, scale: float = 1.0) -> float | np.ndarray:
    """``scale`` x the mean of ``values`` with NaN left out; with (B, n) ``weights``, one weighted mean
    per row (NaN for a resample that drew no value)."""
    values = np.asarray(values, dtype=np.float64)
    keep = ~np.isnan(values)
    if weights is None:
        return scale * values[keep].mean() if keep.any() else np.nan
    w = weights[:, keep]
    with np.errstate(invalid="ignore", divide="ignore"):
        return scale * (w @ values[keep]) / w.sum(1)


# --------------------------------------------------------------------------------------- registry

#: Every metric: the entry points of ``xaibench.metrics`` and the classes registered at run time.
METRICS: Registry[type[Metric]] = Registry(ENTRY_POINT_GROUP, "metric", Metric, "register_metric")

M = TypeVar("M", bound=type[Metric])


def register_metric(name: str) -> Callable[[M], M]:
    """Class decorator: make a :class:`Metric` subclass available as ``name``."""
    return METRICS.register(name)


def available_metrics() -> list[str]:
    """Names of every metric: those declared as entry points and those registered in this process."""
    return METRICS.names()


def get_metric(name: str) -> type[Metric]:
    """The class registered as ``name``, importing only the plugin that declares it.

    Raises:
        UnknownNameError: no such metric (the message suggests a close name and lists the others).
        XaibenchError: the plugin that declares it cannot be loaded.
    """
    return METRICS.get(name)


def create_metric(name: str, **options: object) -> Metric:
    """Build the metric registered as ``name``; ``options`` go to its constructor.

    Raises:
        UnknownNameError, XaibenchError: no such metric, or an unknown option or one of the wrong type.
        OptionError: an option's value is out of its range (the message names the metric).
    """
    cls = get_metric(name)
    check_options(name, cls, options, kind="metric")
    try:
        metric = cls(**options)
    except OptionError as error:
        raise OptionError(f"metric '{name}': {error}") from error
    metric.options = effective_options(cls, options)
    if metric.family not in FAMILIES:
        raise XaibenchError(f"metric '{name}' has family '{metric.family}'; use one of {', '.join(FAMILIES)}")
    return metric


def with_requirements(metrics: Sequence[Metric]) -> list[Metric]:
    """``metrics`` and, before the first that needs them, the metrics they :attr:`~Metric.requires`:
    the one among ``metrics`` (with its options) or, if it is not there, one built with its defaults.

    Raises:
        XaibenchError: two metrics declare the same per-image column.
    """
    chosen: list[Metric] = []
    names: set[str] = set()
    given = {metric.name: metric for metric in metrics}

    def add(metric: Metric) -> None:
        for required in metric.requires:
            if required not in names:
                add(given.get(required) or create_metric(required))
        if metric.name not in names:
            chosen.append(metric)
            names.add(metric.name)

    for metric in metrics:
        add(metric)
    owners: dict[str, str] = {}
    for metric in chosen:
        for column in metric.columns:
            if column in owners:
                raise XaibenchError(
                    f"metrics '{owners[column]}' and '{metric.name}' both write the column '{column}'; "
                    "a per-image column has one owner: rename one of them"
                )
            owners[column] = metric.name
    return chosen


def describe_metrics() -> list[PluginInfo]:
    """Every available metric with where it comes from and the first line of its docstring."""
    return METRICS.describe()
