"""Seconds per image of every method against the peers' implementations of it, in one run.

For each method that torchcam, pytorch-grad-cam or captum also implements (the ``PEERS`` tables of
``peers_*.py`` beside this file), on ``efficientnet_lite0`` with a batch of ``--batch`` images at
224 x 224 on the CPU: xaibench's method and each peer's, interleaved repetition by repetition so that
machine noise hits all alike, the median of ``--repeats``; the ratio is xaibench's time over the
fastest peer's (<= 1.0: xaibench is not slower). Prints a Markdown table.

    python benchmarks/bench_peers.py [--methods cam,gradcam] [--batch 16] [--repeats 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

import xaibench  # noqa: E402


def all_peers() -> dict[str, list]:
    """Every ``PEERS`` table of the ``peers_*.py`` modules beside this file, merged."""
    merged: dict[str, list] = {}
    for path in sorted(Path(__file__).parent.glob("peers_*.py")):
        for name, peers in importlib.import_module(path.stem).PEERS.items():
            merged.setdefault(name, []).extend(peers)
    return merged


def _seconds(fn, images, targets) -> float:
    start = time.perf_counter()
    fn(images, targets)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default=None, help="comma-separated (default: every method with a peer)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    peers = all_peers()
    names = args.methods.split(",") if args.methods else list(peers)
    model = xaibench.load_model("efficientnet_lite0")
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(args.batch, 3, 224, 224, generator=generator)
    targets = torch.randint(0, 1000, (args.batch,), generator=generator)

    print(f"efficientnet_lite0, batch {args.batch} x 3 x 224 x 224, cpu, {torch.get_num_threads()} threads, "
          f"median of {args.repeats}, seconds per image\n")
    print("| method | xaibench | peers | ratio to the fastest peer |")
    print("|---|---|---|---|")
    for name in names:
        runners = {"xaibench": xaibench.create_explainer(name, model)}
        runners.update({peer: factory(model) for peer, factory in peers.get(name, [])})
        for run in runners.values():  # warm-up
            run(images, targets)
        times: dict[str, list[float]] = {key: [] for key in runners}
        for _ in range(args.repeats):
            for key, run in runners.items():
                times[key].append(_seconds(run, images, targets) / args.batch)
        median = {key: statistics.median(values) for key, values in times.items()}
        others = {key: value for key, value in median.items() if key != "xaibench"}
        fastest = min(others.values()) if others else float("nan")
        shown = ", ".join(f"{key} {value:.4f}" for key, value in others.items()) or "none"
        print(f"| {name} | {median['xaibench']:.4f} | {shown} | {median['xaibench'] / fastest:.2f} |", flush=True)


if __name__ == "__main__":
    main()
