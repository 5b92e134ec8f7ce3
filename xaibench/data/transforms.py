"""The evaluation protocol shared by every real-image data set, written once.

The protocol is wsolevaluation's (Choe et al., "Evaluating Weakly Supervised Object Localization
Methods Right", CVPR 2020, https://github.com/clovaai/wsolevaluation):

* the image is converted to RGB and resized to ``image_size`` (H, W) with *no crop*, PIL bilinear
  (what ``torchvision.transforms.Resize((H, W))`` does to a PIL image), then scaled to float32 [0, 1];
* each ground-truth box ``(x0, y0, x1, y1)``, in pixels of the original image with inclusive
  corners, is rescaled as wsolevaluation's ``resize_bbox`` does: ``x' = int(x * W_new / W_orig)``
  (and likewise with heights for ``y``), a float scale followed by Python ``int()`` truncation,
  with no ``+ 1`` on the far corner;
* masks are resized with PIL nearest neighbour and stay boolean.

A loader only builds an index of :class:`ImageRecord` s (image path, label, boxes in original
pixels) in its constructor and hands them to a :class:`RecordDataset`, which applies the protocol
lazily in ``__getitem__`` through :func:`to_sample`. An unreadable image raises :class:`OSError`
from there; the harness catches it and skips the image.

:class:`ClassMap` is the one rule by which a data set's class names become labels.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from xaibench.data.sample import Sample
from xaibench.errors import XaibenchError

__all__ = [
    "ClassMap",
    "ImageRecord",
    "RecordDataset",
    "load_image",
    "normalize_class_name",
    "resize_boxes",
    "resize_mask",
    "to_sample",
]

logger = logging.getLogger(__name__)


def load_image(path: str | Path, size: tuple[int, int]) -> tuple[Tensor, tuple[int, int]]:
    """Read an image and resize it as wsolevaluation does (``Image.open(p).convert('RGB')``, resize).

    Args:
        path: The image file.
        size: (H, W) to resize to; the aspect ratio is not kept and nothing is cropped.

    Returns:
        ``(image, (orig_w, orig_h))``: the (3, H, W) float32 RGB tensor in [0, 1] and the size of
        the image in the file.

    Raises:
        OSError: the file is missing, not an image, or corrupt (PIL's errors are ``OSError`` s).
    """
    height, width = size
    with Image.open(path) as img:
        orig_wh = img.size
        rgb = img.convert("RGB")  # decodes the whole file: truncated data raises OSError here
    resized = rgb.resize((width, height), Image.BILINEAR)
    array = np.asarray(resized, dtype=np.float32) / np.float32(255.0)
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1))), orig_wh


def resize_boxes(
    boxes: np.ndarray | Tensor | Sequence[Sequence[float]],
    orig_wh: tuple[int, int],
    new_wh: tuple[int, int],
) -> Tensor:
    """Rescale boxes exactly like wsolevaluation's ``resize_bbox`` (``wsol/util.py``).

    ``x' = int(x * new_w / orig_w)`` and ``y' = int(y * new_h / orig_h)`` for all four corners: the
    product and quotient in float64, then Python ``int()`` (truncation towards zero).

    Args:
        boxes: (K, 4) ``x0, y0, x1, y1`` in pixels of the original image, inclusive corners.
        orig_wh: (width, height) of the original image.
        new_wh: (width, height) of the resized image.

    Returns:
        (K, 4) float32 tensor of the rescaled (integer-valued) boxes.
    """
    orig_w, orig_h = (float(v) for v in orig_wh)
    new_w, new_h = (float(v) for v in new_wh)
    rows = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    out = [
        [int(x0 * new_w / orig_w), int(y0 * new_h / orig_h), int(x1 * new_w / orig_w), int(y1 * new_h / orig_h)]
        for x0, y0, x1, y1 in rows.tolist()
    ]
    return torch.tensor(out, dtype=torch.float32).reshape(-1, 4)


def resize_mask(mask: np.ndarray | Tensor, size: tuple[int, int]) -> Tensor:
    """Resize a boolean mask with PIL nearest neighbour (``Image.NEAREST``).

    Args:
        mask: (h, w) array; non-zero pixels belong to the object.
        size: (H, W) to resize to.

    Returns:
        (H, W) bool tensor.
    """
    height, width = size
    array = np.asarray(mask) != 0
    img = Image.fromarray(array.astype(np.uint8) * np.uint8(255))  # mode "L"
    if img.size != (width, height):
        img = img.resize((width, height), Image.NEAREST)
    return torch.from_numpy(np.asarray(img) > 127)


@dataclass(frozen=True)
class ImageRecord:
    """What a loader knows about one sample before reading any pixel.

    Attributes:
        id: Unique name of the sample within its data set.
        path: The image file.
        label: Class index (already mapped onto the model's classes where those are given).
        boxes: (K, 4) float64 ``x0, y0, x1, y1`` in pixels of the original image, inclusive
            0-based corners (each loader converts its format's convention to this one).
        difficult: (K,) bool, or None when the data set has no such flag.
        mask: Called with no arguments in ``__getitem__``, returns the (h, w) object mask at the
            original resolution; None when the data set has no masks.
        annotated_wh: (width, height) of the image as its annotation states it, if it does; a
            mismatch with the file is logged, the file's size wins.
    """

    id: str
    path: Path
    label: int
    boxes: np.ndarray
    difficult: np.ndarray | None = None
    mask: Callable[[], np.ndarray] | None = None
    annotated_wh: tuple[int, int] | None = None


def to_sample(record: ImageRecord, image_size: tuple[int, int]) -> Sample:
    """Read a record's image and apply the protocol to it and its ground truth.

    Raises:
        OSError: the image (or its mask file) is missing or unreadable.
    """
    height, width = image_size
    image, orig_wh = load_image(record.path, image_size)
    if record.annotated_wh is not None and tuple(record.annotated_wh) != tuple(orig_wh):
        logger.warning(
            "%s: the annotation says the image is %d x %d, the file %s is %d x %d; boxes are "
            "rescaled from the file's size",
            record.id, *record.annotated_wh, record.path, *orig_wh,
        )
    mask = None
    if record.mask is not None:
        mask = resize_mask(record.mask(), image_size)
    difficult = None
    if record.difficult is not None:
        difficult = torch.as_tensor(np.asarray(record.difficult, dtype=bool))
    return Sample(
        id=record.id,
        image=image,
        label=record.label,
        boxes=resize_boxes(record.boxes, orig_wh, (width, height)),
        mask=mask,
        difficult=difficult,
    )


class RecordDataset(Dataset[Sample]):
    """A data set read from disk: an index of :class:`ImageRecord` s, each read in ``__getitem__``.

    Args:
        records: The samples, in order.
        class_names: The names the labels index into.
        image_size: (H, W) every image is resized to.
        name: Name of the data set (e.g. ``"imagenet"``).
        root: Where it was read from (for ``repr`` and messages).

    Attributes:
        records: The index.
        class_names: As given.
        image_size: As given.
        name: As given.
    """

    def __init__(
        self,
        records: Sequence[ImageRecord],
        class_names: Sequence[str],
        image_size: tuple[int, int],
        name: str,
        root: str | Path | None = None,
    ) -> None:
        height, width = (int(v) for v in image_size)
        if height < 1 or width < 1:
            raise XaibenchError(f"image size must be positive, got {height} x {width}")
        self.records: list[ImageRecord] = list(records)
        self.class_names: list[str] = list(class_names)
        self.image_size = (height, width)
        self.name = name
        self.root = root

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> Sample:
        n = len(self.records)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"index {index} out of range for a data set of {n} items")
        return to_sample(self.records[index], self.image_size)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, root={str(self.root)!r}, "
            f"samples={len(self)}, classes={len(self.class_names)}, image_size={self.image_size})"
        )


def normalize_class_name(name: str) -> str:
    """The form in which class names are compared: lower case, without spaces, ``_`` or ``-``.

    So ``"Dining table"``, ``"dining_table"`` and ``"diningtable"`` (Pascal VOC's spelling) match.
    """
    return re.sub(r"[\s_\-]+", "", name.strip().lower())


class ClassMap:
    """The class list labels index into, and the rule that maps a class name to its label.

    Args:
        own_classes: The data set's classes in its own order (the label order when the model's
            classes are not given).
        model_classes: The model's classes, or None.
        dataset: Name of the data set, for messages.

    Attributes:
        names: ``model_classes`` when given, else ``own_classes``: what labels index into.

    Names are compared with :func:`normalize_class_name`; where two names of the list compare
    equal, the first one's index is used.
    """

    def __init__(self, own_classes: Sequence[str], model_classes: Sequence[str] | None, dataset: str) -> None:
        self.names: list[str] = list(model_classes) if model_classes is not None else list(own_classes)
        self.from_model = model_classes is not None
        self.dataset = dataset
        self._index: dict[str, int] = {}
        for i, name in enumerate(self.names):
            self._index.setdefault(normalize_class_name(name), i)

    def find(self, name: str) -> int | None:
        """The label of class ``name``, or None when the list does not have it."""
        return self._index.get(normalize_class_name(name))

    def label(self, name: str) -> int:
        """The label of class ``name``.

        Raises:
            XaibenchError: the list does not have it (the message names the class).
        """
        found = self.find(name)
        if found is not None:
            return found
        if self.from_model:
            raise XaibenchError(
                f"the {self.dataset} data set has class '{name}', but the model's classes don't "
                f"include it (the model has {len(self.names)} classes: {_preview(self.names)})"
            )
        raise XaibenchError(f"unknown class '{name}' in the {self.dataset} data set")


def _preview(names: Sequence[str], limit: int = 8) -> str:
    """The first few names, for messages."""
    shown = ", ".join(names[:limit])
    return shown + (", ..." if len(names) > limit else "")
