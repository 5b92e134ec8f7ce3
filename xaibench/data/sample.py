"""The record every data set yields, and how a list of them becomes a batch.

Boxes follow the ILSVRC and wsolevaluation convention: ``(x0, y0, x1, y1)`` in pixels of the image
as it is handed to the model, with 0-based *inclusive* corners, so a box covers ``x1 - x0 + 1``
columns, and a box inside a W x H image has ``0 <= x0 <= x1 <= W - 1`` and ``0 <= y0 <= y1 <= H - 1``.
The loaders clip a box that reaches past the image to its pixels (a box ending at ``x1 = W`` ends on
``W - 1``), as TorchRay's masks do; :func:`xaibench.data.transforms.clip_boxes` gives the rule and
the references.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

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
    """

    id: str
    image: Tensor
    label: int
    boxes: Tensor
    mask: Tensor | None = None
    difficult: Tensor | None = None
    original: Original | None = None


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
