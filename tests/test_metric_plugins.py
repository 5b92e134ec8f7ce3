"""Metrics as plugins: the registry, the CLI's --metrics, and the localization numbers unchanged by
the move onto the plugin interface (summary.csv files written before it, in tests/data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import xaibench
from xaibench import cli, metric
from xaibench.errors import UnknownNameError, XaibenchError
from xaibench.metric import DEFAULT_METRICS, FAMILIES, Metric, MetricInput, create_metric, register_metric

from conftest import SHARED_IMAGENET as SHARED

DATA = Path(__file__).parent / "data"


def test_every_metric_is_declared_and_describes_itself() -> None:
    names = metric.available_metrics()
    assert set(DEFAULT_METRICS) <= set(names)
    assert {"deletion_auc", "insertion_auc", "average_drop", "increase_in_confidence", "road_morf", "road_lerf"} <= set(names)
    for name in names:
        built = create_metric(name)
        assert built.name == name and built.title and built.description and built.family in FAMILIES
        assert built.unit in ("%", "AUC", "count", "probability", "ratio")
        assert all(kind in ("scalar", "array") for kind in built.columns.values())
        assert type(built).__doc__.splitlines()[0].strip()


def test_unknown_metric_and_option_errors() -> None:
    with pytest.raises(UnknownNameError, match="unknown metric 'deletion'; did you mean 'deletion_auc'"):
        create_metric("deletion")
    with pytest.raises(XaibenchError, match="metric 'deletion_auc' has no option 'step'; its options: steps=224"):
        create_metric("deletion_auc", step=3)
    with pytest.raises(XaibenchError, match="metric 'road_morf': option fractions must be fractions in"):
        create_metric("road_morf", fractions=(0.5, 1.5))


def test_cli_rejects_bad_metrics_before_loading_anything(capsys) -> None:
    assert cli.main(["run", "--metrics", "default,nope", "--n", "2"]) == 2
    assert "unknown metric 'nope'" in capsys.readouterr().err
    assert cli.main(["run", "--metrics", "deletion_auc(substrate='grey')", "--n", "2"]) == 2
    assert "option substrate must be one of" in capsys.readouterr().err
    assert cli.main(["run", "--metrics", "deletion_auc(steps=10),deletion_auc(steps=20)", "--n", "2"]) == 2
    assert "--metrics names 'deletion_auc' more than once" in capsys.readouterr().err
    assert cli.main(["run", "--metrics", "default,maxboxacc_v2(foo=1)", "--n", "2"]) == 2  # a metric without options
    assert "metric 'maxboxacc_v2' has no option 'foo'; its options: none" in capsys.readouterr().err


def test_a_column_has_one_owner() -> None:
    class Copy(Metric):
        """Writes pointing's column."""

        columns = {"pointing": "scalar"}

        def score(self, batch: MetricInput):
            return {}

    Copy.name = "copy"
    with pytest.raises(XaibenchError, match="metrics 'pointing' and 'copy' both write the column 'pointing'"):
        metric.with_requirements([create_metric("pointing"), Copy()])


def test_requirements_are_added() -> None:
    names = [m.name for m in metric.with_requirements([create_metric("pointing_per_class")])]
    assert names == ["pointing", "pointing_per_class"]


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["run", "--methods", "cam,gradcam,saliency,center,random", "--n", "48", "--batch-size", "16"],
         "summary_builtin_cam_gradcam_saliency_center_random_n48.csv"),
        (["run", "--model", "efficientnet_lite0", "--dataset", f"imagenet:{SHARED}", "--methods",
          "cam,gradcam,saliency,random", "--n", "12", "--batch-size", "4"],
         "summary_imagenet_lite0_cam_gradcam_saliency_random_n12.csv"),
    ],
)
def test_localization_summary_is_unchanged_by_metric_plugins(tmp_path, argv, expected) -> None:
    """The same runs, written before the metrics became plugins (summary.csv was then byte for byte
    the same): the same rows and n; every value and interval within 0.01 points. The maps have since
    changed by float rounding alone (the network's input is channels-last, Model.channels_last),
    which moves PxAP and energy pointing by at most 0.0022 points and no hit or miss. The pointing
    rows were written again when the pointing game moved to the image files' pixels (TorchRay's
    frame): on these 12 photos (227 px files fed at 224) one saliency map's upsampled maximum moves
    from 39 px to 9 px of its box (83.3 -> 91.7); no other method's value changed."""
    if "imagenet" in expected and not SHARED.is_dir():
        pytest.skip("the shared ImageNet photos are not beside the project")
    assert cli.main(argv + ["--no-report", "--out", str(tmp_path / "run")]) == 0  # summary.csv is the point
    ours, before = pd.read_csv(tmp_path / "run" / "summary.csv"), pd.read_csv(DATA / expected)
    keys = ["model", "method", "metric", "n"]
    assert ours[keys].equals(before[keys])
    numbers = ["value", "ci_low", "ci_high"]
    assert np.allclose(ours[numbers], before[numbers], rtol=0, atol=0.01, equal_nan=True)


def test_a_metric_registered_at_run_time_is_scored_and_summarised(temporary_name) -> None:
    @register_metric(temporary_name(metric.METRICS, "test-peak-left"))
    class PeakLeft(Metric):
        """The map's maximum lies in the image's left half."""

        title = "peak left"
        description = "the map's maximum lies in the left half"
        columns = {"peak_left": "scalar"}
        scale = 100.0

        def score(self, batch: MetricInput):
            width = batch.maps.shape[-1]
            columns = batch.maps.reshape(len(batch), -1).argmax(1) % width
            return {"peak_left": (columns < width / 2).astype(float)}

    model = xaibench.load_model("builtin")
    data = xaibench.load_dataset("builtin", image_size=(64, 64), size=8, seed=0)
    rows = xaibench.evaluate(model, data, ["center", "random"], metrics=["test-peak-left", "top1_cls"], batch_size=4)
    assert list(rows.columns[-2:]) == ["peak_left", "top1_cls"]
    assert set(rows.peak_left) <= {0.0, 1.0} and rows.peak_left.notna().all()
    summary = xaibench.summarize(rows, [create_metric("test-peak-left")])
    assert summary.metric.tolist() == ["test-peak-left"] * 2
    random_rows = rows[rows.method == "random"]
    assert summary.set_index("method").loc["random", "value"] == pytest.approx(100 * random_rows.peak_left.mean())


def test_run_with_faithfulness_metrics_records_options_and_units(tmp_path) -> None:
    out = tmp_path / "run"
    argv = ["run", "--methods", "center,random", "--metrics", "top1_cls,deletion_auc(steps=16),average_drop,road_morf(fractions=(0.5,))",
            "--n", "4", "--batch-size", "4", "--seed", "3", "--out", str(out)]
    assert cli.main(argv) == 0
    config = xaibench.run_folder.read_config(out)
    assert config["metrics"] == ["top1_cls", "deletion_auc", "average_drop", "road_morf"]
    assert config["metric_options"]["deletion_auc"] == {"steps": 16, "substrate": "zero", "batch_size": None}
    assert config["metric_options"]["road_morf"]["seed"] == 3  # the run's seed
    summary = pd.read_csv(out / "summary.csv")
    assert set(summary.metric) == {"top1_cls", "deletion_auc", "average_drop", "road_morf"}
    per_image = xaibench.harness.read_per_image(out, xaibench.report.run_metrics(config))
    assert per_image.deletion_curve.map(len).eq(17).all()
    assert np.allclose(summary.set_index(["method", "metric"]).loc[("random", "deletion_auc"), "value"],
                       per_image[per_image.method == "random"].deletion_auc.mean())
    markdown = (out / "summary.md").read_text()
    assert "deletion_auc (Deletion AUC, AUC, lower is better)" in markdown and "(steps=16" in markdown
    # one table per family, in FAMILIES order, each holding its own metrics only
    sections = markdown.split("## ")[1:]
    assert [s.split("\n")[0] for s in sections] == ["Classification", "Faithfulness"]
    assert "deletion_auc" in sections[1] and "deletion_auc" not in sections[0].split("- top1_cls")[0]
    # the mean curves: per method and metric that keeps one, the mean of the per-image curves
    curves = pd.read_csv(out / "curves.csv")
    assert set(curves.metric) == {"deletion_auc", "road_morf"}
    deletion = curves[(curves.metric == "deletion_auc") & (curves.method == "random")]
    expected = np.stack(per_image[per_image.method == "random"].deletion_curve.to_list()).mean(0)
    assert np.allclose(deletion.value, expected) and np.allclose(deletion.x, np.linspace(0, 1, 17))
    assert curves[curves.metric == "road_morf"].x.tolist() == [0.5, 0.5]  # one fraction, two methods
    assert (out / "curves.png").stat().st_size > 10_000
    # Resuming with other metric options is refused, naming the field.
    assert cli.main(argv[:4] + ["deletion_auc(steps=8)"] + argv[5:] + ["--resume"]) == 2


def test_a_required_metric_named_with_options_keeps_them() -> None:
    """pointing_per_class requires pointing; naming pointing after it, with options, must not fall back
    to pointing's defaults."""
    chosen = metric.with_requirements(
        [metric.create_metric("pointing_per_class"), metric.create_metric("pointing", tolerance=5)]
    )
    assert [m.name for m in chosen] == ["pointing", "pointing_per_class"]
    assert chosen[0].options["tolerance"] == 5
