"""The built-in benchmark: procedurally generated shapes on cluttered backgrounds, with exact ground truth.

Every image shows one object of one of :data:`SHAPE_CLASSES` (disk, square, triangle, cross, ring,
star) with a random position, size (16-30 px across on a 64 px image, scaled with ``image_size``),
rotation and colour, drawn over a background that carries no class information: a smooth random
colour gradient with low-frequency noise, thin random lines, small irregular blobs and specks, and
faint pixel noise. The class can therefore be recognised only from the object itself.

Because the images are rendered, the ground truth is exact: ``mask`` is the set of pixels whose
centres the object covers (it is drawn last, so every mask pixel shows the object), and ``boxes``
holds the one tight inclusive box ``(x0, y0, x1, y1)`` of that mask. A localization method is
right on this data set exactly when it points at those pixels.

Splits:
    ``"train"`` and ``"test"``: one object per image.
    ``"distractor"``: the labelled object plus a second object of a *different* class, the two a few
    pixels apart (their masks are disjoint). Mask and box are those of the labelled object only, so
    an explanation of the label that lights up the distractor is wrong. :meth:`ShapesDataset.scene`
    also returns the distractor's class and mask.

Item ``i`` is rendered lazily from ``np.random.default_rng([seed, split_index, i])``, so the same
``(seed, split, i)`` always gives the same pixels and the splits draw from independent streams.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from torch.utils.data import Dataset

from xaibench.data.sample import Sample

__all__ = [
    "GENERATOR_VERSION",
    "SHAPE_CLASSES",
    "SPLITS",
    "ShapesDataset",
    "ShapesScene",
    "mask_box",
    "render_scene",
    "shape_mask",
    "load_builtin",
]

SHAPE_CLASSES: tuple[str, ...] = ("disk", "square", "triangle", "cross", "ring", "star")
"""The object classes, in label order."""

SPLITS: tuple[str, ...] = ("train", "test", "distractor")
"""The splits; a split's position here is part of its random stream's seed."""

GENERATOR_VERSION = "shapes-v2"
"""Changes whenever the rendered pixels change, so that cached networks trained on them are retired."""

_REFERENCE_SIZE = 64  # sizes below are given for a 64 px image and scaled with ``image_size``
_MIN_DIAMETER, _MAX_DIAMETER = 16.0, 30.0
_GAP = 3.0  # px between the circumscribed circles of the two objects of a distractor image
_MIN_CONTRAST = 0.45  # Euclidean RGB distance between an object and the background under it


@dataclass(frozen=True)
class ShapesScene:
    """Everything rendered for one item, including what a :class:`Sample` leaves out.

    Attributes:
        image: (3, H, W) float32 RGB in [0, 1].
        label: Class index of the labelled object.
        mask: (H, W) bool pixel mask of the labelled object.
        distractor_label: Class index of the second object (``"distractor"`` split), else None.
        distractor_mask: (H, W) bool pixel mask of the second object, else None.
    """

    image: np.ndarray
    label: int
    mask: np.ndarray
    distractor_label: int | None = None
    distractor_mask: np.ndarray | None = None


@lru_cache(maxsize=8)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates ``(y, x)``, each (size, size) float32; cached and read-only."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    y.flags.writeable = False
    x.flags.writeable = False
    return y, x


@lru_cache(maxsize=8)
def _upsampler(size: int, cells: int) -> np.ndarray:
    """(size, cells) matrix of bilinear weights that stretches ``cells`` samples over ``size`` pixels."""
    pos = np.linspace(0.0, cells - 1.0, size)
    lo = np.minimum(np.floor(pos).astype(int), cells - 2)
    frac = pos - lo
    weights = np.zeros((size, cells), dtype=np.float32)
    weights[np.arange(size), lo] = 1.0 - frac
    weights[np.arange(size), lo + 1] = frac
    weights.flags.writeable = False
    return weights


def shape_mask(
    cls: int, cy: float, cx: float, radius: float, angle: float, size: int
) -> np.ndarray:
    """Pixel mask of one object: the pixels whose centres the shape covers.

    Every shape is inscribed in the circle ``(cy, cx, radius)``, so a circle inside the image keeps
    the whole object inside the image.

    Args:
        cls: Class index into :data:`SHAPE_CLASSES`.
        cy, cx: Centre in pixels (row, column).
        radius: Radius of the circumscribed circle in pixels.
        angle: Rotation in radians.
        size: Height and width of the image.

    Returns:
        (size, size) bool mask.
    """
    y, x = _grid(size)
    cos, sin = math.cos(angle), math.sin(angle)
    dx, dy = (x - cx) / radius, (y - cy) / radius
    u = cos * dx + sin * dy
    v = -sin * dx + cos * dy
    name = SHAPE_CLASSES[cls]
    if name == "disk":
        return u * u + v * v <= 1.0
    if name == "square":
        half = 1.0 / math.sqrt(2.0)
        return (np.abs(u) <= half) & (np.abs(v) <= half)
    if name == "triangle":
        # Equilateral triangle inscribed in the unit circle: three half-planes at distance 1/2.
        inside = np.ones_like(u, dtype=bool)
        for k in range(3):
            normal = math.pi / 2.0 + math.pi / 3.0 + k * 2.0 * math.pi / 3.0
            inside &= u * math.cos(normal) + v * math.sin(normal) <= 0.5
        return inside
    if name == "cross":
        arm, length = 0.3, math.sqrt(1.0 - 0.3**2)
        au, av = np.abs(u), np.abs(v)
        return ((au <= arm) & (av <= length)) | ((av <= arm) & (au <= length))
    if name == "ring":
        r2 = u * u + v * v
        return (r2 <= 1.0) & (r2 >= 0.55**2)
    if name == "star":
        # Five-pointed star: fold the angle onto one half-point, then test against its straight edge
        # from the tip (1, 0) to the inner vertex at radius ``inner`` and angle pi/5.
        inner, step = 0.4, 2.0 * math.pi / 5.0
        r = np.sqrt(u * u + v * v)
        a = np.abs(np.mod(np.arctan2(v, u) + step / 2.0, step) - step / 2.0)
        px, py = r * np.cos(a), r * np.sin(a)
        ix, iy = inner * math.cos(step / 2.0), inner * math.sin(step / 2.0)
        nx, ny = iy, 1.0 - ix  # normal of the edge, pointing away from the centre
        return (px - 1.0) * nx + py * ny <= 0.0
    raise AssertionError(f"unhandled class {name!r}")  # pragma: no cover


def _window(
    y0: float, y1: float, x0: float, x1: float, margin: float, size: int
) -> tuple[slice, slice]:
    """Slices of the pixel grid covering ``[y0, y1] x [x0, x1]`` grown by ``margin``, clipped to the image."""
    return (
        slice(max(0, math.floor(y0 - margin)), min(size, math.ceil(y1 + margin) + 1)),
        slice(max(0, math.floor(x0 - margin)), min(size, math.ceil(x1 + margin) + 1)),
    )


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """(size, size, 3) float32 view of a smooth random background with clutter that belongs to no class."""
    y, x = _grid(size)
    scale = size / _REFERENCE_SIZE
    base = rng.uniform(0.15, 0.85, size=(3, 1, 1)).astype(np.float32)
    theta = rng.uniform(0.0, 2.0 * math.pi)
    ramp = (math.cos(theta) / size) * x + (math.sin(theta) / size) * y - 0.5
    slope = rng.uniform(-0.35, 0.35, size=(3, 1, 1)).astype(np.float32)
    up = _upsampler(size, 4)
    cells = rng.normal(0.0, 0.08, size=(3, 4, 4)).astype(np.float32)
    channels = up @ cells @ up.T  # low-frequency noise: bilinear upsampling of a 4x4 grid
    channels += base
    channels += slope * ramp
    image = channels.transpose(1, 2, 0)  # (size, size, 3) view, so a mask indexes whole pixels

    # Thin lines: pixels within ~0.7 px of a segment (evaluated in the segment's bounding window).
    width = 0.7 * max(scale, 1.0)
    for _ in range(rng.integers(2, 6)):
        x0, y0 = rng.uniform(0, size - 1, size=2)
        direction = rng.uniform(0.0, 2.0 * math.pi)
        length = rng.uniform(10.0, 40.0) * scale
        dx, dy = math.cos(direction) * length, math.sin(direction) * length
        win = _window(min(y0, y0 + dy), max(y0, y0 + dy), min(x0, x0 + dx), max(x0, x0 + dx), width, size)
        wy, wx = y[win] - y0, x[win] - x0
        t = np.clip((wx * dx + wy * dy) / (length * length), 0.0, 1.0)
        image[win][(wx - t * dx) ** 2 + (wy - t * dy) ** 2 <= width * width] = rng.uniform(0.0, 1.0, size=3)

    # Small irregular blobs: ellipses far smaller than any object.
    for _ in range(rng.integers(2, 6)):
        cy, cx = rng.uniform(0, size - 1, size=2)
        ra, rb = rng.uniform(0.8, 2.5, size=2) * scale
        phi = rng.uniform(0.0, math.pi)
        win = _window(cy, cy, cx, cx, max(ra, rb), size)
        wy, wx = y[win] - cy, x[win] - cx
        u = math.cos(phi) * wx + math.sin(phi) * wy
        v = -math.sin(phi) * wx + math.cos(phi) * wy
        image[win][(u / ra) ** 2 + (v / rb) ** 2 <= 1.0] = rng.uniform(0.0, 1.0, size=3)

    # Specks: single pixels.
    n_specks = int(rng.integers(5, 20) * scale * scale)
    image[rng.integers(0, size, n_specks), rng.integers(0, size, n_specks)] = rng.uniform(
        0.0, 1.0, size=(n_specks, 3)
    )
    return image


def _contrasting_colour(rng: np.random.Generator, under: np.ndarray) -> np.ndarray:
    """A random RGB colour at least ``_MIN_CONTRAST`` away from the mean colour ``under`` it."""
    reference = under.reshape(-1, 3).mean(0)
    candidates = rng.uniform(0.0, 1.0, size=(64, 3))
    distance = np.linalg.norm(candidates - reference, axis=1)
    ok = np.flatnonzero(distance >= _MIN_CONTRAST)
    if ok.size:
        return candidates[ok[0]].astype(np.float32)
    # Practically unreachable; the farthest candidate is still the best contrast available.
    return candidates[np.argmax(distance)].astype(np.float32)  # pragma: no cover


def _place(rng: np.random.Generator, radius: float, size: int) -> tuple[float, float]:
    """A random centre that keeps the circle of ``radius`` inside the pixel grid."""
    cy, cx = rng.uniform(radius, size - 1 - radius, size=2)
    return float(cy), float(cx)


def _place_pair(
    rng: np.random.Generator, r1: float, r2: float, size: int
) -> tuple[tuple[float, float], tuple[float, float], float]:
    """Centres for two circles inside the image at least ``_GAP`` px apart; shrinks ``r2`` if need be."""
    gap = _GAP * size / _REFERENCE_SIZE
    r2_min = _MIN_DIAMETER / 2.0 * size / _REFERENCE_SIZE * 0.75
    while True:
        c1 = rng.uniform(r1, size - 1 - r1, size=(256, 2))
        c2 = rng.uniform(r2, size - 1 - r2, size=(256, 2))
        ok = np.flatnonzero(np.linalg.norm(c1 - c2, axis=1) >= r1 + r2 + gap)
        if ok.size:
            k = ok[0]
            return (float(c1[k, 0]), float(c1[k, 1])), (float(c2[k, 0]), float(c2[k, 1])), r2
        if r2 > r2_min:
            r2 = max(r2_min, r2 - 1.0)
        else:  # pragma: no cover - only for images far too small for two objects
            raise ValueError(f"image_size={size} is too small for two objects")


def render_scene(seed: int, split: str, index: int, image_size: int = 64) -> ShapesScene:
    """Render item ``index`` of ``split`` deterministically from ``(seed, split, index)``.

    Args:
        seed: Seed of the data set.
        split: One of :data:`SPLITS`.
        index: Item number, >= 0.
        image_size: Height and width in pixels.

    Returns:
        The rendered :class:`ShapesScene`.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    rng = np.random.default_rng([seed, SPLITS.index(split), index])
    size = image_size
    scale = size / _REFERENCE_SIZE
    image = _background(rng, size)

    label = int(rng.integers(len(SHAPE_CLASSES)))
    radius = rng.uniform(_MIN_DIAMETER, _MAX_DIAMETER) / 2.0 * scale
    distractor_label = distractor_mask = None
    if split == "distractor":
        distractor_label = int((label + rng.integers(1, len(SHAPE_CLASSES))) % len(SHAPE_CLASSES))
        r2 = rng.uniform(_MIN_DIAMETER, _MAX_DIAMETER) / 2.0 * scale
        centre, centre2, r2 = _place_pair(rng, radius, r2, size)
        distractor_mask = shape_mask(
            distractor_label, *centre2, r2, rng.uniform(0.0, 2.0 * math.pi), size
        )
        image[distractor_mask] = _contrasting_colour(rng, image[distractor_mask])
    else:
        centre = _place(rng, radius, size)

    mask = shape_mask(label, *centre, radius, rng.uniform(0.0, 2.0 * math.pi), size)
    image[mask] = _contrasting_colour(rng, image[mask])

    channels = image.transpose(2, 0, 1)  # back to the contiguous (3, size, size) array
    channels += 0.02 * rng.standard_normal(size=channels.shape, dtype=np.float32)
    np.clip(channels, 0.0, 1.0, out=channels)
    return ShapesScene(
        image=channels,
        label=label,
        mask=mask,
        distractor_label=distractor_label,
        distractor_mask=distractor_mask,
    )


def mask_box(mask: torch.Tensor) -> torch.Tensor:
    """The tight inclusive box ``(x0, y0, x1, y1)`` of a non-empty (H, W) mask, as (1, 4) float32."""
    ys = torch.nonzero(mask.any(1)).flatten()
    xs = torch.nonzero(mask.any(0)).flatten()
    return torch.tensor([[xs[0], ys[0], xs[-1], ys[-1]]], dtype=torch.float32)


class ShapesDataset(Dataset[Sample]):
    """Procedurally generated shapes with exact masks and boxes (see the module docstring).

    Args:
        size: Number of items.
        split: ``"train"``, ``"test"`` or ``"distractor"``.
        seed: Seed; together with ``split`` and the index it fixes every pixel.
        image_size: Height and width of the images in pixels.

    Attributes:
        class_names: Names of the classes, indexed by label.
        name: Name of the data set, ``"builtin"``.
    """

    name = "builtin"

    def __init__(self, size: int, split: str = "test", seed: int = 0, image_size: int = 64) -> None:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
        if size < 0:
            raise ValueError(f"size must be >= 0, got {size}")
        if image_size < 16:
            raise ValueError(f"image_size must be >= 16, got {image_size}")
        self.size = size
        self.split = split
        self.seed = seed
        self.image_size = image_size
        self.class_names: list[str] = list(SHAPE_CLASSES)

    def __len__(self) -> int:
        return self.size

    def _check_index(self, index: int) -> int:
        if index < 0:
            index += self.size
        if not 0 <= index < self.size:
            raise IndexError(f"index {index} out of range for a data set of {self.size} items")
        return index

    def sample_id(self, index: int) -> str:
        """The id of item ``index``, without rendering it."""
        return f"shapes-{self.split}-{self._check_index(index):06d}"

    def scene(self, index: int) -> ShapesScene:
        """The full rendering of item ``index``, including the distractor's class and mask."""
        return render_scene(self.seed, self.split, self._check_index(index), self.image_size)

    def __getitem__(self, index: int) -> Sample:
        index = self._check_index(index)
        scene = render_scene(self.seed, self.split, index, self.image_size)
        mask = torch.from_numpy(scene.mask)
        return Sample(
            id=self.sample_id(index),
            image=torch.from_numpy(scene.image),
            label=scene.label,
            boxes=mask_box(mask),
            mask=mask,
        )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(size={self.size}, split={self.split!r}, seed={self.seed}, "
            f"image_size={self.image_size})"
        )


#: How many images ``builtin`` holds when the caller does not say.
DEFAULT_SIZE = 500


def load_builtin(
    path: str | None,
    *,
    image_size: tuple[int, int],
    size: int | None = None,
    seed: int = 0,
    class_names: Sequence[str] | None = None,
) -> ShapesDataset:
    """The ``builtin`` data set kind: ``builtin`` is the test split, ``builtin:SPLIT`` names one.

    Args:
        path: The split (``test``, ``distractor``, ``train``), or None for ``test``.
        image_size: (H, W); the generated images are square, so H must equal W.
        size: Number of images (default :data:`DEFAULT_SIZE`).
        seed: The generator's seed.
        class_names: The model's classes: they must be :data:`SHAPE_CLASSES` (or None).

    Raises:
        DatasetError: ``size`` below 1 (an empty benchmark would score nothing).
        XaibenchError: an unknown split, a non-square size, or a model with other classes.
    """
    from xaibench.errors import DatasetError, XaibenchError

    if size is not None and size < 1:
        spec = "builtin" if path is None else f"builtin:{path}"
        raise DatasetError(f"the data set '{spec}' would be empty: size is {size}; ask for at least 1 image (--n)")

    if class_names is not None and list(class_names) != list(SHAPE_CLASSES):
        raise XaibenchError(
            f"the builtin data set's classes are {', '.join(SHAPE_CLASSES)}; the model's are not "
            "(use --model builtin)"
        )
    split = path or "test"
    if split not in SPLITS:
        raise XaibenchError(f"unknown builtin split '{split}'; choose one of {', '.join(SPLITS)}")
    height, width = image_size
    if height != width:
        raise XaibenchError(f"the builtin data set is square; got image size {height} x {width}")
    return ShapesDataset(DEFAULT_SIZE if size is None else size, split, seed=seed, image_size=height)
