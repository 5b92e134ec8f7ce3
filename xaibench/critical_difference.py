"""The Friedman test, the Nemenyi post-hoc test and the critical difference (CD) of average ranks.

Demšar, "Statistical Comparisons of Classifiers over Multiple Data Sets", JMLR 7 (2006) 1-30,
Sec. 3.2.2 and Fig. 1-2, with images (or metrics) in the place of the paper's data sets: each of the
N images ranks the k methods on one metric (1 = the best; tied methods share the mean of the ranks
they span), and the methods are compared by their average ranks.

- Average rank of method j, r_i^j its rank on image i: ``R_j = 1/N sum_i r_i^j``.
- Friedman's statistic, chi-square with k - 1 degrees of freedom when no method is better than
  another: ``chi2_F = 12N / (k(k+1)) [sum_j R_j^2 - k(k+1)^2 / 4]`` (computed as the equal
  ``12N / (k(k+1)) sum_j (R_j - (k+1)/2)^2``, never negative; as in the paper, without a
  correction for ties, which makes it conservative when images tie methods).
- Iman and Davenport's statistic, F with (k - 1, (k - 1)(N - 1)) degrees of freedom:
  ``F_F = (N - 1) chi2_F / (N(k - 1) - chi2_F)``. It is 0 when every image ties every method
  (chi2_F = 0, p = 1) and infinite, p = 0, when every image ranks the methods the same way without
  ties (chi2_F = N(k - 1)).
- Nemenyi's test: two methods differ significantly at level alpha when their average ranks differ by
  at least the critical difference ``CD = q_alpha sqrt(k(k+1) / (6N))``, where
  ``q_alpha = Q(1 - alpha; k, inf) / sqrt(2)`` and Q is the quantile of the studentized range of k
  means with infinite degrees of freedom (the paper's Table 5; 2.569 for k = 4 at alpha 0.05).
- The paper's Fig. 1 joins by a thick bar each group of methods, consecutive in average-rank order,
  whose average ranks lie within less than CD of each other (no pair in it significantly different):
  :attr:`CriticalDifference.cliques`, each maximal (a group inside another is not drawn).

:func:`compare` does all of it for a table of images x methods; :func:`friedman` the two tests from
average ranks alone (as the paper's worked example, Sec. 3.2.4, states them);
:func:`xaibench.comparison_plots.critical_difference_diagram` draws the diagram.

Example:

>>> import pandas as pd
>>> table = pd.DataFrame({"a": [0.9, 0.8, 0.7, 0.9], "b": [0.5, 0.6, 0.4, 0.5], "c": [0.1, 0.2, 0.1, 0.3]})
>>> result = compare(table, higher_is_better=True)
>>> result.methods, result.average_ranks
(('a', 'b', 'c'), (1.0, 2.0, 3.0))
>>> round(result.cd, 3), result.cliques
(1.657, (('a', 'b'), ('b', 'c')))
>>> result.significant("a", "c")
True
>>> result.describe()
'Friedman chi2 = 8.00 (p = 0.018), Iman-Davenport F = inf (p < 0.001); Nemenyi CD = 1.66 at alpha 0.05 over 4 images'
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

__all__ = ["CriticalDifference", "compare", "critical_difference", "friedman", "nemenyi_q", "ranks"]


def ranks(scores: np.ndarray, higher_is_better: bool) -> np.ndarray:
    """The rank of each method (column) within each row of the (N, k) ``scores``, as floats: 1 for
    the best (the highest score when ``higher_is_better``, else the lowest), tied scores getting the
    mean of the ranks they span (``scipy.stats.rankdata``, vectorised over the rows). A row holding a
    NaN gets NaN ranks."""
    scores = np.asarray(scores, dtype=float)
    if scores.ndim != 2:
        raise ValueError(f"scores must be a 2-D array (rows x methods), not of shape {scores.shape}")
    if scores.size == 0:
        return np.empty(scores.shape)
    return stats.rankdata(-scores if higher_is_better else scores, axis=1)


def _check(k: int, alpha: float) -> None:
    if k < 2:
        raise ValueError(f"the Nemenyi test needs at least 2 methods, not {k}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), not {alpha}")


@functools.lru_cache(maxsize=256)
def _q(k: int, alpha: float) -> float:
    return float(stats.studentized_range.ppf(1 - alpha, k, np.inf) / math.sqrt(2))


def nemenyi_q(k: int, alpha: float = 0.05) -> float:
    """Nemenyi's critical value q_alpha for ``k`` methods: the (1 - alpha) quantile of the studentized
    range of k means with infinite degrees of freedom, over sqrt(2) (Demšar's Table 5(a): 2.569 for
    k = 4 at alpha 0.05; Table 5(b): 2.291 at 0.10)."""
    _check(int(k), float(alpha))
    return _q(int(k), float(alpha))


def critical_difference(k: int, n: int, alpha: float = 0.05) -> float:
    """The Nemenyi critical difference of average ranks for ``k`` methods over ``n`` rows:
    ``q_alpha sqrt(k(k+1) / (6n))``."""
    if n < 1:
        raise ValueError(f"the critical difference needs at least 1 row, not {n}")
    return nemenyi_q(k, alpha) * math.sqrt(k * (k + 1) / (6 * n))


def friedman(average_ranks, n: int) -> tuple[float, float, float, float]:
    """Friedman's test and Iman and Davenport's from the ``average_ranks`` of k methods over ``n``
    rows: ``(chi2_F, p, F_F, p_F)``, p from the chi-square distribution with k - 1 degrees of freedom
    and p_F from F with (k - 1, (k - 1)(n - 1)). Every row tying every method gives (0, 1, 0, 1);
    chi2_F = n(k - 1) (every row ranking the methods alike) gives F_F = inf, p_F = 0."""
    average = np.asarray(average_ranks, dtype=float).ravel()
    k = average.size
    if k < 2 or n < 2:
        raise ValueError(f"the Friedman test needs at least 2 methods and 2 rows, not {k} and {n}")
    chi2 = float(12 * n / (k * (k + 1)) * np.sum((average - (k + 1) / 2) ** 2))
    p = float(stats.chi2.sf(chi2, k - 1))
    most = n * (k - 1)
    if chi2 == 0:
        f_f, p_f = 0.0, 1.0
    elif most - chi2 <= 1e-12 * most:  # chi2 at its largest, n(k-1), give or take rounding
        f_f, p_f = math.inf, 0.0
    else:
        f_f = (n - 1) * chi2 / (most - chi2)
        p_f = float(stats.f.sf(f_f, k - 1, (k - 1) * (n - 1)))
    return chi2, p, f_f, p_f


def _cliques(methods: tuple[str, ...], average: np.ndarray, cd: float) -> tuple[tuple[str, ...], ...]:
    """Maximal runs of 2+ consecutive methods (``average`` sorted ascending) spanning less than ``cd``."""
    # the last j with R_j - R_i < cd, compared as :meth:`CriticalDifference.significant` does
    ends = (average[None, :] - average[:, None] < cd).sum(axis=1) - 1
    found, last = [], -1
    for start, end in enumerate(ends):
        end = int(end)
        if end > start and end > last:  # end == last: the run lies inside the previous one
            found.append(methods[start:end + 1])
        last = max(last, end)
    return tuple(found)


@dataclass(frozen=True)
class CriticalDifference:
    """The Friedman and Nemenyi tests of k methods over ``n`` rows (:func:`compare`)."""

    #: The methods, best (lowest average rank) first.
    methods: tuple[str, ...]
    #: Each method's average rank, in the order of :attr:`methods` (ascending).
    average_ranks: tuple[float, ...]
    #: Rows (images) used: those where every method has a value.
    n: int
    #: Nemenyi's critical difference at :attr:`alpha`.
    cd: float
    alpha: float
    #: Friedman's chi2_F and its p-value (chi-square, k - 1 degrees of freedom).
    chi2: float
    p_friedman: float
    #: Iman and Davenport's F_F and its p-value (F, (k - 1, (k - 1)(n - 1)) degrees of freedom).
    f_f: float
    p_iman_davenport: float
    #: Maximal groups of 2+ methods, consecutive in :attr:`methods`, whose average ranks differ by
    #: less than :attr:`cd`: not significantly different by Nemenyi's test (the bars of Demšar's Fig. 1).
    cliques: tuple[tuple[str, ...], ...]
    #: What the rows are, for :meth:`describe` ("images", "metrics").
    over: str = "images"

    @property
    def k(self) -> int:
        """The number of methods."""
        return len(self.methods)

    def rank_of(self, method: str) -> float:
        """``method``'s average rank."""
        try:
            return self.average_ranks[self.methods.index(method)]
        except ValueError:
            raise KeyError(f"no method {method!r} in {list(self.methods)}") from None

    def significant(self, a: str, b: str) -> bool:
        """Whether Nemenyi's test finds methods ``a`` and ``b`` different: |R_a - R_b| >= CD."""
        return abs(self.rank_of(a) - self.rank_of(b)) >= self.cd

    def describe(self, over: str | None = None) -> str:
        """One line: ``Friedman chi2 = 9.28 (p = 0.026), Iman-Davenport F = 3.69 (p = 0.020); Nemenyi
        CD = 1.25 at alpha 0.05 over 14 images`` (``over`` defaults to :attr:`over`)."""
        f_f = "inf" if math.isinf(self.f_f) else f"{self.f_f:.2f}"
        return (f"Friedman chi2 = {self.chi2:.2f} ({_p(self.p_friedman)}), Iman-Davenport F = {f_f} "
                f"({_p(self.p_iman_davenport)}); Nemenyi CD = {self.cd:.2f} at alpha {self.alpha:g} "
                f"over {self.n} {over or self.over}")


def _p(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def compare(table: pd.DataFrame, higher_is_better: bool, *, alpha: float = 0.05,
            over: str = "images") -> CriticalDifference | None:
    """The Friedman, Iman-Davenport and Nemenyi tests of the methods (columns) of ``table`` over its
    rows (images), NaN where a method has no value: only the rows where every method has one are used.
    None with fewer than 2 methods or fewer than 2 such rows."""
    names = tuple(str(c) for c in table.columns)
    if len(set(names)) != len(names):
        raise ValueError(f"methods named more than once: {list(names)}")
    if len(names) < 2:
        return None
    scores = table.to_numpy(dtype=float)
    scores = scores[~np.isnan(scores).any(axis=1)]
    n, k = scores.shape
    if n < 2:
        return None
    average = ranks(scores, higher_is_better).mean(axis=0)
    order = np.argsort(average, kind="stable")
    methods = tuple(names[j] for j in order)
    average = average[order]
    chi2, p, f_f, p_f = friedman(average, n)
    cd = critical_difference(k, n, alpha)
    return CriticalDifference(methods=methods, average_ranks=tuple(float(r) for r in average), n=n, cd=cd,
                              alpha=float(alpha), chi2=chi2, p_friedman=p, f_f=f_f, p_iman_davenport=p_f,
                              cliques=_cliques(methods, average, cd), over=over)
