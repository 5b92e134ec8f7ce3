"""A report's tables as LaTeX, for a paper: booktabs rules, the best value of each column in bold,
each metric's unit and direction in its header, the bootstrap interval beside each value.

Each (dataset, model) gets one table per metric family (the families of
:data:`~xaibench.metric.FAMILIES`, as on the report's page) and one of the ranks. A cell is the
metric's value with the distances to its 95% percentile-bootstrap interval, ``v^{+(high - v)}_{-(v - low)}``,
written ``v \\pm h`` where both distances round alike (a percentile interval need not be symmetric, so
it is never made so). The values are rounded as on the page (:data:`~xaibench.report.DECIMALS`: 1
decimal for %, 3 otherwise); the best of each column, by the metric's direction and at that rounding
(ties alike), is bold. A metric with no direction (a count) has no bold.

The file (``tables.tex``) is a fragment to ``\\input`` into a document that loads ``booktabs``; every
text from a run (method, model and data-set names) is escaped.

Example:
    >>> from xaibench.metric import get_metric
    >>> summary = pd.DataFrame({"method": ["cam", "random"], "metric": ["pointing"] * 2, "value": [61.25, 20.0],
    ...                         "ci_low": [58.0, 17.5], "ci_high": [65.0, 22.5], "n": [300, 300]})
    >>> print(latex_table(summary, {"pointing": get_metric("pointing")}, caption="Pointing game."))  # doctest: +NORMALIZE_WHITESPACE
    \\begin{table}[t]
    \\centering
    \\caption{Pointing game.}
    \\begin{tabular}{lrr}
    \\toprule
    Method & $n$ & Pointing \\\\
     &  & \\% $\\uparrow$ \\\\
    \\midrule
    cam & 300 & $\\mathbf{61.2}^{+3.8}_{-3.2}$ \\\\
    random & 300 & $20.0 \\pm 2.5$ \\\\
    \\bottomrule
    \\end{tabular}
    \\end{table}
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from xaibench.metric import Metric
from xaibench.report import DECIMALS

#: What a document needs to typeset the tables.
PREAMBLE = "\\usepackage{booktabs}"

_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
            "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
_UNITS = {"%": r"\%", "AUC": "AUC", "count": "count", "probability": "probability", "ratio": "ratio"}
_ARROWS = {True: r"$\uparrow$", False: r"$\downarrow$", None: ""}


def escape(text: object) -> str:
    """``text`` as LaTeX text: its special characters escaped, control characters dropped.

    >>> escape("grad_cam 50% {x}")
    'grad\\\\_cam 50\\\\% \\\\{x\\\\}'
    """
    return "".join(_SPECIAL.get(c, c) for c in str(text) if c >= " " or c == "\t")


def _rounded(value: float, unit: str) -> str:
    return f"{value:.{DECIMALS.get(unit, 3)}f}"


def cell(value: float, low: float, high: float, unit: str, *, bold: bool = False) -> str:
    """One value with its interval, in math mode: ``$v^{+a}_{-b}$``, or ``$v \\pm a$`` when ``a`` and
    ``b`` round alike; ``--`` for a missing value; a count (or a value without interval) alone.

    >>> cell(0.5, 0.45, 0.56, "AUC"), cell(12.0, 10.0, 14.0, "%", bold=True), cell(float("nan"), 0, 0, "%")
    ('$0.500^{+0.060}_{-0.050}$', '$\\\\mathbf{12.0} \\\\pm 2.0$', '--')
    """
    if value is None or not math.isfinite(value):
        return "--"
    shown = _rounded(value, unit)
    shown = rf"\mathbf{{{shown}}}" if bold else shown
    if unit == "count" or low is None or high is None or not (math.isfinite(low) and math.isfinite(high)):
        return f"${shown}$"
    up, down = _rounded(max(high - value, 0.0), unit), _rounded(max(value - low, 0.0), unit)
    return f"${shown} \\pm {up}$" if up == down else f"${shown}^{{+{up}}}_{{-{down}}}$"


def best_rows(values: pd.Series, metric: Metric) -> set:
    """The index labels of ``values`` that are the best by ``metric``'s direction once rounded as shown
    (all of them where several tie); none for a metric without direction."""
    if metric.higher_is_better is None:
        return set()
    shown = pd.Series([float(_rounded(v, metric.unit)) if math.isfinite(v) else np.nan for v in values],
                      index=values.index)
    if shown.isna().all():
        return set()
    target = shown.max() if metric.higher_is_better else shown.min()
    return set(shown.index[shown == target])


def latex_table(summary: pd.DataFrame, metrics: dict[str, Metric], *, caption: str, label: str | None = None) -> str:
    """One ``table`` of ``summary``'s rows (one (dataset, model): ``method, metric, value, ci_low,
    ci_high, n``): a row per method in order of appearance, a column per metric with its title, unit
    and direction (:func:`cell` per value; :func:`best_rows` in bold)."""
    names = [n for n in dict.fromkeys(summary.metric) if n in metrics]
    methods = list(dict.fromkeys(summary.method))
    by = summary.set_index(["method", "metric"])
    n = summary.groupby("method", sort=False)["n"].max()
    bold = {name: best_rows(by.xs(name, level="metric")["value"].reindex(methods), metrics[name]) for name in names}
    lines = [r"\begin{table}[t]", r"\centering", rf"\caption{{{escape(caption)}}}"]
    if label:
        lines.append(rf"\label{{{label}}}")
    lines += [rf"\begin{{tabular}}{{lr{'r' * len(names)}}}", r"\toprule",
              " & ".join(["Method", "$n$", *(escape(metrics[m].title or m) for m in names)]) + r" \\",
              " & ".join(["", "", *(f"{_UNITS.get(metrics[m].unit, escape(metrics[m].unit))} "
                                    f"{_ARROWS[metrics[m].higher_is_better]}".strip() for m in names)]) + r" \\",
              r"\midrule"]
    for method in methods:
        cells = []
        for name in names:
            if (method, name) in by.index:
                row = by.loc[(method, name)]
                cells.append(cell(float(row["value"]), float(row["ci_low"]), float(row["ci_high"]), metrics[name].unit,
                                  bold=method in bold[name]))
            else:
                cells.append("--")
        count = n.get(method)
        lines.append(" & ".join([escape(method), "--" if count is None or pd.isna(count) else str(int(count)), *cells])
                     + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines)


def latex_ranks(ranks: pd.DataFrame, *, caption: str, label: str | None = None) -> str:
    """One ``table`` of a ranking (methods x metrics of ranks, a ``mean rank`` column first:
    :func:`xaibench.comparison_report.ranking`), the best (lowest) of each column in bold."""
    columns = list(ranks.columns)
    lines = [r"\begin{table}[t]", r"\centering", rf"\caption{{{escape(caption)}}}"]
    if label:
        lines.append(rf"\label{{{label}}}")
    lines += [rf"\begin{{tabular}}{{l{'r' * len(columns)}}}", r"\toprule",
              " & ".join(["Method", *(escape(c) for c in columns)]) + r" \\", r"\midrule"]
    best = {c: ranks[c].min() for c in columns}
    for method, row in ranks.iterrows():
        cells = [("--" if pd.isna(v) else (rf"\textbf{{{v:g}}}" if v == best[c] else f"{v:g}")) for c, v in row.items()]
        lines.append(" & ".join([escape(method), *cells]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines)
