"""Which images of a data set a run scores: the first n, or a selection by class, by id, or at random.

A :class:`Selection` is applied to the *pool*, the data set's first ``n`` images (all of them when
``n`` is None), in three steps, each optional:

1. ``classes``: keep the images whose label is one of these classes (names compared as
   :func:`~xaibench.data.transforms.normalize_class_name` compares them, or class indices);
2. ``ids``: keep the images with these ids (every id must be in the pool);
3. ``sample``: draw ``K`` of the images kept, without replacement, from the seeded generator:
   ``kept[j] for j in numpy.random.default_rng(seed).choice(len(kept), K, replace=False)``.

The result is the sorted list of data-set indices (:func:`select_indices`). Labels and ids are read
without decoding an image where the data set can give them (``dataset.sample_label(i)``,
``dataset.sample_id(i)``); otherwise the sample is read.

    >>> from xaibench.data.shapes import ShapesDataset
    >>> shapes = ShapesDataset(12)          # labels 4 1 2 5 4 4 2 3 2 1 5 4
    >>> select_indices(shapes, Selection(classes=("ring",)))
    [0, 4, 5, 11]
    >>> select_indices(shapes, Selection(sample=3), seed=0)
    [6, 7, 8]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xaibench.data.transforms import normalize_class_name
from xaibench.errors import UnreadableImageError, XaibenchError

#: How many names a message shows at most.
_SHOWN = 8


@dataclass(frozen=True)
class Selection:
    """The images to score, chosen from the pool (the first ``n``) by class, by id, or at random.

    Attributes:
        classes: Class names (any case; spaces, ``_`` and ``-`` ignored) or indices into the model's
            classes; None keeps every class.
        ids: Image ids, as the data set names them (``per_image.csv``'s ``image_id``); None keeps every id.
        sample: Draw this many of the images kept, seeded by the run's seed; None keeps them all.

    Example:
        ``Selection(classes=("disk", "star"), sample=20)``: 20 random disks and stars.
    """

    classes: tuple[str | int, ...] | None = None
    ids: tuple[str, ...] | None = None
    sample: int | None = None

    def __post_init__(self) -> None:
        for name in ("classes", "ids"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, tuple):
                if isinstance(value, (str, bytes)):
                    raise XaibenchError(f"--{name} takes a list of {name}, e.g. ({value!r},), not one text")
                object.__setattr__(self, name, tuple(value))

    def check(self) -> None:
        """Check what can be checked without the data set.

        Raises:
            XaibenchError: an empty list, a sample size below 1, a class or id that is not a text
                (or, for classes, an index).
        """
        if self.classes is not None:
            if not self.classes:
                raise XaibenchError("--classes names no class; name at least one, e.g. --classes disk,star")
            for c in self.classes:
                if isinstance(c, bool) or not isinstance(c, (str, int)) or (isinstance(c, str) and not c.strip()):
                    raise XaibenchError(f"--classes takes class names or indices, got {c!r}")
        if self.ids is not None:
            if not self.ids:
                raise XaibenchError("--ids names no image; name at least one id, or a file of ids")
            for i in self.ids:
                if not isinstance(i, str) or not i:
                    raise XaibenchError(f"--ids takes image ids (texts), got {i!r}")
        if self.sample is not None and (isinstance(self.sample, bool) or not isinstance(self.sample, int) or self.sample < 1):
            raise XaibenchError(f"--sample must be at least 1, got {self.sample!r}")


def parse_ids(text: str) -> tuple[str, ...]:
    """The ids of ``--ids``: a comma-separated list (``a.jpg,b.jpg``; one id: ``a.jpg,``), else the name of
    a UTF-8 text file with one id a line (blank lines ignored), else one id.

    Raises:
        XaibenchError: the file cannot be read, or is not UTF-8 text.
    """
    if "," in text:
        return tuple(part.strip() for part in text.split(",") if part.strip())
    path = Path(text)
    if not path.is_file():
        return (text.strip(),) if text.strip() else ()
    try:
        content = path.read_bytes().decode("utf-8")
    except OSError as error:
        raise XaibenchError(f"--ids {text}: the file cannot be read ({error.strerror or error})") from None
    except UnicodeDecodeError:
        raise XaibenchError(
            f"--ids {text} is not a text file of ids (one a line); to name that one id, end it with a comma: --ids {text},"
        ) from None
    return tuple(line.strip() for line in content.splitlines() if line.strip())


def parse_classes(text: str) -> tuple[str | int, ...]:
    """The classes of ``--classes``: comma-separated names or indices (``disk,star`` or ``0,5``)."""
    return tuple(int(part) if part.strip().isdigit() else part.strip() for part in text.split(",") if part.strip())


def resolve_classes(classes: Sequence[str | int], class_names: Sequence[str]) -> list[int]:
    """The label of each class: a name compared as :func:`normalize_class_name` compares them, or an index.

    Raises:
        XaibenchError: a name the classes do not have, or an index out of range.
    """
    by_name: dict[str, int] = {}
    for index, name in enumerate(class_names):
        by_name.setdefault(normalize_class_name(name), index)
    labels = []
    for c in classes:
        if isinstance(c, int):
            if not 0 <= c < len(class_names):
                raise XaibenchError(f"--classes: class index {c} is out of range; the classes are 0 to {len(class_names) - 1}")
            labels.append(c)
            continue
        found = by_name.get(normalize_class_name(c))
        if found is None:
            shown = ", ".join(class_names[:_SHOWN]) + (", ..." if len(class_names) > _SHOWN else "")
            raise XaibenchError(f"--classes: no class '{c}' among the model's {len(class_names)} classes ({shown})")
        labels.append(found)
    return sorted(set(labels))


def class_labels(dataset: Sequence[Any], indices: Sequence[int]) -> dict[int, int]:
    """The label of each image of ``indices`` (``dataset.sample_label(i)`` where the data set has it;
    otherwise read). An image that cannot be read has no label and is left out."""
    label = getattr(dataset, "sample_label", None)
    labels = {}
    for i in indices:
        try:
            labels[i] = int(label(i)) if label is not None else int(dataset[i].label)
        except UnreadableImageError:
            continue
    return labels


def image_ids(dataset: Sequence[Any], indices: Sequence[int]) -> dict[int, str]:
    """The id of each image of ``indices`` (``dataset.sample_id(i)``, else read; an unreadable image is left out)."""
    name = getattr(dataset, "sample_id", None)
    ids = {}
    for i in indices:
        try:
            ids[i] = name(i) if name is not None else dataset[i].id
        except UnreadableImageError:
            continue
    return ids


def select_indices(
    dataset: Sequence[Any],
    selection: Selection,
    *,
    n: int | None = None,
    seed: int = 0,
    class_names: Sequence[str] | None = None,
) -> list[int]:
    """The sorted data-set indices that ``selection`` chooses among the first ``n`` images (all: None).

    Args:
        dataset: The data set.
        selection: What to choose.
        n: The pool: the first ``n`` images.
        seed: Seed of ``selection.sample``'s draw.
        class_names: The classes labels index into (default: ``dataset.class_names``).

    Raises:
        XaibenchError: an unknown class or id, a selection that keeps no image, or a sample larger than
            what it draws from (each message says what there is).
    """
    selection.check()
    total = len(dataset) if n is None else min(n, len(dataset))
    first = n is not None and total < len(dataset)
    pool, holds = (f"the first {total} images of the data set", "hold") if first else ("the data set", "holds")
    kept = list(range(total))
    if selection.classes is not None:
        names = class_names if class_names is not None else getattr(dataset, "class_names", None)
        if names is None:
            raise XaibenchError("--classes: the data set does not name its classes; choose images with --ids instead")
        wanted = set(resolve_classes(selection.classes, names))
        labels = class_labels(dataset, kept)
        kept = [i for i in kept if labels.get(i) in wanted]
        if not kept:
            shown = ", ".join(names[label] for label in sorted(wanted))
            raise XaibenchError(f"--classes {shown}: {pool} {holds} no image of {'that class' if len(wanted) == 1 else 'those classes'}")
    if selection.ids is not None:
        by_id = {image_id: i for i, image_id in image_ids(dataset, kept).items()}
        missing = [i for i in dict.fromkeys(selection.ids) if i not in by_id]
        if missing:
            among = " (among its images of the classes chosen)" if selection.classes is not None else ""
            more, verb = (f" and {len(missing) - 1} more", "are") if len(missing) > 1 else ("", "is")
            raise XaibenchError(
                f"--ids: {missing[0]!r}{more} {verb} not in {pool}{among}; give ids as per_image.csv's image_id names them"
            )
        kept = sorted({by_id[i] for i in selection.ids})
    if selection.sample is not None:
        if selection.sample > len(kept):
            what = "images of the classes chosen" if selection.classes is not None else "images"
            raise XaibenchError(
                f"--sample {selection.sample}: {pool} {holds} only {len(kept)} {what} to draw from; ask for at most {len(kept)}"
            )
        drawn = np.random.default_rng(seed).choice(len(kept), size=selection.sample, replace=False)
        kept = sorted(kept[j] for j in drawn.tolist())
    return kept


def describe(selection: Selection | None, indices: Sequence[int], class_names: Sequence[str] | None = None) -> dict[str, Any] | None:
    """The selection as ``config.json`` records it (None: the first n images): the classes (by their
    names in ``class_names``), the ids and the sample size asked for, and the indices chosen."""
    if selection is None:
        return None
    classes = None
    if selection.classes is not None:
        labels = resolve_classes(selection.classes, class_names) if class_names is not None else selection.classes
        classes = [class_names[label] if class_names is not None else label for label in labels]
    return {
        "classes": classes,
        "ids": None if selection.ids is None else list(dict.fromkeys(selection.ids)),
        "sample": selection.sample,
        "indices": [int(i) for i in indices],
    }
