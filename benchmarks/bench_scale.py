"""Time and peak memory of a run's bookkeeping, its summary and its report at 1,000 to 50,000 images.

The real results store (:mod:`xaibench.results_store`, through the harness's tables), the real summary
(:func:`xaibench.report.write_summary`: every default metric's aggregate and bootstrap) and the real
report (``xaibench report``), on synthetic per-image rows shaped as a run writes them (every default
localization metric's columns, the box-accuracy curves and PxAP histograms included), 10 methods, with
map and image thumbnails made by the real thumbnail code from synthetic 64 x 64 maps and images. Each
stage runs in its own process, which reports its seconds and its peak resident memory
(``ru_maxrss``):

- ``write``: the bookkeeping of a run: each batch's parts appended (images, maps, timings, rows), then
  the resume check's read of the (model, index, method, digest) keys;
- ``summarize``: ``write_summary`` of the folder;
- ``report``: ``xaibench report`` of the folder into another.

Goal: time linear in the images, peak memory flat (at 50,000 images at most 1.3x that at 1,000) and under 2 GB.

    python3 benchmarks/bench_scale.py --images 1000 10000 50000
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

METHODS = ["cam", "gradcam", "gradcampp", "xgradcam", "layercam", "eigencam", "saliency", "smoothgrad", "center", "random"]
BATCH = 64
SIDE = 64


def _write(folder: Path, n: int) -> None:
    import torch

    from bench_bootstrap_memory import synthetic_rows
    from xaibench import thumbnails
    from xaibench.harness import COLUMNS, DIGEST, TIMING_COLUMNS, RunTables, build_metrics, metric_columns
    from xaibench.run_folder import RunFolder

    metrics = build_metrics(None)
    with RunFolder(folder, mode="new") as run:
        run.start({"n": n, "methods": METHODS, "batch_size": BATCH, "seed": 0, "dataset": "synthetic",
                   "models": [{"name": "m"}]})
    tables = RunTables.open(folder, metrics)
    columns = COLUMNS + list(metric_columns(metrics))
    template = synthetic_rows(BATCH, methods=["x"])
    rng = np.random.default_rng(0)
    generator = torch.Generator().manual_seed(0)
    for start in range(0, n, BATCH):
        indices = list(range(start, min(start + BATCH, n)))
        k = len(indices)
        images = torch.rand(k, 3, SIDE, SIDE, generator=generator)
        boxes = [torch.tensor([[8.0, 8.0, 40.0, 40.0]]) for _ in indices]
        tables.images.append(thumbnails.image_rows("m", indices, [f"i{i}" for i in indices], images,
                                                   [i % 10 for i in indices], boxes, [str(c) for c in range(10)]))
        frames, maps = [], []
        for method in METHODS:
            frame = template.iloc[:k].copy()
            frame["index"], frame["method"], frame["image_id"] = indices, method, [f"i{i}" for i in indices]
            frame[DIGEST] = [f"{i:064x}" for i in indices]
            for column in ("mean_iou", "energy_pointing"):
                frame[column] = rng.random(k)
            frames.append(frame[columns])
            maps.append(thumbnails.map_rows("m", indices, method, rng.random((k, SIDE, SIDE), dtype=np.float32),
                                            full_size=set(range(6))))
        tables.maps.append(pd.concat(maps, ignore_index=True))
        tables.timings.append(pd.DataFrame([("m", start, m, k, 0.01, 0.02) for m in METHODS], columns=TIMING_COLUMNS))
        tables.per_image.append(pd.concat(frames, ignore_index=True))
    keys = tables.per_image.keys(["model", "index", "method", DIGEST])
    assert len(keys) == n * len(METHODS)


def _stage(stage: str, folder: Path, n: int) -> None:
    start = time.perf_counter()
    if stage == "write":
        _write(folder, n)
    elif stage == "summarize":
        from xaibench import report

        report.write_summary(folder)
    elif stage == "report":
        from xaibench import cli

        assert cli.main(["report", str(folder), "--out", str(folder.parent / "report")]) == 0
    seconds = time.perf_counter() - start
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"stage": stage, "n": n, "seconds": seconds, "peak_mib": peak_mib}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, nargs="+", default=[1000, 10000, 50000])
    parser.add_argument("--stage", choices=["write", "summarize", "report"], help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage:
        import torch

        torch.set_num_threads(1)
        _stage(args.stage, Path(args.folder), args.images[0])
        return
    results = []
    for n in args.images:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "run"
            for stage in ("write", "summarize", "report"):
                done = subprocess.run([sys.executable, __file__, "--stage", stage, "--folder", str(folder),
                                       "--images", str(n)], capture_output=True, text=True, check=False)
                if done.returncode != 0:
                    raise SystemExit(f"{stage} at {n} images failed:\n{done.stderr[-3000:]}")
                results.append(json.loads(done.stdout.strip().splitlines()[-1]))
                size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20
            print(f"{n} images x {len(METHODS)} methods: folder {size:.0f} MiB")
    table = pd.DataFrame(results).pivot(index="n", columns="stage", values=["seconds", "peak_mib"])
    print(table.round(1).to_string())
    first = table.index[0]
    for n in table.index[1:]:
        ratio = table.loc[n, "peak_mib"] / table.loc[first, "peak_mib"]
        per_image = table.loc[n, "seconds"] / n / (table.loc[first, "seconds"] / first)
        print(f"{n}: peak memory x{ratio.round(2).to_dict()} of {first} (goal <= 1.3, < 2048 MiB); "
              f"seconds per image x{per_image.round(2).to_dict()} (linear: 1)")


if __name__ == "__main__":
    main()
