"""Paired tests between two methods scored on the same images, and the correction for testing many pairs.

Two methods explained the same images, so their per-image scores are paired; a test on the
differences removes the variation between images (an easy image is easy for both) and is far more
sensitive than comparing two separate confidence intervals.

- :func:`paired_bootstrap`: the mean difference and its percentile bootstrap interval, resampling
  images (Efron & Tibshirani, *An Introduction to the Bootstrap*, 1993, ch. 13 and 15).
- :func:`sign_flip_test`: the paired permutation test of a mean difference of 0 (Fisher 1935; Good,
  *Permutation Tests*, 2000): under the null hypothesis the sign of each image's difference is a fair
  coin, so the p-value is the share of the 2^n sign patterns whose mean is at least as far from 0 as
  the one observed; exact for n <= :data:`EXACT_SIGN_FLIPS_MAX`, else from random patterns, as
  ``(1 + hits) / (1 + draws)`` (Phipson & Smyth 2010), which never gives 0.
- :func:`exact_mcnemar`: for hits and misses (0/1 per image), McNemar's exact test: only images where
  the methods disagree count, and under the null hypothesis each is equally likely to favour either,
  ``p = min(1, 2 * P[Binomial(b + c, 1/2) <= min(b, c)])``.
- :func:`holm`: Holm's step-down correction (Holm, Scand. J. Statist. 1979) of the p-values of one
  family of tests, controlling the family-wise error rate without assuming independence.
- :func:`bootstrap_weight_chunks`: the resamples of every bootstrap here (and of the summary's
  intervals), drawn a bounded number of rows at a time from one seeded generator, so that 50,000
  images need megabytes, not a dense 1,000 x 50,000 matrix, and give the same draws.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np

#: Up to this many images, :func:`sign_flip_test` enumerates every sign pattern.
EXACT_SIGN_FLIPS_MAX = 16
#: Random sign patterns drawn for more images.
SIGN_FLIP_DRAWS = 20_000
#: Signs drawn at once (8 bytes each): 32 MB whatever the number of images.
SIGN_FLIP_CHUNK_VALUES = 4_000_000
#: Bootstrap weights (resamples x images) drawn at once (8 bytes each): 16 MiB whatever the number of
#: images (a statistic's copies of a chunk come on top). Up to 2,097 images, 1,000 resamples are one chunk.
BOOTSTRAP_CHUNK_VALUES = 1 << 21


def bootstrap_weight_chunks(
    n: int, *, n_boot: int = 1000, seed: int = 0, max_values: int | None = None
) -> Iterator[np.ndarray]:
    """The bootstrap's resamples of ``n`` images, as float64 counts (how often each image is drawn, with
    replacement), in consecutive chunks of at most ``max(1, max_values // n)`` resamples.

    The rows come from one ``numpy.random.default_rng(seed)`` in order, so the chunks stacked are
    exactly ``rng.multinomial(n, [1/n] * n, size=n_boot)``: the same resamples, whatever the chunk
    size, in bounded memory (a statistic computed per resample is the same; one averaged over rows in
    one matrix product may differ in its last bit where the chunks split a product that was one).
    ``max_values`` (default :data:`BOOTSTRAP_CHUNK_VALUES`) bounds the weights held at once.

    Example:
        >>> whole = np.random.default_rng(0).multinomial(5, [0.2] * 5, size=7)
        >>> np.array_equal(np.concatenate(list(bootstrap_weight_chunks(5, n_boot=7, max_values=10))), whole)
        True
    """
    rng = np.random.default_rng(seed)
    rows = max(1, (BOOTSTRAP_CHUNK_VALUES if max_values is None else max_values) // max(n, 1))
    p = np.full(n, 1 / n) if n else np.zeros(0)
    for start in range(0, n_boot, rows):
        yield rng.multinomial(n, p, size=min(rows, n_boot - start)).astype(np.float64)


def paired_bootstrap(
    a: np.ndarray, b: np.ndarray, *, n_boot: int = 1000, level: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """``mean(a - b)`` and its percentile bootstrap interval, resampling the pairs (images).

    Args:
        a, b: Per-image scores of two methods on the same images, in the same order.
        n_boot: Resamples.
        level: Coverage of the interval.
        seed: Seed of the resamples.

    Returns:
        ``(difference, low, high)``; NaNs for no pairs.
    """
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    return paired_bootstraps([d], n_boot=n_boot, level=level, seed=seed)[0]


def compact(differences: np.ndarray) -> np.ndarray:
    """``differences`` as int8 where that holds every value exactly (differences of hits: -1, 0, 1),
    else as float64. :func:`paired_bootstraps` and :func:`sign_flip_tests` give the same numbers for
    either (a whole number is exact in both), and many pairs of methods at 50,000 images fit in an
    eighth of the memory.

    >>> compact(np.array([1.0, 0.0, -1.0])).dtype, compact(np.array([0.5, 0.0])).dtype
    (dtype('int8'), dtype('float64'))
    """
    values = np.asarray(differences, dtype=np.float64)
    small = np.isfinite(values).all() and (np.abs(values) <= 127).all() and (values == np.trunc(values)).all()
    return values.astype(np.int8) if small else values


def _numbers(differences: np.ndarray) -> np.ndarray:
    """A vector of differences as it is (float64 or whole numbers: :func:`compact`), else as float64."""
    values = np.asarray(differences)
    return values if values.dtype in (np.float64, np.int8) else values.astype(np.float64)


def paired_bootstraps(
    differences: list[np.ndarray], *, n_boot: int = 1000, level: float = 0.95, seed: int = 0
) -> list[tuple[float, float, float]]:
    """:func:`paired_bootstrap` of several vectors of per-image differences at once, with the same
    numbers as one call each: the vectors of one length share each chunk of resamples, drawn once for
    all of them (the draws, not the products, are the cost at 50,000 images).

    Example:
        >>> d = [np.array([1.0, 2.0, 4.0]), np.array([0.0, 1.0, 0.0])]
        >>> paired_bootstraps(d) == [paired_bootstrap(x, np.zeros(3)) for x in d]
        True
    """
    vectors = [_numbers(d) for d in differences]  # int8 ones are cast as each product needs them
    results: list[tuple[float, float, float]] = [(float("nan"),) * 3] * len(vectors)
    by_size: dict[int, list[int]] = {}
    for k, d in enumerate(vectors):
        if d.size:
            by_size.setdefault(d.size, []).append(k)
    for size, members in by_size.items():
        draws: dict[int, list[np.ndarray]] = {k: [] for k in members}
        for weights in bootstrap_weight_chunks(size, n_boot=n_boot, seed=seed):
            for k in members:
                draws[k].append(weights @ vectors[k] / size)
        for k in members:
            low, high = np.quantile(np.concatenate(draws[k]), [(1 - level) / 2, (1 + level) / 2])
            results[k] = (float(vectors[k].mean(dtype=np.float64)), float(low), float(high))
    return results


def sign_flip_test(differences: np.ndarray, *, draws: int = SIGN_FLIP_DRAWS, seed: int = 0) -> float:
    """Two-sided p-value of the paired permutation (sign-flip) test that the mean difference is 0.

    ``p = P[|mean(s * d)| >= |mean(d)|]`` over sign vectors ``s`` in {-1, 1}^n: every one of them for
    n <= :data:`EXACT_SIGN_FLIPS_MAX`, else ``draws`` random ones (``(1 + hits) / (1 + draws)``).
    All-zero differences give 1.
    """
    return sign_flip_tests([differences], draws=draws, seed=seed)[0]


def sign_flip_tests(differences: list[np.ndarray], *, draws: int = SIGN_FLIP_DRAWS, seed: int = 0) -> list[float]:
    """:func:`sign_flip_test` of several vectors of differences at once, with the same p-values as one
    call each: vectors with as many nonzero differences share each chunk of random signs, drawn once.

    Example:
        >>> d = [np.arange(1.0, 30.0), -np.arange(1.0, 30.0), np.r_[np.arange(1.0, 30.0), 0.0]]
        >>> sign_flip_tests(d) == [sign_flip_test(x) for x in d]
        True
    """
    vectors = [_numbers(d) for d in differences]
    vectors = [d[d != 0] for d in vectors]  # a zero difference has no sign: it is the same under every flip
    results = [1.0] * len(vectors)
    by_size: dict[int, list[int]] = {}
    for k, d in enumerate(vectors):
        if d.size:
            by_size.setdefault(d.size, []).append(k)
    for size, members in by_size.items():
        observed = {k: abs(vectors[k].sum(dtype=np.float64)) for k in members}
        tolerance = {k: 1e-9 * max(1.0, observed[k]) for k in members}
        if size <= EXACT_SIGN_FLIPS_MAX:
            signs = np.array(list(itertools.product((1.0, -1.0), repeat=size)))
            for k in members:
                results[k] = float(np.mean(np.abs(signs @ vectors[k]) >= observed[k] - tolerance[k]))
            continue
        rng = np.random.default_rng(seed)
        hits = dict.fromkeys(members, 0)
        chunk = max(1, min(2000, SIGN_FLIP_CHUNK_VALUES // size))  # rows of signs at once: memory bounded by n
        for start in range(0, draws, chunk):
            signs = rng.choice((1.0, -1.0), size=(min(chunk, draws - start), size))
            for k in members:
                hits[k] += int(np.sum(np.abs(signs @ vectors[k]) >= observed[k] - tolerance[k]))
        for k in members:
            results[k] = (1 + hits[k]) / (1 + draws)
    return results


def exact_mcnemar(a: np.ndarray, b: np.ndarray) -> float:
    """McNemar's exact two-sided p-value for paired binary outcomes (hits are nonzero values).

    ``b`` = images where only the first method hits, ``c`` = only the second; ``p = min(1, 2 *
    Binomial(b + c, 1/2).cdf(min(b, c)))``, 1 when they never disagree.
    """
    a, b_ = np.asarray(a) != 0, np.asarray(b) != 0
    only_a, only_b = int(np.sum(a & ~b_)), int(np.sum(~a & b_))
    if only_a + only_b == 0:
        return 1.0
    from scipy import stats  # loaded by the report's tests only, not by every run's summary

    return float(min(1.0, 2.0 * stats.binom.cdf(min(only_a, only_b), only_a + only_b, 0.5)))


def is_binary(values: np.ndarray) -> bool:
    """Whether per-image scores are hits and misses: 0 and one other value (1, or 100 for a %)."""
    levels = np.unique(np.asarray(values, dtype=np.float64))
    hits = levels[levels != 0]
    return levels.size <= 2 and hits.size <= 1 and all(h in (1.0, 100.0) for h in hits)


def holm(pvalues: np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values: sorted ascending, ``p_(i) * (m - i)`` (i from 0), made
    non-decreasing and capped at 1; NaNs stay NaN and do not count in ``m``."""
    p = np.asarray(pvalues, dtype=np.float64)
    adjusted = np.full(p.shape, np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    m = valid.size
    if m == 0:
        return adjusted
    order = valid[np.argsort(p[valid], kind="stable")]
    running = 0.0
    for i, k in enumerate(order):
        running = max(running, min(1.0, p[k] * (m - i)))
        adjusted[k] = running
    return adjusted
