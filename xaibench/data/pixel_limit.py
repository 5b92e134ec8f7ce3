"""Pillow's limit on the pixels of an image file, set for one call and restored after it.

Pillow refuses (``DecompressionBombError``) an image file of more than twice
``PIL.Image.MAX_IMAGE_PIXELS`` pixels and warns above it; the image loaders
(:func:`xaibench.data.transforms.open_image`) read the limit at call time and turn a file above it
into an :class:`~xaibench.errors.UnreadableImageError`, which a run skips. Pillow's default is
89,478,485 pixels (about 89 million).

    >>> with pixel_limit(20_000):       # a run that skips images of more than 20,000 pixels
    ...     current_pixel_limit()
    20000
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from xaibench.errors import XaibenchError


def check_pixel_limit(limit: int | None) -> None:
    """``--max-image-pixels``: None (Pillow's) or at least 1.

    Raises:
        XaibenchError: a limit below 1.
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise XaibenchError(f"--max-image-pixels must be at least 1, got {limit}")


@contextmanager
def pixel_limit(limit: int | None) -> Iterator[None]:
    """``PIL.Image.MAX_IMAGE_PIXELS`` set to ``limit`` inside the block, then restored; None leaves it.

    Raises:
        XaibenchError: a limit below 1 (before anything is changed).
    """
    from PIL import Image

    check_pixel_limit(limit)
    before = Image.MAX_IMAGE_PIXELS
    if limit is not None:
        Image.MAX_IMAGE_PIXELS = limit
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = before


def current_pixel_limit() -> int | None:
    """Pillow's pixel limit now (None: no limit), as a run records it."""
    from PIL import Image

    return Image.MAX_IMAGE_PIXELS
