"""MS COCO instance annotations (``coco:PATH/TO/instances_<split>.json``), one sample per (image, category).

Where the images are: with ``split`` the json's name without ``instances_`` (``instances_val2017.json``
-> ``val2017``), the first existing folder of ``<json dir>/../<split>/`` (the official layout,
``annotations/`` next to ``val2017/``), ``<json dir>/<split>/``, ``<json dir>/images/``; failing those,
the json's own folder if it holds the first image. Each image is ``<folder>/<file_name>``.

Conventions:

* COCO boxes are ``[x, y, w, h]`` in (float) pixels; they become inclusive corners
  ``x0 = x, y0 = y, x1 = x + w - 1, y1 = y + h - 1`` (``x1`` and ``y1`` no smaller than ``x0`` and
  ``y0``), then are clipped to the image file's pixels where they extend past them (``x1 <= width - 1``;
  warning; :func:`xaibench.data.transforms.clip_boxes`) and rescaled by
  the wsolevaluation rule (:func:`xaibench.data.transforms.resize_boxes`).
* Checks: ids of ``images``, ``categories`` and ``annotations`` are integers, unique within their
  list (a repeated id would silently replace the first entry); ``width`` and ``height`` are positive
  whole numbers; ``bbox`` is four finite numbers with ``w, h >= 0``. A violation is a
  :class:`DatasetError` naming the json and the id. The json is UTF-8 (a byte-order mark is allowed).
* Masks: every instance's segmentation (polygons, uncompressed RLE with a ``counts`` list, or
  compressed RLE with a ``counts`` string) is rasterised with ``pycocotools`` at the image's size as
  the json states it; a sample's mask is the union of its category's instances, resized with nearest
  neighbour. If an instance has no segmentation, the sample has no mask. Segmentations are checked
  when the json is read (rasterising waits for the sample): a polygon is a list of an even number of
  finite numbers (one of fewer than three points covers nothing and is passed over, as COCO's own
  files have a few and pycocotools-based tools drop them); an RLE's ``size`` is the image's
  ``[height, width]`` and its run lengths (a list of non-negative integers, or a string of COCO's
  compressed alphabet ``0``..``o``, at most 7 characters a number as pycocotools writes them, that
  decodes to non-negative runs) add up to ``height * width``. A violation is a :class:`DatasetError`
  naming the json and the annotation id (pycocotools would silently make a wrong mask of it: empty,
  short of a coordinate, or with pixels left undefined).
* ``iscrowd`` instances count like the others: their masks are part of the union and their boxes
  are the sample's boxes, as TorchRay's ``coco_as_mask`` takes every instance of the class (COCO has
  no ``difficult`` flag; the pointing game skips only Pascal VOC's all-difficult pairs).

A sample holds one category's boxes in one image, with the id ``"<file stem>/<category name>"``
(``000000397133/person``). The data set's own classes are the json's ``categories`` in id order
(the order COCO-trained models use); samples are ordered by image id, then category id.
"""

from __future__ import annotations

import json
import logging
import math
import warnings
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from xaibench.data.transforms import ClassMap, ImageRecord, RecordDataset, check_box
from xaibench.errors import DatasetError, XaibenchError

__all__ = ["check_segmentation", "find_image_dir", "load_coco", "rasterize"]

logger = logging.getLogger(__name__)


def _compressed_runs(counts: str, where: str) -> np.ndarray:
    """The run lengths of a compressed RLE string, decoded as pycocotools' ``rleFrString`` does.

    Each number is a little-endian sequence of 5-bit groups, one per character (``chr(48 + bits)``),
    bit 5 set while more follow and bit 4 of the last one its sign; from the fourth run on, the
    number is the difference to the run two before. Vectorised with numpy: a long string costs
    tens of microseconds, not a Python step per character.

    Raises:
        DatasetError: a character outside ``0``..``o``, a string ending inside a number, a number of
            more than 7 characters (pycocotools writes at most 7, enough for any uint32 run or
            difference; the limit keeps the int64 arithmetic exact), or a negative run.
    """
    codes = np.frombuffer(counts.encode("utf-8"), dtype=np.uint8).astype(np.int64) - 48
    if not counts.isascii() or ((codes < 0) | (codes > 63)).any():
        p = next(k for k, char in enumerate(counts) if not "0" <= char <= "o")
        raise DatasetError(
            f'{where}: the compressed RLE "counts" has {counts[p]!r} at position {p}, outside COCO\'s alphabet '
            '"0".."o"; fix the json'
        )
    if not codes.size:
        return codes
    last = (codes & 0x20) == 0  # the last character of a number has no continuation bit
    if not last[-1]:
        raise DatasetError(f'{where}: the compressed RLE "counts" ends inside a run length; fix the json')
    ends = np.flatnonzero(last)
    starts = np.concatenate(([0], ends[:-1] + 1))
    lengths = ends - starts + 1
    if lengths.max() > 7:
        k = int(np.argmax(lengths > 7))
        raise DatasetError(
            f'{where}: the compressed RLE "counts" has a run length of {lengths[k]} characters at position '
            f"{starts[k]}, more than the 7 pycocotools writes; fix the json"
        )
    shifts = 5 * (np.arange(codes.size) - np.repeat(starts, lengths))
    runs = np.add.reduceat((codes & 0x1F) << shifts, starts)
    runs -= np.where(codes[ends] & 0x10, np.int64(1) << (5 * lengths), 0)  # the sign: x |= -1 << 5 k
    runs[1::2] = np.cumsum(runs[1::2])  # runs 3, 5, ... add the run two before
    runs[2::2] = np.cumsum(runs[2::2])  # runs 4, 6, ... likewise (run 0 stands alone)
    negative = np.flatnonzero(runs < 0)
    if negative.size:
        k = int(negative[0])
        raise DatasetError(
            f'{where}: the compressed RLE "counts" decodes to the negative run length {runs[k]} (run {k + 1}); '
            "fix the json"
        )
    return runs


def check_segmentation(segm: Any, height: int, width: int, where: str) -> None:
    """Refuse a segmentation pycocotools would rasterise wrongly (the rules are in the module docstring).

    Cheap enough for every annotation of a json: nothing is rasterised; a compressed RLE's string is
    decoded to its run lengths only.

    Args:
        segm: An instance's (non-empty) ``segmentation``.
        height, width: Size of the image, as the json states it.
        where: The start of the message (the json and the annotation).

    Raises:
        DatasetError: a polygon that is not a list of an even number of finite numbers,
            an RLE whose ``size`` is not ``[height, width]`` or whose run lengths are malformed or
            do not add up to ``height * width``, or a segmentation of another kind.
    """
    if isinstance(segm, list):
        if not segm:
            raise DatasetError(f'{where}: "segmentation" is an empty list of polygons; fix the json')
        for k, polygon in enumerate(segm, start=1):
            if not isinstance(polygon, list) or not set(map(type, polygon)) <= {int, float}:
                raise DatasetError(
                    f'{where}: "segmentation" polygon {k} is {polygon!r:.80}, not a list of numbers '
                    "[x, y, x, y, ...]; fix the json"
                )
            if len(polygon) % 2:
                raise DatasetError(
                    f'{where}: "segmentation" polygon {k} has {len(polygon)} numbers; a polygon is x, y pairs, '
                    "an even number of coordinates; fix the json"
                )
            try:
                finite = all(map(math.isfinite, polygon))
            except OverflowError:  # an integer too large for a float
                finite = False
            if not finite:
                raise DatasetError(
                    f'{where}: "segmentation" polygon {k} has a value that is not a finite number; fix the json'
                )
        return
    if not isinstance(segm, dict) or "counts" not in segm or "size" not in segm:
        raise DatasetError(
            f'{where}: "segmentation" is {segm!r:.80}, neither a list of polygons nor an RLE with "counts" and '
            '"size"; fix the json'
        )
    size, counts = segm["size"], segm["counts"]
    if not (isinstance(size, list) and len(size) == 2 and all(map(_is_number, size)) and size == [height, width]):
        raise DatasetError(
            f'{where}: the RLE "size" {size!r:.40} is not the image\'s [height, width] [{height}, {width}]; '
            "fix the json"
        )
    if isinstance(counts, str):
        total = int(_compressed_runs(counts, where).sum())
    elif isinstance(counts, list) and set(map(type, counts)) <= {int} and (not counts or min(counts) >= 0):
        total = sum(counts)
    else:
        raise DatasetError(
            f'{where}: the RLE "counts" is {counts!r:.80}, neither a string nor a list of non-negative integers; '
            "fix the json"
        )
    if total != height * width:
        raise DatasetError(
            f"{where}: the RLE run lengths add up to {total} pixels, not the {height} x {width} = "
            f"{height * width} of the image; fix the json"
        )


def rasterize(segmentations: Sequence[Any], height: int, width: int) -> np.ndarray:
    """The union of COCO segmentations as an (height, width) bool mask.

    Args:
        segmentations: Each a list of polygons ``[[x, y, x, y, ...], ...]``, an uncompressed RLE
            ``{"size": [h, w], "counts": [int, ...]}`` (column-major run lengths, starting with
            background) or a compressed RLE (``counts`` a string), as in COCO's ``annToRLE``.
        height, width: Size of the image.

    Raises:
        DatasetError: a segmentation that fails :func:`check_segmentation` (``load_coco`` checks
            them when it reads the json, naming the annotation).
    """
    out = np.zeros((height, width), dtype=bool)
    for k, segm in enumerate(segmentations):
        if not segm:  # no segmentation: nothing to add
            continue
        check_segmentation(segm, height, width, f"COCO segmentation {k}")
        if isinstance(segm, list):
            polygons = [p for p in segm if len(p) >= 6]  # fewer than three points cover no area
            if not polygons:
                continue
            rle = mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
        elif isinstance(segm["counts"], list):
            rle = mask_utils.frPyObjects({"size": [height, width], "counts": segm["counts"]}, height, width)
        else:
            rle = {"size": [height, width], "counts": segm["counts"]}
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


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _index(
    entries: Any, key: str, json_path: Path, check: Callable[[dict[str, Any], str], None]
) -> dict[int, dict[str, Any]]:
    """The entries of ``data[key]`` by id, each checked; a missing, non-integer or repeated id is refused."""
    singular = key[:-1] if key != "categories" else "category"
    by_id: dict[int, dict[str, Any]] = {}
    for k, entry in enumerate(entries):
        if not isinstance(entry, dict) or not _is_id(entry.get("id")):
            raise DatasetError(
                f'{json_path}: "{key}" entry {k} has no integer "id" ({entry!r:.80}); fix the json'
            )
        if entry["id"] in by_id:
            raise DatasetError(
                f'{json_path}: the {singular} id {entry["id"]} appears twice in "{key}"; ids must be unique, '
                "fix the json"
            )
        check(entry, f"{json_path}, {singular} {entry['id']}")
        by_id[entry["id"]] = entry
    return by_id


def _check_image(image: dict[str, Any], where: str) -> None:
    if not isinstance(image.get("file_name"), str) or not image["file_name"]:
        raise DatasetError(f'{where}: "file_name" is missing or not a string; fix the json')
    for key in ("width", "height"):
        value = image.get(key)
        if not (_is_number(value) and value >= 1 and float(value).is_integer()):
            raise DatasetError(f'{where}: "{key}" is {value!r}, not a positive whole number of pixels; fix the json')


def _check_category(category: dict[str, Any], where: str) -> None:
    if not isinstance(category.get("name"), str) or not category["name"]:
        raise DatasetError(f'{where}: "name" is missing or not a string; fix the json')


def _corners(bbox: Any, where: str) -> tuple[float, float, float, float]:
    """COCO's ``[x, y, w, h]`` as inclusive corners ``(x, y, x + w - 1, y + h - 1)``, checked.

    ``w`` and ``h`` below 1 (COCO has a few boxes under one pixel) give a one-pixel box.

    Raises:
        DatasetError: not four finite numbers, or a negative width or height.
    """
    numbers = isinstance(bbox, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox)
    if not numbers or len(bbox) != 4:
        raise DatasetError(f'{where}: "bbox" is {bbox!r:.80}, not four numbers [x, y, w, h]; fix the json')
    x, y, w, h = (float(v) for v in bbox)
    if not all(math.isfinite(v) for v in (x, y, w, h)):
        raise DatasetError(f'{where}: "bbox" {bbox} has a value that is not a finite number; fix the json')
    if w < 0 or h < 0:
        raise DatasetError(f'{where}: "bbox" {bbox} has a negative width or height; fix the json')
    return check_box((x, y, max(x, x + w - 1.0), max(y, y + h - 1.0)), where)


def _read_json(json_path: Path) -> dict[str, Any]:
    """The json's top level, with its three lists present.

    Raises:
        DatasetError: not UTF-8 JSON, or ``images``, ``annotations`` or ``categories`` missing.
    """
    try:
        data = json.loads(json_path.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError as err:
        raise DatasetError(
            f"{json_path} is not UTF-8 text ({err.reason} at offset {err.start}); save it as UTF-8"
        ) from None
    except json.JSONDecodeError as err:
        raise DatasetError(f"{json_path} is not valid JSON ({err}); fix or replace the file") from None
    except RecursionError:
        raise DatasetError(f"{json_path} nests too deeply to be a COCO instances json; fix or replace the file") from None
    for key in ("images", "annotations", "categories"):
        if not isinstance(data, dict) or not isinstance(data.get(key), list):
            raise DatasetError(
                f'{json_path} is not a COCO instances json: it has no "{key}" list (it needs "images", '
                '"annotations" and "categories")'
            )
    return data


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
        DatasetError: malformed json (the message names the file and the image, category or
            annotation id): invalid JSON, a repeated id, a non-numeric width or height, a bbox that
            is not four finite numbers or has a negative width or height, a reference to an
            unknown image or category, a malformed segmentation (:func:`check_segmentation`); or no
            annotation at all.
        XaibenchError: a category the model does not know.
    """
    if not path:
        raise XaibenchError("the coco data set needs its annotation file: coco:PATH/instances_<split>.json")
    json_path = Path(path)
    if not json_path.is_file():
        raise FileNotFoundError(
            f"no file {json_path}: coco:PATH needs a COCO instances json (e.g. annotations/instances_val2017.json)"
        )
    data = _read_json(json_path)
    images = _index(data["images"], "images", json_path, _check_image)
    sizes = {i: (int(img["width"]), int(img["height"])) for i, img in images.items()}
    by_category = _index(data["categories"], "categories", json_path, _check_category)
    categories = [by_category[cid] for cid in sorted(by_category)]
    category_name = {c["id"]: c["name"] for c in categories}
    category_rank = {c["id"]: k for k, c in enumerate(categories)}

    groups: dict[tuple[int, int], list[tuple[dict[str, Any], tuple[float, float, float, float]]]] = {}
    for ann in _index(data["annotations"], "annotations", json_path, lambda ann, where: None).values():
        where = f"{json_path}, annotation {ann['id']}"
        key = (ann.get("image_id"), ann.get("category_id"))
        if not _is_id(key[0]) or key[0] not in images:
            raise DatasetError(f"{where} refers to the unknown image {key[0]!r}; fix the json")
        if not _is_id(key[1]) or key[1] not in category_name:
            raise DatasetError(f"{where} refers to the unknown category {key[1]!r}; fix the json")
        box = _corners(ann.get("bbox"), where)
        if ann.get("segmentation"):
            width, height = sizes[key[0]]
            check_segmentation(ann["segmentation"], height, width, where)
        groups.setdefault(key, []).append((ann, box))  # type: ignore[arg-type]
    if not groups:
        raise DatasetError(
            f"the data set 'coco:{path}' has no samples: its \"annotations\" list is empty; the coco kind "
            'needs an instances json whose "annotations" give a "bbox" for images of its "images" list'
        )
    classes = ClassMap([c["name"] for c in categories], class_names, "coco")
    labels = {cid: classes.label(category_name[cid]) for cid in sorted({cid for _, cid in groups})}

    image_dir = find_image_dir(json_path, images[min(images)]["file_name"])
    records = []
    for image_id, cid in sorted(groups, key=lambda k: (k[0], category_rank[k[1]])):
        anns = [ann for ann, _ in groups[(image_id, cid)]]
        image = images[image_id]
        segmentations = [ann.get("segmentation") for ann in anns]
        mask = None
        if all(segmentations):
            mask = partial(rasterize, tuple(segmentations), sizes[image_id][1], sizes[image_id][0])
        records.append(
            ImageRecord(
                id=f"{Path(image['file_name']).stem}/{category_name[cid]}",
                path=image_dir / image["file_name"],
                label=labels[cid],
                boxes=np.array([box for _, box in groups[(image_id, cid)]], dtype=np.float64),
                mask=mask,
                annotated_wh=sizes[image_id],
            )
        )
    return RecordDataset(records, classes.names, image_size, name="coco", root=json_path)
