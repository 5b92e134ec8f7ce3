"""Any images with boxes listed in a CSV file (``csv:PATH/TO/boxes.csv``).

The CSV has the header ``image,label,x0,y0,x1,y1`` and optionally ``mask``, one row per box::

    image,label,x0,y0,x1,y1,mask
    photos/cat.jpg,cat,10,5,59,29,masks/cat.png
    photos/cat.jpg,cat,70,8,90,30,
    /data/dog.png,3,0,0,99,49,

* ``image``: a path relative to the CSV's folder, or absolute.
* ``label``: a class index (an integer) or a class name. Names are matched against the model's
  classes when given (case-insensitively, ignoring spaces, ``_`` and ``-``), else against the data
  set's own classes: its distinct names (spelt as first seen), sorted case-insensitively. Without
  the model's classes, a file must use either indices (its classes are then ``"0"`` ...
  ``"<max>"``) or names, not both.
* ``x0, y0, x1, y1``: the box in pixels of the original image, 0-based inclusive corners; rescaled
  by the wsolevaluation rule (:func:`xaibench.data.transforms.resize_boxes`).
* ``mask`` (optional, may be empty): an image file (PNG) whose non-zero pixels (in any channel)
  are the object, at the image's resolution; the sample's mask is the union of the masks named on
  its rows, or None when none is.

Encoding: UTF-8, with or without a byte-order mark (Excel writes one). A file that is not valid
UTF-8 is read as Latin-1 (ISO-8859-1) with a logged warning naming the file: Latin-1 decodes every
byte, so the fallback cannot fail, and it reads the accented letters of cp1252 (what Excel writes on
Windows) alike; only cp1252's extra characters in 0x80-0x9F (e.g. curly quotes, the euro sign) come
out as control characters. Save the file as UTF-8 to be exact. In such a file, labels and ids are
read as Latin-1, but a file name (``image``, ``mask``) names the file whose name has the same bytes
(on Linux, where the CSV's Latin-1 ``café.png`` is the file ``b'caf\\xe9.png'``), or, when there is
none, the file named by the Latin-1 reading (``café.png`` in UTF-8, as Windows and macOS store it).

Checks: a missing column and a column name the header repeats are :class:`DatasetError` s naming
the file and the column; a row with more non-empty fields than the header has columns, an empty image or
label, a coordinate that is not a finite number and an inverted box (``x1 < x0`` or ``y1 < y0``)
are :class:`DatasetError` s naming the file and the line; a box extending past the image is clipped
to its pixels, ``[0, w - 1] x [0, h - 1]``, when the image is read (warning;
:func:`xaibench.data.transforms.clip_boxes`); a file with no rows is refused.

Rows of the same image and class form one sample, in order of first appearance. Its id is the
``image`` field as written, or ``"<image>/<class name>"`` when the image has rows of several classes
(one sample per class).
"""

from __future__ import annotations

import csv
import io
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image

from xaibench.data.transforms import (
    ClassMap,
    ImageRecord,
    RecordDataset,
    check_box,
    normalize_class_name,
    open_image,
)
from xaibench.errors import DatasetError, XaibenchError

__all__ = ["COLUMNS", "load_csv", "read_masks"]

logger = logging.getLogger(__name__)

COLUMNS: tuple[str, ...] = ("image", "label", "x0", "y0", "x1", "y1")
"""The required columns (``mask`` is optional)."""

_INDEX = re.compile(r"[+-]?\d+")


def read_masks(paths: Sequence[Path]) -> np.ndarray:
    """The union of mask images (non-zero pixels in any channel), at the first one's size.

    Raises:
        UnreadableImageError: a mask file is missing, not a regular file, undecodable or too large
            (the checks of :func:`xaibench.data.transforms.open_image`; the message names the file).
    """
    union: np.ndarray | None = None
    for path in paths:
        with open_image(path, "mask file") as img:
            if union is not None and img.size != (union.shape[1], union.shape[0]):
                logger.warning("mask %s is %d x %d, resized to the first mask's size", path, *img.size)
                img = img.resize((union.shape[1], union.shape[0]), Image.NEAREST)
            array = np.asarray(img)
        current = array.any(axis=2) if array.ndim == 3 else array != 0
        union = current if union is None else union | current
    assert union is not None, "read_masks needs at least one path"
    return union


@dataclass
class _Row:
    line: int
    image: str
    label: str
    box: tuple[float, float, float, float]
    mask: str


@dataclass
class _Group:
    image: str
    label: int
    boxes: list[tuple[float, float, float, float]] = field(default_factory=list)
    masks: list[str] = field(default_factory=list)


def _read_text(path: Path) -> tuple[str, bool]:
    """A CSV file's text (a byte-order mark dropped), and whether it is UTF-8. A file that is not
    (a logged warning) is decoded with ``surrogateescape``: every field keeps its bytes, for
    :func:`_latin1` (the text of a label or an id) and :func:`_file` (the file a name means)."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig"), True
    except UnicodeDecodeError as err:
        logger.warning(
            "%s is not valid UTF-8 (byte %#04x at offset %d); read as Latin-1. Save it as UTF-8 if "
            "any name comes out wrong",
            path, data[err.start], err.start,
        )
        return data.removeprefix(b"\xef\xbb\xbf").decode("utf-8", "surrogateescape"), False


def _latin1(field: str) -> str:
    """A field of a file that is not UTF-8 (:func:`_read_text`) as text: its bytes read as Latin-1."""
    return field.encode("utf-8", "surrogateescape").decode("latin-1")


def _file(base: Path, name: str) -> Path:
    """The file that ``name``, a field of a CSV that is not UTF-8 (:func:`_read_text`), means
    (relative to ``base``, or absolute): the one named with the bytes written in the CSV, or, if there
    is none, the one named by their Latin-1 reading if that exists."""
    written = name.encode("utf-8", "surrogateescape")
    try:
        path = base / os.fsdecode(written)
    except UnicodeDecodeError:  # a file system whose names must be Unicode (Windows)
        return base / written.decode("latin-1")
    if written.isascii() or path.exists():
        return path
    latin = base / written.decode("latin-1")
    return latin if latin.exists() else path


def _read_rows(csv_path: Path) -> tuple[list[_Row], bool]:
    """The rows, and whether the file is UTF-8: if not, ``image`` and ``mask`` keep the bytes as
    written (surrogate escapes, :func:`_file`), ``label`` is read as Latin-1."""
    try:
        return _parse_rows(csv_path)
    except csv.Error as err:
        raise DatasetError(f"{csv_path} is not a readable CSV file ({err}); fix the file") from None


def _parse_rows(csv_path: Path) -> tuple[list[_Row], bool]:
    rows = []
    text, utf8 = _read_text(csv_path)
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [h.strip() for h in reader.fieldnames or ()]
    reader.fieldnames = header
    repeated = next((h for k, h in enumerate(header) if h and h in header[:k]), None)
    if repeated is not None:
        raise DatasetError(
            f"{csv_path} has the column {repeated} more than once in its header; keep one column of each "
            f"name (the header must be {','.join(COLUMNS)} and optionally mask)"
        )
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise DatasetError(
            f"{csv_path} lacks the column(s) {', '.join(missing)}: the header must be "
            f"{','.join(COLUMNS)} (and optionally mask)"
        )
    for raw in reader:
        where = f"{csv_path}, line {reader.line_num}"
        if any((extra or "").strip() for extra in raw.get(None, ())):  # DictReader's restkey: fields past the header (empty ones, trailing commas, are fine)
            raise DatasetError(
                f"{where}: the row has {len(header) + len(raw[None])} fields, more than the {len(header)} "
                "columns of the header; remove the extra fields or name their columns in the header"
            )
        image = (raw["image"] or "").strip()
        label = (raw["label"] or "").strip() if utf8 else _latin1((raw["label"] or "").strip())
        if not image or not label:
            raise DatasetError(f"{where}: the {'image' if not image else 'label'} is missing")
        box = []
        for col in COLUMNS[2:]:
            text = (raw[col] or "").strip()
            try:
                box.append(float(text))
            except ValueError:
                text = text if utf8 else _latin1(text)
                raise DatasetError(f"{where}: {col} is missing or not a number ({text!r})") from None
        mask = (raw.get("mask") or "").strip()
        rows.append(_Row(reader.line_num, image, label, check_box(box, where), mask))
    return rows, utf8


def _classes(rows: list[_Row], class_names: Sequence[str] | None, csv_path: Path) -> tuple[list[str], list[int]]:
    """The class list and each row's label."""
    is_index = [bool(_INDEX.fullmatch(r.label)) for r in rows]
    if class_names is None:
        if any(is_index) and not all(is_index):
            raise DatasetError(
                f"{csv_path} mixes class indices and class names in its label column; use one kind "
                "(or give the model's class names)"
            )
        if rows and all(is_index):
            top = max(int(r.label) for r in rows)
            own = [str(i) for i in range(top + 1)]
        else:
            by_key: dict[str, str] = {}
            for row in rows:
                by_key.setdefault(normalize_class_name(row.label), row.label)
            own = [by_key[key] for key in sorted(by_key)]
    else:
        own = []
    classes = ClassMap(own, class_names, "csv")
    labels = []
    for row, index in zip(rows, is_index):
        if index:
            label = int(row.label)
            if not 0 <= label < len(classes.names):
                raise XaibenchError(
                    f"{csv_path}, line {row.line}: class index {label} is out of range for "
                    f"{len(classes.names)} classes"
                )
        else:
            try:
                label = classes.label(row.label)
            except XaibenchError as err:
                raise XaibenchError(f"{csv_path}, line {row.line}: {err}") from None
        labels.append(label)
    return classes.names, labels


def load_csv(
    path: str | None,
    *,
    image_size: tuple[int, int],
    size: int | None = None,
    seed: int = 0,
    class_names: Sequence[str] | None = None,
) -> RecordDataset:
    """The ``csv`` data set kind (see the module docstring for the format and conventions).

    Args:
        path: The CSV file.
        image_size: (H, W) the images are resized to.
        size: Ignored (the data set is read from disk).
        seed: Ignored.
        class_names: The model's classes, or None.

    Raises:
        FileNotFoundError: no such CSV file.
        DatasetError: a missing or repeated column, a row with more fields than the header, a
            missing or malformed field, a non-finite or inverted box (the message names the line),
            or no row at all.
        XaibenchError: a class index out of range, or a class the model does not know.
    """
    if not path:
        raise XaibenchError("the csv data set needs its file: csv:PATH/TO/boxes.csv")
    csv_path = Path(path)
    if not csv_path.is_file():
        raise FileNotFoundError(
            f"no file {csv_path}: csv:PATH needs a CSV with the header {','.join(COLUMNS)}[,mask], "
            "one row per box"
        )
    rows, utf8 = _read_rows(csv_path)
    if not rows:
        raise DatasetError(
            f"the data set 'csv:{path}' has no samples: {csv_path} has no row after its header; the csv "
            f"kind needs one row per box under the header {','.join(COLUMNS)}[,mask]"
        )
    names, labels = _classes(rows, class_names, csv_path)

    groups: dict[tuple[str, int], _Group] = {}
    for row, label in zip(rows, labels):
        group = groups.setdefault((row.image, label), _Group(row.image, label))
        group.boxes.append(row.box)
        if row.mask and row.mask not in group.masks:
            group.masks.append(row.mask)
    labels_of_image: dict[str, int] = {}
    for image, _ in groups:
        labels_of_image[image] = labels_of_image.get(image, 0) + 1

    base = csv_path.parent

    def file(name: str) -> Path:  # an absolute path stays as it is
        return base / name if utf8 else _file(base, name)

    records = []
    for group in groups.values():
        several = labels_of_image[group.image] > 1
        mask = partial(read_masks, tuple(file(m) for m in group.masks)) if group.masks else None
        image = group.image if utf8 else _latin1(group.image)
        records.append(
            ImageRecord(
                id=f"{image}/{names[group.label]}" if several else image,
                path=file(group.image),
                label=group.label,
                boxes=np.array(group.boxes, dtype=np.float64),
                mask=mask,
            )
        )
    return RecordDataset(records, names, image_size, name="csv", root=csv_path)
