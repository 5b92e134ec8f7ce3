"""Seconds per image of every method against the peers' implementations of it, in one run.

For each method that torchcam, pytorch-grad-cam or captum also implements (the ``PEERS`` tables of
the ``peers_*.py`` modules beside this file), on ``efficientnet_lite0`` at 224 x 224 on the CPU:
xaibench's method and each peer's on the same images and targets, interleaved repetition by
repetition (the order rotating) so that machine noise hits all alike; each cell is the median of the
repetitions' wall-clock seconds divided by the number of images. The ratio is xaibench's time over
the fastest peer's (<= 1.0: xaibench is not slower); beside it, the noise of that ratio: the lower and
upper quartiles of the per-repetition ratios (each repetition times both sides back to back, so
its ratio is a paired measurement).

Both sides run in one process with freed memory kept (:func:`xaibench.allocator.keep_freed_memory`,
as the ``xaibench`` command runs), so no side pays for fresh pages that the other has just returned.
Each peer gets the network's input in the usual (NCHW) layout, as its users pass it; xaibench's model
hands the network channels-last input (:attr:`xaibench.Model.channels_last`), its own choice.

A method runs on ``--batch`` random images (torch.rand, seed 0) with ``--repeats`` repetitions after
one warm-up call per side, unless its module's ``CONFIGS`` says otherwise: the expensive methods (the
Score-CAM family, FullGrad, perturbation, the 16-to-50-pass attributions) run on fewer images (the
first shared ImageNet photos where a method needs real images), 3 or 5 repetitions without warm-up
(the median drops the first call's set-up), and options given to xaibench and to every peer alike
(fewer samples, steps or masks: the cost of both sides is linear in them). The table's second column
states what each row used. By default every method with a peer runs; ``--methods rise`` times a
method without one alone.

    python benchmarks/bench_peers.py [--methods cam,gradcam] [--threads 2] [--batch 16] [--repeats 5]
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

import xaibench  # noqa: E402
from xaibench.allocator import keep_freed_memory  # noqa: E402

LIBRARIES = ("torchcam", "pytorch-grad-cam", "captum")
MODULES = ("peers_core", "peers_cam_family", "peers_attributions", "peers_perturbation", "peers_score_cam")
SHARED_IMAGENET = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-val-300"


def tables() -> tuple[dict[str, list], dict[str, dict]]:
    """The ``PEERS`` and ``CONFIGS`` tables of the ``peers_*.py`` modules beside this file, merged."""
    peers: dict[str, list] = {}
    configs: dict[str, dict] = {}
    for module in map(importlib.import_module, MODULES):
        for name, entries in module.PEERS.items():
            peers.setdefault(name, []).extend(entries)
        configs.update(getattr(module, "CONFIGS", {}))
    return peers, configs


def inputs(model: xaibench.Model, n: int, photos: bool) -> tuple[torch.Tensor, torch.Tensor, str]:
    """``n`` shared ImageNet photos and their labels if ``photos`` (and they are there), else ``n``
    random images and classes (seed 0); and the words for them."""
    if photos and SHARED_IMAGENET.is_dir():
        data = xaibench.load_dataset(f"imagenet:{SHARED_IMAGENET}", image_size=model.input_size,
                                     class_names=model.class_names)
        samples = [data[i] for i in range(n)]
        words = f"{n} photo{'s' if n > 1 else ''}"
        return torch.stack([s.image for s in samples]), torch.tensor([s.label for s in samples]), words
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(n, 3, *model.input_size, generator=generator)
    return images, torch.randint(0, model.num_classes, (n,), generator=generator), f"{n} random"


def time_row(runners: dict, images: torch.Tensor, targets: torch.Tensor, repeats: int, warm_up: bool) -> dict:
    """Wall-clock seconds per image of each runner, one per repetition, the runners interleaved, their
    order rotating."""
    if warm_up:
        for run in runners.values():
            run(images, targets)
    keys = list(runners)
    seconds: dict[str, list[float]] = {key: [] for key in keys}
    for r in range(repeats):
        for key in keys[r % len(keys):] + keys[: r % len(keys)]:
            start = time.perf_counter()
            runners[key](images, targets)
            seconds[key].append((time.perf_counter() - start) / len(images))
    return seconds


def quartiles(values: list[float]) -> tuple[float, float]:
    """The lower and upper quartiles of ``values`` (the median of a single value for both)."""
    if len(values) < 2:
        return values[0], values[0]
    low, _, high = statistics.quantiles(values, n=4, method="inclusive")
    return low, high


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default=None, help="comma-separated (default: every method with a peer)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=16, help="images of a method without a CONFIGS entry")
    parser.add_argument("--repeats", type=int, default=5, help="repetitions of a method without a CONFIGS entry")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory()

    peers, configs = tables()
    names = args.methods.split(",") if args.methods else [name for name, entries in peers.items() if entries]
    model = xaibench.load_model("efficientnet_lite0")
    as_peers_get_it = dataclasses.replace(model, channels_last=False)
    print(f"efficientnet_lite0, 224 x 224, cpu, {torch.get_num_threads()} threads; seconds per image, median of "
          "interleaved repetitions; ratio = xaibench / fastest peer\n")
    print(f"| method | images x options | xaibench s/img | {' | '.join(f'{lib} s/img' for lib in LIBRARIES)} "
          "| ratio to the fastest peer | ratio's quartiles over repetitions |")
    print("|---|---|---|" + "---|" * len(LIBRARIES) + "---|---|", flush=True)
    for name in names:
        config = configs.get(name, {})
        options = config.get("options", {})
        repeats = config.get("repeats", args.repeats)
        images, targets, words = inputs(model, config.get("images", args.batch), config.get("photos", False))
        runners = {"xaibench": xaibench.create_explainer(name, model, **options)}
        runners.update({library: factory(as_peers_get_it, **options) for library, factory in peers.get(name, [])})
        seconds = time_row(runners, images, targets, repeats, warm_up=not config)
        median = {key: statistics.median(values) for key, values in seconds.items()}
        fastest = min((lib for lib in LIBRARIES if lib in median), key=median.get, default=None)
        ratio, spread = "-", "-"
        if fastest:
            ratio = f"{median['xaibench'] / median[fastest]:.2f}"
            paired = [ours / theirs for ours, theirs in zip(seconds["xaibench"], seconds[fastest])]
            spread = "{:.2f}-{:.2f}".format(*quartiles(paired))
        used = ", ".join([words, *(f"{key}={value}" for key, value in options.items())])
        used += f" ({config['note']}), {repeats} runs" if "note" in config else f", {repeats} runs"
        cells = " | ".join(f"{median[lib]:.4f}" if lib in median else "-" for lib in LIBRARIES)
        print(f"| {name} | {used} | {median['xaibench']:.4f} | {cells} | {ratio} | {spread} |", flush=True)


if __name__ == "__main__":
    main()
