"""Data sets: each yields :class:`Sample` records (image, label, boxes, mask) for the harness.

A data set is named on the command line as ``KIND`` or ``KIND:PATH`` (``builtin``,
``builtin:distractor``, ...). Kinds are found through the entry-point group ``xaibench.datasets``,
so a package can add its own; each entry point is a function
``load(path, *, image_size, size, seed, class_names) -> Dataset``: ``path`` is the text after
the colon (or None), ``image_size`` the (H, W) every image is resized to, ``size`` and ``seed`` apply
to generated data sets, ``class_names`` is the model's class list that labels must index into.
"""

from __future__ import annotations

import difflib
import hashlib
from collections.abc import Sequence
from importlib.metadata import entry_points

from torch.utils.data import Dataset

from xaibench.data.sample import Batch, Sample, collate
from xaibench.errors import DatasetError, UnknownNameError

ENTRY_POINT_GROUP = "xaibench.datasets"

__all__ = ["Batch", "Sample", "collate", "load_dataset", "available_datasets"]


def sample_ids_digest(dataset: Sequence, n: int, indices: Sequence[int] | None = None) -> str | None:
    """SHA-256 of the ids of the first ``n`` samples (or of the samples at ``indices``), in order, when
    the data set can name them without reading images (``dataset.sample_id(i)``); None otherwise. A
    resumed run compares it, so rows are never mixed with those of a data set that changed on disk in
    between."""
    name = getattr(dataset, "sample_id", None)
    if name is None:
        return None
    chosen = range(n) if indices is None else indices
    # surrogatepass: an id from a file name whose bytes are not UTF-8 holds surrogate escapes
    return hashlib.sha256("\n".join(name(i) for i in chosen).encode("utf-8", "surrogatepass")).hexdigest()


def available_datasets() -> list[str]:
    """The data set kinds that :func:`load_dataset` knows."""
    return sorted({ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)})


def load_dataset(
    spec: str,
    *,
    image_size: tuple[int, int] | int = 224,
    size: int | None = None,
    seed: int = 0,
    class_names: Sequence[str] | None = None,
) -> Dataset:
    """Open the data set named by ``spec`` (``KIND`` or ``KIND:PATH``).

    Args:
        spec: e.g. ``builtin``, ``builtin:distractor``.
        image_size: (H, W) the images (and their boxes and masks) are resized to.
        size: How many images a generated data set holds; ignored by data sets read from disk.
        seed: Seed of generated data sets.
        class_names: The model's classes; labels are mapped onto them (None: the data set's own).

    Raises:
        UnknownNameError: unknown kind (the message lists the known ones and the closest match).
        DatasetError: the data set has no sample (the built-in kinds say what they expect; for
            any other kind the message names the spec), or a malformed annotation.
    """
    kind, _, path = spec.partition(":")
    found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == kind]
    if not found:
        known = available_datasets()
        close = difflib.get_close_matches(kind, known, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise UnknownNameError(
            f"unknown data set kind '{kind}'; {hint}available: {', '.join(known)} (written KIND or KIND:PATH)"
        )
    size_hw = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    dataset = found[0].load()(path or None, image_size=size_hw, size=size, seed=seed, class_names=class_names)
    if len(dataset) == 0:  # the built-in kinds refuse this themselves, with the reason
        raise DatasetError(
            f"the data set '{spec}' has no samples; check that the path holds what the '{kind}' kind "
            "reads (see its documentation)"
        )
    return dataset
