"""xaibench.critical_difference (Friedman, Iman-Davenport, Nemenyi) against Demšar (JMLR 7, 2006), and
the critical-difference diagram of xaibench.comparison_plots."""

from __future__ import annotations

import doctest
import time
import warnings

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.lines import Line2D

from xaibench import critical_difference as cdm
from xaibench.comparison_plots import critical_difference_diagram
from xaibench.critical_difference import CriticalDifference, compare, critical_difference, friedman, nemenyi_q, ranks

#: Demšar's Table 6: AUC of C4.5 with its parameters at their defaults, with m tuned, with cf tuned and
#: with both, on 14 UCI data sets (rows: adult (sample), breast cancer, breast cancer wisconsin, cmc,
#: ionosphere, iris, liver disorders, lung cancer, lymphography, mushroom, primary tumor, rheum,
#: voting, wine). The AUCs as the paper prints them, to 3 decimals, except one: on "voting" the
#: paper ranks C4.5+cf 2nd and C4.5+m+cf 3rd although both print as 0.975 (their unrounded AUCs
#: differ), and its average ranks (2.893 and 1.964) count them so; 0.9751 keeps that order.
PAPER_METHODS = ["C4.5", "C4.5+m", "C4.5+cf", "C4.5+m+cf"]
PAPER_AUC = [
    [0.763, 0.768, 0.771, 0.798],
    [0.599, 0.591, 0.590, 0.569],
    [0.954, 0.971, 0.968, 0.967],
    [0.628, 0.661, 0.654, 0.657],
    [0.882, 0.888, 0.886, 0.898],
    [0.936, 0.931, 0.916, 0.931],
    [0.661, 0.668, 0.609, 0.685],
    [0.583, 0.583, 0.563, 0.625],
    [0.775, 0.838, 0.866, 0.875],
    [1.000, 1.000, 1.000, 1.000],
    [0.940, 0.962, 0.965, 0.962],
    [0.619, 0.666, 0.614, 0.669],
    [0.972, 0.981, 0.9751, 0.975],
    [0.957, 0.978, 0.946, 0.970],
]
#: The paper's average ranks (Sec. 3.2.4), its chi2_F = 9.28, F_F = 3.69 and CD = 1.25 (alpha 0.05),
#: 1.12 (alpha 0.10).
PAPER_RANKS = {"C4.5": 3.143, "C4.5+m": 2.000, "C4.5+cf": 2.893, "C4.5+m+cf": 1.964}


@pytest.fixture(scope="module")
def paper() -> pd.DataFrame:
    return pd.DataFrame(PAPER_AUC, columns=PAPER_METHODS)


def test_demsar_worked_example(paper):
    result = compare(paper, higher_is_better=True)
    assert result.n == 14 and result.k == 4
    assert result.methods == ("C4.5+m+cf", "C4.5+m", "C4.5+cf", "C4.5")
    for method, expected in PAPER_RANKS.items():
        assert result.rank_of(method) == pytest.approx(expected, abs=5e-4)
    assert round(result.chi2, 2) == 9.28
    assert round(result.f_f, 2) == 3.69
    assert round(result.cd, 2) == 1.25
    # chi-square(3) and F(3, 39) tail probabilities; the paper: F_F = 3.69 exceeds F(3, 39)'s 5% critical
    # value 2.85, so the null hypothesis is rejected
    assert result.p_friedman == pytest.approx(0.02581, abs=1e-5)
    assert result.p_iman_davenport == pytest.approx(0.01982, abs=1e-5)
    # "even the difference between the best and the worst performing algorithm (1.179) is below CD"
    assert result.cliques == (("C4.5+m+cf", "C4.5+m", "C4.5+cf", "C4.5"),)
    assert not any(result.significant(a, b) for a in PAPER_METHODS for b in PAPER_METHODS)
    assert result.describe() == ("Friedman chi2 = 9.28 (p = 0.026), Iman-Davenport F = 3.69 (p = 0.020); "
                                 "Nemenyi CD = 1.25 at alpha 0.05 over 14 images")
    assert result.describe(over="data sets").endswith("over 14 data sets")


def test_demsar_worked_example_at_alpha_010(paper):
    # the paper's Fig. 1(a): C4.5 is worse than C4.5+m and C4.5+m+cf; C4.5+cf cannot be told from either side
    result = compare(paper, higher_is_better=True, alpha=0.10, over="data sets")
    assert round(result.cd, 2) == 1.12
    assert result.cliques == (("C4.5+m+cf", "C4.5+m", "C4.5+cf"), ("C4.5+cf", "C4.5"))
    assert result.significant("C4.5", "C4.5+m") and result.significant("C4.5+m+cf", "C4.5")
    assert not result.significant("C4.5", "C4.5+cf") and not result.significant("C4.5+cf", "C4.5+m+cf")
    assert result.describe().endswith("at alpha 0.1 over 14 data sets")


def test_friedman_from_the_papers_average_ranks():
    chi2, p, f_f, p_f = friedman(list(PAPER_RANKS.values()), 14)
    assert round(chi2, 2) == 9.28
    assert round(f_f, 2) == 3.69
    assert p == pytest.approx(0.0258, abs=2e-4) and p_f == pytest.approx(0.0198, abs=2e-4)


def test_ties_are_averaged_in_the_table_as_printed(paper):
    # with "voting" as printed (0.975 twice) the two share rank 2.5: R = 44/14, 28/14, 41/14, 27/14
    printed = paper.copy()
    printed.iloc[12, 2] = 0.975
    result = compare(printed, higher_is_better=True)
    assert dict(zip(result.methods, result.average_ranks)) == pytest.approx(
        {"C4.5": 44 / 14, "C4.5+m": 2.0, "C4.5+cf": 41 / 14, "C4.5+m+cf": 27 / 14})
    # 12 * 14 / 20 * sum_j (R_j - 5/2)^2 = 8.4 * (9^2 + 7^2 + 6^2 + 8^2) / 14^2 = 69 / 7
    assert result.chi2 == pytest.approx(69 / 7)


#: Demšar's Table 5(a), q_0.05 for k = 2..10.
TABLE_5A = [1.960, 2.343, 2.569, 2.728, 2.850, 2.949, 3.031, 3.102, 3.164]


@pytest.mark.parametrize("k, expected", zip(range(2, 11), TABLE_5A))
def test_nemenyi_q_against_demsar_table_5a(k, expected):
    assert nemenyi_q(k, 0.05) == pytest.approx(expected, abs=1.5e-3)


def test_nemenyi_q_at_alpha_010_and_critical_difference():
    assert nemenyi_q(4, 0.10) == pytest.approx(2.291, abs=1e-3)  # Table 5(b)
    assert nemenyi_q(2, 0.10) == pytest.approx(1.645, abs=1e-3)
    assert critical_difference(4, 14, 0.05) == pytest.approx(2.569 * np.sqrt(20 / 84), abs=1e-3)
    assert critical_difference(4, 14, 0.10) == pytest.approx(1.118, abs=1e-3)
    with pytest.raises(ValueError):
        nemenyi_q(1)
    with pytest.raises(ValueError):
        nemenyi_q(4, 1.5)


def test_ranks_by_hand():
    scores = np.array([[0.9, 0.5, 0.1],
                       [0.2, 0.2, 0.7],
                       [0.3, 0.3, 0.3]])
    np.testing.assert_array_equal(ranks(scores, higher_is_better=True), [[1, 2, 3], [2.5, 2.5, 1], [2, 2, 2]])
    np.testing.assert_array_equal(ranks(scores, higher_is_better=False), [[3, 2, 1], [1.5, 1.5, 3], [2, 2, 2]])
    np.testing.assert_array_equal(ranks(np.array([[4.0, 1.0, 4.0, 4.0]]), True), [[2, 4, 2, 2]])
    with pytest.raises(ValueError):
        ranks(np.array([1.0, 2.0]), True)


def test_cliques_of_a_hand_made_table():
    # a is always best; b and c tie on every row; d is always worst: R = 1, 2.5, 2.5, 4; with 20 rows
    # CD = 2.569 * sqrt(20 / 120) = 1.049, so b and c form the only clique
    table = pd.DataFrame({"d": [0.0] * 20, "c": [0.5] * 20, "b": [0.5] * 20, "a": [1.0] * 20})
    result = compare(table, higher_is_better=True)
    assert result.methods == ("a", "c", "b", "d")  # b and c tie: the table's column order
    assert result.average_ranks == (1.0, 2.5, 2.5, 4.0)
    assert result.cd == pytest.approx(1.0488, abs=1e-4)
    assert result.cliques == (("c", "b"),)
    assert result.significant("a", "b") and result.significant("c", "d") and not result.significant("b", "c")
    # with 6 rows CD = 1.916 > 1.5: two overlapping cliques, and no third one nested in them
    few = compare(table.head(6), higher_is_better=True)
    assert few.cliques == (("a", "c", "b"), ("c", "b", "d"))


def test_cliques_drop_nested_groups():
    result = cdm._cliques(("a", "b", "c", "d", "e"), np.array([1.0, 1.5, 1.9, 2.6, 4.0]), 1.0)
    # a..c (span 0.9), b..d (1.1 >= CD: no), so b..c is inside a..c; c..d (0.7); e alone
    assert result == (("a", "b", "c"), ("c", "d"))
    assert cdm._cliques(("a", "b"), np.array([1.0, 2.0]), 1.0) == ()  # a difference of exactly CD is significant


def test_compare_drops_rows_with_nan():
    table = pd.DataFrame({"x": [1.0, 2.0, np.nan, 3.0, 1.0], "y": [2.0, 1.0, 1.0, np.nan, 0.0],
                          "z": [3.0, 3.0, 2.0, 2.0, 2.0]})
    result = compare(table, higher_is_better=False)
    assert result.n == 3
    # rows 0, 1 and 4, lower is better: x ranks 1, 2, 2; y 2, 1, 1; z 3, 3, 3
    assert dict(zip(result.methods, result.average_ranks)) == pytest.approx({"x": 5 / 3, "y": 4 / 3, "z": 3.0})
    assert compare(table[["x"]], higher_is_better=True) is None
    assert compare(table.iloc[[2, 3]], higher_is_better=True) is None  # no complete row
    assert compare(table.iloc[[0, 2, 3]], higher_is_better=True) is None  # one complete row


def test_every_row_tied():
    table = pd.DataFrame(np.full((5, 3), 0.5), columns=["a", "b", "c"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = compare(table, higher_is_better=True)
    assert result.average_ranks == (2.0, 2.0, 2.0)
    assert (result.chi2, result.p_friedman, result.f_f, result.p_iman_davenport) == (0.0, 1.0, 0.0, 1.0)
    assert result.cliques == (("a", "b", "c"),)
    assert result.describe().startswith("Friedman chi2 = 0.00 (p = 1.000), Iman-Davenport F = 0.00 (p = 1.000)")


def test_every_row_ranking_alike_gives_an_infinite_f():
    table = pd.DataFrame({"a": [3.0, 2.0, 5.0], "b": [2.0, 1.0, 4.0], "c": [1.0, 0.0, 3.0]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = compare(table, higher_is_better=True)
    assert result.chi2 == pytest.approx(6.0)  # N (k - 1)
    assert result.f_f == np.inf and result.p_iman_davenport == 0.0
    assert result.p_friedman == pytest.approx(np.exp(-3.0))  # chi-square(2) tail at 6
    assert "Iman-Davenport F = inf (p < 0.001)" in result.describe()


def test_fifty_thousand_rows_are_fast():
    rng = np.random.default_rng(0)
    scores = rng.random((50_000, 10)) + np.linspace(0, 0.1, 10)
    scores[::5, 1] = scores[::5, 2]  # ties
    table = pd.DataFrame(scores, columns=[f"m{j}" for j in range(10)])
    start = time.perf_counter()
    result = compare(table, higher_is_better=True)
    assert time.perf_counter() - start < 1.0
    assert result.n == 50_000 and result.methods[0] == "m9"
    assert sum(result.average_ranks) == pytest.approx(55.0)


def test_module_doctest():
    assert doctest.testmod(cdm).failed == 0


def _drawn(fig):
    FigureCanvasAgg(fig)
    fig.canvas.draw()
    inside = fig.bbox.padded(0.5)
    texts = [t for t in fig.findobj(lambda a: hasattr(a, "get_text") and a.get_text()) if t.get_visible()]
    for text in texts:
        box = text.get_window_extent()
        assert inside.x0 <= box.x0 and box.x1 <= inside.x1 and inside.y0 <= box.y0 and box.y1 <= inside.y1, \
            (text.get_text(), box, fig.bbox)
        assert text.get_fontsize() >= 7
    return texts


def _clique_bars(fig):
    return [a for a in fig.findobj(Line2D) if a.get_gid() == "clique"]


def test_diagram_two_and_twelve_methods(paper):
    two = compare(pd.DataFrame({"Grad-CAM": [0.1, 0.4, 0.3], "RISE $x$": [0.2, 0.3, 0.1]}), higher_is_better=True)
    names = ["Grad-CAM", "Grad-CAM++", "Score-CAM", "Integrated Gradients", "SmoothGrad", "Occlusion",
             "RISE", "LIME", "Saliency", "Guided Backpropagation", "XRAI", "Random baseline"]
    rng = np.random.default_rng(1)
    twelve = compare(pd.DataFrame(rng.normal(size=(40, 12)) + np.arange(12) * 0.3, columns=names),
                     higher_is_better=False)
    results = [("Two methods", two), ("Deletion AUC (lower is better) " * 6, twelve),
               ("Demšar's example, alpha 0.10", compare(paper, True, alpha=0.10))]
    assert len(twelve.cliques) >= 3
    fig = critical_difference_diagram(results, title="Critical difference diagrams " * 5)
    assert fig.get_figwidth() == pytest.approx(6.5)
    assert 5 < fig.get_figheight() < 9
    texts = _drawn(fig)
    shown = {t.get_text() for t in texts}
    assert "CD = 1.12" in shown and f"CD = {twelve.cd:.2f}" in shown
    assert "C4.5+m+cf  1.96" in shown and "3.14  C4.5" in shown  # better half left, name then rank
    assert "Grad-CAM  1.33" in shown and "1.67  RISE \\$x\\$" in shown  # the $ escaped: drawn as written
    assert len(_clique_bars(fig)) == sum(len(r.cliques) for _, r in results)
    for _, result in results:
        alone = critical_difference_diagram([("", result)])
        _drawn(alone)
        assert len(_clique_bars(alone)) == len(result.cliques)
        assert alone.get_figheight() < 3.5


def test_diagram_of_nothing_and_of_long_names():
    assert critical_difference_diagram([]) is None
    tied = compare(pd.DataFrame(np.ones((2, 3)), columns=["a" * 60, "b", "c"]), higher_is_better=True)
    assert tied.cd > tied.k - 1  # the CD bar is longer than the axis
    fig = critical_difference_diagram([("all tied", tied)])
    assert fig.get_figwidth() >= 6.5
    _drawn(fig)
    assert len(_clique_bars(fig)) == 1


def test_result_is_frozen(paper):
    result = compare(paper, True)
    assert isinstance(result, CriticalDifference)
    with pytest.raises(AttributeError):
        result.cd = 0.0
