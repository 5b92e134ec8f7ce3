"""Cost of each explanation method as a ratio to the least work it cannot avoid, on the same batch.

The peers' speed: bench_peers.py (every method against torchcam's, pytorch-grad-cam's and captum's).

On ``efficientnet_lite0`` with a batch of 16 images at 224 x 224 (CPU by default):

- CAM against one plain forward pass without gradients;
- Grad-CAM against one forward pass whose layers before the target layer record no graph, plus the
  backward pass from the class scores to the target layer's output;
- saliency against one forward pass plus the full backward pass to the input pixels.

Each measurement is the median of ``--repeats`` runs, the method and its floor interleaved so that
machine noise hits both alike. Targets: CAM <= 1.10, Grad-CAM <= 1.15, saliency <= 1.15.

    python benchmarks/bench_methods.py [--batch 16] [--repeats 15] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import xaibench
from xaibench.allocator import keep_freed_memory


def forward_floor(model: xaibench.Model, images: torch.Tensor, targets: torch.Tensor) -> None:
    with torch.no_grad():
        model(images)


def gradcam_floor(model: xaibench.Model, images: torch.Tensor, targets: torch.Tensor) -> None:
    net = model.network
    with torch.no_grad():
        features = net.extract_features(model.normalize(images))  # up to and including the target layer
    features.requires_grad_(True)
    logits = net._fc(features.mean((2, 3)))
    torch.autograd.grad(logits.gather(1, targets[:, None]).sum(), features)


def saliency_floor(model: xaibench.Model, images: torch.Tensor, targets: torch.Tensor) -> None:
    pixels = images.detach().requires_grad_(True)
    logits = model(pixels)
    torch.autograd.grad(logits.gather(1, targets[:, None]).sum(), pixels)


FLOORS = {"cam": forward_floor, "gradcam": gradcam_floor, "saliency": saliency_floor}
TARGETS = {"cam": 1.10, "gradcam": 1.15, "saliency": 1.15}


def _seconds(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    if args[1].is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    keep_freed_memory()  # as the xaibench command runs: the method and its floor alike
    torch.manual_seed(0)
    model = xaibench.load_model("efficientnet_lite0", device=args.device)
    assert model.target_layer_name == "head_act", model.target_layer_name
    images = torch.rand(args.batch, 3, 224, 224, device=args.device)
    targets = torch.randint(0, 1000, (args.batch,), device=args.device)

    print(f"efficientnet_lite0, batch {args.batch} x 3 x 224 x 224, {args.device}, "
          f"{torch.get_num_threads()} threads, median of {args.repeats}")
    print(f"{'method':<10}{'method s':>10}{'floor s':>10}{'ratio':>8}{'target':>8}")
    for name, floor in FLOORS.items():
        explainer = xaibench.create_explainer(name, model)
        for _ in range(2):  # warm-up
            explainer(images, targets)
            floor(model, images, targets)
        method_s, floor_s = [], []
        for _ in range(args.repeats):
            method_s.append(_seconds(explainer, images, targets))
            floor_s.append(_seconds(floor, model, images, targets))
        m, f = statistics.median(method_s), statistics.median(floor_s)
        verdict = "ok" if m / f <= TARGETS[name] else "OVER"
        print(f"{name:<10}{m:>10.4f}{f:>10.4f}{m / f:>8.3f}{TARGETS[name]:>8.2f}  {verdict}")


if __name__ == "__main__":
    main()
