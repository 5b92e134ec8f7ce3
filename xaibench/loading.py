"""Reading a run's batches: the samples of each span of indices, decoded ahead of the network.

A run's batches are fixed spans of data-set indices (``[k * batch_size, (k + 1) * batch_size)``). Each
span is read whole into a :class:`ReadSpan`: its readable samples stacked into a
:class:`~xaibench.data.sample.Batch`, their digests, and the reason each unreadable one was skipped.
With ``workers > 0``, ``torch.utils.data.DataLoader`` worker processes read the next spans while the
main process runs the network; the spans come back in their order, with the same samples, so a run
gives the same rows either way.

Only :class:`~xaibench.errors.UnreadableImageError` (a missing, undecodable, truncated or oversized
file) skips an image; any other error of the data set stops the run when its span is reached, naming
the sample, as it does without workers.

Workers pay when reading is slow next to the network (decoding large JPEGs for a fast GPU); starting
them costs a fork and a start-up per worker. :func:`span_reader` therefore reads the first span in
the main process and starts workers only if reading it took :data:`WORKER_THRESHOLD_SECONDS` or more
and spans are left: a data set held in memory reads in microseconds and starts none.

Example:
    >>> spans = [range(0, 32), range(32, 64)]
    >>> with span_reader(dataset, spans, workers=2) as spans_read:
    ...     for read in spans_read:
    ...         read.batch.images.shape   # (32, 3, H, W), the readable images of the span
"""

from __future__ import annotations

import logging
import multiprocessing
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from torch.utils.data import DataLoader, Dataset

from xaibench.data.sample import Batch, Sample, collate, sample_digest
from xaibench.distributed import local_cores
from xaibench.errors import UnreadableImageError, XaibenchError

logger = logging.getLogger(__name__)

#: Worker processes at most when the caller does not say (each holds its prefetched batches).
MAX_WORKERS = 4
#: Reading the first span in the main process must take at least this long for workers to start:
#: below it (data held in memory, tiny images), a fork and the workers' start-up cost more than they hide.
WORKER_THRESHOLD_SECONDS = 0.05
#: Spans each worker reads ahead (``DataLoader``'s ``prefetch_factor``).
PREFETCH_SPANS = 2


@dataclass(frozen=True)
class ReadSpan:
    """One span of indices, read.

    Attributes:
        indices: The span's readable indices, in order.
        batch: Their samples stacked (None when none could be read).
        digests: Each readable sample's :func:`~xaibench.data.sample.sample_digest`.
        unreadable: ``(index, reason)`` for each image skipped as unreadable, in order.
    """

    indices: list[int]
    batch: Batch | None
    digests: list[str]
    unreadable: list[tuple[int, str]]


@dataclass(frozen=True)
class _Failed:
    """What a worker returns for a span the data set failed on (an error other than unreadable)."""

    message: str


def default_workers() -> int:
    """Workers for this process: one of its cores (under torchrun, the machine's cores shared among its
    ranks) left to it, at most :data:`MAX_WORKERS`."""
    return max(0, min(MAX_WORKERS, local_cores() - 1))


def read_span(dataset: Sequence[Sample], indices: Sequence[int]) -> ReadSpan:
    """The samples of ``indices``, stacked, with their digests and the unreadable ones' reasons.

    Raises:
        XaibenchError: the data set failed on a sample with an error other than
            :class:`~xaibench.errors.UnreadableImageError` (the message names the sample).
    """
    samples, unreadable = [], []
    for index in indices:
        try:
            samples.append((index, dataset[index]))
        except UnreadableImageError as error:
            unreadable.append((index, str(error)))
        except XaibenchError as error:
            raise XaibenchError(f"sample {index} of the data set: {error}") from error
        except Exception as error:
            raise XaibenchError(
                f"the data set failed on sample {index} ({type(error).__name__}: {error}); this is not an "
                "unreadable image but an error in the data set's code or annotations"
            ) from error
    batch = collate([s for _, s in samples]) if samples else None
    return ReadSpan([i for i, _ in samples], batch, [sample_digest(s) for _, s in samples], unreadable)


class _Spans(Dataset):
    """The data set seen by ``DataLoader``: item ``span`` is :func:`read_span` of that span, or the
    error that stopped it (raised in the main process when the span's turn comes)."""

    def __init__(self, dataset: Sequence[Sample]) -> None:
        self.dataset = dataset

    def __getitem__(self, span: tuple[int, ...]) -> ReadSpan | _Failed:
        try:
            return read_span(self.dataset, span)
        except XaibenchError as error:
            return _Failed(str(error))


def _as_is(item: object) -> object:
    """``DataLoader``'s ``collate_fn``: a span comes back as its worker read it."""
    return item


@contextmanager
def span_reader(dataset: Sequence[Sample], spans: Sequence[Sequence[int]], workers: int | None = None) -> Iterator[Iterator[ReadSpan]]:
    """The spans of ``dataset`` read in order, as an iterator, for the ``with`` block; its workers (if
    any) are stopped when the block ends, whatever happens in it. Each unreadable image is logged as a
    warning when its span comes.

    Args:
        dataset: Indexable samples.
        spans: The spans to read, in order.
        workers: DataLoader worker processes reading ahead (0: none; None: :func:`default_workers`).
            Workers start only when the first span, read in the main process, took
            :data:`WORKER_THRESHOLD_SECONDS` or more and other spans are left; they read the next
            spans while the caller works on the first.
    """
    if workers is not None and workers < 0:
        raise XaibenchError(f"workers must be 0 or more, got {workers}")
    reads = _read_all(dataset, spans, default_workers() if workers is None else workers)
    try:
        yield reads
    finally:
        reads.close()  # stops the workers


def _read_all(dataset: Sequence[Sample], spans: Sequence[Sequence[int]], workers: int) -> Iterator[ReadSpan]:
    if not spans:
        return
    start = time.perf_counter()
    first = read_span(dataset, spans[0])
    rest = [tuple(span) for span in spans[1:]]
    if not workers or not rest or time.perf_counter() - start < WORKER_THRESHOLD_SECONDS:
        yield _logged(first)
        for span in rest:
            yield _logged(read_span(dataset, span))
        return
    loader = DataLoader(
        _Spans(dataset), batch_size=None, sampler=rest, num_workers=min(workers, len(rest)), collate_fn=_as_is,
        prefetch_factor=PREFETCH_SPANS, multiprocessing_context=_context(),
    )
    iterator = iter(loader)  # the workers start reading the next spans now
    try:
        yield _logged(first)
        for read in iterator:
            if isinstance(read, _Failed):
                raise XaibenchError(read.message)
            yield _logged(read)
    finally:
        iterator._shutdown_workers()


def _context() -> multiprocessing.context.BaseContext | None:
    """``fork`` on Linux: workers inherit the data set (one defined in a test or a notebook need not be
    picklable) instead of receiving a pickled copy; elsewhere the platform's default."""
    return multiprocessing.get_context("fork") if sys.platform.startswith("linux") else None


def _logged(read: ReadSpan) -> ReadSpan:
    for index, reason in read.unreadable:
        logger.warning("skipped image %d: %s", index, reason)
    return read
