"""Scoring the metrics that run no network on worker threads, while the network runs the next method.

A run alternates network work (the methods' passes, the faithfulness metrics' passes) with metric work
that runs no network (the localization metrics' contour searches, pointing games and histograms, and
the maps' thumbnails), which is single-threaded. :class:`MetricPool` takes each (batch, method)'s share
of the latter as a job and runs it on a worker thread, so that it overlaps the network work of the
methods and batches after it; the results come back in the order the jobs were given, so the rows are
written in the same order, with the same values. Most of that work is OpenCV's contour search, which
releases the GIL, so on a machine with cores to spare (a GPU's host) several threads score several
jobs at once (:func:`default_threads`).

On two CPU cores, ``benchmarks/bench_metric_overlap.py`` measures a sequence of (network, metrics)
units of ``efficientnet_lite0`` 1.12 to 1.21 times faster with the metrics on a thread (1.17 to 1.26 in
a forked process, which a library cannot start safely from a program that uses threads): the network's
two threads leave time on the cores that the metrics fill. A thread needs no copy of the maps, and the
metrics run the same code on the same inputs with the same torch settings: the same numbers.

At most ``limit`` jobs wait at once (a batch's methods: the memory of one batch's maps); a job waits
for the one before it to be taken first.

Example:
    >>> with MetricPool(threads=1, limit=5) as pool:
    ...     pool.submit(lambda: score(maps))
    ...     for result in pool.ready():   # the results done so far, in order
    ...         write(result)
    ...     for result in pool.drain():   # every result still to come, in order
    ...         write(result)
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Generic, TypeVar

from xaibench.distributed import local_cores

T = TypeVar("T")

#: Metric threads at most when the caller does not say.
MAX_THREADS = 8


def default_threads() -> int:
    """Metric threads for this process: half its cores (the network and the readers have the rest; under
    torchrun, the machine's cores shared among its ranks), at least 1, at most :data:`MAX_THREADS`."""
    return max(1, min(MAX_THREADS, local_cores() // 2))


class MetricPool(Generic[T]):
    """Jobs run on ``threads`` worker threads, started in order (0: each at once in the caller's thread);
    their results are taken in that order. A context manager: on leaving it, the job running (if any) is waited
    for and the results not taken are dropped."""

    def __init__(self, *, threads: int, limit: int) -> None:
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="xaibench-metrics") if threads else None
        self._limit = max(1, limit)
        self._pending: deque[Future[T]] = deque()

    def __enter__(self) -> MetricPool[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self._drop()
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    def submit(self, job: Callable[[], T]) -> None:
        """Queue ``job``; without a thread, run it now (an error it raises comes out of :meth:`ready`)."""
        if self._executor is not None:
            self._pending.append(self._executor.submit(job))
            return
        future: Future[T] = Future()
        try:
            future.set_result(job())
        except BaseException as error:  # handed over, as a thread's future would hold it
            future.set_exception(error)
        self._pending.append(future)

    def ready(self) -> Iterator[T]:
        """The results of the oldest jobs that are done, in order; past ``limit`` jobs, waiting for the
        oldest. Re-raises a job's error when its turn comes; the jobs after it are then dropped (their
        results never come), so what came is exactly the jobs before the error."""
        while self._pending and (self._pending[0].done() or len(self._pending) > self._limit):
            yield self._take()

    def drain(self) -> Iterator[T]:
        """Every result still to come, in order, waiting for each (and after an error, as :meth:`ready`)."""
        while self._pending:
            yield self._take()

    def _take(self) -> T:
        try:
            return self._pending.popleft().result()
        except BaseException:
            self._drop()
            raise

    def _drop(self) -> None:
        """Cancel the jobs not started and wait for the one running; forget every result."""
        for future in self._pending:
            future.cancel()
        for future in self._pending:
            if not future.cancelled():
                future.exception()  # waits; its result or error is dropped
        self._pending.clear()
