"""Ranks that follow the paired tests (xaibench/comparison.py, ``rank``): known answers on hand-made tests,
then through ``pairwise`` on hand-made hits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from xaibench import comparison
from xaibench.comparison import ALPHA, PAIRWISE_COLUMNS, Comparison, pairwise, rank
from xaibench.metric import create_metric

METRICS = {n: create_metric(n) for n in ("gt_known_loc", "deletion_auc", "pxap", "top1_cls", "nonfinite_maps")}


def summary(values: dict[str, dict[str, float]], dataset: str = "d", model: str = "m") -> pd.DataFrame:
    """Summary rows: {metric: {method: value}}."""
    return pd.DataFrame([
        {"dataset": dataset, "model": model, "method": method, "metric": metric, "value": value,
         "ci_low": value, "ci_high": value, "n": 10}
        for metric, by_method in values.items() for method, value in by_method.items()
    ])


def pairs(metric: str, tests: list[tuple[str, str, float, bool]], dataset: str = "d", model: str = "m") -> pd.DataFrame:
    """Pairwise rows: (a, b, a - b, significant); p_holm 0.001 where significant, else 0.5."""
    return pd.DataFrame([
        {"dataset": dataset, "model": model, "metric": metric, "method_a": a, "method_b": b, "n": 10,
         "mean_a": np.nan, "mean_b": np.nan, "difference": d, "ci_low": np.nan, "ci_high": np.nan,
         "test": "exact McNemar", "p_value": 0.001 if s else 0.5, "p_holm": 0.001 if s else 0.5, "significant": s}
        for a, b, d, s in tests
    ], columns=PAIRWISE_COLUMNS)


def ranks_of(frame: pd.DataFrame, metric: str = "gt_known_loc") -> dict[str, object]:
    rows = frame[frame.metric == metric]
    return {m: (None if pd.isna(r) else int(r)) for m, r in zip(rows.method, rows["rank"])}


@pytest.mark.parametrize(
    ("tests", "expected"),
    [
        # A > B and A > C significantly, B ~ C: B and C share rank 2 though B's value is higher
        ([("A", "B", 10.0, True), ("A", "C", 12.0, True), ("B", "C", 2.0, False)], {"A": 1, "B": 2, "C": 2}),
        # nothing significant: one rank for all, whatever the values (CAM and Grad-CAM at p = 1)
        ([("A", "B", 10.0, False), ("A", "C", 12.0, False), ("B", "C", 2.0, False)], {"A": 1, "B": 1, "C": 1}),
        # every pair significant: the plain order
        ([("A", "B", 10.0, True), ("A", "C", 12.0, True), ("B", "C", 2.0, True)], {"A": 1, "B": 2, "C": 3}),
        # not transitive: A > C, A ~ B, B ~ C -> B is beaten by none, C by A
        ([("A", "B", 10.0, False), ("A", "C", 12.0, True), ("B", "C", 2.0, False)], {"A": 1, "B": 1, "C": 2}),
        # B ~ A at the top, both significantly above C
        ([("A", "B", 10.0, False), ("A", "C", 12.0, True), ("B", "C", 2.0, True)], {"A": 1, "B": 1, "C": 3}),
        # the pair's order does not matter: (C, A) with C - A < 0 says A is better
        ([("B", "A", -10.0, True), ("C", "A", -12.0, True), ("C", "B", -2.0, False)], {"A": 1, "B": 2, "C": 2}),
    ],
    ids=["A>B,A>C,B~C", "none", "all", "not-transitive", "top-two-tie", "reversed-pairs"],
)
def test_rank_is_one_plus_the_methods_significantly_better(tests, expected) -> None:
    values = {"gt_known_loc": {"A": 80.0, "B": 70.0, "C": 68.0}}
    ranked = rank(summary(values), METRICS, pairs("gt_known_loc", tests))
    assert ranks_of(ranked) == expected
    assert list(ranked.columns) == comparison.SUMMARY_COLUMNS and str(ranked["rank"].dtype) == "Int64"


def test_a_lower_is_better_metric_reads_the_difference_the_other_way() -> None:
    """Deletion AUC: lower is better, so A - B = -0.1 (significant) makes A the better method."""
    values = {"deletion_auc": {"A": 0.1, "B": 0.2, "C": 0.21}}
    tests = [("A", "B", -0.1, True), ("A", "C", -0.11, True), ("B", "C", -0.01, False)]
    ranked = rank(summary(values), METRICS, pairs("deletion_auc", tests))
    assert ranks_of(ranked, "deletion_auc") == {"A": 1, "B": 2, "C": 2}


def test_metrics_and_methods_without_a_paired_test_are_not_ranked() -> None:
    """PxAP (pooled), top-1 classification (the model's) and a count of maps get no rank; nor does a method
    that has no tested pair on a metric (C below scored no image on it)."""
    values = {"gt_known_loc": {"A": 80.0, "B": 70.0, "C": 60.0}, "pxap": {"A": 50.0, "B": 40.0, "C": 30.0},
              "top1_cls": {"A": 90.0, "B": 90.0, "C": 90.0}, "nonfinite_maps": {"A": 0.0, "B": 3.0, "C": 0.0}}
    ranked = rank(summary(values), METRICS, pairs("gt_known_loc", [("A", "B", 10.0, True)]))
    assert ranks_of(ranked) == {"A": 1, "B": 2, "C": None}
    for name in ("pxap", "top1_cls", "nonfinite_maps"):
        assert ranks_of(ranked, name) == {"A": None, "B": None, "C": None}
    assert ranks_of(rank(summary(values), METRICS, pairs("gt_known_loc", [])), "gt_known_loc") == {
        "A": None, "B": None, "C": None}


def test_each_data_set_and_model_is_ranked_by_its_own_tests() -> None:
    values = {"gt_known_loc": {"A": 80.0, "B": 70.0}}
    both = pd.concat([summary(values, "d1"), summary(values, "d2")], ignore_index=True)
    tests = pd.concat([pairs("gt_known_loc", [("A", "B", 10.0, True)], "d1"),
                       pairs("gt_known_loc", [("A", "B", 10.0, False)], "d2")], ignore_index=True)
    ranked = rank(both, METRICS, tests)
    assert ranks_of(ranked[ranked.dataset == "d1"]) == {"A": 1, "B": 2}
    assert ranks_of(ranked[ranked.dataset == "d2"]) == {"A": 1, "B": 1}


def test_ranks_through_pairwise_on_known_hits() -> None:
    """30 images, GT-known hits: A hits all 30, B the first 15, C the first 13. McNemar: A vs B 15 discordant
    images (p = 2 / 2^15), A vs C 17 (2 / 2^17), B vs C 2 (p = 0.5); Holm keeps A's two significant, B ~ C.
    So A 1, B 2, C 2: B's 50 % and C's 43.3 % share a rank."""
    n = 30
    hits = {"A": np.ones(n), "B": (np.arange(n) < 15).astype(float), "C": (np.arange(n) < 13).astype(float)}
    per_image = pd.DataFrame([
        {"dataset": "d", "model": "m", "method": method, "index": k, "label": 0, "gt_known_loc": h[k]}
        for method, h in hits.items() for k in range(n)
    ])
    rows = summary({"gt_known_loc": {m: 100 * h.mean() for m, h in hits.items()}})
    metrics = {"gt_known_loc": METRICS["gt_known_loc"]}
    together = Comparison([], per_image, rows, metrics, pd.Series(dtype=float), pd.DataFrame(), pd.DataFrame(),
                          groups=[("d", "m")])
    tested = pairwise(together, n_boot=10)
    by_pair = {(a, b): (p, s) for a, b, p, s in zip(tested.method_a, tested.method_b, tested.p_holm, tested.significant)}
    assert by_pair[("A", "B")] == (pytest.approx(2 * 2 * 0.5**15), True)  # Holm: 2nd smallest of 3, times 2
    assert by_pair[("A", "C")] == (pytest.approx(3 * 2 * 0.5**17), True)  # smallest, times 3
    assert by_pair[("B", "C")] == (pytest.approx(0.5), False) and 0.5 > ALPHA
    assert ranks_of(rank(rows, metrics, tested)) == {"A": 1, "B": 2, "C": 2}
