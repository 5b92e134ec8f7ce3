"""How many perturbed copies of an image to run per forward pass: the default ``batch_size`` of the
methods that run the network once per mask, sample or window (Score-CAM, SS-CAM, IS-CAM, occlusion,
LIME, Kernel SHAP, RISE, Smooth Grad-CAM++) and of those that run a forward and backward pass per
step or sample (integrated gradients, SmoothGrad, VarGrad, GradientSHAP): :data:`xaibench.options.PASS_PIXELS`.

Times one forward pass of ``efficientnet_lite0`` (224 x 224, the model's input layout, inference mode)
at each batch size, interleaved, and prints the median milliseconds per image and the ratio to the
fastest. With ``--backward``: one forward and backward pass to the input (the target logits' sum).
With ``--keep-freed-memory``: as the ``xaibench`` command runs (:mod:`xaibench.allocator`); without,
as a program that does not make that setting.

    python benchmarks/bench_pass_batch.py [--sizes 4,8,16,32,64] [--repeats 7] [--threads 2] [--backward] [--keep-freed-memory]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import xaibench
from xaibench.allocator import keep_freed_memory
from xaibench.options import PASS_PIXELS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="4,8,16,32,64")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--backward", action="store_true", help="time forward + backward to the input")
    parser.add_argument("--keep-freed-memory", action="store_true", help="keep freed memory, as the command line does")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.keep_freed_memory:
        keep_freed_memory()
    sizes = [int(s) for s in args.sizes.split(",")]
    model = xaibench.load_model(args.model)
    network = model.network.eval()
    images = torch.rand(max(sizes), 3, *model.input_size, generator=torch.Generator().manual_seed(0))
    inputs = model.normalize(images)
    if args.backward:
        def run(size: int) -> None:
            batch = inputs[:size].clone().requires_grad_(True)
            torch.autograd.grad(network(batch)[:, 0].sum(), batch)
    else:
        def run(size: int) -> None:
            with torch.inference_mode():
                network(inputs[:size])
    times: dict[int, list[float]] = {size: [] for size in sizes}
    run(sizes[0])  # warm-up
    for _ in range(args.repeats):
        for size in sizes:
            start = time.perf_counter()
            run(size)
            times[size].append((time.perf_counter() - start) / size)
    medians = {size: statistics.median(t) for size, t in times.items()}
    best = min(medians.values())
    kind = "forward + backward" if args.backward else "forward"
    kind += ", freed memory kept" if args.keep_freed_memory else ", default malloc"
    print(f"{args.model}, {kind}, {args.threads} threads; PASS_PIXELS = {PASS_PIXELS} (= {PASS_PIXELS // (model.input_size[0] * model.input_size[1])} copies here)")
    print("batch  ms/image  ratio to the fastest")
    for size, median in medians.items():
        print(f"{size:5d}  {1000 * median:8.1f}  {median / best:5.2f}")


if __name__ == "__main__":
    main()
