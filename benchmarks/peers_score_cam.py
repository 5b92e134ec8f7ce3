"""The peers of Score-CAM, SS-CAM, IS-CAM and Ablation-CAM, run as their users run them (for bench_peers.py).

``PEERS[name]`` lists, for each xaibench method ``name``, ``(library, factory)`` pairs: ``factory(model)``
builds a callable ``(images, targets) -> maps`` that runs the library's implementation on a xaibench
:class:`~xaibench.Model` (its network fed the normalised images, its target layer) with the library's
defaults. A factory also takes the library's own options as keywords (``num_samples=...``, the same
name as xaibench's), which ``CONFIGS`` uses to shorten the sampling methods for both sides alike.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np
import torch
from torch import Tensor

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

#: What bench_peers.py runs per method, instead of 16 random images and 5 repetitions: each run makes
#: one pass per feature map (1280 on EfficientNet-Lite0) per sample, 12-30 ms each on two shared CPU
#: cores, hence one photo, 3 repetitions, and 1 sample for SS-CAM and IS-CAM (``options``, given to
#: xaibench and to the peer alike; both sides' cost is linear in it).
CONFIGS: dict[str, dict] = {
    "scorecam": {"images": 1, "photos": True, "repeats": 3},
    "sscam": {"images": 1, "photos": True, "repeats": 3, "options": {"num_samples": 1},
              "note": "default 35, cost linear in it"},
    "iscam": {"images": 1, "photos": True, "repeats": 3, "options": {"num_samples": 1},
              "note": "default 10, cost linear in it"},
    "ablationcam": {"images": 1, "photos": True, "repeats": 3},
}
