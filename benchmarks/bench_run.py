"""Cost of a whole benchmark run against the network work it cannot avoid.

The run: ``xaibench run --model efficientnet_lite0 --dataset imagenet:PATH
--methods cam,gradcam,saliency,center,random --no-report`` on the 300 shared ImageNet photos, called
as the command calls it (``xaibench.run(RunSpec(...))``), i.e. loading the model, recording the
configuration, reading the images, the classification pass, every method, every metric, appending
the rows to the run's ``per_image.csv`` (flushed to disk batch by batch), and the summary with its
bootstrap, read back from the folder and written atomically. The overlay figures and report.html are
left out: they cost the same whatever the methods' speed.

The floor, on the same images and batches: the bare classification forward passes (no gradients)
plus each method's own forward/backward work, as in ``bench_methods.py`` (CAM: a forward pass;
Grad-CAM: a forward pass and the backward pass to the target layer; saliency: a forward pass and a
full backward pass to the input; the baselines: nothing). Target: run <= 2 x floor.

    python benchmarks/bench_run.py [--data ../shared/data/imagenet-val-300] [--batch-size 32]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

import xaibench  # noqa: E402
from bench_methods import FLOORS, forward_floor  # noqa: E402
from xaibench.allocator import keep_freed_memory  # noqa: E402
from xaibench.data import collate  # noqa: E402

METHODS = ["cam", "gradcam", "saliency", "center", "random"]
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-val-300"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--n", type=int, default=None)
    args = parser.parse_args()

    keep_freed_memory()  # as the xaibench command runs: the run and its floors alike
    model = xaibench.load_model("efficientnet_lite0")
    dataset = xaibench.load_dataset(f"imagenet:{args.data}", image_size=model.input_size, class_names=model.class_names)
    n = len(dataset) if args.n is None else min(args.n, len(dataset))

    with tempfile.TemporaryDirectory() as out:
        spec = xaibench.RunSpec(models="efficientnet_lite0", dataset=f"imagenet:{args.data}", methods=METHODS, n=n,
                                batch_size=args.batch_size, out=out, report=False)
        start = time.perf_counter()
        summary = xaibench.run(spec).summary
        run_s = time.perf_counter() - start

    batches = [collate([dataset[i] for i in range(lo, min(lo + args.batch_size, n))])
               for lo in range(0, n, args.batch_size)]
    floor_s = {"classification": 0.0, **{m: 0.0 for m in FLOORS}}
    for batch in batches:
        for name, floor in [("classification", forward_floor), *FLOORS.items()]:
            t = time.perf_counter()
            floor(model, batch.images, batch.labels)
            floor_s[name] += time.perf_counter() - t
    total_floor = sum(floor_s.values())

    print(f"efficientnet_lite0, {n} images, batch {args.batch_size}, methods {','.join(METHODS)}, "
          f"{torch.get_num_threads()} threads")
    for name, seconds in floor_s.items():
        print(f"  floor {name:<15}{seconds:8.1f} s")
    print(f"  floor total          {total_floor:8.1f} s")
    print(f"  run (xaibench.run, no report) {run_s:8.1f} s")
    print(f"  ratio run / floor    {run_s / total_floor:8.2f}   (target <= 2)")
    maxbox = summary[summary.metric == "maxboxacc_v2"].set_index("method").value.round(1).to_dict()
    print(f"  MaxBoxAccV2: {maxbox}")


if __name__ == "__main__":
    main()
