"""Summaries: bootstrap intervals, the long-format table, and data-set-level metrics."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from xaibench.report import (
    SUMMARY_COLUMNS,
    bootstrap_ci,
    box_accuracy_curves,
    per_image_table,
    summarize,
    summary_table,
    write_summary,
)


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


def _curve(best_iou: float, at: int) -> np.ndarray:
    """An IoU-versus-threshold curve that reaches ``best_iou`` only at threshold index ``at``."""
    curve = np.zeros(100)
    curve[at] = best_iou
    return curve


def _per_image() -> pd.DataFrame:
    n = 4
    return pd.DataFrame({
        "model": "m",
        "index": [0, 1, 2, 3] * 2,
        "image_id": list("abcd") * 2,
        "method": ["cam"] * n + ["saliency"] * n,
        "label": [0, 0, 0, 1] * 2,
        "prediction": [0, 0, 1, 1] * 2,
        "target": [0, 0, 0, 1] * 2,
        "status": ["ok"] * 8,
        "top1_cls": [True, True, False, True] * 2,
        "gt_known_loc": [True, True, False, False, False, False, False, False],
        "top1_loc": [True, True, False, False, False, False, False, False],
        "top5_loc": [True, True, False, False, False, False, False, False],
        "mean_iou": [0.8, 0.6, 0.4, 0.2, 0.1, 0.1, 0.1, 0.1],
        # Class 0: 3 images, 2 hits; class 1: 1 image, a hit; one difficult pair (NaN) left out.
        "pointing": [1.0, 1.0, 0.0, 1.0, 1.0, np.nan, 0.0, 0.0],
        "energy_pointing": [0.5, 0.5, 0.25, 0.75, 0.1, 0.1, 0.1, np.nan],
        # cam: images a, b right at threshold 30, c and d at 60 -> best threshold: 2 of 4 (50%).
        "box_iou_curve": [_curve(0.6, 30), _curve(0.6, 30), _curve(0.9, 60), _curve(0.6, 61)] + [np.zeros(100)] * 4,
        "box_iou_curve_v2": [_curve(0.6, 30), _curve(0.6, 30), _curve(0.9, 60), _curve(0.6, 61)] + [np.zeros(100)] * 4,
        "pxap_hist": [None] * 8,
    })


def test_summarize_long_format_known_values() -> None:
    summary = summarize(_per_image())
    assert list(summary.columns) == SUMMARY_COLUMNS
    value = summary.set_index(["method", "metric"]).value
    n = summary.set_index(["method", "metric"]).n
    assert value["cam", "top1_cls"] == 75.0 and value["cam", "gt_known_loc"] == 50.0
    assert value["cam", "pointing"] == 75.0
    assert value["cam", "pointing_per_class"] == pytest.approx((2 / 3 + 1) / 2 * 100)
    assert value["saliency", "pointing"] == pytest.approx(100 / 3) and n["saliency", "pointing"] == 3
    assert value["saliency", "pointing_per_class"] == pytest.approx(25.0)  # class 0: 1 of 2, class 1: 0 of 1
    assert value["cam", "energy_pointing"] == 50.0 and n["saliency", "energy_pointing"] == 3
    assert value["cam", "mean_iou"] == pytest.approx(50.0)
    # MaxBoxAcc: at threshold 30 images a, b (IoU 0.6 >= 0.5); at 60 only c; at 61 only d.
    assert value["cam", "maxboxacc"] == 50.0 and value["saliency", "maxboxacc"] == 0.0
    # V2: delta 0.3 and 0.5 -> 50 (threshold 30); delta 0.7 -> 25 (only c, IoU 0.9, at 60).
    assert value["cam", "maxboxacc_v2"] == pytest.approx((50 + 50 + 25) / 3)
    assert ("cam", "pxap") not in value.index  # no masks, no PxAP
    intervals = summary
    assert (intervals.ci_low <= intervals.value + 1e-9).all() and (intervals.value <= intervals.ci_high + 1e-9).all()
    assert value["cam", "nonfinite_maps"] == 0 and n["cam", "nonfinite_maps"] == 4


def test_per_image_table_maxboxacc_columns_average_to_the_summary() -> None:
    per_image = _per_image()
    table = per_image_table(per_image)
    assert "box_iou_curve" not in table.columns
    cam = table[table.method == "cam"]
    assert cam.maxboxacc.tolist() == [100.0, 100.0, 0.0, 0.0]
    summary = summarize(per_image).set_index(["method", "metric"]).value
    for metric in ("maxboxacc", "maxboxacc_v2"):
        assert cam[metric].mean() == pytest.approx(summary["cam", metric])


def test_box_accuracy_curves() -> None:
    curves = box_accuracy_curves(_per_image())
    cam = curves[curves.method == "cam"].set_index("threshold")
    assert len(cam) == 100 and cam.loc[0.3, "maxboxacc@0.5"] == 50.0 and cam.loc[0.6, "maxboxacc_v2@0.7"] == 25.0


def test_written_files(tmp_path) -> None:
    from xaibench.harness import RunTables, build_metrics

    per_image = _per_image()
    RunTables.open(tmp_path, build_metrics(None)).per_image.append(per_image)
    (tmp_path / "config.json").write_text(json.dumps({"model": "m", "dataset": "d", "seed": 0, "n": 4,
                                                      "methods": ["cam", "saliency"]}))
    summary = write_summary(tmp_path)
    assert pd.read_csv(tmp_path / "summary.csv").shape == summary.shape
    pd.testing.assert_frame_equal(summary, summarize(per_image))  # read back from the journal: the same numbers
    markdown = (tmp_path / "summary.md").read_text()
    assert "| cam | 4 | 75.0 [" in markdown and "| saliency |" in markdown and "partial" not in markdown
    assert list(summary_table(summary).index) == ["cam", "saliency"]
    assert pd.read_csv(tmp_path / "box_accuracy_curves.csv").shape == (200, 7)


def test_a_partial_run_is_summarised_and_says_so(tmp_path) -> None:
    from xaibench.harness import RunTables, build_metrics

    RunTables.open(tmp_path, build_metrics(None)).per_image.append(_per_image().iloc[:6])
    (tmp_path / "config.json").write_text(json.dumps({"seed": 0, "n": 4, "methods": ["cam", "saliency"]}))
    summary = write_summary(tmp_path)
    assert summary[(summary.method == "saliency") & (summary.metric == "top1_cls")].n.item() == 2
    assert "**partial run** of 4 images" in (tmp_path / "summary.md").read_text()


def test_failed_and_constant_maps_are_counted_not_scored() -> None:
    per_image = _per_image()
    failed = per_image.index[per_image.method == "cam"][:2]
    per_image.loc[failed, "status"] = "nonfinite"
    for column in ("gt_known_loc", "top1_loc", "top5_loc", "mean_iou", "pointing", "energy_pointing"):
        per_image[column] = per_image[column].astype(float)
        per_image.loc[failed, column] = np.nan
    for column in ("box_iou_curve", "box_iou_curve_v2"):
        per_image[column] = [None if k in failed else c for k, c in zip(per_image.index, per_image[column])]
    per_image.loc[per_image.index[-1], "status"] = "constant"
    summary = summarize(per_image).set_index(["method", "metric"])
    assert summary.value["cam", "nonfinite_maps"] == 2 and summary.value["saliency", "constant_maps"] == 1
    assert summary.value["cam", "constant_maps"] == 0
    assert summary.n["cam", "gt_known_loc"] == 2 and summary.value["cam", "gt_known_loc"] == 0.0  # c, d: misses
    assert summary.n["cam", "maxboxacc"] == 2 and summary.value["cam", "maxboxacc"] == 50.0  # c at 60 or d at 61
    assert summary.n["cam", "top1_cls"] == 4  # the classification does not depend on the map
    table = per_image_table(per_image)
    assert table[table.method == "cam"].maxboxacc.isna().tolist() == [True, True, False, False]


def test_seconds_per_image_of_the_method_and_of_its_metrics() -> None:
    from xaibench.report import seconds_per_image

    timings = pd.DataFrame({
        "model": "m", "batch": [0, 0, 32, 32, 64], "method": ["cam", "rise", "cam", "rise", "cam"],
        "images": [32, 32, 32, 32, 16], "seconds": [4.0, 64.0, 2.4, 64.0, 1.6],
        "metric_seconds": [1.6, 3.2, 1.6, 3.2, np.nan],  # the last row from a run of 0.3.0: no metric time
    })
    method = seconds_per_image(timings)
    assert method[("m", "cam")] == pytest.approx(8.0 / 80) and method[("m", "rise")] == pytest.approx(2.0)
    metrics = seconds_per_image(timings, "metric_seconds")
    assert metrics[("m", "cam")] == pytest.approx(3.2 / 64) and metrics[("m", "rise")] == pytest.approx(0.1)
    assert seconds_per_image(timings.drop(columns="metric_seconds"), "metric_seconds").empty


def test_summary_md_shows_the_seconds_per_image_in_the_method_and_in_the_metrics(tmp_path) -> None:
    from xaibench.harness import TIMING_COLUMNS, RunTables, build_metrics

    journals = RunTables.open(tmp_path, build_metrics(None))
    journals.per_image.append(_per_image())
    journals.timings.append(pd.DataFrame([("m", 0, "cam", 4, 0.2, 0.06), ("m", 0, "saliency", 4, 0.8, 0.04)],
                                         columns=TIMING_COLUMNS))
    (tmp_path / "config.json").write_text(json.dumps({"seed": 0, "n": 4, "methods": ["cam", "saliency"]}))
    write_summary(tmp_path)
    lines = (tmp_path / "summary.md").read_text().splitlines()
    header = next(line for line in lines if line.startswith("| method"))
    assert header.endswith("| s/img | metric s/img |")
    assert next(line for line in lines if line.startswith("| cam |")).endswith("| 0.05 | 0.015 |")
    assert next(line for line in lines if line.startswith("| saliency |")).endswith("| 0.2 | 0.01 |")


def test_a_folder_summarised_from_prepared_parts_is_summarised_as_from_its_rows(tmp_path) -> None:
    """write_summary reads the arrays a part at a time into the metrics' prepared rows; the summary, the
    box-accuracy curves and the per-image values are those of the rows read whole, bit for bit, with
    rows written over (a resumed image), rows without arrays, and parts of several sizes."""
    from xaibench.comparison import load_run
    from xaibench.harness import RunTables, build_metrics, prepared_groups, read_per_image

    rng = np.random.default_rng(5)
    rows = pd.concat([_per_image().assign(index=lambda f, k=k: f["index"] + 4 * k) for k in range(3)], ignore_index=True)
    rows["image_id"] = [f"i{i}" for i in rows["index"]]
    rows["box_iou_curve"] = [None if k % 5 == 2 else np.round(rng.random(100), 1) for k in range(len(rows))]
    rows["box_iou_curve_v2"] = [np.round(rng.random(100), 1) for _ in range(len(rows))]
    rows["pxap_hist"] = [None if k % 4 == 1 else rng.integers(0, 300, (2, 102)) for k in range(len(rows))]
    metrics = build_metrics(None)
    table = RunTables.open(tmp_path, metrics).per_image
    for part in (rows.iloc[:5], rows.iloc[5:16], rows.iloc[16:]):
        table.append(part.reset_index(drop=True))
    again = rows.iloc[[1, 9]].copy()  # cam on images 1 and 5 scored again: their rows are the latest, put back in order
    again["box_iou_curve"] = [np.full(100, 0.95), None]
    again["pxap_hist"] = [rng.integers(0, 300, (2, 102)), None]
    table.append(again.reset_index(drop=True))
    (tmp_path / "config.json").write_text(json.dumps({"seed": 3, "n": 12, "methods": ["cam", "saliency"]}))

    whole = read_per_image(tmp_path, metrics)
    expected = summarize(whole, metrics, seed=3)
    assert expected.equals(write_summary(tmp_path))
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "summary.csv"), expected.astype({"n": int}), check_exact=True)
    assert pd.read_csv(tmp_path / "box_accuracy_curves.csv").equals(
        pd.read_csv(pd.io.common.StringIO(box_accuracy_curves(whole).to_csv(index=False))))
    groups = list(prepared_groups(tmp_path, metrics))
    for (group, prepared), method in zip(groups, ["cam", "saliency"]):
        rows_of = whole[whole.method == method].reset_index(drop=True)
        assert "box_iou_curve" not in group and group["index"].tolist() == rows_of["index"].tolist()
        # What is kept is compact: a byte a map threshold, the counts (< 300) in 2 bytes.
        assert prepared["maxboxacc"].values.dtype == bool and prepared["pxap"].values.dtype == np.uint16
        for name in ("maxboxacc", "maxboxacc_v2", "pxap"):
            metric = next(m for m in metrics if m.name == name)
            assert metric.count(group, prepared[name]) == metric.count(rows_of)
            if name != "pxap":
                got, want = metric.per_image_values(group, prepared[name]), metric.per_image_values(rows_of)
                assert np.array_equal(got, want, equal_nan=True)
    run = load_run(tmp_path)
    pd.testing.assert_frame_equal(run.summary, expected, check_exact=True)
