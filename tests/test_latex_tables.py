"""xaibench.latex_tables: cells, the bold best value, escaping (the report's files are tested with the report)."""

from __future__ import annotations

import pandas as pd

from xaibench import latex_tables
from xaibench.metric import create_metric, get_metric


def test_a_cell_shows_the_interval_as_distances_from_the_value() -> None:
    assert latex_tables.cell(0.5, 0.45, 0.56, "AUC") == "$0.500^{+0.060}_{-0.050}$"
    assert latex_tables.cell(50.0, 48.0, 52.0, "%") == r"$50.0 \pm 2.0$"
    assert latex_tables.cell(3.0, 3.0, 3.0, "count") == "$3$"
    assert latex_tables.cell(float("nan"), 0.0, 1.0, "%") == "--"
    assert latex_tables.cell(0.2, 0.25, 0.3, "ratio") == "$0.200^{+0.100}_{-0.000}$"  # a value outside its interval: no negative distance


def test_the_best_value_follows_the_metrics_direction_at_the_shown_rounding() -> None:
    higher, lower, neither = create_metric("pointing"), create_metric("deletion_auc"), create_metric("pointing")
    neither.higher_is_better = None  # on this instance only
    values = pd.Series([61.24, 61.21, 40.0], index=["a", "b", "c"])
    assert latex_tables.best_rows(values, higher) == {"a", "b"}  # both 61.2 as shown
    assert latex_tables.best_rows(pd.Series([0.12, 0.30], index=["a", "b"]), lower) == {"a"}
    assert latex_tables.best_rows(pd.Series([0.0, 2.0], index=["a", "b"]), neither) == set()


def test_text_from_a_run_is_escaped() -> None:
    assert latex_tables.escape("a_b & 5% #1 $x {y} ~^\\") == (
        r"a\_b \& 5\% \#1 \$x \{y\} \textasciitilde{}\textasciicircum{}\textbackslash{}")
    assert latex_tables.escape("tab\there\nnewline") == "tab\therenewline"


def test_a_table_bolds_per_column_and_marks_missing_values() -> None:
    metrics = {"pointing": get_metric("pointing"), "deletion_auc": get_metric("deletion_auc")}
    summary = pd.DataFrame({
        "method": ["cam", "cam", "my_method", "my_method"], "metric": ["pointing", "deletion_auc"] * 2,
        "value": [60.0, 0.2, 70.0, float("nan")], "ci_low": [55.0, 0.15, 65.0, float("nan")],
        "ci_high": [65.0, 0.25, 75.0, float("nan")], "n": [100, 100, 100, 100],
    })
    text = latex_tables.latex_table(summary, metrics, caption="A & B", label="tab:x")
    lines = text.splitlines()
    assert r"\caption{A \& B}" in lines and r"\label{tab:x}" in lines
    assert r"Method & $n$ & Pointing & Deletion AUC \\" in lines
    assert r" &  & \% $\uparrow$ & AUC $\downarrow$ \\" in lines
    assert r"cam & 100 & $60.0 \pm 5.0$ & $\mathbf{0.200} \pm 0.050$ \\" in lines
    assert r"my\_method & 100 & $\mathbf{70.0} \pm 5.0$ & -- \\" in lines
