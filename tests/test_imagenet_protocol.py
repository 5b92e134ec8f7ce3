"""End to end on the shared ImageNet photos: both on-disk layouts give the same numbers."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pandas as pd
import pytest

import xaibench
from xaibench.harness import COLUMNS

from conftest import SHARED_IMAGENET

pytestmark = pytest.mark.skipif(not SHARED_IMAGENET.is_dir(), reason="needs ../shared/data/imagenet-val-300")


def _kaggle_copy(ilsvrc: Path, root: Path, n: int) -> list[str]:
    """The first n images of an ILSVRC-layout folder, laid out as Kaggle's ImageNet localization release."""
    images = root / "ILSVRC" / "Data" / "CLS-LOC" / "val"
    images.mkdir(parents=True)
    lines, ids = ["ImageId,PredictionString"], []
    for path in sorted((ilsvrc / "images").glob("*.JPEG"))[:n]:
        (images / path.name).symlink_to(path)
        objects = ET.parse(ilsvrc / "bbox" / f"{path.stem}.xml").findall("object")
        boxes = " ".join(
            f"{o.find('name').text} " + " ".join(o.find(f"bndbox/{k}").text for k in ("xmin", "ymin", "xmax", "ymax"))
            for o in objects
        )
        lines.append(f"{path.stem},{boxes} ")
        ids.append(path.stem)
    (root / "LOC_val_solution.csv").write_text("\n".join(lines) + "\n")
    (root / "LOC_synset_mapping.txt").symlink_to(ilsvrc / "LOC_synset_mapping.txt")
    return ids


def test_ilsvrc_and_kaggle_layouts_give_the_same_numbers(tmp_path) -> None:
    ids = _kaggle_copy(SHARED_IMAGENET, tmp_path, n=6)
    model = xaibench.load_model("efficientnet_lite0")
    results = []
    for folder in (SHARED_IMAGENET, tmp_path):
        data = xaibench.load_dataset(f"imagenet:{folder}", image_size=(224, 224), class_names=model.class_names)
        frame = xaibench.evaluate(model, data, ["cam", "center"], n=6, batch_size=3)
        results.append(frame[COLUMNS])
    assert results[0][results[0].method == "cam"].image_id.tolist() == ids
    pd.testing.assert_frame_equal(results[0], results[1])


def test_cli_on_imagenet_reports_every_box_metric(tmp_path, capsys) -> None:
    from xaibench.cli import main

    argv = ["run", "--model", "efficientnet_lite0", "--dataset", f"imagenet:{SHARED_IMAGENET}",
            "--methods", "cam,gradcam,saliency,center,random", "--n", "8", "--no-report", "--out", str(tmp_path)]
    assert main(argv) == 0
    summary = pd.read_csv(tmp_path / "summary.csv")
    expected = {"top1_cls", "gt_known_loc", "top1_loc", "top5_loc", "maxboxacc", "maxboxacc_v2",
                "pointing", "pointing_per_class", "energy_pointing"}
    for method, group in summary.groupby("method"):
        assert expected <= set(group.metric), method
        assert "pxap" not in set(group.metric)  # ImageNet has boxes, no masks
    assert set(summary.method) == {"cam", "gradcam", "saliency", "center", "random"}
    percentages = summary[~summary.metric.isin(["nonfinite_maps", "constant_maps"])]
    assert percentages.value.between(0, 100).all() and (percentages.ci_low <= percentages.ci_high).all()
    per_image = pd.read_parquet(tmp_path / "per_image")
    metrics = expected - {"pointing_per_class", "maxboxacc", "maxboxacc_v2"}
    assert len(per_image) == 40 and {*metrics, "box_iou_curve", "box_iou_curve_v2"} <= set(per_image)
    table = xaibench.report.per_image_table(xaibench.harness.read_per_image(tmp_path))
    by_method = table.groupby("method").maxboxacc.mean()
    assert by_method["cam"] == summary.set_index(["method", "metric"]).value["cam", "maxboxacc"]
    curves = pd.read_csv(tmp_path / "box_accuracy_curves.csv")
    assert len(curves) == 5 * 100
    assert "| cam |" in capsys.readouterr().out
