"""Summaries: bootstrap intervals and the long-format table."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from xaibench.report import SUMMARY_COLUMNS, bootstrap_ci, summarize, summary_table, write_summary


def test_bootstrap_ci_known_cases() -> None:
    assert bootstrap_ci(np.full(20, 3.0)) == (3.0, 3.0)
    assert all(np.isnan(bootstrap_ci(np.array([]))))
    values = np.random.default_rng(0).normal(10, 2, size=400)
    low, high = bootstrap_ci(values)
    # The normal-theory 95% interval of the mean is mean +- 1.96 * s / sqrt(n), about +-0.2 here.
    half = 1.96 * values.std(ddof=1) / np.sqrt(values.size)
    assert low == pytest.approx(values.mean() - half, abs=0.05)
    assert high == pytest.approx(values.mean() + half, abs=0.05)
    assert bootstrap_ci(values, seed=1) != (low, high)  # the seed matters, and is the only randomness
    assert bootstrap_ci(values, seed=1) == bootstrap_ci(values, seed=1)


def _per_image() -> pd.DataFrame:
    return pd.DataFrame({
        "image_id": ["a", "b", "c", "d"] * 2,
        "method": ["cam"] * 4 + ["saliency"] * 4,
        "iou": [0.8, 0.6, 0.4, 0.2, 0.1, 0.1, 0.1, 0.1],
        "loc_correct": [True, True, False, False, False, False, False, False],
        "pointing_hit": [True, True, True, False, True, False, False, False],
        "seconds": [0.01] * 8,
    })


def test_summarize_long_format_known_values() -> None:
    summary = summarize(_per_image())
    assert list(summary.columns) == SUMMARY_COLUMNS
    value = summary.set_index(["method", "metric"]).value
    assert value["cam", "loc_acc"] == 50.0 and value["cam", "pointing"] == 75.0
    assert value["cam", "mean_iou"] == pytest.approx(50.0) and value["saliency", "mean_iou"] == pytest.approx(10.0)
    assert value["saliency", "loc_acc"] == 0.0
    assert (summary.n == 4).all()
    assert (summary.ci_low <= summary.value + 1e-9).all() and (summary.value <= summary.ci_high + 1e-9).all()


def test_written_files(tmp_path) -> None:
    summary = summarize(_per_image())
    write_summary(tmp_path, summary, {"model": "m", "dataset": "d", "seed": 0})
    assert pd.read_csv(tmp_path / "summary.csv").shape == summary.shape
    markdown = (tmp_path / "summary.md").read_text()
    assert "| cam | 4 | 50.0 [" in markdown and "| saliency |" in markdown
    assert json.loads((tmp_path / "config.json").read_text())["model"] == "m"
    assert list(summary_table(summary).index) == ["cam", "saliency"]
