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

Pixel modes (:func:`load_image`): every 8-bit mode (``RGB``, ``L``, ``1``, ``P``, ``LA``, ``RGBA``,
``CMYK``, ...) becomes RGB exactly as ``Image.convert('RGB')`` makes it, as wsolevaluation does
(alpha is dropped, not composited). Modes that ``convert('RGB')`` would clip to white are read by
their own range instead: 16-bit grayscale (``I;16``, ``I;16L``, ``I;16B``, and ``I`` whose values
lie in 0..65535) as ``value / 65535``; float ``F`` as intensities already in [0, 1]. These are
resized in float (PIL bilinear on mode ``F``) and replicated to three channels. ``I`` values outside
0..65535 and ``F`` values outside [0, 1] have no known range: :class:`DatasetError`.

EXIF orientation is *not* applied: the boxes of ILSVRC, Pascal VOC and COCO are given in the stored
pixel frame, and wsolevaluation does not transpose either; a file with a non-identity orientation
tag gets a logged warning.

A loader only builds an index of :class:`ImageRecord` s (image path, label, boxes in original
pixels) in its constructor and hands them to a :class:`RecordDataset`, which applies the protocol
lazily in ``__getitem__`` through :func:`to_sample`. An image file that cannot be read (missing, not
a regular file, undecodable, truncated, more pixels than ``PIL.Image.MAX_IMAGE_PIXELS``) raises
:class:`UnreadableImageError` from there, the one error the harness skips an image for; a malformed
annotation raises :class:`DatasetError`, which stops the run.

Boxes: loaders refuse non-finite and inverted boxes when they parse them (:func:`check_box`), as
wsolevaluation's ``check_box_convention`` does; :func:`to_sample`, which knows the file's size,
clips a box that extends outside the image to its pixels, ``[0, w - 1] x [0, h - 1]`` (with a logged
warning; :func:`clip_boxes` gives the rule and the references), and refuses one wholly outside.

:class:`ClassMap` is the one rule by which a data set's class names become labels.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
import stat
import struct
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from xaibench.data.sample import Original, Sample, source_digest
from xaibench.errors import DatasetError, UnreadableImageError, XaibenchError

__all__ = [
    "ClassMap",
    "ImageRecord",
    "RecordDataset",
    "check_box",
    "clip_boxes",
    "load_image",
    "normalize_class_name",
    "open_image",
    "resize_boxes",
    "resize_mask",
    "to_sample",
]

logger = logging.getLogger(__name__)


_DECODE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,  # UnidentifiedImageError, "image file is truncated", "broken data stream", ...
    SyntaxError,  # "broken PNG file" and other malformed chunks
    ValueError,
    EOFError,
    struct.error,
    Image.DecompressionBombError,  # more than twice MAX_IMAGE_PIXELS; not an OSError
)
"""What PIL raises for a file it cannot decode."""

_ORIENTATION = 0x0112  # the EXIF orientation tag; 1 is "as stored"
_UINT16_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
_UINT16_MAX = 65535.0


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


#: What an unreadable image's message tells the user to do, besides fixing the file, by default.
DATASET_REMEDY = "remove its record from the data set"


def _check_regular_file(path: Path, what: str, remedy: str = DATASET_REMEDY) -> None:
    """Refuse a missing path or anything but a regular file, before it is opened.

    Opening a FIFO for reading blocks until a writer appears, so the type is checked with
    ``os.stat`` (which follows symbolic links) first.
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise UnreadableImageError(
            f"{what} {path} does not exist; restore it or {remedy}"
        ) from None
    except (OSError, ValueError) as err:  # ValueError: a NUL byte in the path
        reason = _one_line(getattr(err, "strerror", None) or err)
        raise UnreadableImageError(
            f"{what} {str(path)!r} cannot be accessed ({reason}); fix its path or permissions, or {remedy}"
        ) from None
    if not stat.S_ISREG(mode):
        kind = (
            "a directory" if stat.S_ISDIR(mode)
            else "a FIFO" if stat.S_ISFIFO(mode)
            else "a socket" if stat.S_ISSOCK(mode)
            else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            else "not a file"
        )
        raise UnreadableImageError(
            f"{what} {path} is {kind}, not a regular file; put the image file there or {remedy}"
        )


@contextmanager
def open_image(path: str | Path, what: str = "image file", remedy: str = DATASET_REMEDY) -> Iterator[Image.Image]:
    """Open an image file, check it and decode all of its pixels, or raise :class:`UnreadableImageError`.

    The checks, in order: the path is a regular file (``os.stat``; a FIFO would block ``open``);
    PIL identifies the format; ``width * height`` is at most ``PIL.Image.MAX_IMAGE_PIXELS`` as it is
    at call time (None: no limit; the command line sets it from ``--max-image-pixels``), checked
    from the header before any pixel is decoded; the pixel data decodes completely (a truncated
    file raises). PIL's ``DecompressionBombWarning`` is silenced, the limit check replaces it; its
    ``DecompressionBombError`` (more than twice the limit) becomes :class:`UnreadableImageError`.

    Only opening and decoding are guarded: an exception raised in the ``with`` body passes through.

    Args:
        path: The file.
        what: How messages call it (``"image file"``, ``"mask file"``).
        remedy: What the messages tell the user to do besides fixing the file (a data set's record
            can be removed; a file named on the command line can be replaced by another).

    Yields:
        The decoded image, open until the ``with`` block ends.

    Raises:
        UnreadableImageError: any of the checks fails; the message names the file.
    """
    path = Path(path)
    _check_regular_file(path, what, remedy)
    limit = Image.MAX_IMAGE_PIXELS
    hint = "raise the limit (--max-image-pixels) if you trust the file"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)
    except Image.DecompressionBombError as err:  # (Pillow's own message names twice the limit)
        raise UnreadableImageError(
            f"{what} {path} has more pixels than the limit of {int(limit)} (PIL.Image.MAX_IMAGE_PIXELS), more than "
            f"twice over, too many to open safely; {hint}"
        ) from err
    except _DECODE_ERRORS as err:
        raise UnreadableImageError(
            f"{what} {path} cannot be read ({type(err).__name__}: {_one_line(err)}); it is not an image "
            f"or is corrupt: replace it or {remedy}"
        ) from err
    with img:
        width, height = img.size
        if limit is not None and width * height > limit:
            raise UnreadableImageError(
                f"{what} {path} is {width} x {height} = {width * height} pixels, more than the limit of "
                f"{int(limit)} (PIL.Image.MAX_IMAGE_PIXELS); {hint}"
            )
        try:
            img.load()
        except _DECODE_ERRORS as err:
            raise UnreadableImageError(
                f"{what} {path} cannot be decoded ({type(err).__name__}: {_one_line(err)}); it is corrupt "
                f"or truncated: replace it or {remedy}"
            ) from err
        yield img


def _warn_orientation(img: Image.Image, path: Path) -> None:
    """Log a warning when the file asks to be rotated or flipped (which xaibench does not do)."""
    try:
        orientation = img.getexif().get(_ORIENTATION)
    except _DECODE_ERRORS as err:  # a corrupt EXIF block does not spoil the pixels
        logger.warning("%s: its EXIF block cannot be parsed (%s); ignored", path, _one_line(err))
        return
    if orientation not in (None, 1):
        logger.warning(
            "%s: EXIF orientation %s is not applied; the stored pixels are used, the frame the boxes of "
            "ILSVRC, Pascal VOC and COCO (and wsolevaluation) use",
            path, orientation,
        )


def _gray_in_unit_range(img: Image.Image, path: Path) -> np.ndarray | None:
    """A high-bit-depth grayscale image as float64 in [0, 1]; None for modes ``convert('RGB')`` handles.

    ``convert('RGB')`` clips 16-bit and float pixels to 0..255, so a 16-bit photo comes out almost
    all white: these modes are read by their own range instead.

    Raises:
        DatasetError: ``I`` values outside 0..65535, or ``F`` values outside [0, 1] (or not finite):
            no range to scale them by.
    """
    mode = img.mode
    if mode in _UINT16_MODES:
        return np.asarray(img).astype(np.float64) / _UINT16_MAX
    if mode == "I" or mode.startswith("I;"):
        values = np.asarray(img)
        low, high = (int(values.min()), int(values.max())) if values.size else (0, 0)
        if low < 0 or high > _UINT16_MAX:
            raise DatasetError(
                f"{path}: 32-bit integer pixels span {low}..{high}, outside the 16-bit range 0..65535 "
                "that xaibench scales by; save the image with 8 or 16 bits per channel"
            )
        return values.astype(np.float64) / _UINT16_MAX
    if mode == "F" or mode.startswith("F;"):
        values = np.asarray(img).astype(np.float64)
        if values.size and not (np.isfinite(values).all() and values.min() >= 0.0 and values.max() <= 1.0):
            raise DatasetError(
                f"{path}: float pixels span {np.nanmin(values):g}..{np.nanmax(values):g} (or are not finite), "
                "outside the [0, 1] a float image is read in; save it with 8 or 16 bits per channel"
            )
        return values
    return None


def load_image(path: str | Path, size: tuple[int, int]) -> tuple[Tensor, tuple[int, int]]:
    """Read an image and resize it as wsolevaluation does (``Image.open(p).convert('RGB')``, resize).

    8-bit modes (``RGB``, ``L``, ``1``, ``P``, ``LA``, ``RGBA``, ``CMYK``, ...) are converted with
    ``convert('RGB')``, resized with PIL bilinear and divided by 255: wsolevaluation's protocol, bit
    for bit. 16-bit grayscale (``I;16*``, and ``I`` within 0..65535) is divided by 65535 and float
    ``F`` taken as it is (in [0, 1]); that float image is resized with PIL bilinear in mode ``F``
    (so no value is rounded to 8 bits), clipped to [0, 1] against float rounding and replicated to
    three channels. EXIF orientation is not applied (a warning is logged when the file has one).

    Args:
        path: The image file.
        size: (H, W) to resize to; the aspect ratio is not kept and nothing is cropped.

    Returns:
        ``(image, (orig_w, orig_h))``: the (3, H, W) float32 RGB tensor in [0, 1] and the size of
        the image in the file.

    Raises:
        UnreadableImageError: the file is missing, not a regular file, not an image, corrupt or
            truncated, or has more pixels than ``PIL.Image.MAX_IMAGE_PIXELS`` (see :func:`open_image`).
        DatasetError: 32-bit integer or float pixels outside the range they are read in, or a
            pixel mode PIL cannot convert to RGB.
    """
    path = Path(path)
    height, width = size
    with open_image(path) as img:
        orig_wh = img.size
        _warn_orientation(img, path)
        gray = _gray_in_unit_range(img, path)
        if gray is None:
            try:
                rgb = img.convert("RGB")
            except ValueError as err:
                raise DatasetError(
                    f"{path}: PIL cannot convert its pixel mode {img.mode} to RGB ({_one_line(err)}); "
                    "save it as an 8-bit RGB or grayscale image"
                ) from None
    if gray is not None:
        plane = Image.fromarray(gray.astype(np.float32)).resize((width, height), Image.BILINEAR)
        channel = np.clip(np.asarray(plane, dtype=np.float32), 0.0, 1.0)
        return torch.from_numpy(np.ascontiguousarray(np.broadcast_to(channel, (3, height, width)))), orig_wh
    resized = rgb.resize((width, height), Image.BILINEAR)
    array = np.asarray(resized, dtype=np.float32) / np.float32(255.0)
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1))), orig_wh


def _format_box(box: Sequence[float]) -> str:
    return "(" + ", ".join(f"{float(v):g}" for v in box) + ")"


def check_box(box: Sequence[float], where: str) -> tuple[float, float, float, float]:
    """A box ``(x0, y0, x1, y1)`` as floats, refused if a coordinate is not finite or it is inverted.

    The check of wsolevaluation's ``check_box_convention`` (``util.py``), at the door: an
    inverted or NaN box would otherwise be scored (its IoU is meaningless) instead of reported.

    Args:
        box: Four coordinates, inclusive corners (any pixel origin).
        where: The file and record, for the message (``"a.xml, <object> 2 ('dog')"``).

    Raises:
        DatasetError: a coordinate is NaN or infinite, or ``x1 < x0`` or ``y1 < y0``.
    """
    x0, y0, x1, y1 = (float(v) for v in box)
    if not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
        raise DatasetError(
            f"{where}: the box (x0, y0, x1, y1) = {_format_box(box)} has a coordinate that is not a finite "
            "number; fix the annotation"
        )
    if x1 < x0 or y1 < y0:
        raise DatasetError(
            f"{where}: the box (x0, y0, x1, y1) = {_format_box(box)} is inverted (x1 < x0 or y1 < y0); "
            "corners must be left, top, right, bottom: fix the annotation"
        )
    return x0, y0, x1, y1


def clip_boxes(boxes: np.ndarray | Sequence[Sequence[float]], orig_wh: tuple[int, int], where: str) -> np.ndarray:
    """Clip boxes to the image's pixels, ``[0, w - 1] x [0, h - 1]``, with a logged warning for each box clipped.

    The rule: boxes have 0-based inclusive corners, so the image's pixels are ``0 .. w - 1`` and
    ``0 .. h - 1``, and a box keeps the pixels of the image it covers::

        x0' = max(x0, 0),  y0' = max(y0, 0),  x1' = min(x1, w - 1),  y1' = min(y1, h - 1)

    A box that ends *at* the width (``x1 = w``) is one pixel past the image and ends on its last pixel
    after clipping, so a box annotated around the whole image scores as ``(0, 0, w - 1, h - 1)``, the
    box every map that covers the image gets. Boxes inside the image are returned unchanged.

    Why, from the references:

    * TorchRay's pointing game (``torchray/benchmark/datasets.py``, ``voc_as_mask``) fills
      ``mask[ymin:ymax + 1, xmin:xmax + 1]`` of an (H, W) tensor, so a box past the image keeps the
      pixels inside it: it ends on pixel ``W - 1``. ``coco_as_mask`` rasterises each instance at the
      image's size (``annToMask``), which also keeps only the image's pixels.
    * wsolevaluation cuts its estimated boxes at the last pixel, ``x1 = min(x1, width - 1)``
      (``evaluation.py``, ``compute_bboxes_from_scoremaps``), and scores boxes with the ``+ 1``
      (inclusive) areas of ``calculate_multiple_iou`` (``evaluation.py``). It never clips its
      ground-truth boxes (``get_bounding_boxes`` in ``data_loaders.py``, ``resize_bbox`` in
      ``evaluation.py``), and does not need to: none reaches past the last pixel. In its metadata
      (``metadata/*/localization.txt`` against ``image_sizes.txt``; ``ILSVRC2012_val_00000001`` has the
      official XML's corners, 111 108 441 193, unchanged) no box of the 80,477 of ILSVRC2012's
      validation set (``ILSVRC/test``), the 18,532 of ImageNetV2 (``ILSVRC/val``) or the 5,794 of
      CUB's test set ends at or past the width or height, while 11,197 ILSVRC boxes end on the last
      pixel (``w - 1`` or ``h - 1``) and 11,159 start at 0: ILSVRC's corners are 0-based. Its boxes
      are never clipped here, so its numbers stay where wsolevaluation puts them.

    A negative origin is clipped to 0 (TorchRay's slice would wrap a negative start to the image's far
    side; wsolevaluation's ``check_box_convention`` refuses it). A box with no pixel in the image is
    refused.

    Args:
        boxes: (K, 4) ``x0, y0, x1, y1`` in pixels of the original image, 0-based inclusive corners.
        orig_wh: (width, height) of the image file.
        where: The sample, for messages.

    Returns:
        (K, 4) float64 boxes inside the image.

    Raises:
        DatasetError: a box lies wholly outside the image, or is not finite.
    """
    width, height = orig_wh
    rows = np.array(boxes, dtype=np.float64).reshape(-1, 4)
    clipped = rows.copy()
    clipped[:, 0::2] = np.clip(rows[:, 0::2], 0.0, float(width - 1))
    clipped[:, 1::2] = np.clip(rows[:, 1::2], 0.0, float(height - 1))
    for k, (box, inside) in enumerate(zip(rows, clipped)):
        x0, y0, x1, y1 = box
        if not np.isfinite(box).all():
            raise DatasetError(f"{where}: box {k} {_format_box(box)} is not finite; fix the annotation")
        if x0 > width - 1 or y0 > height - 1 or x1 < 0 or y1 < 0:
            raise DatasetError(
                f"{where}: box {k} {_format_box(box)} lies wholly outside the {width} x {height} image; "
                "fix or remove the annotation"
            )
        if not np.array_equal(box, inside):
            logger.warning(
                "%s: box %d %s extends outside the %d x %d image (pixels 0..%d, 0..%d); clipped to %s",
                where, k, _format_box(box), width, height, width - 1, height - 1, _format_box(inside),
            )
    return clipped


def resize_boxes(
    boxes: np.ndarray | Tensor | Sequence[Sequence[float]],
    orig_wh: tuple[int, int],
    new_wh: tuple[int, int],
) -> Tensor:
    """Rescale boxes exactly like wsolevaluation's ``resize_bbox`` (``evaluation.py``).

    ``x' = int(x * new_w / orig_w)`` and ``y' = int(y * new_h / orig_h)`` for all four corners: the
    product and quotient in float64, then Python ``int()`` (truncation towards zero). A box inside the
    original image (``x1 <= orig_w - 1``, as :func:`clip_boxes` leaves it) stays inside the resized
    one: ``x1 * new_w / orig_w < new_w``, so ``x1' <= new_w - 1``.

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

    Boxes are clipped to the file's pixels first (:func:`clip_boxes`: ``[0, w - 1] x [0, h - 1]``),
    then rescaled by :func:`resize_boxes`.

    Raises:
        UnreadableImageError: the image (or its mask file) cannot be read.
        DatasetError: a box lies wholly outside the image, or the pixels have no known range.
    """
    height, width = image_size
    file_digest = image_file_digest(record.path)
    image, orig_wh = load_image(record.path, image_size)
    if record.annotated_wh is not None and tuple(record.annotated_wh) != tuple(orig_wh):
        logger.warning(
            "%s: the annotation says the image is %d x %d, the file %s is %d x %d; boxes are "
            "rescaled from the file's size",
            record.id, *record.annotated_wh, record.path, *orig_wh,
        )
    boxes = clip_boxes(record.boxes, orig_wh, f"sample {record.id} ({record.path})")
    mask = original_mask = raw_mask = None
    if record.mask is not None:
        raw_mask = record.mask()
        mask = resize_mask(raw_mask, image_size)
        original_mask = resize_mask(raw_mask, (orig_wh[1], orig_wh[0]))  # as it is, if it has the file's size
    difficult = None
    if record.difficult is not None:
        difficult = torch.as_tensor(np.asarray(record.difficult, dtype=bool))
    return Sample(
        id=record.id,
        image=image,
        label=record.label,
        boxes=resize_boxes(boxes, orig_wh, (width, height)),
        mask=mask,
        difficult=difficult,
        original=Original(
            size=(orig_wh[1], orig_wh[0]),
            boxes=torch.as_tensor(np.asarray(boxes, dtype=np.float32)).reshape(-1, 4),
            mask=original_mask,
        ),
        digest=source_digest(file_digest, record.label, record.boxes, record.difficult, raw_mask),
    )


def image_file_digest(path: Path) -> str:
    """SHA-256 (hex) of an image file's bytes, read in chunks (the file is checked as :func:`open_image`
    checks it, so a FIFO never blocks).

    Raises:
        UnreadableImageError: the file is missing, not a regular file, or cannot be read.
    """
    _check_regular_file(path, "image file")
    hasher = hashlib.sha256()
    try:
        with open(path, "rb") as file:
            for chunk in iter(lambda: file.read(1 << 20), b""):
                hasher.update(chunk)
    except OSError as err:
        raise UnreadableImageError(
            f"image file {path} cannot be read ({_one_line(err.strerror or err)}); fix its permissions or "
            f"{DATASET_REMEDY}"
        ) from None
    return hasher.hexdigest()


def record_digest(record: ImageRecord) -> str:
    """The :attr:`~xaibench.data.Sample.digest` that :func:`to_sample` gives the record's sample, computed
    without decoding the image (its bytes are hashed; a mask is read).

    Raises:
        UnreadableImageError: the image (or its mask) cannot be read.
    """
    raw_mask = record.mask() if record.mask is not None else None
    return source_digest(image_file_digest(record.path), record.label, record.boxes, record.difficult, raw_mask)


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

    def sample_id(self, index: int) -> str:
        """The id of sample ``index``, without reading its image."""
        return self.records[index].id

    def sample_label(self, index: int) -> int:
        """The label of sample ``index``, without reading its image (how images are chosen by class)."""
        return self.records[index].label

    def sample_digest(self, index: int) -> str:
        """The :attr:`~xaibench.data.Sample.digest` of sample ``index``, without decoding its image
        (:func:`record_digest`): how a resumed run checks that an image it scored has not changed."""
        return record_digest(self.records[index])

    def __getitem__(self, index: int) -> Sample:
        """The sample at ``index``, read from disk by :func:`to_sample`.

        Raises:
            IndexError: ``index`` out of range.
            UnreadableImageError: its image (or mask) file cannot be read; the one error a run skips.
            DatasetError: its annotation does not fit the image (e.g. a box wholly outside it).
        """
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
