"""Pascal VOC (``voc:ROOT`` or ``voc:ROOT:SPLIT``), one sample per (image, class), as TorchRay scores it.

Layout of ``ROOT`` (a ``VOC2007`` / ``VOC2012`` folder of the official release)::

    JPEGImages/<id>.jpg
    Annotations/<id>.xml
    ImageSets/Main/<split>.txt      optional: the ids of a split, one per line

Which images: ``ImageSets/Main/SPLIT.txt`` when a split is named; otherwise ``test.txt`` if present,
else ``val.txt`` if present, else every ``Annotations/*.xml`` (sorted by id).

Conventions: VOC boxes are 1-based (the top-left pixel is ``(1, 1)``) with inclusive corners; they
are converted to 0-based inclusive corners by subtracting 1 from all four coordinates, then
rescaled by the wsolevaluation rule (:func:`xaibench.data.transforms.resize_boxes`). ``<difficult>``
flags are kept in ``Sample.difficult``: ``1`` is difficult; ``0``, an empty or a missing
``<difficult>`` is not. A NaN, infinite or inverted box, or a ``<difficult>`` other than ``0`` or ``1``, is a
:class:`DatasetError` naming the XML file and the object; a box extending past the image is clipped
to its pixels (warning): a 1-based ``xmax`` of ``width + 1`` or more ends on the last column,
``width - 1`` 0-based, as TorchRay's ``voc_as_mask`` keeps it (:func:`xaibench.data.transforms.clip_boxes`).

An image showing several classes yields one sample per class, holding that class's boxes only, with
the id ``"<image id>/<class>"`` (e.g. ``2007_000027/person``); the pointing game (Zhang et al.,
"Top-down Neural Attention by Excitation Backprop", ECCV 2016, as implemented in TorchRay) scores
such (image, class) pairs. Samples are ordered by image id, then class name.
"""

from __future__ import annotations

import logging
import math
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xaibench.data.transforms import ClassMap, ImageRecord, RecordDataset, check_box
from xaibench.errors import DatasetError, XaibenchError

__all__ = ["VOC_CLASSES", "XmlAnnotation", "XmlObject", "load_voc", "read_xml_annotation"]

logger = logging.getLogger(__name__)

VOC_CLASSES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
    "tvmonitor",
)
"""The 20 Pascal VOC classes, in their usual (alphabetical) label order."""


@dataclass(frozen=True)
class XmlObject:
    """One ``<object>`` of a Pascal-VOC-style XML annotation, coordinates as written in the file."""

    name: str
    box: tuple[float, float, float, float]
    difficult: bool


@dataclass(frozen=True)
class XmlAnnotation:
    """A Pascal-VOC-style (also ILSVRC) XML annotation file."""

    filename: str | None
    size: tuple[int, int] | None  # (width, height) from <size>, if present
    objects: list[XmlObject]


def _number(node: ET.Element, tag: str, where: str) -> float:
    text = node.findtext(tag)
    try:
        return float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise DatasetError(f"{where}: <{tag}> is missing or not a number ({text!r}); fix the annotation") from None


def read_xml_annotation(path: Path) -> XmlAnnotation:
    """Parse a Pascal VOC / ILSVRC XML annotation (``<size>``, ``<object>`` with ``<name>``,
    ``<difficult>``, ``<bndbox>`` ``xmin ymin xmax ymax``). Coordinates are returned unchanged.

    Every box is checked with :func:`xaibench.data.transforms.check_box` (finite, not inverted),
    as wsolevaluation checks its boxes, and ``<difficult>`` is ``0`` or ``1`` (missing or empty:
    ``0``); messages name the file and the object (counted from 1, in file order) with its name.

    Raises:
        FileNotFoundError: no such file.
        DatasetError: not well-formed XML, a ``<size>`` that is not two positive numbers, or an
            object without a name, without a ``<bndbox>``, with a coordinate that is missing,
            not a number, not finite, a box that is inverted, or a ``<difficult>`` other than 0 or 1.
    """
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as err:
        raise DatasetError(f"{path} is not a well-formed XML annotation ({err}); fix or replace the file") from None
    size = None
    size_node = root.find("size")
    if size_node is not None and size_node.findtext("width") and size_node.findtext("height"):
        width, height = (_number(size_node, tag, f"{path}, <size>") for tag in ("width", "height"))
        if not (math.isfinite(width) and math.isfinite(height) and width >= 1 and height >= 1):
            raise DatasetError(
                f"{path}: <size> is {width:g} x {height:g}; width and height must be positive pixel counts"
            )
        size = (int(width), int(height))
    objects = []
    for k, obj in enumerate(root.iter("object"), start=1):
        name = (obj.findtext("name") or "").strip()
        if not name:
            raise DatasetError(f"{path}: <object> {k} has no <name>; fix the annotation")
        where = f"{path}, <object> {k} ('{name}')"
        bndbox = obj.find("bndbox")
        if bndbox is None:
            raise DatasetError(f"{where} has no <bndbox>; fix the annotation")
        box = check_box([_number(bndbox, tag, where) for tag in ("xmin", "ymin", "xmax", "ymax")], where)
        flag = (obj.findtext("difficult") or "").strip() or "0"
        if flag not in ("0", "1"):
            raise DatasetError(f"{where}: <difficult> is {flag!r}, not 0 or 1; fix the annotation")
        difficult = flag == "1"
        objects.append(XmlObject(name=name, box=box, difficult=difficult))
    return XmlAnnotation(filename=root.findtext("filename"), size=size, objects=objects)


def _split_root(path: str) -> tuple[Path, str | None]:
    """``ROOT`` or ``ROOT:SPLIT`` -> (root, split); a path that exists as written is a root."""
    if Path(path).exists():
        return Path(path), None
    root, sep, split = path.rpartition(":")
    if sep and root and split and "/" not in split and "\\" not in split:
        return Path(root), split
    return Path(path), None


def _image_ids(root: Path, split: str | None) -> list[str]:
    main = root / "ImageSets" / "Main"
    if split is not None:
        listing = main / f"{split}.txt"
        if not listing.is_file():
            raise FileNotFoundError(
                f"no ImageSets/Main/{split}.txt in {root}: the VOC split '{split}' needs that list of "
                "image ids (one per line)"
            )
    else:
        listing = next((main / f for f in ("test.txt", "val.txt") if (main / f).is_file()), None)
    if listing is not None:
        logger.info("Pascal VOC: images listed in %s", listing)
        return [line.split()[0] for line in listing.read_text(encoding="utf-8-sig").splitlines() if line.strip()]
    return sorted(p.stem for p in (root / "Annotations").glob("*.xml"))


def load_voc(
    path: str | None,
    *,
    image_size: tuple[int, int],
    size: int | None = None,
    seed: int = 0,
    class_names: Sequence[str] | None = None,
) -> RecordDataset:
    """The ``voc`` data set kind (see the module docstring for the layout and conventions).

    Args:
        path: ``ROOT`` or ``ROOT:SPLIT``.
        image_size: (H, W) the images are resized to.
        size: Ignored (the data set is read from disk).
        seed: Ignored.
        class_names: The model's classes; VOC names are matched case-insensitively, ignoring
            spaces, ``_`` and ``-`` (so ``dining table`` matches ``diningtable``). None: labels
            index :data:`VOC_CLASSES` (plus any other class found in the annotations, sorted).

    Raises:
        FileNotFoundError: ``ROOT``, ``JPEGImages/``, ``Annotations/``, a named split's list, or a
            listed image's annotation is missing.
        DatasetError: a malformed annotation, or no sample at all.
        XaibenchError: a class the model does not know.
    """
    if not path:
        raise XaibenchError("the voc data set needs a folder: voc:ROOT or voc:ROOT:SPLIT")
    root, split = _split_root(path)
    if not root.is_dir():
        raise FileNotFoundError(
            f"no folder {root}: voc:ROOT needs a Pascal VOC folder (JPEGImages/, Annotations/)"
        )
    for sub in ("JPEGImages", "Annotations"):
        if not (root / sub).is_dir():
            raise FileNotFoundError(
                f"no {sub}/ in {root}: a Pascal VOC folder needs JPEGImages/<id>.jpg and "
                "Annotations/<id>.xml (and optionally ImageSets/Main/<split>.txt)"
            )
    annotations: list[tuple[str, XmlAnnotation]] = []
    for image_id in _image_ids(root, split):
        xml = root / "Annotations" / f"{image_id}.xml"
        if not xml.is_file():
            raise FileNotFoundError(f"no Annotations/{image_id}.xml in {root} for the listed image {image_id}")
        annotations.append((image_id, read_xml_annotation(xml)))

    found = {obj.name for _, ann in annotations for obj in ann.objects}
    own = sorted(set(VOC_CLASSES) | found)
    classes = ClassMap(own, class_names, "voc")
    labels = {name: classes.label(name) for name in sorted(found)}

    records = []
    for image_id, ann in annotations:
        if not ann.objects:
            logger.warning("Pascal VOC: %s has no objects; skipped", image_id)
            continue
        for cls in sorted({obj.name for obj in ann.objects}):
            objs = [obj for obj in ann.objects if obj.name == cls]
            records.append(
                ImageRecord(
                    id=f"{image_id}/{cls}",
                    path=root / "JPEGImages" / f"{image_id}.jpg",
                    label=labels[cls],
                    boxes=np.array([obj.box for obj in objs], dtype=np.float64) - 1.0,  # 1-based -> 0-based
                    difficult=np.array([obj.difficult for obj in objs], dtype=bool),
                    annotated_wh=ann.size,
                )
            )
    if not records:
        listed = f"ImageSets/Main/{split}.txt" if split else "the image list"
        raise DatasetError(
            f"the data set 'voc:{path}' has no samples: {listed} names no image, or no listed annotation "
            "has an <object>; a Pascal VOC folder needs Annotations/<id>.xml with objects and JPEGImages/<id>.jpg"
        )
    return RecordDataset(records, classes.names, image_size, name="voc", root=root)
