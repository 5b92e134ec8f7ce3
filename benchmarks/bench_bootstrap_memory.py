"""Peak memory of the summary's bootstrap at data-set scale: resamples drawn in chunks (32 MiB of weights
at a time) against one dense (1,000 x N) draw, on synthetic per-image rows (two methods, every default
localization metric).

    python3 benchmarks/bench_bootstrap_memory.py --images 1000 10000 50000

Prints, per N, the peak memory traced during :func:`xaibench.report.summarize` with the chunked draw
xaibench uses and with every resample in one chunk (how the summary drew them before), in MiB, and the
seconds of each, measured in this process with ``tracemalloc`` (NumPy's arrays are traced).
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np
import pandas as pd
import torch

from xaibench import report, significance
from xaibench.harness import build_metrics


def synthetic_rows(n: int, methods=("cam", "gradcam"), seed: int = 0) -> pd.DataFrame:
    """Per-image rows shaped as a run writes them, with random scores and curves."""
    rng = np.random.default_rng(seed)
    metrics = build_metrics(None)
    template = {}
    for metric in metrics:
        for column, kind in metric.columns.items():
            template[column] = kind
    frames = []
    for method in methods:
        frame = {"model": "m", "index": np.arange(n), "image_id": [f"i{k}" for k in range(n)], "method": method,
                 "label": rng.integers(0, 10, n), "prediction": rng.integers(0, 10, n), "status": "ok"}
        frame["target"] = frame["label"]
        for column, kind in template.items():
            if kind == "scalar":
                frame[column] = rng.integers(0, 2, n).astype(float) if column != "mean_iou" else rng.random(n)
            elif column.startswith("box_iou_curve"):  # the best IoU at each of the 100 map thresholds
                frame[column] = list(rng.random((n, 100)))
            else:  # PxAP's histograms of map values inside and outside the mask
                frame[column] = list(rng.integers(0, 50, (n, 2, 102)))
        frames.append(pd.DataFrame(frame))
    return pd.concat(frames, ignore_index=True)


def measure(call) -> tuple[float, float]:
    tracemalloc.start()
    start = time.perf_counter()
    call()
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return peak, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, nargs="+", default=[1000, 10000, 50000])
    args = parser.parse_args()
    torch.set_num_threads(2)
    print("| images | chunked: peak MiB | chunked: s | dense: peak MiB | dense: s | peak dense / chunked |")
    print("|---|---|---|---|---|---|")
    chunk = significance.BOOTSTRAP_CHUNK_VALUES
    for n in args.images:
        rows = synthetic_rows(n)
        peak, seconds = measure(lambda: report.summarize(rows, build_metrics(None)))
        significance.BOOTSTRAP_CHUNK_VALUES = 1000 * n  # every resample at once, as before
        try:
            dense_peak, dense_seconds = measure(lambda: report.summarize(rows, build_metrics(None)))
        finally:
            significance.BOOTSTRAP_CHUNK_VALUES = chunk
        print(f"| {n:,} | {peak:.0f} | {seconds:.1f} | {dense_peak:.0f} | {dense_seconds:.1f} | {dense_peak / peak:.1f} |")


if __name__ == "__main__":
    main()
