"""Does scoring the CPU-bound metrics in a worker process, overlapped with the next batch's network work, pay?

A run alternates network work (the methods' passes) with metric work that runs no network (the
localization metrics: contour searches, pointing games, histograms), which is single-threaded. On a
machine whose cores the network does not fill, the metrics of one (batch, method) could be scored in a
worker process while the network runs the next one. This measures that on ``efficientnet_lite0`` with
the default (localization) metrics:

- sequential: for each unit, the network work (a forward and backward pass on a batch, Grad-CAM's and
  saliency's kind of work), then the metrics of a batch of maps, in the main process;
- overlapped: the metrics of unit k in a worker while the main process runs the network work of unit
  k + 1: a thread of the main process (``--pool thread``), or a process (``--pool process``: one,
  forked, fed the maps by pickling, its torch on 1 thread).

The two are interleaved, ``--repeats`` times each, and the medians reported with their ratio; torch uses
``--threads`` threads in the main process (as a run does) and 1 in the worker.

    python benchmarks/bench_metric_overlap.py [--units 6] [--repeats 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

import xaibench
from xaibench.allocator import keep_freed_memory
from xaibench.data import collate
from xaibench.harness import build_metrics
from xaibench.metric import MetricInput

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-val-300"


def _metric_work(maps: np.ndarray, batch, labels: np.ndarray, threads: int | None = None) -> float:
    """Score the maps with every default metric that runs no network; the seconds it took."""
    if threads is not None:
        torch.set_num_threads(threads)
    start = time.perf_counter()
    scored = MetricInput(
        maps=maps, images=torch.empty(0), targets=torch.as_tensor(labels), labels=labels, top5=labels[:, None],
        boxes=batch.boxes, difficult=batch.difficult, masks=batch.masks, target="label", model=None,
        originals=batch.originals,
    )
    for metric in build_metrics(None):
        if not metric.passes_per_image:
            metric.score(scored)
    return time.perf_counter() - start


def _network_work(model: xaibench.Model, images: torch.Tensor, labels: torch.Tensor) -> None:
    pixels = images.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model(pixels)
        torch.autograd.grad(logits.gather(1, labels[:, None]).sum(), pixels)


def sequential(model, units) -> float:
    start = time.perf_counter()
    for images, labels, maps, batch in units:
        _network_work(model, images, labels)
        _metric_work(maps, batch, labels.numpy())
    return time.perf_counter() - start


def overlapped(model, units, pool, threads: int | None) -> float:
    start = time.perf_counter()
    pending = None
    for images, labels, maps, batch in units:
        _network_work(model, images, labels)
        if pending is not None:
            pending.result()
        pending = pool.submit(_metric_work, maps, batch, labels.numpy(), threads)
    pending.result()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--units", type=int, default=6)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--pool", choices=("thread", "process"), default="process")
    args = parser.parse_args()

    keep_freed_memory()
    torch.set_num_threads(args.threads)
    model = xaibench.load_model("efficientnet_lite0")
    dataset = xaibench.load_dataset(f"imagenet:{args.data}", image_size=model.input_size, class_names=model.class_names)
    gradcam = xaibench.create_explainer("gradcam", model)
    units = []
    for k in range(args.units):
        batch = collate([dataset[i] for i in range(k * args.batch, (k + 1) * args.batch)])
        units.append((batch.images, batch.labels, gradcam(batch.images, batch.labels).numpy(), batch))
    metric_alone = statistics.median(_metric_work(maps, batch, labels.numpy()) for _, labels, maps, batch in units)
    if args.pool == "process":
        pool, threads = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")), 1
    else:
        pool, threads = ThreadPoolExecutor(1), None
    with pool:
        pool.submit(int).result()  # started before the clock
        seq, over = [], []
        for _ in range(args.repeats):
            seq.append(sequential(model, units))
            over.append(overlapped(model, units, pool, threads))
    print(f"efficientnet_lite0, {args.units} units of {args.batch} images, {args.threads} threads, a {args.pool} "
          f"overlapping the metrics, median of {args.repeats}")
    print(f"  metrics of one unit alone: {metric_alone:.2f} s")
    print(f"  sequential {statistics.median(seq):.2f} s, overlapped {statistics.median(over):.2f} s, "
          f"sequential / overlapped {statistics.median(s / o for s, o in zip(seq, over)):.2f} "
          f"(per repetition: {', '.join(f'{s / o:.2f}' for s, o in zip(seq, over))})")


if __name__ == "__main__":
    main()
