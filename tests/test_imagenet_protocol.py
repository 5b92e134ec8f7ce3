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
        results.append(frame[[c for c in COLUMNS if c != "seconds"]])
    assert results[0][results[0].method == "cam"].image_id.tolist() == ids
    pd.testing.assert_frame_equal(results[0], results[1])
