"""Random numbers that depend on the run's seed and the image alone, never on the batch.

A random method (noise, random masks, sampled baselines, superpixel coalitions) draws from
:func:`image_generator`: a generator seeded with the run's seed and a CRC-32 of the image's bytes.
The same image therefore gets the same map whatever batch it comes in, and a resumed run computes the
same numbers as an uninterrupted one.
"""

from __future__ import annotations

import struct
import zlib

import torch
from torch import Tensor

#: Seeds are 32-bit: ``0 <= seed <= MAX_SEED`` (CRC-32's initial value, as :func:`image_seed` uses it).
MAX_SEED = 2**32 - 1


def image_seed(image: Tensor, seed: int) -> int:
    """A 32-bit seed from ``seed`` and the bytes of ``image`` (on any device, any dtype)."""
    data = image.detach().to("cpu", torch.float32).contiguous().numpy().tobytes()
    return zlib.crc32(data, seed & 0xFFFFFFFF)


def image_generator(image: Tensor, seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded by :func:`image_seed`."""
    return torch.Generator(device=device).manual_seed(image_seed(image, seed))


def derived_seed(seed: int, *keys: int) -> int:
    """A 32-bit seed for one part of an image's random numbers (e.g. one feature map's noise): the
    CRC-32 of ``keys`` (64-bit integers) continued from ``seed``."""
    return zlib.crc32(struct.pack(f"<{len(keys)}q", *keys), seed & 0xFFFFFFFF)
