"""MS COCO instance annotations (``coco:PATH/TO/instances_<split>.json``), one sample per (image, category).

Where the images are: with ``split`` the json's name without ``instances_`` (``instances_val2017.json``
-> ``val2017``), the first existing folder of ``<json dir>/../<split>/`` (the official layout,
``annotations/`` next to ``val2017/``), ``<json dir>/<split>/``, ``<json dir>/images/``; failing those,
the json's own folder if it holds the first image. Each image is ``<folder>/<file_name>``.

Conventions:

* COCO boxes are ``[x, y, w, h]`` in (float) pixels; they become inclusive corners
  ``x0 = x, y0 = y, x1 = x + w - 1, y1 = y + h - 1`` (``x1`` and ``y1`` no smaller than ``x0`` and
  ``y0``), then are rescaled by the wsolevaluation rule (:func:`xaibench.data.transforms.resize_boxes`).
* Masks: every instance's segmentation (polygons, uncompressed RLE with a ``counts`` list, or
  compressed RLE with a ``counts`` string) is rasterised with ``pycocotools`` at the image's size as
  the json states it; a sample's mask is the union of its category's instances, resized with nearest
  neighbour. If an instance has no segmentation, the sample has no mask.
* ``iscrowd`` instances: their masks are part of the union, their boxes are flagged
  ``difficult=True``.

A sample holds one category's boxes in one image, with the id ``"<file stem>/<category name>"``
(``000000397133/person``). The data set's own classes are the json's ``categories`` in id order
(the order COCO-trained models use); samples are ordered by image id, then category id.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from xaibench.data.transforms import ClassMap, ImageRecord, RecordDataset
from xaibench.errors import XaibenchError

__all__ = ["find_image_dir", "load_coco", "rasterize"]

logger = logging.getLogger(__name__)


def rasterize(segmentations: Sequence[Any], height: int, width: int) -> np.ndarray:
    """The union of COCO segmentations as an (height, width) bool mask.

    Args:
        segmentations: Each a list of polygons ``[[x, y, x, y, ...], ...]``, an uncompressed RLE
            ``{"size": [h, w], "counts": [int, ...]}`` (column-major run lengths, starting with
            background) or a compressed RLE (``counts`` a string), as in COCO's ``annToRLE``.
        height, width: Size of the image.
    """
    out = np.zeros((height, width), dtype=bool)
    for segm in segmentations:
        if isinstance(segm, list):
            polygons = [p for p in segm if len(p) >= 6]  # at least three points
            if not polygons:
                continue
            rle = mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
        elif isinstance(segm.get("counts"), list):
            rle = mask_utils.frPyObjects(segm, height, width)
        else:
            rle = segm
        with warnings.catch_warnings():  # pycocotools' decode trips a numpy 2 DeprecationWarning
            warnings.simplefilter("ignore", DeprecationWarning)
            out |= mask_utils.decode(rle).astype(bool)
    return out


def _split_name(json_path: Path) -> str:
    stem = json_path.stem
    return stem[len("instances_"):] if stem.startswith("instances_") else stem


def find_image_dir(json_path: Path, first_file: str | None = None) -> Path:
    """The folder of a COCO json's images (the rule is in the module docstring).

    Raises:
        FileNotFoundError: none of the candidate folders exists.
    """
    split = _split_name(json_path)
    here = json_path.parent
    candidates = [here.parent / split, here / split, here / "images"]
    for folder in candidates:
        if folder.is_dir():
            return folder
    if first_file is None or (here / first_file).is_file():
        return here
    tried = ", ".join(str(c) + "/" for c in candidates)
    raise FileNotFoundError(
        f"no image folder for {json_path}: looked for {tried} and for the images next to the json"
    )


def load_coco(
    path: str | None,
    *,
    image_size: tuple[int, int],
    size: int | None = None,
    seed: int = 0,
    class_names: Sequence[str] | None = None,
) -> RecordDataset:
    """The ``coco`` data set kind (see the module docstring for the layout and conventions).

    Args:
        path: An ``instances_*.json`` file.
        image_size: (H, W) the images are resized to.
        size: Ignored (the data set is read from disk).
        seed: Ignored.
        class_names: The model's classes (COCO names are matched case-insensitively, ignoring
            spaces, ``_`` and ``-``), or None for the json's categories in id order.

    Raises:
        FileNotFoundError: the json or the image folder is missing.
        XaibenchError: malformed json, or a category the model does not know.
    """
    if not path:
        raise XaibenchError("the coco data set needs its annotation file: coco:PATH/instances_<split>.json")
    json_path = Path(path)
    if not json_path.is_file():
        raise FileNotFoundError(
            f"no file {json_path}: coco:PATH needs a COCO instances json (e.g. annotations/instances_val2017.json)"
        )
    try:
        data = json.loads(json_path.read_text(encoding="utf-8"))
        images = {img["id"]: img for img in data["images"]}
        sizes = {i: (int(img["width"]), int(img["height"])) for i, img in images.items()}
        categories = sorted(data["categories"], key=lambda c: c["id"])
        annotations = data["annotations"]
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise XaibenchError(f"{json_path} is not a COCO instances json ({type(err).__name__}: {err})") from None
    category_name = {c["id"]: c["name"] for c in categories}
    category_rank = {c["id"]: k for k, c in enumerate(categories)}
    classes = ClassMap([c["name"] for c in categories], class_names, "coco")

    groups: dict[tuple[Any, Any], list[dict[str, Any]]] = {}
    for ann in annotations:
        key = (ann["image_id"], ann["category_id"])
        if key[0] not in images:
            raise XaibenchError(f"{json_path}: annotation {ann.get('id')} refers to the unknown image {key[0]}")
        if key[1] not in category_name:
            raise XaibenchError(f"{json_path}: annotation {ann.get('id')} refers to the unknown category {key[1]}")
        groups.setdefault(key, []).append(ann)
    labels = {cid: classes.label(category_name[cid]) for cid in sorted({cid for _, cid in groups})}

    first = images[min(images)]["file_name"] if images else None
    image_dir = find_image_dir(json_path, first)
    records = []
    for image_id, cid in sorted(groups, key=lambda k: (k[0], category_rank[k[1]])):
        anns = groups[(image_id, cid)]
        image = images[image_id]
        boxes = []
        for ann in anns:
            x, y, w, h = (float(v) for v in ann["bbox"])
            boxes.append((x, y, max(x, x + w - 1.0), max(y, y + h - 1.0)))
        segmentations = [ann.get("segmentation") for ann in anns]
        mask = None
        if all(segmentations):
            mask = partial(rasterize, tuple(segmentations), sizes[image_id][1], sizes[image_id][0])
        records.append(
            ImageRecord(
                id=f"{Path(image['file_name']).stem}/{category_name[cid]}",
                path=image_dir / image["file_name"],
                label=labels[cid],
                boxes=np.array(boxes, dtype=np.float64),
                difficult=np.array([bool(ann.get("iscrowd", 0)) for ann in anns], dtype=bool),
                mask=mask,
                annotated_wh=sizes[image_id],
            )
        )
    return RecordDataset(records, classes.names, image_size, name="coco", root=json_path)
