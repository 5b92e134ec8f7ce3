"""``xaibench report``: one or more runs written as tables (CSV, Markdown), plots, galleries and one
self-contained HTML page.

:func:`build_report` computes everything from the runs' folders (:mod:`xaibench.comparison` for the
numbers, :mod:`xaibench.comparison_plots` for the figures); :func:`write_report` writes a report folder
and :func:`write_html` the page alone (what ``xaibench run`` leaves in its run's folder). The page
embeds every image as a ``data:`` URI and loads nothing, so it opens offline, from a mail attachment,
on a phone and in print.

Files of a report folder (this module owns them):

==============================  ============================================================
``report.html``                 the page: tables, tests, plots, galleries, the image browser
``summary.csv`` / ``.md``       each (dataset, model, method, metric): value, 95% interval, n, rank
                                (1 + the methods significantly better; :func:`~xaibench.comparison.rank`)
``pairwise.csv``                every two methods on the same images: difference, interval, p-values
``per_class.csv``               per true class: each method's mean per-image value of each metric
``box_accuracy_curves.csv``     box accuracy against the map threshold
``map_agreement.csv``           every two methods' mean Pearson correlation of their maps of the same images
``tables.tex``                  the summary per metric family and the ranks as LaTeX tables (booktabs:
                                :mod:`xaibench.latex_tables`), to ``\\input`` into a paper
``*.png``, ``*.jpg``            the plots (PNG; ``critical_difference-<k>.png`` per (dataset, model)) and
                                the galleries of photos and maps (JPEG) the page shows
``*.pdf``, ``*.svg``            every figure as vector graphics, fonts embedded (for a paper)
``.xaibench-outputs.json``      the files the report wrote, with their SHA-256 (:mod:`xaibench.output_folder`)
==============================  ============================================================

A report folder may hold other files: a report replaces or removes only the files an earlier report
wrote there and nobody changed since, and refuses, before it writes anything, a file of one of its
names that it did not write.
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from xaibench import comparison_plots as plots
from xaibench import critical_difference, image_browser, latex_tables, localization
from xaibench.comparison import (
    AGREEMENT_IMAGES, ALPHA, RANK_RULE, Comparison, families, map_agreement, pairwise, per_class, rank, score_table,
)
from xaibench.errors import XaibenchError
from xaibench.output_folder import OutputFolder
from xaibench.report import (
    format_value, options_text, run_is_complete, summary_table, to_markdown,
)
from xaibench.run_folder import BOX_ACCURACY_CURVES, CONFIG, REPORT_HTML, SUMMARY_CSV, SUMMARY_MD, atomic_write_text
from xaibench.text import csv_text
from xaibench.viz import DEFAULT_ALPHA, DEFAULT_CMAP, metric_curves_figure

PAIRWISE_CSV = "pairwise.csv"
PER_CLASS_CSV = "per_class.csv"
MAP_AGREEMENT_CSV = "map_agreement.csv"
TABLES_TEX = "tables.tex"
#: Classes up to which the page shows the per-class table of a (dataset, model).
PAGE_CLASSES = 30
#: The class gallery's method when none is named: the CAM paper's Figure 3 shows CAM.
REFERENCE_METHOD = "cam"


@dataclass
class Figure:
    """A figure of the report: its file name (``.png`` or ``.jpg``), its caption, the file's bytes, and
    the same figure in each vector format (``{"pdf": bytes, "svg": bytes}``, written beside it)."""

    name: str
    caption: str
    data: bytes
    vectors: dict[str, bytes] = field(default_factory=dict)

    def files(self) -> dict[str, bytes]:
        """Every file of the figure: its raster file and its vector files (same stem)."""
        stem = self.name.rsplit(".", 1)[0]
        return {self.name: self.data, **{f"{stem}.{fmt}": data for fmt, data in self.vectors.items()}}

    @property
    def mime(self) -> str:
        return "image/jpeg" if self.name.endswith(".jpg") else "image/png"


@dataclass
class Report:
    """Everything a report shows."""

    comparison: Comparison
    summary: pd.DataFrame
    pairwise: pd.DataFrame
    per_class: pd.DataFrame
    box_curves: pd.DataFrame
    agreement: pd.DataFrame = field(default_factory=pd.DataFrame)
    figures: list[Figure] = field(default_factory=list)
    #: Per (dataset, model), in :attr:`Comparison.groups` order: its image browser's data
    #: (:func:`xaibench.image_browser.browser_data`), None where it has none.
    browsers: list[dict | None] = field(default_factory=list)
    cmap: str = DEFAULT_CMAP


def build_report(
    comparison: Comparison, *, cmap: str = DEFAULT_CMAP, alpha: float = DEFAULT_ALPHA, dpi: int = 100,
    class_gallery_methods: list[str] | None = None, figures: bool = True, vectors: bool = True,
) -> Report:
    """The tables and figures of ``comparison``.

    Args:
        comparison: The combined runs (:func:`xaibench.comparison.combine`).
        cmap: Colour map of the heatmaps.
        alpha: Opacity of the heatmaps over the images.
        dpi: Resolution of the PNGs.
        class_gallery_methods: Methods whose class gallery (Figure 3) is drawn (default:
            :data:`REFERENCE_METHOD` where a (dataset, model) has it, else its first method).
        figures: False: the tables alone (``--tables-only``), none of the figures drawn.
        vectors: Whether each figure is also made as PDF and SVG (:func:`~xaibench.comparison_plots.vector`).
    """
    curves = comparison.box_curves
    if not curves.empty and "threshold" not in curves:
        curves = pd.DataFrame()
    pairs = pairwise(comparison)
    report = Report(comparison, rank(comparison.summary, comparison.metrics, pairs), pairs, per_class(comparison), curves,
                    map_agreement(comparison), cmap=cmap)
    if not figures:
        return report
    metrics = comparison.metrics
    # the CAM box's threshold of the run's IoU column (the metric that writes it, with its options)
    iou_metric = next((m for m in metrics.values() if plots.IOU_COLUMN in m.columns), None)
    tau = float((iou_metric.options if iou_metric is not None else {}).get("tau", localization.CAM_TAU))

    def add(name: str, caption: str, fig) -> None:
        if fig is not None:
            data = plots.jpeg(fig, dpi) if name.endswith(".jpg") else plots.png(fig, dpi)
            made = {fmt: plots.vector(fig, fmt) for fmt in plots.VECTOR_FORMATS} if vectors else {}
            report.figures.append(Figure(name, caption, data, made))

    add("metric_bars.png", "Every metric per method, with its 95% bootstrap interval.",
        plots.metric_bars(comparison.summary, metrics))
    add("box_accuracy_vs_threshold.png", "Box accuracy against the map threshold: the curves MaxBoxAcc "
        "maximises; the dot marks each method's best threshold.", plots.box_accuracy_vs_threshold(curves))
    add("accuracy_at_iou.png", "Box accuracy at IoU 0.3, 0.5 and 0.7, each at its best map threshold "
        "(their mean is MaxBoxAccV2).", plots.accuracy_at_iou(curves))
    add("iou_distribution.png", f"Per-image IoU of the CAM box (threshold {tau:g}): box plot and every image.",
        plots.iou_distribution(comparison.per_image, tau=tau))
    several = comparison.per_image.dataset.nunique() > 1
    curve_rows = comparison.metric_curves
    if several and not curve_rows.empty:
        curve_rows = curve_rows.assign(model=curve_rows.model + " on " + curve_rows.dataset)
    curve_rows = curve_rows.drop(columns="dataset") if "dataset" in curve_rows else curve_rows
    if not curve_rows.empty:
        add("curves.png", "Mean curves of the metrics that keep one (deletion, insertion, ROAD).",
            metric_curves_figure(curve_rows, metrics))
    budget = image_browser.PICTURE_BUDGET // max(1, len(comparison.groups))
    for dataset, model in comparison.groups:
        report.browsers.append(image_browser.browser_data(comparison, dataset, model, budget=budget, cmap=cmap,
                                                          alpha=alpha, tau=tau))
    for k, (dataset, model) in enumerate(comparison.groups, start=1):
        methods = list(dict.fromkeys(comparison.summary[(comparison.summary.dataset == dataset)
                                                        & (comparison.summary.model == model)].method))
        groups = plots.gallery_groups(methods)
        for j, group in enumerate(groups, start=1):
            part = f" (methods {group[0]} to {group[-1]}, part {j} of {len(groups)})" if len(groups) > 1 else ""
            add(f"gallery-{k}.jpg" if len(groups) == 1 else f"gallery-{k}-{j}.jpg",
                f"{model} on {dataset}: each method's best and worst images by IoU, the same images in every "
                f"column{part}.", plots.gallery(comparison, dataset, model, methods=group, cmap=cmap, alpha=alpha, tau=tau))
        panels = critical_differences(comparison, dataset, model)
        if panels:
            add(f"critical_difference-{k}.png", f"{model} on {dataset}: critical-difference diagrams (Demšar 2006) over "
                "images: each image ranks the methods on the metric (1 = best, ties share the mean rank), the axis shows "
                f"their average ranks, and a bar joins methods whose average ranks differ by less than the Nemenyi "
                f"critical difference at alpha {ALPHA} (not significantly different).",
                plots.critical_difference_diagram(
                    [(f"{metrics[name].title} ({name}): {result.describe()}", result) for name, result in panels],
                    title=f"{model} on {plots.dataset_label(dataset)}"))
        default = [REFERENCE_METHOD] if REFERENCE_METHOD in methods else methods[:1]
        for method in [m for m in (class_gallery_methods or default) if m in methods]:
            add(f"class_gallery-{k}-{method}.jpg", f"{model} on {dataset}: {method}'s maps for the classes with the "
                "most images (the CAM paper's Figure 3).",
                plots.class_gallery(comparison, dataset, model, method, cmap=cmap, alpha=alpha))
    return report


#: Methods from which a (dataset, model) gets critical-difference diagrams (with two, the paired tests say it all).
CD_METHODS = 3


def critical_differences(comparison: Comparison, dataset: str, model: str) -> list[tuple[str, "critical_difference.CriticalDifference"]]:
    """Per metric of (dataset, model) with per-image values and a direction (classification aside),
    the Friedman test and Nemenyi critical difference of the methods' average ranks over the images
    every method scored (:func:`xaibench.critical_difference.compare`); none with fewer than
    :data:`CD_METHODS` methods."""
    out = []
    for name in dict.fromkeys(comparison.summary.metric):
        metric = comparison.metrics.get(name)
        if metric is None or metric.family == "classification" or metric.higher_is_better is None:
            continue
        table = score_table(comparison, dataset, model, metric)
        if table.shape[1] < CD_METHODS:
            continue
        result = critical_difference.compare(table, bool(metric.higher_is_better), alpha=ALPHA)
        if result is not None:
            out.append((name, result))
    return out


def _legend(names: list[str], comparison: Comparison) -> list[tuple[str, str]]:
    """(name, what it is: title, unit, direction, description and the options it was computed with)."""
    metrics = comparison.metrics
    options: dict[str, dict] = {}
    for run in comparison.runs:  # runs that share a metric share its options (check_comparable)
        options.update(run.config.get("metric_options", {}))
    return [(n, f"{metrics[n].title}, {metrics[n].unit}{f', {metrics[n].direction}' if metrics[n].direction else ''}: "
                f"{metrics[n].description}{options_text(options.get(n))}") for n in names if n in metrics]


def _group_tables(report: Report) -> list[tuple[str, str, list[tuple[str, list[str], pd.DataFrame]], str]]:
    """Per (dataset, model): per family, its metrics and its table (method rows, ``value [low, high]``),
    and a note on the seconds per image where they come from several runs (not comparable)."""
    out = []
    comparison = report.comparison
    for dataset, model in comparison.groups:
        part = report.summary[(report.summary.dataset == dataset) & (report.summary.model == model)]
        seconds = pd.Series({(m, method): s for (d, m, method), s in comparison.seconds.items() if d == dataset},
                            dtype=float)
        seconds.index = pd.MultiIndex.from_tuples(seconds.index) if len(seconds) else seconds.index
        sources = {method: run_name(comparison.holder(dataset, model, method)) for method in dict.fromkeys(part.method)}
        several = len(set(sources.values())) > 1
        note = (f"The methods come from {len(set(sources.values()))} runs ({', '.join(dict.fromkeys(sources.values()))}; "
                "column run): seconds per image measured in different runs were taken at other times, under other "
                "load, possibly on other hardware, and are not comparable; compare them within one run only."
                if several and len(seconds) else "")
        tables = []
        for family, names in families(comparison):
            rows = part[part.metric.isin(names)].drop(columns=["dataset", "rank"])
            if not rows.empty:
                table = summary_table(rows, None if tables else seconds)
                if several and not tables:
                    table.insert(1, "run", [sources.get(m, "") for m in table.index])
                tables.append((family, [n for n in names if n in set(rows.metric)], table))
        out.append((dataset, model, tables, note))
    return out


#: The ranking's caption on the page and in ``summary.md``.
RANKING_CAPTION = f"{RANK_RULE}; the mean rank is over the ranked metrics."


def ranking(report: Report, dataset: str, model: str) -> pd.DataFrame:
    """Methods x metrics of their rank (:func:`xaibench.comparison.rank`: 1 + the number of methods
    significantly better), with the mean rank over the ranked metrics, best first."""
    part = report.summary[(report.summary.dataset == dataset) & (report.summary.model == model)].dropna(subset=["rank"])
    if part.empty:
        return pd.DataFrame()
    table = part.pivot(index="method", columns="metric", values="rank")
    table = table[[m for m in dict.fromkeys(part.metric)]]
    table.insert(0, "mean rank", table.mean(axis=1).round(2))
    return table.sort_values("mean rank", kind="stable")


#: How a cell of a pairwise matrix marks a difference that is significant after Holm's correction.
SIGNIFICANT_MARK = "*"
#: The caption of the pairwise matrices.
MATRIX_CAPTION = (f"Each cell is the row's method minus the column's, mean over the images both scored; "
                  f"{SIGNIFICANT_MARK} marks a difference significant after Holm's correction (p < {ALPHA}); "
                  f"every test with its interval and p-values is in {PAIRWISE_CSV}.")


def pairwise_matrices(report: Report, dataset: str, model: str) -> list[tuple[str, pd.DataFrame, pd.DataFrame]]:
    """Per metric with paired tests on (dataset, model): a methods x methods matrix of the difference
    row - column (``*``: significant after Holm) and, beside it, each cell's verdict for the row's
    method: ``better``, ``worse`` (significant, read by the metric's direction) or ``""``.

    Example: CAM's 62% against Grad-CAM's 55% on a hits metric whose McNemar test is significant:
    row cam, column gradcam holds ``7.0*`` (verdict ``better``), the mirror cell ``-7.0*`` (``worse``).
    """
    metrics = report.comparison.metrics
    pairs = report.pairwise[(report.pairwise.dataset == dataset) & (report.pairwise.model == model)]
    out = []
    for name, rows in pairs.groupby("metric", sort=False):
        methods = list(dict.fromkeys([*rows.method_a, *rows.method_b]))
        cells = pd.DataFrame("", index=pd.Index(methods, name="row - column"), columns=methods)
        verdicts = cells.copy()
        better = metrics[name].higher_is_better if name in metrics else None
        unit = metrics[name].unit if name in metrics else ""
        for a, b, d, significant in zip(rows.method_a, rows.method_b, rows.difference, rows.significant):
            for row, column, value in ((a, b, d), (b, a, -d)):
                mark = SIGNIFICANT_MARK if significant else ""
                cells.loc[row, column] = format_value(value + 0.0, unit) + mark
                if significant and better is not None and value != 0:
                    verdicts.loc[row, column] = "better" if (value > 0) == bool(better) else "worse"
        for method in methods:
            cells.loc[method, method] = "\u2013"
        out.append((name, cells, verdicts))
    return out


#: Mean correlation from which two methods' maps are called the same.
COINCIDE_R = 0.99
#: Why maps coincide on a model whose head is global average pooling then one linear layer.
GAP_LINEAR_REASON = (
    "On a head that is global average pooling then one linear layer (CAM, which runs only on such heads, is in "
    "this comparison), the gradient of a class score with respect to the last feature maps A_k is the same at every "
    "position, w_k / (h w), so the gradient-weighted CAMs reduce to fixed weightings of the same maps: Grad-CAM, "
    "XGrad-CAM and HiResCAM all become ReLU(sum_k w_k A_k); LayerCAM and element-wise Grad-CAM both become "
    "sum_k ReLU(w_k) A_k where A is non-negative; Grad-CAM++'s weights ReLU(w_k) / (2 + w_k mean(A_k)) come close to "
    "LayerCAM's. Maps that coincide here are expected, not a copying error."
)


def agreement_matrix(report: Report, dataset: str, model: str) -> tuple[pd.DataFrame, int, str]:
    """The methods x methods matrix of mean map correlations of (dataset, model) (2 decimals), the
    images it rests on, and a note that names the methods whose maps coincide (mean r >=
    :data:`COINCIDE_R`) and why that can be expected."""
    rows = report.agreement
    if rows.empty:
        return pd.DataFrame(), 0, ""
    rows = rows[(rows.dataset == dataset) & (rows.model == model)]
    if rows.empty:
        return pd.DataFrame(), 0, ""
    methods = list(dict.fromkeys([*rows.method_a, *rows.method_b]))
    matrix = pd.DataFrame("", index=pd.Index(methods, name="mean r"), columns=methods)
    for a, b, r in zip(rows.method_a, rows.method_b, rows.pearson):
        matrix.loc[a, b] = matrix.loc[b, a] = "" if np.isnan(r) else f"{r:.2f}"
    for m in methods:
        matrix.loc[m, m] = "1"
    same = rows[rows.pearson >= COINCIDE_R]
    note = ""
    if len(same):
        named = "; ".join(f"{a} and {b} (r = {r:.3f})" for a, b, r in zip(same.method_a, same.method_b, same.pearson))
        note = f"Maps that coincide (mean r >= {COINCIDE_R:g}): {named}. " + (
            GAP_LINEAR_REASON if "cam" in set(report.summary[
                (report.summary.dataset == dataset) & (report.summary.model == model)].method)
            else "Such methods reduce to the same computation on this model; check their definitions before reading "
                 "their difference as a finding.")
    return matrix, int(rows.n.max()), note


def _agreement_caption(n: int) -> str:
    return (f"Mean Pearson correlation between two methods' maps of the same image, over at most {n} images (the first, by "
            f"index, that every method has a map of; at most {AGREEMENT_IMAGES}), from the run's 8-bit map "
            f"thumbnails, leaving out of a pair the images where either map is constant; every pair, with its count, in "
            f"{MAP_AGREEMENT_CSV}.")


def summary_markdown(report: Report) -> str:
    """``summary.md`` of a report folder: per (dataset, model), per family, the table and its legend;
    then the ranking, the paired differences' matrices and the map-agreement matrix."""
    metrics = report.comparison.metrics
    parts = ["# xaibench report\n", _runs_text(report) + "\n", "Values with 95% bootstrap intervals over images.\n"]
    for dataset, model, tables, note in _group_tables(report):
        parts.append(f"## {model} on {dataset}\n")
        for family, names, table in tables:
            legend = "\n".join(f"- {n} ({text})" for n, text in _legend(names, report.comparison))
            parts.append(f"### {family.capitalize()}\n\n{to_markdown(table)}\n{legend}\n")
            if note:
                parts.append(f"{note}\n")
                note = ""
        ranks = ranking(report, dataset, model)
        if not ranks.empty:
            parts.append(f"### Ranking (1 = best)\n\n{RANKING_CAPTION}\n\n{to_markdown(ranks)}")
        matrices = pairwise_matrices(report, dataset, model)
        if matrices:
            parts.append(f"### Paired differences\n\n{MATRIX_CAPTION}\n")
        for name, cells, _ in matrices:
            parts.append(f"#### {metrics[name].title if name in metrics else name} ({name})\n\n{to_markdown(cells)}")
        matrix, n, note = agreement_matrix(report, dataset, model)
        if not matrix.empty:
            parts.append(f"### Map agreement\n\n{_agreement_caption(n)}{' ' + note if note else ''}\n\n{to_markdown(matrix)}")
    return "\n".join(parts)


def latex_text(report: Report) -> str:
    """``tables.tex``: per (dataset, model), a LaTeX table per metric family and one of the ranks
    (:mod:`xaibench.latex_tables`), each with a caption that says what its numbers are and a label
    ``tab:<group>-<family>`` (``tab:<group>-ranks``), the groups numbered as on the page."""
    metrics = report.comparison.metrics
    parts = [f"% xaibench report: {len(report.comparison.groups)} (data set, model) group(s). Needs "
             f"{latex_tables.PREAMBLE} in the preamble.", f"% {' '.join(_runs_text(report).split())}"]
    for k, (dataset, model) in enumerate(report.comparison.groups, start=1):
        part = report.summary[(report.summary.dataset == dataset) & (report.summary.model == model)]
        for family, names in families(report.comparison):
            rows = part[part.metric.isin(names)]
            if rows.empty:
                continue
            caption = (f"{model} on {dataset}: {family} metrics, mean over images with the distances to the 95% "
                       "bootstrap interval; best value per column in bold.")
            parts.append(latex_tables.latex_table(rows, metrics, caption=caption, label=f"tab:{k}-{family}"))
        ranks = ranking(report, dataset, model)
        if not ranks.empty:
            ranks = ranks.rename(columns={n: metrics[n].title or n for n in ranks.columns if n in metrics})
            parts.append(latex_tables.latex_ranks(ranks, caption=f"{model} on {dataset}: ranks (1 = best). {RANKING_CAPTION}",
                                                  label=f"tab:{k}-ranks"))
    return "\n\n".join(parts) + "\n"


def _runs_text(report: Report) -> str:
    def described(run) -> str:
        images = run.per_image["index"].nunique()
        partial = "" if run_is_complete(run.config, run.per_image) else f", partial: {images} of {run.config.get('n')}"
        return f"{run_name(run)} ({', '.join(run.model_names)} on {run.dataset}, {images} images{partial})"

    shared = "".join(f" {copy.describe(folder_name)}." for copy in report.comparison.shared)
    return "Runs: " + "; ".join(described(r) for r in report.comparison.runs) + "." + shared


def run_name(run) -> str:
    """The name a report gives a run: its folder's name, resolved (a run named as ``.``, ``..`` or
    ``runs/a/`` is called by the folder's own name, not ``""`` or ``..``)."""
    return folder_name(run.folder)


def folder_name(folder: str | Path) -> str:
    """A run folder's name as the report gives it (:func:`run_name`)."""
    folder = Path(folder).resolve()
    return folder.name or str(folder)


def check_out(out: str | Path) -> Path:
    """``out`` as a report folder: refused if it holds a run, whose files a report must not replace.

    Raises:
        XaibenchError: ``out`` holds a run's ``config.json``.
    """
    out = Path(out)
    if (out / CONFIG).exists():
        raise XaibenchError(f"--out {out} holds a run ({CONFIG}); write the report to a folder of its own")
    return out


#: The files every report writes (beside them, some of the figures: :func:`is_report_file`).
REPORT_FILES = (SUMMARY_CSV, PAIRWISE_CSV, PER_CLASS_CSV, MAP_AGREEMENT_CSV, SUMMARY_MD, TABLES_TEX, REPORT_HTML)
#: The plots a report may draw (each also as :data:`~xaibench.comparison_plots.VECTOR_FORMATS`).
REPORT_PLOTS = ("metric_bars.png", "box_accuracy_vs_threshold.png", "accuracy_at_iou.png", "iou_distribution.png",
                "curves.png")
_GALLERY = re.compile(r"gallery-\d+(-\d+)?|class_gallery-\d+-.+", re.DOTALL)  # a gallery's file stem
_PER_GROUP_PLOT = re.compile(r"critical_difference-\d+")  # a plot of one (dataset, model)


def is_report_file(name: str) -> bool:
    """Whether a report may write a file of this name: its tables and page, its plots (PNG) and
    galleries (JPEG), each also in the vector formats."""
    if name in (*REPORT_FILES, BOX_ACCURACY_CURVES):
        return True
    stem, _, kind = name.rpartition(".")
    if f"{stem}.png" in REPORT_PLOTS or _PER_GROUP_PLOT.fullmatch(stem):
        return kind in ("png", *plots.VECTOR_FORMATS)
    return bool(_GALLERY.fullmatch(stem)) and kind in ("jpg", *plots.VECTOR_FORMATS)


def report_folder(out: str | Path) -> OutputFolder:
    """The report folder ``out``, to open (``with``) before the report is built: it is locked while
    the report writes, and a file of a report's name there that this command did not write is refused
    before any work (:class:`xaibench.output_folder.OutputFolder`).

    Raises:
        XaibenchError: ``out`` holds a run (whose files the report must not replace).
    """
    return OutputFolder(check_out(out), "report", names=is_report_file)


def write_report(report: Report, out: str | Path | OutputFolder, *, tables: bool = True, figures: bool = True) -> Path:
    """Write the report folder ``out`` (created if needed): the page, the tables and the figures.

    With ``tables`` False (``--figures-only``) the tables are not written, with ``figures`` False
    (``--tables-only``) the figures are not; the page is written only with both.

    The folder may hold other files: a report replaces or removes only the files an earlier report
    wrote there, unchanged since (:mod:`xaibench.output_folder`); those of an earlier report that this
    one does not write (galleries of groups that are no longer there) are removed.

    Returns:
        The path of ``report.html`` (of the folder, where no page is written).

    Raises:
        XaibenchError: ``out`` holds a run (whose files the report must not replace), or a file of one
            of the report's names that an earlier report did not write (nothing is written then).
    """
    if not isinstance(out, OutputFolder):
        with report_folder(out) as folder:
            return write_report(report, folder, tables=tables, figures=figures)
    folder = out
    texts: dict[str, str] = {}
    if tables:
        frames = {SUMMARY_CSV: report.summary, PAIRWISE_CSV: report.pairwise, PER_CLASS_CSV: report.per_class,
                  MAP_AGREEMENT_CSV: report.agreement}
        if not report.box_curves.empty:
            frames[BOX_ACCURACY_CURVES] = report.box_curves
        texts = {name: csv_text(frame) for name, frame in frames.items()}
        texts[SUMMARY_MD] = summary_markdown(report)
        texts[TABLES_TEX] = latex_text(report)
    files = {name: data for figure in report.figures for name, data in figure.files().items()} if figures else {}
    page = tables and figures
    folder.check([*texts, *files, *([REPORT_HTML] if page else [])])  # before writing any
    for name, text in texts.items():
        folder.write_text(name, text)
    for name, data in files.items():
        folder.write_bytes(name, data)
    if page:
        folder.write_text(REPORT_HTML, html_page(report))
    folder.remove_rest()
    return folder.file(REPORT_HTML) if page else folder.path


_STYLE = """
:root { color-scheme: light; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0 auto; padding: 0 12px 40px;
       max-width: 1200px; color: #1b1b1b; background: #fff; }
h1 { font-size: 1.5em; margin: 0.8em 0 0.3em; } h2 { font-size: 1.25em; margin-top: 1.6em; border-bottom: 1px solid #ccc; }
h3 { font-size: 1.05em; margin-top: 1.2em; }
.scroll { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.4em 0; }
th, td { border: 1px solid #d0d0d0; padding: 3px 6px; text-align: right; white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
thead th { background: #f2f2f2; position: sticky; top: 0; }
tr.significant td { background: #eef7ee; }
td.better { background: #e3f4e3; } td.worse { background: #fbe5e5; }
h4 { font-size: 0.95em; margin: 1em 0 0.2em; }
figure { margin: 1em 0; } figure img { max-width: 100%; height: auto; display: block; }
figcaption, .note { font-size: 0.85em; color: #555; }
dl { font-size: 0.85em; } dt { font-weight: 600; } dd { margin: 0 0 0.3em 1em; }
@media (max-width: 600px) { body { font-size: 14px; } th, td { padding: 2px 4px; } }
@media print { body { max-width: none; font-size: 10pt; } .scroll { overflow: visible; }
  table { font-size: 8pt; } figure, table { page-break-inside: avoid; } h2 { page-break-before: auto; } }
"""


def _table(frame: pd.DataFrame, *, index: bool = True, row_classes: list[str] | None = None,
           cell_classes: pd.DataFrame | None = None) -> str:
    """A DataFrame as an HTML table (escaped), in a horizontally scrolling box; ``cell_classes``: a
    frame of the same shape whose texts are the cells' CSS classes."""
    columns = ([frame.index.name or ""] if index else []) + [str(c) for c in frame.columns]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for k, (key, row) in enumerate(frame.iterrows()):
        cells = ([key] if index else []) + list(row)
        classes = ([""] if index else []) + (list(cell_classes.iloc[k]) if cell_classes is not None else [""] * len(row))
        css = f' class="{row_classes[k]}"' if row_classes and row_classes[k] else ""
        body.append(f"<tr{css}>" + "".join(f'<td{f" class={c}" if c else ""}>{html.escape(_cell(v))}</td>'
                                           for v, c in zip(cells, classes)) + "</tr>")
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def _cell(value: object) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)) or value is pd.NA:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _figure(figure: Figure) -> str:
    data = base64.b64encode(figure.data).decode("ascii")
    return (f'<figure><img src="data:{figure.mime};base64,{data}" alt="{html.escape(figure.caption)}">'
            f"<figcaption>{html.escape(figure.caption)}</figcaption></figure>")


def write_html(report: Report, path: str | Path, *, title: str = "xaibench report") -> Path:
    """Write the self-contained page (:func:`html_page`) atomically at ``path``."""
    return atomic_write_text(path, html_page(report, title=title))


def html_page(report: Report, *, title: str = "xaibench report") -> str:
    """The self-contained page: per (dataset, model) the tables per metric family with legends, the
    ranking, the paired tests and the per-class table; then every figure."""
    comparison = report.comparison
    metrics = comparison.metrics
    parts = [f"<h1>{html.escape(title)}</h1>", f"<p>{html.escape(_runs_text(report))}</p>",
             "<p class=note>Values are means over images with 95% percentile bootstrap intervals (1000 resamples of "
             "the images). Differences between two methods are tested on the images both scored: hits and misses "
             "with McNemar's exact test, other scores with a paired sign-flip permutation test; the interval of a "
             f"difference is a paired bootstrap; p-values are Holm-corrected within each metric; significant: "
             f"corrected p &lt; {ALPHA}. For MaxBoxAcc and MaxBoxAccV2 the paired tests compare each image's hits at "
             "each method's best threshold over all images; the tables' intervals choose that threshold again in "
             "every resample.</p>"]
    figures = {f.name: f for f in report.figures}
    for k, (dataset, model, tables, note) in enumerate(_group_tables(report), start=1):
        parts.append(f"<h2>{html.escape(model)} on {html.escape(dataset)}</h2>")
        for family, names, table in tables:
            parts.append(f"<h3>{html.escape(family.capitalize())}</h3>{_table(table)}")
            if note:
                parts.append(f"<p class=note>{html.escape(note)}</p>")
                note = ""
            parts.append("<dl>" + "".join(f"<dt>{html.escape(n)}</dt><dd>{html.escape(t)}</dd>"
                                          for n, t in _legend(names, report.comparison)) + "</dl>")
        ranks = ranking(report, dataset, model)
        if not ranks.empty:
            parts.append(f"<h3>Ranking (1 = best)</h3><p class=note>{html.escape(RANKING_CAPTION)}</p>{_table(ranks)}")
        matrices = pairwise_matrices(report, dataset, model)
        if matrices:
            parts.append(f"<h3>Paired differences</h3><p class=note>{html.escape(MATRIX_CAPTION)} Green: the row's "
                         "method significantly better; red: significantly worse.</p>")
        for name, cells, verdicts in matrices:
            title = metrics[name].title if name in metrics else name
            parts.append(f"<h4>{html.escape(title)} ({html.escape(name)})</h4>{_table(cells, cell_classes=verdicts)}")
        if f"critical_difference-{k}.png" in figures:
            parts.append(_figure(figures[f"critical_difference-{k}.png"]))
        matrix, n, note = agreement_matrix(report, dataset, model)
        if not matrix.empty:
            parts.append(f"<h3>Map agreement</h3><p class=note>{html.escape(_agreement_caption(n))}</p>{_table(matrix)}"
                         + (f"<p class=note>{html.escape(note)}</p>" if note else ""))
        classes = report.per_class[(report.per_class.dataset == dataset) & (report.per_class.model == model)]
        # the first metric (classification aside) with a value for some class: e.g. GT-known Loc is
        # undefined (NaN) when the maps explain the predictions
        shown = [n for n in dict.fromkeys(classes.metric) if metrics[n].family != "classification"
                 and classes[classes.metric == n].value.notna().any()]
        if shown and classes.label.nunique() <= PAGE_CLASSES:
            name = shown[0]
            rows = classes[classes.metric == name]
            repeated = rows.drop_duplicates("label").class_name.duplicated(keep=False)  # e.g. ImageNet's two cranes
            labels = rows.drop_duplicates("label").assign(
                row=lambda f: np.where(repeated, f.class_name + " (" + f.label.astype(str) + ")", f.class_name))
            table = rows.merge(labels[["label", "row"]], on="label").pivot(index="row", columns="method", values="value")
            table = table.reindex(index=list(labels.row), columns=list(dict.fromkeys(rows.method)))
            table.index.name = "class"
            table = table.map(lambda v: "" if pd.isna(v) else format_value(v, metrics[name].unit))
            parts.append(f"<h3>Per class: {html.escape(metrics[name].title)} ({html.escape(metrics[name].unit)}; every "
                         f"metric in {PER_CLASS_CSV})</h3>{_table(table)}")
        if k <= len(report.browsers) and report.browsers[k - 1] is not None:
            parts.append(image_browser.browser_html(report.browsers[k - 1], str(k), cmap=report.cmap))
        galleries = [n for n in figures if n == f"gallery-{k}.jpg" or n.startswith(f"gallery-{k}-")]
        for name in (*galleries, *[n for n in figures if n.startswith(f"class_gallery-{k}-")]):
            parts.append(_figure(figures[name]))
    parts.append("<h2>Plots</h2>")
    parts += [_figure(f) for f in report.figures if f.name in REPORT_PLOTS]
    page = ("<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
            '<meta name=viewport content="width=device-width, initial-scale=1">'
            f"<title>{html.escape(title)}</title><style>{_STYLE}{image_browser.STYLE}</style></head><body>"
            + "\n".join(parts)
            + (f"<script>{image_browser.SCRIPT}</script>" if any(b is not None for b in report.browsers) else "")
            + "</body></html>\n")
    return page
