"""The peers of the gradient-based CAM family (plugins/cam_family.py), run as their users run them.

``PEERS`` maps each xaibench method name to ``(library, factory)`` pairs; ``factory(model)`` returns a
callable ``(images, targets) -> maps`` that runs the peer's own implementation on a xaibench
:class:`~xaibench.Model`: its network, its target layer, the images normalised as the network expects,
one class per image. Each call builds the peer's extractor in a ``with`` block, as both libraries'
READMEs show, so that no hook outlives the call (pytorch-grad-cam's hooks, left on the model, would
also record every xaibench forward pass). The peers' own batching is kept: pytorch-grad-cam and
torchcam explain the whole batch in one call; pytorch-grad-cam's FullGrad ignores the target layer.

Run this file to measure, on efficientnet_lite0 (CPU, 2 threads), the seconds per image of each method
and of each peer, interleaved, medians::

    python benchmarks/peers_cam_family.py [--batch 16] [--repeats 5] [--methods gradcampp,fullgrad]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

import xaibench
from xaibench import Model

Run = Callable[[Tensor, Tensor], Tensor]
Factory = Callable[[Model], Run]


def _pytorch_grad_cam(name: str, **options: object) -> Factory:
    """A pytorch-grad-cam CAM class, the target's logit (``ClassifierOutputTarget``) as the score."""

    def factory(model: Model) -> Run:
        import pytorch_grad_cam
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        cls = getattr(pytorch_grad_cam, name)
        layers = [] if name == "FullGrad" else [model.target_layer]

        def run(images: Tensor, targets: Tensor) -> Tensor:
            with cls(model=model.network, target_layers=layers, **options) as cam:
                wanted = [ClassifierOutputTarget(int(t)) for t in targets]
                maps = cam(input_tensor=model.normalize(images), targets=wanted)
            return torch.from_numpy(maps)

        return run

    return factory


def _pytorch_grad_cam_finer(model: Model) -> Run:
    """pytorch-grad-cam's FinerCAM with its defaults (alpha 1, the 3 classes whose logits are closest to
    the target's). Its automatic choice of references takes one target for the whole batch, so, with one
    class per image, a user computes the logits first and passes one ``FinerWeightedTarget`` per image."""
    from pytorch_grad_cam import FinerCAM
    from pytorch_grad_cam.utils.model_targets import FinerWeightedTarget

    def run(images: Tensor, targets: Tensor) -> Tensor:
        inputs = model.normalize(images)
        with torch.no_grad():
            logits = model.network(inputs).numpy()
        finer = []
        for row, target in zip(logits, targets.tolist()):
            order = np.argsort(np.abs(row - row[target]))
            finer.append(FinerWeightedTarget(target, [int(c) for c in order if c != target][:3], 1.0))
        with FinerCAM(model=model.network, target_layers=[model.target_layer]) as cam:
            maps = cam(inputs, targets=finer)
        return torch.from_numpy(maps)

    return run


def _torchcam(name: str, **options: object) -> Factory:
    """A torchcam extractor: forward pass with its hooks, then the maps for one class per image."""

    def factory(model: Model) -> Run:
        from torchcam import methods

        cls = getattr(methods, name)

        def run(images: Tensor, targets: Tensor) -> Tensor:
            inputs = model.normalize(images)
            with cls(model.network, model.target_layer_name, **options) as extractor:
                scores = model.network(inputs)
                if name == "SmoothGradCAMpp":  # draws its own noisy passes; uses no scores
                    maps = extractor(class_idx=targets.tolist())
                else:
                    maps = extractor(targets.tolist(), scores)
            return maps[0].detach()

        return run

    return factory


PEERS: dict[str, list[tuple[str, Factory]]] = {
    "gradcampp": [("pytorch-grad-cam", _pytorch_grad_cam("GradCAMPlusPlus")), ("torchcam", _torchcam("GradCAMpp"))],
    "smoothgradcampp": [("torchcam", _torchcam("SmoothGradCAMpp"))],
    "xgradcam": [("pytorch-grad-cam", _pytorch_grad_cam("XGradCAM")), ("torchcam", _torchcam("XGradCAM"))],
    "layercam": [("pytorch-grad-cam", _pytorch_grad_cam("LayerCAM")), ("torchcam", _torchcam("LayerCAM"))],
    "hirescam": [("pytorch-grad-cam", _pytorch_grad_cam("HiResCAM"))],
    "gradcam_elementwise": [("pytorch-grad-cam", _pytorch_grad_cam("GradCAMElementWise"))],
    "eigencam": [("pytorch-grad-cam", _pytorch_grad_cam("EigenCAM"))],
    "eigengradcam": [("pytorch-grad-cam", _pytorch_grad_cam("EigenGradCAM"))],
    "fullgrad": [("pytorch-grad-cam", _pytorch_grad_cam("FullGrad"))],
    "finercam": [("pytorch-grad-cam", _pytorch_grad_cam_finer), ("torchcam", _torchcam("FinerCAM"))],
    "shapleycam": [("pytorch-grad-cam", _pytorch_grad_cam("ShapleyCAM"))],
}


def _seconds(run: Run, images: Tensor, targets: Tensor) -> float:
    start = time.perf_counter()
    run(images, targets)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--methods", default=",".join(PEERS))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model = xaibench.load_model("efficientnet_lite0")
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(args.batch, 3, 224, 224, generator=generator)
    targets = torch.randint(0, 1000, (args.batch,), generator=generator)
    print(f"efficientnet_lite0, batch {args.batch} x 3 x 224 x 224, cpu, {torch.get_num_threads()} threads, "
          f"median of {args.repeats} interleaved runs, seconds per image")
    for name in args.methods.split(","):
        runs = {"xaibench": xaibench.create_explainer(name, model)}
        runs.update({library: factory(model) for library, factory in PEERS[name]})
        for run in runs.values():  # warm-up
            run(images, targets)
        times: dict[str, list[float]] = {key: [] for key in runs}
        for _ in range(args.repeats):
            for key, run in runs.items():
                times[key].append(_seconds(run, images, targets) / args.batch)
        ours = statistics.median(times["xaibench"])
        cells = [f"{key} {statistics.median(t):.4f}" for key, t in times.items() if key != "xaibench"]
        ratios = [f"{ours / statistics.median(t):.2f}" for key, t in times.items() if key != "xaibench"]
        print(f"{name:<20} xaibench {ours:.4f} | {' | '.join(cells)} | ratio {' '.join(ratios)}", flush=True)


if __name__ == "__main__":
    main()
