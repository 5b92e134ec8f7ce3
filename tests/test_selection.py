"""Choosing a run's images (xaibench/data/selection.py): by class, by id, a seeded sample, within the first n."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from xaibench.data import load_dataset
from xaibench.data.selection import Selection, describe, parse_classes, parse_ids, select_indices
from xaibench.data.shapes import SHAPE_CLASSES, ShapesDataset
from xaibench.errors import XaibenchError

#: The labels of the first 12 images of the built-in test split (seed 0), by index.
LABELS = [4, 1, 2, 5, 4, 4, 2, 3, 2, 1, 5, 4]


@pytest.fixture(scope="module")
def shapes() -> ShapesDataset:
    dataset = ShapesDataset(12)
    assert [dataset[i].label for i in range(12)] == LABELS
    return dataset


@pytest.mark.parametrize(
    ("selection", "n", "seed", "expected"),
    [
        (Selection(classes=("ring",)), None, 0, [0, 4, 5, 11]),
        (Selection(classes=(" Triangle", 1)), None, 0, [1, 2, 6, 8, 9]),  # a name in any case, and an index
        (Selection(classes=("ring",)), 5, 0, [0, 4]),  # within the first 5
        (Selection(ids=("shapes-test-000003", "shapes-test-000001", "shapes-test-000003")), None, 0, [1, 3]),
        # default_rng(0).choice(12, 3, replace=False) = [7, 6, 8]; with seed 1, [5, 4, 9]
        (Selection(sample=3), None, 0, [6, 7, 8]),
        (Selection(sample=3), None, 1, [4, 5, 9]),
        # the rings are [0, 4, 5, 11]; default_rng(0).choice(4, 2, replace=False) = [2, 3]
        (Selection(classes=("ring",), sample=2), None, 0, [5, 11]),
        (Selection(classes=("ring", "disk"), ids=("shapes-test-000004", "shapes-test-000005")), None, 0, [4, 5]),
    ],
)
def test_the_indices_chosen(shapes, selection, n, seed, expected) -> None:
    assert select_indices(shapes, selection, n=n, seed=seed) == expected


def test_a_sample_is_the_formula_s_draw_and_the_same_for_the_same_seed(shapes) -> None:
    for seed in range(5):
        drawn = np.random.default_rng(seed).choice(12, size=4, replace=False)
        assert select_indices(shapes, Selection(sample=4), seed=seed) == sorted(drawn.tolist())
    assert select_indices(shapes, Selection(sample=12), seed=3) == list(range(12))


@pytest.mark.parametrize(
    ("selection", "n", "message"),
    [
        (Selection(classes=("rnig",)), None, "--classes: no class 'rnig' among the model's 6 classes (disk, square, "),
        (Selection(classes=(6,)), None, "--classes: class index 6 is out of range; the classes are 0 to 5"),
        (Selection(classes=("disk",)), None, "--classes disk: the data set holds no image of that class"),
        (Selection(classes=("cross",)), 7, "--classes cross: the first 7 images of the data set hold no image of that class"),
        (Selection(ids=("shapes-test-000099", "x")), None, "--ids: 'shapes-test-000099' and 1 more are not in the data set; give ids as"),
        (Selection(ids=("shapes-test-000011",)), 10, "--ids: 'shapes-test-000011' is not in the first 10 images of the data set;"),
        (Selection(sample=13), None, "--sample 13: the data set holds only 12 images to draw from; ask for at most 12"),
        (Selection(classes=("star",), sample=3), None, "holds only 2 images of the classes chosen to draw from"),
        (Selection(sample=0), None, "--sample must be at least 1, got 0"),
        (Selection(classes=()), None, "--classes names no class"),
        (Selection(ids=()), None, "--ids names no image"),
    ],
)
def test_a_selection_that_cannot_be_made_is_one_line(shapes, selection, n, message) -> None:
    with pytest.raises(XaibenchError) as error:
        select_indices(shapes, selection, n=n, class_names=SHAPE_CLASSES)
    assert message in str(error.value) and "\n" not in str(error.value), str(error.value)


def test_classes_are_chosen_from_the_annotations_without_reading_an_image(tmp_path) -> None:
    """A data set read from disk names each label without opening its image: a missing file is still chosen."""
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(tmp_path / "a.png")
    rows = ["image,label,x0,y0,x1,y1", "a.png,disk,1,1,9,9", "gone.png,star,1,1,9,9", "a.png,star,2,2,9,9"]
    (tmp_path / "boxes.csv").write_text("\n".join(rows) + "\n")
    dataset = load_dataset(f"csv:{tmp_path / 'boxes.csv'}", image_size=32, class_names=SHAPE_CLASSES)
    assert select_indices(dataset, Selection(classes=("star",))) == [1, 2]


def test_ids_from_a_list_or_a_file(tmp_path) -> None:
    assert parse_ids("a.jpg, b.jpg,,c.jpg") == ("a.jpg", "b.jpg", "c.jpg")
    assert parse_ids("a.jpg,") == ("a.jpg",)
    assert parse_ids("no-such-file") == ("no-such-file",)
    listing = tmp_path / "ids.txt"
    listing.write_text("x 1.jpg\n\n  y.jpg  \r\nz.jpg")
    assert parse_ids(str(listing)) == ("x 1.jpg", "y.jpg", "z.jpg")
    picture = tmp_path / "a.png"
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(picture)
    with pytest.raises(XaibenchError, match=r"is not a text file of ids \(one a line\); to name that one id, end it with a comma"):
        parse_ids(str(picture))


def test_classes_from_a_list() -> None:
    assert parse_classes("disk, 3,Dining table") == ("disk", 3, "Dining table")


def test_what_config_json_records() -> None:
    assert describe(None, []) is None
    recorded = describe(Selection(classes=("RING", 0), sample=2), [5, 11], SHAPE_CLASSES)
    assert recorded == {"classes": ["disk", "ring"], "ids": None, "sample": 2, "indices": [5, 11]}
    assert describe(Selection(ids=["b", "a", "b"]), [3, 1])["ids"] == ["b", "a"]
