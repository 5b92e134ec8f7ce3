"""Keep freed memory in the process, so that large CPU passes stop paying for fresh pages.

PyTorch's CPU tensors come from the C library's ``malloc``. glibc serves a block above its mmap
threshold (128 kB, raised on its own up to 32 MB) with freshly mapped pages and hands them back to the
operating system when the block is freed, and it trims the heap whenever more than its trim threshold
lies free at the top. A forward pass over a batch allocates and frees activations of tens of megabytes
(16 images at 224 x 224 through EfficientNet-Lite0: up to 77 MB each), so many passes map, fault in
and zero that memory anew: 57,000 to 102,000 page faults per forward and backward pass over 16 images,
which then take 1.17 to 1.28 times as long (``benchmarks/bench_cpu_passes.py``, 2 cores).

:func:`keep_freed_memory` raises both thresholds (glibc's ``mallopt``, ``M_MMAP_THRESHOLD`` and
``M_TRIM_THRESHOLD``), so freed blocks stay in the heap and the next pass reuses them: no page faults
after the first pass. The price: the process keeps its peak memory instead of giving it back
between passes. The setting is process-wide and cannot be undone, so importing xaibench never makes
it, nor does :func:`xaibench.cli.main`: the ``xaibench`` command, which owns its process, does (once,
at start, :func:`xaibench.cli.console`), and so do the benchmarks, for every library they time alike.
Call it from a program of your own to get the same speed. Only glibc has ``mallopt``: on other C
libraries (macOS, Windows, musl) it does nothing and returns False. glibc releases before 2.35 or so
cap the mmap threshold at 32 MiB; there the threshold falls back to that cap.
"""

from __future__ import annotations

import ctypes
import logging
import sys

logger = logging.getLogger(__name__)

#: ``mallopt`` parameters (glibc's malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: Blocks above this still get their own mapping (and are returned when freed): 1 GiB, else the
#: largest value an older glibc takes (32 MiB on 64-bit systems).
MMAP_THRESHOLDS = (1 << 30, 32 << 20)
#: The heap is trimmed only when this much lies free at its top: the largest value ``mallopt`` takes.
TRIM_THRESHOLD = 2**31 - 1


def keep_freed_memory() -> bool:
    """Tell glibc's ``malloc`` to keep freed memory for reuse instead of returning it to the system.

    Returns:
        True if the setting was made; False where the C library is not glibc.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018  (only glibc has it)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    trimmed = bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    mapped = any(mallopt(M_MMAP_THRESHOLD, threshold) for threshold in MMAP_THRESHOLDS)
    if not (trimmed and mapped):
        logger.debug("glibc refused mallopt (trim threshold set: %s, mmap threshold set: %s)", trimmed, mapped)
    return trimmed and mapped


def return_freed_memory() -> None:
    """Give the memory that is free inside the process back to the system: glibc's ``malloc_trim(0)``
    (every whole free page of the heap, wherever it lies) and pyarrow's pool's ``release_unused``.

    For a step that has streamed many parts through memory and keeps little of them (reading a run
    folder a part at a time): what those parts left free would otherwise count in the process's
    resident memory until something reuses it (at 50,000 images x 10 methods, ``load_run`` left 165
    MiB so). The memory stays available to the process, so nothing is lost but the pages' contents.
    Elsewhere than glibc the C library's part does nothing.
    """
    import pyarrow

    pyarrow.default_memory_pool().release_unused()
    if not sys.platform.startswith("linux"):
        return
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return
    trim.argtypes = [ctypes.c_size_t]
    trim(0)
