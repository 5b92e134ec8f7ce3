"""A long method's progress within a batch, on the run's progress bar.

Score-CAM, RISE, LIME and the other perturbation methods run hundreds to thousands of passes of the
network per batch, for minutes. They report ``(done, total)`` as they go
(:meth:`xaibench.explainer.Explainer.report_progress`); :class:`PassProgress` shows it after the
method's name, with the rate since the batch's call began and the time left at that rate:

    scorecam: 1,240/21,120 passes, 35.2/s, 9:25 left

rate = done / elapsed, left = (total - done) / rate.

Example:
    >>> progress = PassProgress(bar, "scorecam")
    >>> explainer.explain(images, targets, progress=progress)
"""

from __future__ import annotations

import time
from collections.abc import Callable

#: The bar is redrawn at most this often (seconds), and whenever the method finishes.
REFRESH_SECONDS = 0.5


def clock_text(seconds: float) -> str:
    """``h:mm:ss`` or ``m:ss``: ``clock_text(564) == "9:24"``."""
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def progress_text(method: str, done: int, total: int, elapsed: float) -> str:
    """What the bar shows after ``done`` of ``total`` passes in ``elapsed`` seconds."""
    text = f"{method}: {done:,}/{total:,} passes"
    if done > 0 and elapsed > 0:
        rate = done / elapsed
        text += f", {rate:.3g}/s, {clock_text((total - done) / rate)} left"
    return text


class PassProgress:
    """``progress(done, total)`` for one :meth:`~xaibench.explainer.Explainer.explain` call: shows
    :func:`progress_text` on ``bar`` (anything with ``set_postfix_str``), at most every
    :data:`REFRESH_SECONDS` and when ``done`` reaches ``total``."""

    def __init__(self, bar: object, method: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.bar = bar
        self.method = method
        self.clock = clock
        self.start = clock()
        self.shown = float("-inf")

    def __call__(self, done: int, total: int) -> None:
        now = self.clock()
        if done < total and now - self.shown < REFRESH_SECONDS:
            return
        self.shown = now
        self.bar.set_postfix_str(progress_text(self.method, done, total, now - self.start))
