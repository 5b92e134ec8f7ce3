"""ImageNet (ILSVRC2012) validation images with their localization boxes (``imagenet:PATH``).

Two layouts of ``PATH`` are recognised, and give identical samples for the same images:

ILSVRC layout (the official localization release)::

    images/<id>.JPEG                (also .jpg, .jpeg, .png)
    bbox/<id>.xml                   Pascal-VOC-style XML; <name> is the WordNet id, <bndbox> in pixels
    LOC_synset_mapping.txt          line k: "wnid name, name, ..." for class k

Kaggle layout (the "ImageNet Object Localization Challenge" download)::

    ILSVRC/Data/CLS-LOC/val/<id>.JPEG
    LOC_val_solution.csv            ImageId,PredictionString ("wnid xmin ymin xmax ymax " repeated)
    LOC_synset_mapping.txt

Both text files are UTF-8, with or without a byte-order mark. Boxes are used as written (0-based
pixels of the image, inclusive corners, as wsolevaluation uses them), after the checks of
:func:`xaibench.data.transforms.check_box` (finite, not inverted), clipped to the image file's
pixels where they extend past them (:func:`xaibench.data.transforms.clip_boxes`; no box of the
ILSVRC2012 validation set does), and rescaled from the file's size by the wsolevaluation rule
(:func:`xaibench.data.transforms.resize_boxes`); where the XML states a ``<size>`` that differs from
the file's, a warning is logged.

The label is the class of the image's objects (all objects of an ImageNet validation image share one;
otherwise the first object's class is used and a warning logged). The data set's own classes are the
1000 synsets in ``LOC_synset_mapping.txt`` order, named by the first name on their line. A model
with 1000 classes is taken to use that order (every ImageNet model does), so the label is the line
index of the synset; a model with another number of classes is matched by name (its class name
equal to the synset's WordNet id or to any of its names, compared case-insensitively).

Sample ids are the file stems (``ILSVRC2012_val_00000361``), in sorted order.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xaibench.data.transforms import ClassMap, ImageRecord, RecordDataset, check_box
from xaibench.data.voc import read_xml_annotation
from xaibench.errors import DatasetError, XaibenchError

__all__ = ["IMAGE_SUFFIXES", "Synsets", "load_imagenet", "read_synsets"]

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES: frozenset[str] = frozenset({".jpeg", ".jpg", ".png"})
"""Image files of the ILSVRC layout's ``images/`` folder (compared in lower case)."""

_KAGGLE_IMAGES = Path("ILSVRC") / "Data" / "CLS-LOC" / "val"
_LAYOUTS = (
    "either images/ + bbox/ (ILSVRC layout) or ILSVRC/Data/CLS-LOC/val/ + LOC_val_solution.csv "
    "(Kaggle layout)"
)


@dataclass(frozen=True)
class Synsets:
    """The contents of ``LOC_synset_mapping.txt``.

    Attributes:
        wnids: WordNet ids in class-index order.
        names: Each synset's names (the comma-separated list after the id).
    """

    wnids: list[str]
    names: list[list[str]]

    @property
    def first_names(self) -> list[str]:
        """The first name of every synset, e.g. ``"Japanese spaniel"``."""
        return [names[0] if names else wnid for wnid, names in zip(self.wnids, self.names)]


def _read_utf8(path: Path) -> str:
    """The text of a UTF-8 file, with or without a byte-order mark (as Windows tools write it).

    Raises:
        DatasetError: the file is not valid UTF-8.
    """
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise DatasetError(
            f"{path} is not UTF-8 text (byte {err.object[err.start]:#04x} at offset {err.start}); save it as UTF-8"
        ) from None


def read_synsets(path: Path) -> Synsets:
    """Parse ``LOC_synset_mapping.txt`` (line k: ``"wnid name, name, ..."``; blank lines skipped).

    The file is read as UTF-8; a byte-order mark is allowed.

    Raises:
        DatasetError: the file is not UTF-8.
    """
    wnids, names = [], []
    for line in _read_utf8(path).splitlines():
        if not line.strip():
            continue
        wnid, _, rest = line.strip().partition(" ")
        wnids.append(wnid)
        names.append([n.strip() for n in rest.split(",") if n.strip()])
    return Synsets(wnids, names)


@dataclass(frozen=True)
class _Entry:
    id: str
    path: Path
    objects: list[tuple[str, tuple[float, float, float, float]]]  # (wnid, box) as annotated
    annotated_wh: tuple[int, int] | None = None


def _ilsvrc_entries(root: Path) -> list[_Entry]:
    images_dir, bbox_dir = root / "images", root / "bbox"
    if not bbox_dir.is_dir():
        raise FileNotFoundError(
            f"no bbox/ in {root}: the ILSVRC layout needs bbox/<image id>.xml next to images/"
        )
    by_id: dict[str, Path] = {}
    for image in images_dir.iterdir():
        if image.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if image.stem in by_id:
            raise DatasetError(
                f"two images with the id {image.stem} in {images_dir}: {by_id[image.stem].name}, {image.name}"
            )
        by_id[image.stem] = image
    entries = []
    for image_id in sorted(by_id):
        xml = bbox_dir / f"{image_id}.xml"
        if not xml.is_file():
            raise FileNotFoundError(f"no bbox/{image_id}.xml in {root} for the image {by_id[image_id].name}")
        ann = read_xml_annotation(xml)
        objects = [(obj.name, obj.box) for obj in ann.objects]
        entries.append(_Entry(image_id, by_id[image_id], objects, ann.size))
    return entries


def _kaggle_entries(root: Path) -> list[_Entry]:
    solution = root / "LOC_val_solution.csv"
    if not solution.is_file():
        raise FileNotFoundError(
            f"no LOC_val_solution.csv in {root}: the Kaggle layout needs it next to ILSVRC/Data/CLS-LOC/val/"
        )
    objects: dict[str, list[tuple[str, tuple[float, float, float, float]]]] = {}
    reader = csv.DictReader(io.StringIO(_read_utf8(solution), newline=""))
    if not {"ImageId", "PredictionString"} <= set(reader.fieldnames or ()):
        raise DatasetError(f"{solution} needs the header ImageId,PredictionString; fix its first line")
    for row in reader:
        where = f"{solution}, line {reader.line_num}"
        fields = (row["PredictionString"] or "").split()
        if not row["ImageId"] or not fields or len(fields) % 5:
            raise DatasetError(f"{where}: expected an ImageId and groups of 'wnid xmin ymin xmax ymax'")
        boxes = []
        for k in range(0, len(fields), 5):
            try:
                values = [float(v) for v in fields[k + 1 : k + 5]]
            except ValueError:
                raise DatasetError(f"{where}: a box coordinate is not a number: {fields[k:k + 5]}") from None
            boxes.append((fields[k], check_box(values, f"{where}, box {k // 5 + 1} ({fields[k]})")))
        objects.setdefault(row["ImageId"].strip(), []).extend(boxes)
    images = sorted(
        (p for p in (root / _KAGGLE_IMAGES).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES),
        key=lambda p: p.stem,
    )
    entries = []
    for image in images:
        if image.stem not in objects:
            raise DatasetError(f"{solution} has no boxes for the image {image.name}; add its line or remove the image")
        entries.append(_Entry(image.stem, image, objects[image.stem]))
    return entries


def load_imagenet(
    path: str | None,
    *,
    image_size: tuple[int, int],
    size: int | None = None,
    seed: int = 0,
    class_names: Sequence[str] | None = None,
) -> RecordDataset:
    """The ``imagenet`` data set kind (see the module docstring for the layouts and conventions).

    Args:
        path: The folder.
        image_size: (H, W) the images are resized to.
        size: Ignored (the data set is read from disk).
        seed: Ignored.
        class_names: The model's classes (1000: ImageNet order; otherwise matched by name), or None.

    Raises:
        FileNotFoundError: the folder, ``LOC_synset_mapping.txt`` or a layout's files are missing.
        DatasetError: a malformed annotation (the message names the file and the record: XML
            object, or csv line and box), a WordNet id not in the mapping, or no image at all.
        XaibenchError: a class the model does not know.
    """
    if not path:
        raise XaibenchError("the imagenet data set needs a folder: imagenet:PATH")
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"no folder {root}: imagenet:PATH needs an ImageNet folder with {_LAYOUTS}")
    mapping = root / "LOC_synset_mapping.txt"
    if not mapping.is_file():
        raise FileNotFoundError(
            f"no LOC_synset_mapping.txt in {root}: an ImageNet folder needs LOC_synset_mapping.txt "
            f"(line k: 'wnid name, ...' for class k) and {_LAYOUTS}"
        )
    synsets = read_synsets(mapping)
    if (root / "images").is_dir():
        entries = _ilsvrc_entries(root)
    elif (root / _KAGGLE_IMAGES).is_dir():
        entries = _kaggle_entries(root)
    else:
        raise FileNotFoundError(
            f"no images/ or ILSVRC/Data/CLS-LOC/val/ in {root}: an ImageNet folder needs {_LAYOUTS}"
        )

    line_of = {wnid: k for k, wnid in enumerate(synsets.wnids)}
    by_index = class_names is None or (len(class_names) == 1000 and len(synsets.wnids) == 1000)
    classes = ClassMap(synsets.first_names, class_names, "imagenet")
    labels: dict[str, int] = {}

    def label_for(wnid: str, where: str) -> int:
        if wnid not in labels:
            if wnid not in line_of:
                raise DatasetError(f"{where}: the WordNet id {wnid} is not in {mapping}")
            k = line_of[wnid]
            if by_index:
                labels[wnid] = k
            else:
                found = (classes.find(c) for c in (wnid, *synsets.names[k]))
                label = next((i for i in found if i is not None), None)
                labels[wnid] = classes.label(synsets.first_names[k]) if label is None else label  # raises
        return labels[wnid]

    if not entries:
        folder = "images/" if (root / "images").is_dir() else f"{_KAGGLE_IMAGES.as_posix()}/"
        raise DatasetError(
            f"the data set 'imagenet:{path}' has no samples: {folder} holds no image file "
            f"({', '.join(sorted(IMAGE_SUFFIXES))}); an ImageNet folder needs {_LAYOUTS}"
        )
    records = []
    for entry in entries:
        if not entry.objects:
            raise DatasetError(f"the ImageNet image {entry.id} has no annotated object; add its box(es)")
        wnids = [wnid for wnid, _ in entry.objects]
        if len(set(wnids)) > 1:
            logger.warning(
                "ImageNet image %s has objects of several classes (%s); labelled %s",
                entry.id, ", ".join(sorted(set(wnids))), wnids[0],
            )
        records.append(
            ImageRecord(
                id=entry.id,
                path=entry.path,
                label=label_for(wnids[0], entry.id),
                boxes=np.array([box for _, box in entry.objects], dtype=np.float64),
                annotated_wh=entry.annotated_wh,
            )
        )
    return RecordDataset(records, classes.names, image_size, name="imagenet", root=root)

