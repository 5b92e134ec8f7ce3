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
flags are kept in ``Sample.difficult``.

An image showing several classes yields one sample per class, holding that class's boxes only, with
the id ``"<image id>/<class>"`` (e.g. ``2007_000027/person``); the pointing game (Zhang et al.,
"Top-down Neural Attention by Excitation Backprop", ECCV 2016, as implemented in TorchRay) scores
such (image, class) pairs. Samples are ordered by image id, then class name.
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xaibench.data.transforms import ImageRecord, RecordDataset, ClassMap
from xaibench.errors import XaibenchError

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


def _number(node: ET.Element, tag: str, path: Path) -> float:
    text = node.findtext(tag)
    try:
        return float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise XaibenchError(f"{path}: <{tag}> is missing or not a number ({text!r})") from None


def read_xml_annotation(path: Path) -> XmlAnnotation:
    """Parse a Pascal VOC / ILSVRC XML annotation (``<size>``, ``<object>`` with ``<name>``,
    ``<difficult>``, ``<bndbox>`` ``xmin ymin xmax ymax``). Coordinates are returned unchanged.

    Raises:
        FileNotFoundError: no such file.
        XaibenchError: not well-formed XML, or an object without a name or a numeric box.
    """
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as err:
        raise XaibenchError(f"{path} is not a well-formed XML annotation: {err}") from None
    size = None
    size_node = root.find("size")
    if size_node is not None and size_node.findtext("width") and size_node.findtext("height"):
        size = (int(_number(size_node, "width", path)), int(_number(size_node, "height", path)))
    objects = []
    for obj in root.iter("object"):
        name = (obj.findtext("name") or "").strip()
        if not name:
            raise XaibenchError(f"{path}: an <object> has no <name>")
        bndbox = obj.find("bndbox")
        if bndbox is None:
            raise XaibenchError(f"{path}: the <object> '{name}' has no <bndbox>")
        box = tuple(_number(bndbox, tag, path) for tag in ("xmin", "ymin", "xmax", "ymax"))
        difficult = (obj.findtext("difficult") or "0").strip() not in ("", "0")
        objects.append(XmlObject(name=name, box=box, difficult=difficult))  # type: ignore[arg-type]
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
        return [line.split()[0] for line in listing.read_text().splitlines() if line.strip()]
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
        XaibenchError: a malformed annotation, or a class the model does not know.
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
    return RecordDataset(records, classes.names, image_size, name="voc", root=root)
