"""Runs split over processes started by PyTorch's launcher, ``torchrun``.

``torchrun --nproc-per-node N -m xaibench run ...`` starts N processes (ranks) on a machine, and with
``--nnodes`` and a rendezvous, on several machines; it tells each its place in the environment
(``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``).
:func:`current_share` reads it: rank ``r`` of ``W`` evaluates the batches ``k`` with ``k % W == r``
(``k`` counts every batch of the run, done or not), so the work is keyed by batch, not by rank, and a
run resumes with any number of processes. The ranks meet through ``torch.distributed``
(:class:`ProcessGroup`): gloo on CPUs, nccl on GPUs, where ``--device cuda`` means ``cuda:LOCAL_RANK``.

Example:
    ``torchrun --nproc-per-node 2 -m xaibench run --methods cam,gradcam --num-images 500``
"""

from __future__ import annotations

import datetime
import os
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from xaibench.errors import XaibenchError

#: How long a rank waits for the others at a meeting point (rank 0 writing the configuration, the
#: slowest rank finishing its batches): a run's whole length, at most.
MEETING_TIMEOUT = datetime.timedelta(days=7)
#: Seconds between looks at a meeting point that is not complete yet.
POLL_SECONDS = 0.05


class ReportedByRankZero(XaibenchError):
    """An error that every rank finds alike (a fault of the run's arguments): rank 0 reports it, the
    others exit without a word, so that it is said once."""


@dataclass(frozen=True)
class Share:
    """This process's place among the run's processes, and so its share of the batches.

    Example:
        >>> Share(rank=1, world=2, local_rank=1).owns(3), Share(rank=1, world=2, local_rank=1).owns(4)
        (True, False)
    """

    rank: int
    world: int
    local_rank: int

    def owns(self, batch: int) -> bool:
        """Whether batch number ``batch`` (0, 1, ... over all the run's batches) is this process's."""
        return batch % self.world == self.rank

    def __str__(self) -> str:
        return f"rank {self.rank} of {self.world}"


def current_share() -> Share | None:
    """This process's :class:`Share` when torchrun started it among several; None otherwise (a run of
    its own, or torchrun with one process)."""
    world = _environment_int("WORLD_SIZE")
    if world is None or world <= 1:
        return None
    rank, local_rank = _environment_int("RANK"), _environment_int("LOCAL_RANK")
    if rank is None or not 0 <= rank < world:
        raise XaibenchError(f"WORLD_SIZE is {world} but RANK is {os.environ.get('RANK')!r}: start the run with torchrun")
    return Share(rank, world, rank if local_rank is None else local_rank)


def local_cores() -> int:
    """The cores this process may use: its CPU affinity, shared among the processes torchrun started
    on this machine (``LOCAL_WORLD_SIZE``), at least 1."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // max(1, _environment_int("LOCAL_WORLD_SIZE") or 1))


def rank_device(device: str, share: Share | None) -> str:
    """The device of this process: ``cuda`` (no index) means ``cuda:LOCAL_RANK`` under torchrun."""
    if share is not None and device == "cuda":
        return f"cuda:{share.local_rank}"
    return device


class ProcessGroup:
    """The run's processes, met through ``torch.distributed`` for as long as the ``with`` block lasts.

    Only meeting points and small messages pass between them (the rows go to the run folder's part
    files, each rank its own), so the backend matters little: nccl where the device is a GPU (as
    PyTorch asks), gloo otherwise.
    """

    def __init__(self, share: Share, device: str) -> None:
        self.share = share
        try:
            self._device = torch.device(device)
        except (RuntimeError, TypeError):
            raise XaibenchError(f"--device {device!r} is not a torch device (cpu, cuda, cuda:1, ...)") from None

    def __enter__(self) -> ProcessGroup:
        if not dist.is_available():
            raise XaibenchError("this PyTorch has no torch.distributed: run xaibench without torchrun")
        backend = "nccl" if self._device.type == "cuda" else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(self._device)
        dist.init_process_group(backend, timeout=MEETING_TIMEOUT)
        return self

    def __exit__(self, *exc: object) -> None:
        dist.destroy_process_group()

    def barrier(self) -> None:
        """Wait until every rank is here. The wait polls, so that a signal (torchrun stopping the ranks
        because one failed, Ctrl-C) is taken at once, not after the backend's timeout."""
        cuda = self._device.type == "cuda"
        work = dist.barrier(async_op=True, **({"device_ids": [self._device.index or 0]} if cuda else {}))
        while not work.is_completed():
            time.sleep(POLL_SECONDS)
        work.wait()

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value``, on every rank (a small picklable object), once rank 0 gets here."""
        self.barrier()  # the others wait here, taking signals, until rank 0 has the value
        box = [value if self.share.rank == 0 else None]
        dist.broadcast_object_list(box, src=0, device=self._device if self._device.type == "cuda" else None)
        return box[0]


def _environment_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise XaibenchError(f"{name} is {value!r}, not a whole number: start the run with torchrun") from None
