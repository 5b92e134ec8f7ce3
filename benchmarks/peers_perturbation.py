"""captum's occlusion, LIME and Kernel SHAP as their users call them (for bench_peers.py), and a
benchmark of xaibench's perturbation methods against them on real photos.

Each factory takes a xaibench ``Model`` and returns ``(images, targets) -> maps`` running captum's
code the way its documentation shows: the forward function returns the softmax probabilities (the
output xaibench's methods explain by default), captum's default ``perturbations_per_eval=1`` (one
perturbation of the batch per pass), and for LIME and Kernel SHAP one image at a time (captum loops
over the images of a batch itself, and recommends one at a time), with SLIC superpixels computed by
the user as xaibench computes them. LIME is configured with xaibench's definition (lime_image's
kernel and ``Ridge(alpha=1)``) and Kernel SHAP is captum's own, so both sides make the same passes.
No peer implements RISE: its list is empty.

LIME and Kernel SHAP need photographs: SLIC on uniform noise (``torch.rand`` images) returns one
superpixel, on which captum's Kernel SHAP fails. Run as a script, this file measures every method on
shared ImageNet photos:

    python benchmarks/peers_perturbation.py [--images 2] [--repeats 3] [--samples 64] [--masks 128]

``--samples`` (LIME, Kernel SHAP) and ``--masks`` (RISE) scale the costs linearly; the defaults of the
methods are 1000 and 1000 (the script prints the seconds per pass too, to scale by).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from xaibench.models import Model

Factory = Callable[[Model], Callable[[Tensor, Tensor], Tensor]]


def _probabilities(model: Model) -> Callable[[Tensor], Tensor]:
    return lambda images: torch.softmax(model(images), dim=1)


def _slic(image: Tensor, n_segments: int, compactness: float) -> Tensor:
    from skimage.segmentation import slic

    labels = slic(image.permute(1, 2, 0).double().numpy(), n_segments=n_segments, compactness=compactness, start_label=0)
    return torch.from_numpy(np.unique(labels, return_inverse=True)[1].reshape(labels.shape)).long()


def captum_occlusion(model: Model, *, window: int = 32, stride: int = 16) -> Callable[[Tensor, Tensor], Tensor]:
    from captum.attr import Occlusion

    occlusion = Occlusion(_probabilities(model))

    def run(images: Tensor, targets: Tensor) -> Tensor:
        attributions = occlusion.attribute(
            images, sliding_window_shapes=(3, window, window), strides=(3, stride, stride), baselines=0.0,
            target=targets,
        )
        return attributions.mean(1)

    return run


def _lime_kernel(width: float) -> Callable[..., float]:
    """lime_image's kernel: sqrt(exp(-d^2 / w^2)), d the cosine distance of the coalition to all-ones."""

    def similarity(original: Tensor, perturbed: Tensor, interpretable: Tensor, **kwargs: object) -> float:
        k, m = float(interpretable.sum()), interpretable.numel()
        distance = 1 - math.sqrt(k / m)
        return math.sqrt(math.exp(-(distance**2) / width**2))

    return similarity


def _superpixel_runner(explainer, n_samples: int, n_segments: int, compactness: float):
    def run(images: Tensor, targets: Tensor) -> Tensor:
        maps = []
        for image, target in zip(images, targets.tolist()):
            segments = _slic(image, n_segments, compactness)
            attributions = explainer.attribute(
                image[None], baselines=0.0, target=target, feature_mask=segments[None, None], n_samples=n_samples
            )
            maps.append(attributions[0, 0])
        return torch.stack(maps)

    return run


def captum_lime(
    model: Model, *, n_samples: int = 1000, n_segments: int = 50, compactness: float = 10.0
) -> Callable[[Tensor, Tensor], Tensor]:
    from captum._utils.models.linear_model import SkLearnRidge
    from captum.attr import Lime

    explainer = Lime(_probabilities(model), interpretable_model=SkLearnRidge(alpha=1.0), similarity_func=_lime_kernel(0.25))
    return _superpixel_runner(explainer, n_samples, n_segments, compactness)


def captum_kernel_shap(
    model: Model, *, n_samples: int = 1000, n_segments: int = 50, compactness: float = 10.0
) -> Callable[[Tensor, Tensor], Tensor]:
    from captum.attr import KernelShap

    return _superpixel_runner(KernelShap(_probabilities(model)), n_samples, n_segments, compactness)


PEERS: dict[str, list[tuple[str, Factory]]] = {
    "occlusion": [("captum", captum_occlusion)],
    "lime": [("captum", captum_lime)],
    "kernelshap": [("captum", captum_kernel_shap)],
    "rise": [],
}


# ------------------------------------------------------------------------------------ the benchmark


def _seconds(run: Callable[[Tensor, Tensor], Tensor], images: Tensor, targets: Tensor) -> float:
    start = time.perf_counter()
    run(images, targets)
    return time.perf_counter() - start


def main() -> None:
    import xaibench

    parser = argparse.ArgumentParser(description="xaibench's perturbation methods against captum's, on photos")
    parser.add_argument("--methods", default="occlusion,lime,kernelshap,rise")
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--samples", type=int, default=64, help="n_samples of LIME and Kernel SHAP")
    parser.add_argument("--masks", type=int, default=128, help="n_masks of RISE")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from conftest import SHARED_IMAGENET

    model = xaibench.load_model("efficientnet_lite0")
    data = xaibench.load_dataset(f"imagenet:{SHARED_IMAGENET}", image_size=(224, 224), class_names=model.class_names)
    images = torch.stack([data[i].image for i in range(args.images)])
    targets = torch.tensor([data[i].label for i in range(args.images)])
    options = {
        "occlusion": {},
        "lime": {"n_samples": args.samples},
        "kernelshap": {"n_samples": args.samples},
        "rise": {"n_masks": args.masks},
    }
    passes = {"occlusion": 170, "lime": args.samples, "kernelshap": args.samples, "rise": args.masks}

    print(f"efficientnet_lite0, {args.images} ImageNet photos at 224 x 224, cpu, {torch.get_num_threads()} threads, "
          f"median of {args.repeats} interleaved repetitions, seconds per image\n")
    print("| method | options | passes/img | xaibench s/img | captum s/img | ratio | xaibench s/pass |")
    print("|---|---|---|---|---|---|---|")
    for name in args.methods.split(","):
        runners = {"xaibench": xaibench.create_explainer(name, model, **options[name])}
        runners.update({peer: factory(model, **options[name]) for peer, factory in PEERS[name]})
        times: dict[str, list[float]] = {key: [] for key in runners}
        for _ in range(args.repeats):
            for key, run in runners.items():
                times[key].append(_seconds(run, images, targets) / args.images)
        median = {key: statistics.median(values) for key, values in times.items()}
        peer = median.get("captum")
        shown = f"{peer:.2f}" if peer else "none"
        ratio = f"{median['xaibench'] / peer:.2f}" if peer else "-"
        print(f"| {name} | {options[name] or 'defaults'} | {passes[name]} | {median['xaibench']:.2f} | {shown} | "
              f"{ratio} | {median['xaibench'] / passes[name]:.3f} |", flush=True)


if __name__ == "__main__":
    main()
