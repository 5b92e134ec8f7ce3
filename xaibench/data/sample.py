"""The record every data set yields, and how a list of them becomes a batch.

Boxes follow the ILSVRC and wsolevaluation convention: ``(x0, y0, x1, y1)`` in pixels of the image
as it is handed to the model, with 0-based *inclusive* corners, so a box covers ``x1 - x0 + 1``
columns, and a box inside a W x H image has ``0 <= x0 <= x1 <= W - 1`` and ``0 <= y0 <= y1 <= H - 1``.
The loaders clip a box that reaches past the image to its pixels (a box ending at ``x1 = W`` ends on
``W - 1``), as TorchRay's masks do; :func:`xaibench.data.transforms.clip_boxes` gives the rule and
the references.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


@dataclass(frozen=True)
class Original:
    """An image's ground truth in the pixels of its file, before the protocol resizes it, for the
    metrics that are defined there (TorchRay's pointing game measures its 15 px in them).

    Attributes:
        size: (H, W) of the image file.
        boxes: (K, 4) float32 boxes ``x0, y0, x1, y1`` in the file's pixels (inclusive corners, clipped
            to the image's pixels ``[0, W - 1] x [0, H - 1]``), the same boxes as the sample's, in the
            same order.
        mask: (H, W) bool object mask at the file's resolution, or None when the data set has none.
    """

    size: tuple[int, int]
    boxes: Tensor
    mask: Tensor | None = None


@dataclass(frozen=True)
class Sample:
    """One image with its ground truth.

    Attributes:
        id: A name for the image, unique within its data set.
        image: (3, H, W) float32 RGB in [0, 1], at the resolution the model is fed.
        label: The class index of the object(s).
        boxes: (K, 4) float32 ground-truth boxes ``x0, y0, x1, y1`` (inclusive pixel corners, inside the
            image), K >= 1.
        mask: (H, W) bool pixel-exact object mask, or None when the data set has none.
        difficult: (K,) bool, True for boxes marked ``difficult`` (Pascal VOC); None means all False.
        original: The ground truth at the file's resolution, or None when the image was made at the
            resolution it is fed (generated data) or the data set does not say.
        digest: SHA-256 (hex) of what the sample was read from: the image file's bytes and the
            annotations, set by data sets that read files (:func:`source_digest`); None for a sample
            made in memory, whose identity :func:`sample_digest` takes from its tensors.
    """

    id: str
    image: Tensor
    label: int
    boxes: Tensor
    mask: Tensor | None = None
    difficult: Tensor | None = None
    original: Original | None = None
    digest: str | None = None


def _update(hasher: hashlib._Hash, name: str, value: object) -> None:
    """Feed one named field to ``hasher``, unambiguously (name, dtype, shape, bytes)."""
    if value is None:
        hasher.update(f"{name}:none;".encode())
        return
    array = value.detach().cpu().numpy() if isinstance(value, Tensor) else np.asarray(value)
    array = np.ascontiguousarray(array)
    hasher.update(f"{name}:{array.dtype.str}:{array.shape};".encode())
    hasher.update(array.tobytes())


def annotation_digest(hasher: hashlib._Hash, label: int, boxes: object, difficult: object, mask: object) -> None:
    """Feed a sample's ground truth to ``hasher`` (the label, boxes, difficult flags and mask, as numbers)."""
    _update(hasher, "label", np.int64(label))
    _update(hasher, "boxes", np.asarray(boxes, dtype=np.float64).reshape(-1, 4))
    _update(hasher, "difficult", None if difficult is None else np.asarray(difficult, dtype=bool))
    _update(hasher, "mask", None if mask is None else np.asarray(mask, dtype=bool))


def source_digest(file_digest: str, label: int, boxes: object, difficult: object, mask: object) -> str:
    """The :attr:`Sample.digest` of a sample read from a file: SHA-256 over the file's own SHA-256 and the
    sample's ground truth in the file's pixels (boxes, difficult flags and mask as the loader read them)."""
    hasher = hashlib.sha256(f"file:{file_digest};".encode())
    annotation_digest(hasher, label, boxes, difficult, mask)
    return hasher.hexdigest()


def sample_digest(sample: Sample) -> str:
    """What identifies a sample's content: its :attr:`~Sample.digest` when its data set read it from a
    file, else SHA-256 over its image tensor and ground truth. Two samples with the same id but other
    pixels or annotations have different digests, so a run never mistakes one for the other.

    Example:
        >>> s = Sample("a", torch.zeros(3, 2, 2), 0, torch.tensor([[0.0, 0.0, 1.0, 1.0]]))
        >>> sample_digest(s) == sample_digest(Sample("a", torch.ones(3, 2, 2), 0, s.boxes))
        False
    """
    if sample.digest is not None:
        return sample.digest
    hasher = hashlib.sha256(b"tensors;")
    _update(hasher, "image", sample.image)
    annotation_digest(hasher, sample.label, sample.boxes, sample.difficult, sample.mask)
    return hasher.hexdigest()


@dataclass(frozen=True)
class Batch:
    """Samples stacked for one forward pass; boxes and masks stay lists (per-image counts; a mask may be None)."""

    ids: list[str]
    images: Tensor
    labels: Tensor
    boxes: list[Tensor]
    masks: list[Tensor | None]
    difficult: list[Tensor]
    originals: list[Original | None]

    def __len__(self) -> int:
        return len(self.ids)


def collate(samples: Sequence[Sample]) -> Batch:
    """Stack samples into a :class:`Batch` (a ``collate_fn`` for ``torch.utils.data.DataLoader``)."""
    return Batch(
        ids=[s.id for s in samples],
        images=torch.stack([s.image for s in samples]),
        labels=torch.tensor([s.label for s in samples], dtype=torch.long),
        boxes=[s.boxes for s in samples],
        masks=[s.mask for s in samples],
        difficult=[
            s.difficult if s.difficult is not None else torch.zeros(len(s.boxes), dtype=torch.bool)
            for s in samples
        ],
        originals=[s.original for s in samples],
    )
