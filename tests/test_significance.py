"""Paired tests and Holm's correction, against hand-computed answers and scipy."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

import xaibench
from xaibench import significance


def test_mcnemar_counts_only_the_images_where_the_methods_disagree():
    # 3 images where only a hits, 0 where only b does: p = 2 * P[Bin(3, 1/2) <= 0] = 2 / 8.
    a = np.array([1, 1, 1, 0, 1, 0])
    b = np.array([0, 0, 0, 0, 1, 0])
    assert significance.exact_mcnemar(a, b) == pytest.approx(0.25)
    assert significance.exact_mcnemar(a * 100, b * 100) == pytest.approx(0.25)  # hits in %
    assert significance.exact_mcnemar(a, a) == 1.0
    # 10 discordant pairs split 8 / 2: scipy's exact binomial test gives the same two-sided p.
    a = np.array([1] * 8 + [0] * 2 + [1] * 5)
    b = np.array([0] * 8 + [1] * 2 + [1] * 5)
    assert significance.exact_mcnemar(a, b) == pytest.approx(stats.binomtest(2, 10, 0.5).pvalue)


def test_sign_flip_test_enumerates_every_sign_pattern_for_few_images():
    # |+-1 +-2 +-3| >= 6 only for the all-plus and all-minus patterns: 2 of 8.
    assert significance.sign_flip_test(np.array([1.0, 2.0, 3.0])) == pytest.approx(0.25)
    assert significance.sign_flip_test(np.zeros(5)) == 1.0
    # Zeros carry no sign: they do not change the p-value.
    assert significance.sign_flip_test(np.array([1.0, 2.0, 3.0, 0.0, 0.0])) == pytest.approx(0.25)


def test_sign_flip_test_agrees_with_scipys_exact_paired_permutation_test():
    rng = np.random.default_rng(3)
    a, b = rng.normal(0.3, 1, 14), rng.normal(0, 1, 14)
    ours = significance.sign_flip_test(a - b)
    theirs = stats.permutation_test((a, b), lambda x, y: np.mean(x - y), permutation_type="samples",
                                    n_resamples=np.inf, alternative="two-sided").pvalue
    assert ours == pytest.approx(theirs, abs=1e-12)


def test_sign_flip_test_with_random_patterns_is_close_to_the_exact_one_and_never_zero():
    rng = np.random.default_rng(4)
    d = rng.normal(0.4, 1, 40)
    theirs = stats.permutation_test((d, np.zeros_like(d)), lambda x, y: np.mean(x - y), permutation_type="samples",
                                    n_resamples=50_000, alternative="two-sided", random_state=1).pvalue
    assert significance.sign_flip_test(d) == pytest.approx(theirs, abs=0.01)
    assert significance.sign_flip_test(np.full(40, 1.0)) == pytest.approx(1 / (1 + significance.SIGN_FLIP_DRAWS))


def test_paired_bootstrap_gives_the_mean_difference_and_an_interval_around_it():
    a = np.array([3.0, 5.0, 4.0, 6.0])
    difference, low, high = significance.paired_bootstrap(a, a - 2.0)
    assert (difference, low, high) == (2.0, 2.0, 2.0)  # the same difference on every image: no spread
    rng = np.random.default_rng(0)
    x, y = rng.normal(1, 1, 200), rng.normal(0, 1, 200)
    difference, low, high = significance.paired_bootstrap(x, y)
    assert difference == pytest.approx(np.mean(x - y))
    assert low < difference < high
    assert high - low == pytest.approx(2 * 1.96 * np.std(x - y) / np.sqrt(200), rel=0.2)


def test_holm_step_down_by_hand():
    # sorted 0.01, 0.03, 0.04 -> 0.03, 0.06, max(0.06, 0.04) = 0.06; NaN stays out of m.
    adjusted = significance.holm(np.array([0.01, 0.04, np.nan, 0.03]))
    np.testing.assert_allclose(adjusted, [0.03, 0.06, np.nan, 0.06])
    assert significance.holm(np.array([0.5, 0.9])).tolist() == [1.0, 1.0]


def test_binary_scores_are_hits_and_misses_only():
    assert significance.is_binary(np.array([0, 100, 100, 0]))
    assert significance.is_binary(np.array([1.0, 0.0]))
    assert not significance.is_binary(np.array([0.0, 0.37]))
    assert not significance.is_binary(np.array([0.2, 0.5, 1.0]))


def test_bootstrap_weights_in_chunks_are_the_dense_draws_and_give_the_same_summary(monkeypatch) -> None:
    """The resamples drawn a few rows at a time are exactly those of one dense draw, and the summary's
    values and intervals (every localization metric, curves included) do not change with the chunk size."""
    import pandas as pd

    from xaibench import report
    from xaibench.harness import build_metrics

    dense = np.random.default_rng(3).multinomial(50, np.full(50, 1 / 50), size=1000).astype(np.float64)
    chunks = list(significance.bootstrap_weight_chunks(50, n_boot=1000, seed=3, max_values=7 * 50))
    assert [len(c) for c in chunks] == [7] * 142 + [6] and np.array_equal(np.concatenate(chunks), dense)
    model = xaibench.load_model("builtin")
    data = xaibench.load_dataset("builtin", image_size=model.input_size, size=24)
    rows = xaibench.evaluate(model, data, ["cam", "saliency"], metrics=build_metrics(None), batch_size=24)
    whole = report.summarize(rows, seed=5)
    monkeypatch.setattr(significance, "BOOTSTRAP_CHUNK_VALUES", 24 * 3)  # 3 resamples at a time
    pd.testing.assert_frame_equal(report.summarize(rows, seed=5), whole, rtol=1e-12, atol=0)  # last bits of split products
    assert report.bootstrap_ci(np.arange(24.0), seed=1) == pytest.approx(
        np.quantile(dense_means := np.random.default_rng(1).multinomial(24, np.full(24, 1 / 24), size=1000)
                    @ np.arange(24.0) / 24, [0.025, 0.975]).tolist(), abs=1e-12) and len(dense_means) == 1000


def test_whole_differences_kept_in_int8_give_the_same_intervals_and_p_values() -> None:
    """Differences of hits (-1, 0, 1) and of counts are kept as int8 (:func:`significance.compact`), an
    eighth of float64's memory; the bootstrap and the sign-flip test give the same numbers, bit for
    bit, whichever they get; fractions stay float64."""
    rng = np.random.default_rng(3)
    hits = rng.integers(0, 2, 3000).astype(np.float64) - rng.integers(0, 2, 3000)
    counts = rng.integers(-5, 6, 3000).astype(np.float64)
    fractions = rng.random(3000) - 0.4
    small = [significance.compact(d) for d in (hits, counts, fractions)]
    assert [d.dtype for d in small] == [np.int8, np.int8, np.float64]
    assert all(np.array_equal(s, d) for s, d in zip(small, (hits, counts, fractions)))
    assert significance.paired_bootstraps(small, n_boot=300) == significance.paired_bootstraps([hits, counts, fractions], n_boot=300)
    assert significance.sign_flip_tests(small, draws=2000) == significance.sign_flip_tests([hits, counts, fractions], draws=2000)
    assert significance.compact(np.array([200.0, 1.0])).dtype == np.float64  # beyond int8
    assert significance.compact(np.array([np.inf, 1.0])).dtype == np.float64
