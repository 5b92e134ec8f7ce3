"""A run split over processes by torchrun, against the same run in one process: speed-up and equality.

The run: ``xaibench run --methods METHODS --no-report --workers 0`` with the default metrics, on one
of two setups: ``imagenet``, EfficientNet-Lite0 on the 300 shared ImageNet photos with
``cam,gradcam,saliency`` (a minute's run, in which start-up, about 7 s, and the exit, about 2 s, do
not split), or ``builtin``, the built-in network on its 500 images with
``cam,gradcam,saliency,smoothgrad,integrated_gradients`` (about 100 network passes per image: the
expensive methods one splits a run for). It is launched as ``torchrun --standalone --nproc-per-node P -m
xaibench run ...`` with P = 1 and P = 2, each process with one thread (``OMP_NUM_THREADS=1``; ``--workers
0``: no reader processes, no metric threads), so P processes use P cores. Each repetition runs both, in
alternating order; the script prints the median wall-clock seconds of each (the whole command: start-up,
rendezvous, the run, rank 0's summary), the median of the per-repetition speed-ups, and whether the
two folders hold the same per-image rows (sorted by model, index and method) and the same
``summary.csv``, byte for byte. Goal: 2 processes at least 1.7x faster than 1 on two quiet cores.

    python benchmarks/bench_distributed.py [--setup imagenet|builtin] [--methods M] [--n N] [--repeats 3] [--processes 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

METHODS = {"imagenet": "cam,gradcam,saliency", "builtin": "cam,gradcam,saliency,smoothgrad,integrated_gradients"}


HERE = Path(__file__).resolve()
DEFAULT_DATA = HERE.parents[2] / "shared" / "data" / "imagenet-val-300"


def _command(processes: int, setup: list[str], out: Path) -> list[str]:
    script = shutil.which("torchrun")
    launcher = [script] if script else [sys.executable, "-m", "torch.distributed.run"]
    return [*launcher, "--standalone", "--nproc-per-node", str(processes), "-m", "xaibench", "run", *setup,
            "--no-report", "--workers", "0", "--out", str(out)]


def _timed(processes: int, setup: list[str], out: Path) -> float:
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    done = subprocess.run(_command(processes, setup, out), env=environment, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{processes} process(es) failed:\n{done.stderr[-3000:]}")
    return seconds


def same_results(one: Path, other: Path) -> bool:
    """The same per-image rows (in (model, index, method) order) and the same summary.csv bytes."""
    import pandas as pd

    from xaibench.harness import ROW_KEYS, read_per_image

    rows = [read_per_image(f).sort_values(list(ROW_KEYS)).reset_index(drop=True) for f in (one, other)]
    try:
        pd.testing.assert_frame_equal(*rows)
    except AssertionError:
        return False
    return (one / "summary.csv").read_bytes() == (other / "summary.csv").read_bytes()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setup", choices=["imagenet", "builtin"], default="imagenet")
    parser.add_argument("--methods", default=None, help="the run's methods (default: the setup's, above)")
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="the ImageNet photos of the imagenet setup")
    parser.add_argument("--n", type=int, default=None, help="images (default: all: 300 photos, 500 built-in images)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--processes", type=int, default=2, help="processes of the split run (default: 2)")
    args = parser.parse_args()
    methods = args.methods or METHODS[args.setup]
    setup = ["--methods", methods]
    setup += ["--model", "efficientnet_lite0", "--dataset", f"imagenet:{args.data}"] if args.setup == "imagenet" else []
    setup += [] if args.n is None else ["--num-images", str(args.n)]
    seconds: dict[int, list[float]] = {1: [], args.processes: []}
    identical = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            order = [1, args.processes] if r % 2 == 0 else [args.processes, 1]
            folders = {}
            for processes in order:
                folders[processes] = Path(tmp) / f"r{r}-p{processes}"
                seconds[processes].append(_timed(processes, setup, folders[processes]))
            identical.append(same_results(folders[1], folders[args.processes]))
            print(f"repetition {r + 1}: 1 process {seconds[1][-1]:.1f} s, {args.processes} processes "
                  f"{seconds[args.processes][-1]:.1f} s, same results: {identical[-1]}", flush=True)
    speedups = [one / many for one, many in zip(seconds[1], seconds[args.processes])]
    print(f"\n{methods}, setup {args.setup} ({args.n or 'all'} images), one thread per process, median of {args.repeats}:")
    print(f"1 process: {statistics.median(seconds[1]):.1f} s; {args.processes} processes: "
          f"{statistics.median(seconds[args.processes]):.1f} s; speed-up {statistics.median(speedups):.2f}x "
          f"(goal >= 1.7 for 2 processes on two quiet cores); identical results: {all(identical)}")


if __name__ == "__main__":
    main()
