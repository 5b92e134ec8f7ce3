"""The peers of Score-CAM, SS-CAM, IS-CAM and Ablation-CAM, run as their users run them, and a timer.

``PEERS[name]`` lists, for each xaibench method ``name``, ``(library, factory)`` pairs: ``factory(model)``
builds a callable ``(images, targets) -> maps`` that runs the library's implementation on a xaibench
:class:`~xaibench.Model` (its network fed the normalised images, its target layer) with the library's
defaults. A factory also takes the library's own options as keywords (``num_samples=...``), which
the timer below uses to shorten the sampling methods for both sides alike.

Run as a script, it times xaibench against each peer on EfficientNet-Lite0 (CPU, interleaved
repetitions, medians, seconds per image):

    python benchmarks/peers_score_cam.py [--threads 2] [--repeats N] [--methods scorecam,ablationcam]

These methods run the network once per feature map (1280 on EfficientNet-Lite0) per image, so the
timer uses one real photo instead of a batch of 16, and fewer samples for SS-CAM and IS-CAM
(``CONFIGS``; their cost is linear in the number of samples, the same on both sides).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

import xaibench
from xaibench.models import Model

Maps = Callable[[Tensor, Tensor], Tensor]


def _torchcam(method: str, model: Model, **options: object) -> Maps:
    """torchcam: hooks registered by the extractor's constructor, the model run under inference mode,
    then the extractor called with the class indices (its README's usage); hooks removed on exit."""
    import torchcam.methods

    cls = getattr(torchcam.methods, method)

    def run(images: Tensor, targets: Tensor) -> Tensor:
        inputs = model.normalize(images)
        layer, shape = model.target_layer_name, tuple(inputs.shape[1:])
        with cls(model.network, target_layer=layer, input_shape=shape, **options) as extractor:
            with torch.inference_mode():
                model.network(inputs)
            return extractor(class_idx=targets.tolist())[0]

    return run


def _grad_cam(method: str, model: Model, *, per_image: bool = False, **options: object) -> Maps:
    """pytorch-grad-cam: the CAM object built on the model and its target layer, called on the batch
    with one ``ClassifierOutputTarget`` per image; returns its (N, H, W) maps (numpy -> torch)."""
    import pytorch_grad_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cls = getattr(pytorch_grad_cam, method)

    def run(images: Tensor, targets: Tensor) -> Tensor:
        inputs = model.normalize(images)
        with cls(model=model.network, target_layers=[model.target_layer], **options) as cam:
            # Its ScoreCAM builds every masked input of the batch at once, N x K x 3 x H x W floats
            # (12 GB for 16 images on EfficientNet-Lite0): a user with a CPU's memory calls it per image.
            groups = inputs.split(1) if per_image else [inputs]
            target_groups = targets.split(1) if per_image else [targets]
            maps = [
                cam(input_tensor=x, targets=[ClassifierOutputTarget(int(c)) for c in t])
                for x, t in zip(groups, target_groups)
            ]
        return torch.from_numpy(np.concatenate(maps))

    return run


PEERS: dict[str, list[tuple[str, Callable[[Model], Maps]]]] = {
    "scorecam": [
        ("torchcam", partial(_torchcam, "ScoreCAM")),
        ("pytorch-grad-cam", partial(_grad_cam, "ScoreCAM", per_image=True)),
    ],
    "sscam": [("torchcam", partial(_torchcam, "SSCAM"))],
    "iscam": [("torchcam", partial(_torchcam, "ISCAM"))],
    "ablationcam": [("pytorch-grad-cam", partial(_grad_cam, "AblationCAM"))],
}

#: What the timer runs per method: images, repetitions, and the options given to xaibench and to every
#: peer alike. One pass of EfficientNet-Lite0 costs 0.15-1 s per image on two shared CPU cores, and each
#: run below makes 1,300-2,600 of them, hence one image and two repetitions (one for Ablation-CAM,
#: where the peer is three orders of magnitude slower).
CONFIGS: dict[str, tuple[int, int, dict[str, object]]] = {
    "scorecam": (1, 2, {}),
    "sscam": (1, 2, {"num_samples": 1}),
    "iscam": (1, 2, {"num_samples": 2}),
    "ablationcam": (1, 1, {}),
}

SHARED_IMAGENET = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-val-300"


def photos(model: Model, n: int) -> tuple[Tensor, Tensor]:
    """The first ``n`` shared ImageNet photos with their labels, or random images and classes."""
    if SHARED_IMAGENET.is_dir():
        data = xaibench.load_dataset(
            f"imagenet:{SHARED_IMAGENET}", image_size=model.input_size, class_names=model.class_names
        )
        return torch.stack([data[i].image for i in range(n)]), torch.tensor([data[i].label for i in range(n)])
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(n, 3, *model.input_size, generator=generator)
    return images, torch.randint(0, model.num_classes, (n,), generator=generator)


def _seconds(run: Maps, images: Tensor, targets: Tensor) -> float:
    start = time.perf_counter()
    run(images, targets)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=0, help="repetitions (default: CONFIGS')")
    parser.add_argument("--methods", default=",".join(PEERS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = xaibench.load_model("efficientnet_lite0")
    print(f"efficientnet_lite0, 224 x 224, CPU, {torch.get_num_threads()} threads, medians of interleaved runs")
    header = f"{'method':<12}{'images':>7}{'runs':>5}  {'options':<18}{'xaibench s/img':>15}"
    print(f"{header}  peers (s/img, ratio xaibench/peer)")
    for name in args.methods.split(","):
        n, repeats, options = CONFIGS[name]
        repeats = args.repeats or repeats
        images, targets = photos(model, n)
        runners = {"xaibench": xaibench.create_explainer(name, model, **options)}
        runners.update({library: factory(model, **options) for library, factory in PEERS[name]})
        seconds: dict[str, list[float]] = {key: [] for key in runners}
        for _ in range(repeats):
            for key, run in runners.items():
                seconds[key].append(_seconds(run, images, targets) / n)
        ours = statistics.median(seconds["xaibench"])
        medians = {key: statistics.median(v) for key, v in seconds.items() if key != "xaibench"}
        peers = "  ".join(f"{key} {s:.2f} ({ours / s:.2f})" for key, s in medians.items())
        print(f"{name:<12}{n:>7}{repeats:>5}  {str(options or ''):<18}{ours:>15.2f}  {peers}", flush=True)
        print(f"    raw: { {k: [round(s, 2) for s in v] for k, v in seconds.items()} }", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
