"""What a CPU pass costs with glibc's default malloc and with freed memory kept, in either input layout.

For each allocator setting (the C library's default, and :func:`xaibench.allocator.keep_freed_memory`,
which the command line makes) a fresh worker process times, interleaved, four kinds of passes over one
batch: forward (no gradient) and forward + backward to the input, each with the input in the usual
(NCHW) layout and in channels-last layout (:attr:`xaibench.Model.channels_last`). Each cell is the
median over ``--rounds`` worker runs (the two settings alternating) of each worker's median over
``--passes`` passes, in milliseconds per image, with the minor page faults of one pass.

    python benchmarks/bench_cpu_passes.py [--model efficientnet_lite0] [--batch 16] [--rounds 5] [--passes 5]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import statistics
import subprocess
import sys
import time

SETTINGS = ("default", "kept")
KINDS = [(pass_, layout) for pass_ in ("forward", "forward + backward") for layout in ("NCHW", "channels-last")]


def worker(args: argparse.Namespace) -> None:
    """Time every kind of pass in this process; print {kind: [ms per image, faults per pass]} as JSON."""
    if args.worker == "kept":
        from xaibench.allocator import keep_freed_memory

        assert keep_freed_memory(), "not glibc"
    import torch

    import xaibench

    torch.set_num_threads(args.threads)
    model = xaibench.load_model(args.model)
    models = {"NCHW": dataclasses.replace(model, channels_last=False),
              "channels-last": dataclasses.replace(model, channels_last=True)}
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(args.batch, 3, *model.input_size, generator=generator)
    targets = torch.randint(0, model.num_classes, (args.batch,), generator=generator)

    def run(pass_: str, layout: str) -> None:
        m = models[layout]
        if pass_ == "forward":
            with torch.no_grad():
                m(images)
            return
        pixels = images.clone().requires_grad_(True)
        torch.autograd.grad(m(pixels).gather(1, targets[:, None]).sum(), pixels)

    for kind in KINDS:  # warm-up
        run(*kind)
    times: dict[tuple, list[float]] = {kind: [] for kind in KINDS}
    faults: dict[tuple, list[int]] = {kind: [] for kind in KINDS}
    for r in range(args.passes):
        for kind in KINDS[r % len(KINDS):] + KINDS[: r % len(KINDS)]:
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            start = time.perf_counter()
            run(*kind)
            times[kind].append((time.perf_counter() - start) / args.batch * 1000)
            faults[kind].append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    print(json.dumps({" / ".join(k): [statistics.median(times[k]), statistics.median(faults[k])] for k in KINDS}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5, help="worker runs per allocator setting")
    parser.add_argument("--passes", type=int, default=5, help="timed passes of each kind per worker")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--worker", choices=SETTINGS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    results: dict[str, list[dict]] = {s: [] for s in SETTINGS}
    for r in range(args.rounds):
        for setting in SETTINGS[r % 2:] + SETTINGS[: r % 2]:
            command = [sys.executable, __file__, "--worker", setting, "--model", args.model, "--batch",
                       str(args.batch), "--passes", str(args.passes), "--threads", str(args.threads)]
            out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            results[setting].append(json.loads(out.strip().splitlines()[-1]))
    print(f"{args.model}, batch {args.batch}, cpu, {args.threads} threads; ms per image (median of {args.rounds} "
          f"processes x {args.passes} passes) and page faults per pass\n")
    print("| pass | input layout | default malloc | faults | freed memory kept | faults | default / kept |")
    print("|---|---|---|---|---|---|---|")
    for kind in (" / ".join(k) for k in KINDS):
        cell = {s: [statistics.median(run[kind][i] for run in results[s]) for i in (0, 1)] for s in SETTINGS}
        pass_, layout = kind.split(" / ")
        print(f"| {pass_} | {layout} | {cell['default'][0]:.2f} | {cell['default'][1]:,.0f} | {cell['kept'][0]:.2f} | "
              f"{cell['kept'][1]:,.0f} | {cell['default'][0] / cell['kept'][0]:.2f} |")
    print("\nAgainst the usual layout with the default malloc (what a peer's user gets):")
    for pass_ in ("forward", "forward + backward"):
        plain = statistics.median(run[f"{pass_} / NCHW"][0] for run in results["default"])
        best = statistics.median(run[f"{pass_} / channels-last"][0] for run in results["kept"])
        print(f"- {pass_}: {plain:.2f} -> {best:.2f} ms per image ({plain / best:.2f}x)")


if __name__ == "__main__":
    main()
