"""Tests of the real-image data set loaders (xaibench/data/{transforms,imagenet,voc,coco,csvfile}.py).

Every file the tests read is written by them into ``tmp_path``; one test reads the shared
ImageNet subset when it is present.
"""

from __future__ import annotations

import json
import logging
import pickle
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils

import xaibench
from xaibench.data.coco import check_segmentation, load_coco, rasterize
from xaibench.data.csvfile import load_csv
from xaibench.data.imagenet import load_imagenet
from xaibench.data.transforms import load_image, resize_boxes, resize_mask
from xaibench.data.voc import load_voc
from xaibench.errors import DatasetError, UnreadableImageError, XaibenchError

from conftest import SHARED_IMAGENET

SIZE = (224, 224)


# ----------------------------------------------------------------------------- helpers


def write_image(path: Path, width: int, height: int, seed: int = 0, mode: str = "RGB") -> np.ndarray:
    """A random image of the given size; returns its pixels."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    shape = (height, width, 3) if mode == "RGB" else (height, width)
    pixels = rng.integers(0, 256, size=shape, dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return pixels


def voc_xml(path: Path, size: tuple[int, int], objects: list[tuple]) -> None:
    """Pascal-VOC/ILSVRC XML: objects are (name, xmin, ymin, xmax, ymax[, difficult])."""
    path.parent.mkdir(parents=True, exist_ok=True)
    root = ET.Element("annotation")
    ET.SubElement(root, "filename").text = path.stem
    size_node = ET.SubElement(root, "size")
    ET.SubElement(size_node, "width").text = str(size[0])
    ET.SubElement(size_node, "height").text = str(size[1])
    ET.SubElement(size_node, "depth").text = "3"
    for name, x0, y0, x1, y1, *rest in objects:
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = name
        ET.SubElement(obj, "difficult").text = str(int(rest[0]) if rest else 0)
        box = ET.SubElement(obj, "bndbox")
        for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), (x0, y0, x1, y1)):
            ET.SubElement(box, tag).text = str(value)
    ET.ElementTree(root).write(path)


SYNSETS = [
    "n01440764 tench, Tinca tinca",
    "n01443537 goldfish, Carassius auratus",
    "n02085782 Japanese spaniel",
]

# id -> (width, height, [(wnid, x0, y0, x1, y1), ...])
IMAGENET = {
    "ILSVRC2012_val_00000002": (60, 80, [("n01443537", 0, 0, 59, 79)]),
    "ILSVRC2012_val_00000001": (100, 50, [("n02085782", 10, 5, 59, 29), ("n02085782", 60, 30, 99, 49)]),
}


def imagenet_ilsvrc(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "LOC_synset_mapping.txt").write_text("\n".join(SYNSETS) + "\n")
    for k, (image_id, (w, h, objects)) in enumerate(IMAGENET.items()):
        write_image(root / "images" / f"{image_id}.JPEG", w, h, seed=k)
        voc_xml(root / "bbox" / f"{image_id}.xml", (w, h), objects)
    return root


def imagenet_kaggle(root: Path, ilsvrc: Path) -> Path:
    """The Kaggle layout of the same images (the very same JPEG bytes)."""
    val = root / "ILSVRC" / "Data" / "CLS-LOC" / "val"
    val.mkdir(parents=True)
    (root / "LOC_synset_mapping.txt").write_text("\n".join(SYNSETS) + "\n")
    lines = ["ImageId,PredictionString"]
    for image_id, (_, _, objects) in IMAGENET.items():
        (val / f"{image_id}.JPEG").write_bytes((ilsvrc / "images" / f"{image_id}.JPEG").read_bytes())
        lines.append(f"{image_id}," + "".join(f"{w} {x0} {y0} {x1} {y1} " for w, x0, y0, x1, y1 in objects))
    (root / "LOC_val_solution.csv").write_text("\n".join(lines) + "\n")
    return root


# ----------------------------------------------------------------------------- the protocol


def test_resize_boxes_follows_wsolevaluation_int_rule() -> None:
    # 100 x 50 image -> 224 x 224: x scaled by 2.24, y by 4.48, then int().
    out = resize_boxes([[10, 5, 59, 29]], (100, 50), (224, 224))
    assert out.dtype == torch.float32
    assert out.tolist() == [[22.0, 22.0, 132.0, 129.0]]
    # truncation, not rounding; no +1 on the far corner; identity at the same size
    assert resize_boxes([[1, 1, 3, 3]], (4, 4), (6, 6)).tolist() == [[1.0, 1.0, 4.0, 4.0]]
    assert resize_boxes([[0, 0, 99, 49]], (100, 50), (100, 50)).tolist() == [[0.0, 0.0, 99.0, 49.0]]


def test_resize_mask_nearest_known_pixels() -> None:
    small = np.array([[1, 0, 0], [0, 1, 1]], dtype=bool)  # 2 x 3
    up = resize_mask(small, (4, 6))
    assert up.dtype == torch.bool
    assert torch.equal(up, torch.from_numpy(np.kron(small, np.ones((2, 2), dtype=bool))))
    big = np.zeros((6, 4), dtype=np.uint8)
    big[1, 1] = big[3, 3] = big[5, 1] = 7  # PIL nearest samples source pixels 1, 3, 5 (rows) and 1, 3 (cols)
    big[0, 0] = big[2, 2] = 1  # never sampled
    assert resize_mask(big, (3, 2)).tolist() == [[True, False], [False, True], [True, False]]


def test_load_image_is_pil_bilinear_without_crop(tmp_path: Path) -> None:
    write_image(tmp_path / "a.png", 30, 20, mode="L")  # greyscale -> RGB
    image, orig = load_image(tmp_path / "a.png", (16, 24))
    assert orig == (30, 20)
    assert image.shape == (3, 16, 24) and image.dtype == torch.float32
    expected = np.asarray(Image.open(tmp_path / "a.png").convert("RGB").resize((24, 16), Image.BILINEAR))
    assert torch.equal(image, torch.from_numpy(expected.transpose(2, 0, 1).astype(np.float32) / 255.0))
    assert torch.equal(image[0], image[1])


# ----------------------------------------------------------------------------- ImageNet


def test_imagenet_ilsvrc_layout(tmp_path: Path) -> None:
    ds = load_imagenet(str(imagenet_ilsvrc(tmp_path / "inet")), image_size=SIZE)
    assert ds.name == "imagenet" and len(ds) == 2
    assert ds.class_names == ["tench", "goldfish", "Japanese spaniel"]
    first, second = ds[0], ds[1]
    assert (first.id, first.label) == ("ILSVRC2012_val_00000001", 2)
    assert first.boxes.tolist() == [[22, 22, 132, 129], [int(60 * 2.24), int(30 * 4.48), int(99 * 2.24), int(49 * 4.48)]]
    assert first.mask is None and first.difficult is None
    assert first.image.shape == (3, 224, 224)
    assert (second.id, second.label) == ("ILSVRC2012_val_00000002", 1)
    assert second.boxes.tolist() == [[0, 0, int(59 * 224 / 60), int(79 * 224 / 80)]]
    assert ds[-1].id == second.id
    with pytest.raises(IndexError):
        ds[2]


def test_imagenet_kaggle_layout_gives_identical_samples(tmp_path: Path) -> None:
    ilsvrc = imagenet_ilsvrc(tmp_path / "ilsvrc")
    kaggle = imagenet_kaggle(tmp_path / "kaggle", ilsvrc)
    a = load_imagenet(str(ilsvrc), image_size=(96, 128))
    b = load_imagenet(str(kaggle), image_size=(96, 128))
    assert len(a) == len(b) == 2 and a.class_names == b.class_names
    for sa, sb in zip(a, b):
        assert (sa.id, sa.label) == (sb.id, sb.label)
        assert torch.equal(sa.image, sb.image)
        assert torch.equal(sa.boxes, sb.boxes)
        assert sa.mask is sb.mask is None and sa.difficult is sb.difficult is None


def test_imagenet_through_the_entry_point(tmp_path: Path) -> None:
    folder = imagenet_ilsvrc(tmp_path / "inet")
    ds = xaibench.load_dataset("imagenet:" + str(folder), image_size=(224, 224))
    assert len(ds) == 2 and ds[0].boxes.tolist()[0] == [22, 22, 132, 129]


def test_imagenet_label_mapping(tmp_path: Path) -> None:
    folder = str(imagenet_ilsvrc(tmp_path / "inet"))
    # a 1000-class model and a 1000-line mapping: ImageNet order, label = line of the synset
    thousand = [f"class {i}" for i in range(1000)]
    filler = [f"n{90000000 + i:08d} filler {i}" for i in range(3, 1000)]
    mapping = Path(folder) / "LOC_synset_mapping.txt"
    mapping.write_text("\n".join(SYNSETS + filler) + "\n")
    ds = load_imagenet(folder, image_size=SIZE, class_names=thousand)
    assert ds.class_names == thousand and [r.label for r in ds.records] == [2, 1]
    # with a mapping of other than 1000 synsets the line index means nothing to the model: by name
    mapping.write_text("\n".join(SYNSETS) + "\n")
    with pytest.raises(XaibenchError, match="model's classes don't include it"):
        load_imagenet(folder, image_size=SIZE, class_names=thousand)
    # another model: by name (any synset name or the wnid, case-insensitive)
    ds = load_imagenet(folder, image_size=SIZE, class_names=["Carassius auratus", "japanese spaniel"])
    assert [r.label for r in ds.records] == [1, 0]
    ds = load_imagenet(folder, image_size=SIZE, class_names=["n01443537", "n02085782"])
    assert [r.label for r in ds.records] == [1, 0]
    with pytest.raises(XaibenchError, match="Japanese spaniel.*model's classes don't include it"):
        load_imagenet(folder, image_size=SIZE, class_names=["goldfish", "tench"])


def test_imagenet_missing_files(tmp_path: Path) -> None:
    folder = imagenet_ilsvrc(tmp_path / "inet")
    with pytest.raises(FileNotFoundError, match="no folder"):
        load_imagenet(str(tmp_path / "nowhere"), image_size=SIZE)
    (folder / "LOC_synset_mapping.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"no LOC_synset_mapping.txt in .*an ImageNet folder needs"):
        load_imagenet(str(folder), image_size=SIZE)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "LOC_synset_mapping.txt").write_text("\n".join(SYNSETS))
    with pytest.raises(FileNotFoundError, match="images/ or ILSVRC/Data/CLS-LOC/val/"):
        load_imagenet(str(empty), image_size=SIZE)
    (empty / "ILSVRC" / "Data" / "CLS-LOC" / "val").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no LOC_val_solution.csv"):
        load_imagenet(str(empty), image_size=SIZE)


def test_imagenet_unknown_wnid_and_missing_xml(tmp_path: Path) -> None:
    folder = imagenet_ilsvrc(tmp_path / "inet")
    voc_xml(folder / "bbox" / "ILSVRC2012_val_00000002.xml", (60, 80), [("n09999999", 0, 0, 5, 5)])
    with pytest.raises(XaibenchError, match="n09999999"):
        load_imagenet(str(folder), image_size=SIZE)
    (folder / "bbox" / "ILSVRC2012_val_00000002.xml").unlink()
    with pytest.raises(FileNotFoundError, match="ILSVRC2012_val_00000002.xml"):
        load_imagenet(str(folder), image_size=SIZE)


def test_corrupt_image_raises_unreadable_image_error_from_getitem(tmp_path: Path) -> None:
    folder = imagenet_ilsvrc(tmp_path / "inet")
    jpeg = folder / "images" / "ILSVRC2012_val_00000001.JPEG"
    jpeg.write_bytes(jpeg.read_bytes()[:300])  # truncated
    (folder / "images" / "ILSVRC2012_val_00000002.JPEG").write_bytes(b"not an image at all")
    ds = load_imagenet(str(folder), image_size=SIZE)  # the index is built without reading pixels
    for i in range(2):
        with pytest.raises(UnreadableImageError, match=f"ILSVRC2012_val_0000000{i + 1}.JPEG"):
            ds[i]


def test_imagenet_warns_when_xml_size_disagrees(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = imagenet_ilsvrc(tmp_path / "inet")
    voc_xml(folder / "bbox" / "ILSVRC2012_val_00000002.xml", (227, 227), [("n01443537", 0, 0, 59, 79)])
    ds = load_imagenet(str(folder), image_size=SIZE)
    with caplog.at_level(logging.WARNING):
        sample = ds[1]
    assert "227 x 227" in caplog.text and "60 x 80" in caplog.text
    assert sample.boxes.tolist() == [[0, 0, int(59 * 224 / 60), int(79 * 224 / 80)]]  # the file's size wins


@pytest.mark.skipif(not SHARED_IMAGENET.is_dir(), reason="shared ImageNet subset not present")
def test_shared_imagenet_subset() -> None:
    ds = xaibench.load_dataset("imagenet:" + str(SHARED_IMAGENET), image_size=(224, 224))
    assert len(ds) == 300 and len(ds.class_names) == 1000
    assert all(0 <= r.label < 1000 for r in ds.records)
    first = ds[0]
    root = ET.parse(SHARED_IMAGENET / "bbox" / f"{first.id}.xml").getroot()
    expected = [
        [int(float(obj.findtext(f"bndbox/{tag}")) * 224 / 227) for tag in ("xmin", "ymin", "xmax", "ymax")]
        for obj in root.iter("object")
    ]
    assert first.boxes.tolist() == expected
    wnid = root.find("object").findtext("name")
    lines = (SHARED_IMAGENET / "LOC_synset_mapping.txt").read_text().splitlines()
    assert lines[first.label].split()[0] == wnid
    assert first.image.shape == (3, 224, 224)


# ----------------------------------------------------------------------------- Pascal VOC


def voc_folder(root: Path, with_list: bool = False) -> Path:
    write_image(root / "JPEGImages" / "2007_000027.jpg", 100, 50, seed=1)
    write_image(root / "JPEGImages" / "2007_000032.jpg", 40, 40, seed=2)
    voc_xml(
        root / "Annotations" / "2007_000027.xml",
        (100, 50),
        [("person", 11, 6, 60, 30, 0), ("dog", 1, 1, 100, 50, 0), ("person", 71, 11, 80, 20, 1)],
    )
    voc_xml(root / "Annotations" / "2007_000032.xml", (40, 40), [("diningtable", 2, 3, 20, 21, 1)])
    if with_list:
        (root / "ImageSets" / "Main").mkdir(parents=True)
        (root / "ImageSets" / "Main" / "val.txt").write_text("2007_000032\n")
    return root


def test_voc_one_based_boxes_difficult_and_per_class_samples(tmp_path: Path) -> None:
    ds = load_voc(str(voc_folder(tmp_path / "VOC2007")), image_size=SIZE)
    assert ds.name == "voc" and len(ds.class_names) == 20
    assert [r.id for r in ds.records] == ["2007_000027/dog", "2007_000027/person", "2007_000032/diningtable"]
    dog, person, table = ds[0], ds[1], ds[2]
    assert ds.class_names[dog.label] == "dog" and ds.class_names[person.label] == "person"
    # 1-based (1, 1, 100, 50) is the whole 100 x 50 image: 0-based (0, 0, 99, 49)
    assert dog.boxes.tolist() == [[0, 0, int(99 * 2.24), int(49 * 4.48)]]
    # 1-based (11, 6, 60, 30) -> 0-based (10, 5, 59, 29) -> (22, 22, 132, 129)
    assert person.boxes.tolist() == [[22, 22, 132, 129], [int(70 * 2.24), int(10 * 4.48), int(79 * 2.24), int(19 * 4.48)]]
    assert person.difficult.tolist() == [False, True]
    assert dog.difficult.tolist() == [False]
    assert table.boxes.tolist() == [[int(1 * 5.6), int(2 * 5.6), int(19 * 5.6), int(20 * 5.6)]]
    assert table.difficult.tolist() == [True]


def test_voc_image_lists_and_class_names(tmp_path: Path) -> None:
    root = voc_folder(tmp_path / "VOC2007", with_list=True)
    assert [r.id for r in load_voc(str(root), image_size=SIZE).records] == ["2007_000032/diningtable"]
    (root / "ImageSets" / "Main" / "mine.txt").write_text("2007_000027\n")
    ds = load_voc(f"{root}:mine", image_size=SIZE, class_names=["Dining table", "Person", "dog"])
    assert [(r.id, r.label) for r in ds.records] == [("2007_000027/dog", 2), ("2007_000027/person", 1)]
    with pytest.raises(FileNotFoundError, match="ImageSets/Main/nope.txt"):
        load_voc(f"{root}:nope", image_size=SIZE)
    with pytest.raises(XaibenchError, match="'person'.*model's classes don't include it"):
        load_voc(f"{root}:mine", image_size=SIZE, class_names=["dog", "cat"])


def test_voc_missing_folders(tmp_path: Path) -> None:
    (tmp_path / "v" / "JPEGImages").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no Annotations/ in"):
        load_voc(str(tmp_path / "v"), image_size=SIZE)
    with pytest.raises(FileNotFoundError, match="no folder"):
        load_voc(str(tmp_path / "missing"), image_size=SIZE)


# ----------------------------------------------------------------------------- COCO


def coco_folder(root: Path) -> Path:
    """annotations/instances_val2017.json and val2017/: two images, polygon/RLE/crowd instances."""
    write_image(root / "val2017" / "000000000001.jpg", 8, 6, seed=3)
    write_image(root / "val2017" / "000000000002.jpg", 4, 3, seed=4)
    ring = np.zeros((3, 4), dtype=np.uint8)
    ring[0, 0] = ring[2, 3] = 1
    compressed = mask_utils.encode(np.asfortranarray(ring))
    compressed["counts"] = compressed["counts"].decode()
    data = {
        "images": [
            {"id": 2, "file_name": "000000000002.jpg", "width": 4, "height": 3},
            {"id": 1, "file_name": "000000000001.jpg", "width": 8, "height": 6},
        ],
        "categories": [{"id": 18, "name": "dog"}, {"id": 1, "name": "person"}],
        "annotations": [
            # a polygon rectangle with edges x = 2, 6 and y = 1, 4: pixels x 2..5, y 1..3
            {"id": 10, "image_id": 1, "category_id": 1, "bbox": [2, 1, 4, 3], "iscrowd": 0,
             "segmentation": [[2, 1, 6, 1, 6, 4, 2, 4]]},
            {"id": 11, "image_id": 1, "category_id": 1, "bbox": [0, 4, 2, 2], "iscrowd": 1,
             "segmentation": {"size": [6, 8], "counts": [4, 2, 4, 2, 36]}},
            {"id": 12, "image_id": 1, "category_id": 18, "bbox": [0.5, 0.5, 2.0, 1.5], "iscrowd": 0,
             "segmentation": [[0, 0, 2, 0, 2, 2, 0, 2]]},
            # uncompressed RLE, column-major: 3 off, 2 on, 1 off, 4 on, 2 off on a 3 x 4 image
            {"id": 13, "image_id": 2, "category_id": 1, "bbox": [1, 0, 3, 3], "iscrowd": 0,
             "segmentation": {"size": [3, 4], "counts": [3, 2, 1, 4, 2]}},
            {"id": 14, "image_id": 2, "category_id": 1, "bbox": [0, 0, 4, 3], "iscrowd": 0,
             "segmentation": compressed},
        ],
    }
    (root / "annotations").mkdir(parents=True)
    path = root / "annotations" / "instances_val2017.json"
    path.write_text(json.dumps(data))
    return path


def test_coco_boxes_masks_and_crowd(tmp_path: Path) -> None:
    json_path = coco_folder(tmp_path / "coco")
    ds = load_coco(str(json_path), image_size=(6, 8))  # the original size: boxes and masks unchanged
    assert ds.name == "coco" and ds.class_names == ["person", "dog"]  # categories in id order
    assert [r.id for r in ds.records] == ["000000000001/person", "000000000001/dog", "000000000002/person"]
    person, dog = ds[0], ds[1]
    assert person.label == 0 and dog.label == 1
    # [x, y, w, h] -> (x, y, x + w - 1, y + h - 1)
    assert person.boxes.tolist() == [[2, 1, 5, 3], [0, 4, 1, 5]]
    assert person.difficult is None  # a crowd is scored like any instance, as TorchRay does
    expected = np.zeros((6, 8), dtype=bool)
    expected[1:4, 2:6] = True  # the polygon
    expected[4:6, 0:2] = True  # the crowd RLE (runs of 2 in columns 0 and 1, rows 4-5)
    assert torch.equal(person.mask, torch.from_numpy(expected))
    assert dog.boxes.tolist() == [[0, 0, 1, 1]]  # (0.5, 0.5, 1.5, 1.0) truncated
    square = np.zeros((6, 8), dtype=bool)
    square[0:2, 0:2] = True
    assert torch.equal(dog.mask, torch.from_numpy(square))
    # picklable, so DataLoader workers can take it
    assert torch.equal(pickle.loads(pickle.dumps(ds))[0].mask, person.mask)


def test_coco_rle_masks_and_resizing(tmp_path: Path) -> None:
    json_path = coco_folder(tmp_path / "coco")
    small = load_coco(str(json_path), image_size=(3, 4))[2]
    assert small.mask.tolist() == [
        [True, True, True, True],  # uncompressed [[0,1,1,1],[0,1,1,0],[0,0,1,0]] | compressed ring
        [False, True, True, False],
        [False, False, True, True],
    ]
    big = load_coco(str(json_path), image_size=(12, 16))[0]  # 8 x 6 -> 16 x 12: every pixel doubled
    expected = np.zeros((6, 8), dtype=bool)
    expected[1:4, 2:6] = expected[4:6, 0:2] = True
    assert torch.equal(big.mask, torch.from_numpy(np.kron(expected, np.ones((2, 2), dtype=bool))))
    assert big.boxes.tolist() == [[4, 2, 10, 6], [0, 8, 2, 10]]


def test_coco_checks_accept_every_pycocotools_encoding() -> None:
    # runs of 0 to thousands of pixels (numbers of one to several characters in the compressed string,
    # differences to the run two before of either sign): each RLE passes the check and rasterises exactly
    rng = np.random.default_rng(11)
    for height, width, density in [(1, 1, 1.0), (3, 4, 0.0), (7, 300, 0.5), (240, 250, 0.02), (250, 240, 0.98)]:
        mask = rng.random((height, width)) < density
        mask[height // 3 :, width // 4 : width // 2] = True
        compressed = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        flat = mask.T.ravel()  # column-major, as COCO's runs
        bounds = np.concatenate([[0], np.flatnonzero(np.diff(flat.astype(np.int8))) + 1, [flat.size]])
        runs = ([0] if flat[0] else []) + np.diff(bounds).tolist()  # the first run is background
        for segm in ({"size": [height, width], "counts": compressed["counts"].decode()},
                     {"size": [height, width], "counts": runs}):
            check_segmentation(segm, height, width, "here")
            assert np.array_equal(rasterize([segm], height, width), mask)
    square = [[0, 0, 2, 0, 2, 2, 0, 2]]
    check_segmentation(square, 3, 4, "here")
    assert rasterize([square, [], None], 3, 4).tolist() == [[True, True, False, False]] * 2 + [[False] * 4]
    with pytest.raises(DatasetError, match=r"^COCO segmentation 0: the RLE run lengths add up to 11 pixels, not"):
        rasterize([{"size": [3, 4], "counts": [11]}], 3, 4)


def test_coco_image_folder_rule_and_errors(tmp_path: Path) -> None:
    json_path = coco_folder(tmp_path / "coco")
    (tmp_path / "coco" / "val2017").rename(tmp_path / "coco" / "annotations" / "images")
    ds = load_coco(str(json_path), image_size=(6, 8))
    assert ds.records[0].path == tmp_path / "coco" / "annotations" / "images" / "000000000001.jpg"
    (tmp_path / "coco" / "annotations" / "images").rename(tmp_path / "elsewhere")
    with pytest.raises(FileNotFoundError, match="no image folder"):
        load_coco(str(json_path), image_size=(6, 8))
    with pytest.raises(FileNotFoundError, match="instances json"):
        load_coco(str(tmp_path / "missing.json"), image_size=SIZE)
    (tmp_path / "elsewhere").rename(tmp_path / "coco" / "val2017")
    with pytest.raises(XaibenchError, match="'dog'.*model's classes don't include it"):
        load_coco(str(json_path), image_size=SIZE, class_names=["cat", "Person"])
    assert [r.label for r in load_coco(str(json_path), image_size=SIZE, class_names=["Dog", "person"]).records] == [1, 0, 1]


# ----------------------------------------------------------------------------- CSV


def test_csv_grouping_labels_boxes_and_masks(tmp_path: Path) -> None:
    write_image(tmp_path / "img" / "a.png", 100, 50, seed=5)
    write_image(tmp_path / "b.png", 20, 10, seed=6)
    mask = np.zeros((50, 100), dtype=np.uint8)
    mask[5:30, 10:60] = 200
    Image.fromarray(mask).save(tmp_path / "a_mask.png")
    (tmp_path / "boxes.csv").write_text(
        "image,label,x0,y0,x1,y1,mask\n"
        "img/a.png,cat,10,5,59,29,a_mask.png\n"
        f"{tmp_path / 'b.png'},Dog,0,0,19,9,\n"
        "img/a.png,dog,60,30,99,49,\n"
        "img/a.png,Cat,0,0,9,9,\n"
    )
    ds = load_csv(str(tmp_path / "boxes.csv"), image_size=(100, 200))
    # distinct names (spelt as first seen, "Cat" is "cat"), sorted case-insensitively
    assert ds.name == "csv" and ds.class_names == ["cat", "Dog"]
    assert [r.id for r in ds.records] == ["img/a.png/cat", str(tmp_path / "b.png"), "img/a.png/Dog"]
    cat, b, dog = ds[0], ds[1], ds[2]
    assert (cat.label, b.label, dog.label) == (0, 1, 1)
    assert cat.boxes.tolist() == [[20, 10, 118, 58], [0, 0, 18, 18]]  # scale 2 in x and y
    assert b.boxes.tolist() == [[0, 0, int(19 * 10), int(9 * 10)]]
    assert torch.equal(cat.mask, torch.from_numpy(np.kron(mask != 0, np.ones((2, 2), dtype=bool))))
    assert dog.mask is None and b.mask is None
    # the ground truth in the file's pixels, for the metrics defined there (the pointing game)
    assert cat.original.size == (50, 100) and b.original.size == (10, 20)
    assert cat.original.boxes.tolist() == [[10, 5, 59, 29], [0, 0, 9, 9]]
    assert torch.equal(cat.original.mask, torch.from_numpy(mask != 0)) and dog.original.mask is None
    # the model's classes: names matched case-insensitively, indices taken as they are
    ds = load_csv(str(tmp_path / "boxes.csv"), image_size=SIZE, class_names=["bird", "CAT", "dog"])
    assert ds.class_names == ["bird", "CAT", "dog"] and [r.label for r in ds.records] == [1, 2, 2]
    with pytest.raises(XaibenchError, match="line 2.*'cat'.*model's classes don't include it"):
        load_csv(str(tmp_path / "boxes.csv"), image_size=SIZE, class_names=["dog"])


def test_csv_integer_labels_and_errors(tmp_path: Path) -> None:
    write_image(tmp_path / "a.png", 10, 10)
    csv_path = tmp_path / "b.csv"
    csv_path.write_text("image,label,x0,y0,x1,y1\na.png,2,0,0,4,4\na.png,2,5,5,9,9\n")
    ds = load_csv(str(csv_path), image_size=(10, 10))
    assert ds.class_names == ["0", "1", "2"] and len(ds) == 1
    assert ds[0].id == "a.png" and ds[0].label == 2 and ds[0].boxes.tolist() == [[0, 0, 4, 4], [5, 5, 9, 9]]
    with pytest.raises(XaibenchError, match="out of range"):
        load_csv(str(csv_path), image_size=SIZE, class_names=["x", "y"])
    csv_path.write_text("image,label,x0,y0,x1,y1\na.png,2,0,0,4,4\na.png,2,5,five,9,9\n")
    with pytest.raises(XaibenchError, match=r"line 3: y0 is missing or not a number \('five'\)"):
        load_csv(str(csv_path), image_size=SIZE)
    csv_path.write_text("image,label,x0,y0,x1,y1\na.png,2,0,0,4\n")
    with pytest.raises(XaibenchError, match="line 2: y1 is missing"):
        load_csv(str(csv_path), image_size=SIZE)
    csv_path.write_text("image,label,x0,y0,x1,y1\na.png,2,0,0,4,4\na.png,cat,0,0,4,4\n")
    with pytest.raises(XaibenchError, match="mixes class indices and class names"):
        load_csv(str(csv_path), image_size=SIZE)
    csv_path.write_text("image,label,x0,y0\na.png,2,0,0\n")
    with pytest.raises(XaibenchError, match="lacks the column"):
        load_csv(str(csv_path), image_size=SIZE)
    with pytest.raises(FileNotFoundError, match="no file .*image,label,x0,y0,x1,y1"):
        load_csv(str(tmp_path / "none.csv"), image_size=SIZE)
