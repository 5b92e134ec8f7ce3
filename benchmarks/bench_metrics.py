"""What each default localization metric's ``score`` costs on the CPU, per 1,000 maps.

Batches of ``--batch`` generated images of the built-in data set (rendered at each size, with their
boxes and masks) and the built-in network's maps of them, CAM, Grad-CAM and saliency in turn (the
maps of ``xaibench run --methods cam,gradcam,saliency``), upsampled and min-max scaled. Every
default metric scores each batch as a run scores it: in the run's order, on one ``MetricInput``, so
that metrics sharing work (the CAM box, the contour search of MaxBoxAcc and MaxBoxAccV2, the object
regions) pay for it once, in the first metric that asks ("in a run", whose shares add up to the
total); and each metric on a batch of its own ("alone", what it costs when it is the only one asked
for). Each round times every size once, the sizes' order rotating; the figures are medians over
``--rounds``, with ``--threads`` torch threads. ``--clock cpu`` counts the process's CPU time instead of
the wall clock: the same on a quiet machine for this single-threaded work, steadier on a busy one.

    python benchmarks/bench_metrics.py [--sizes 64 224] [--batch 64] [--rounds 7] [--threads 2] [--clock wall]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

import xaibench
from xaibench.metric import DEFAULT_METRICS, MetricInput, create_metric


METHODS = ("cam", "gradcam", "saliency")


def builtin_batch(size: int, n: int, seed: int = 0) -> MetricInput:
    """``n`` generated images of ``size`` x ``size`` and the built-in network's maps of their labels,
    image ``i`` explained by ``METHODS[i % 3]``."""
    model = xaibench.load_model("builtin")
    data = xaibench.load_dataset("builtin", image_size=(size, size), size=n, seed=seed)
    samples = [data[i] for i in range(n)]
    images = torch.stack([s.image for s in samples])
    labels = np.array([s.label for s in samples])
    every = {name: xaibench.create_explainer(name, model)(images, torch.from_numpy(labels)) for name in METHODS}
    maps = torch.stack([every[METHODS[i % len(METHODS)]][i] for i in range(n)]).numpy()
    top5 = np.stack([np.roll(np.arange(5), -int(label) + (k % 2)) for k, label in enumerate(labels)])
    return MetricInput(
        maps=maps, images=images, targets=torch.from_numpy(labels),
        labels=labels, top5=top5, boxes=[s.boxes for s in samples],
        difficult=[torch.zeros(len(s.boxes), dtype=torch.bool) for s in samples],
        masks=[s.mask for s in samples], target="label", model=None, originals=[s.original for s in samples],
        native_maps=None,
    )


def fresh(batch: MetricInput) -> MetricInput:
    """``batch`` with nothing shared from an earlier score."""
    return MetricInput(**{**batch.__dict__, "cache": {}})


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def time_metrics(batch: MetricInput, metrics: list, clock=time.perf_counter) -> dict[str, tuple[float, float]]:
    """Seconds of each metric's ``score``: in a run (one batch for all, in order) and alone."""
    shared, in_run, alone = fresh(batch), {}, {}
    for metric in metrics:
        start = clock()
        metric.score(shared)
        in_run[metric.name] = clock() - start
    for metric in metrics:
        own = fresh(batch)
        start = clock()
        metric.score(own)
        alone[metric.name] = clock() - start
    return {name: (in_run[name], alone[name]) for name in in_run}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 224], help="image sizes (square)")
    parser.add_argument("--batch", type=int, default=64, help="maps per batch")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall", help="wall clock or the process's CPU time")
    args = parser.parse_args()
    clock = CLOCKS[args.clock]
    torch.set_num_threads(args.threads)
    metrics = [create_metric(name) for name in DEFAULT_METRICS]
    batches = {size: builtin_batch(size, args.batch) for size in args.sizes}
    for size in args.sizes:  # warm-up (imports, first calls)
        time_metrics(batches[size], metrics)
    samples: dict[int, list[dict[str, tuple[float, float]]]] = {size: [] for size in args.sizes}
    for r in range(args.rounds):
        order = args.sizes[r % len(args.sizes):] + args.sizes[: r % len(args.sizes)]
        for size in order:
            samples[size].append(time_metrics(batches[size], metrics, clock))
    print(f"cpu, {args.threads} threads, batches of {args.batch} maps; seconds ({args.clock} clock) per 1,000 maps, "
          f"median of {args.rounds} rounds; share of the default metrics' total in a run")
    per_1000 = 1000 / args.batch
    for size in args.sizes:
        print(f"\n{size} x {size}\n\n| metric | in a run: s / 1,000 maps | share | alone: s / 1,000 maps |\n|---|---|---|---|")
        in_run = {m.name: statistics.median(s[m.name][0] for s in samples[size]) * per_1000 for m in metrics}
        for metric in metrics:
            alone = statistics.median(s[metric.name][1] for s in samples[size]) * per_1000
            seconds = in_run[metric.name]
            print(f"| {metric.name} | {seconds:.3f} | {100 * seconds / sum(in_run.values()):.1f}% | {alone:.3f} |")
        total = statistics.median(sum(v[0] for v in s.values()) for s in samples[size]) * per_1000
        print(f"| all (median of the rounds' totals) | {total:.3f} | 100% | |")


if __name__ == "__main__":
    main()
