"""The small global-average-pooling network of the built-in shapes benchmark, its training and its cache.

:class:`ShapesNet` is a five-layer CNN whose last feature map (16 x 16 for a 64 px input) is averaged
and fed to one linear layer, the architecture CAM (Zhou et al., 2016) was defined for, so CAM, Grad-CAM
and saliency can all be compared on it. It is trained on :class:`~xaibench.data.shapes.ShapesDataset`.

The trained weights for seed 0 ship with the package (``xaibench/weights/``), so the built-in
benchmark runs at once; :func:`load_shapes_net` trains only for another seed, or when the generator,
the architecture or the training configuration has changed since the shipped file was made (then
once, about a minute and a half on two CPU cores, and caches the result). ``xaibench train-builtin``
trains on request. Weight files carry in their name a hash of the data generator's version, the
architecture's version and the training configuration, so a change to any of them never loads stale
weights.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xaibench.data.shapes import GENERATOR_VERSION, SHAPE_CLASSES, render_scene

__all__ = [
    "SHAPES_MEAN",
    "SHAPES_STD",
    "ShapesNet",
    "TrainConfig",
    "cache_path",
    "load_shapes_net",
    "shipped_path",
    "train_builtin",
    "shapes_net_accuracy",
    "train_shapes_net",
]

logger = logging.getLogger(__name__)

SHAPES_MEAN: tuple[float, float, float] = (0.5, 0.5, 0.5)
"""Per-channel mean subtracted from [0, 1] images before :class:`ShapesNet` (measured: ~0.50)."""
SHAPES_STD: tuple[float, float, float] = (0.25, 0.25, 0.25)
"""Per-channel standard deviation the centred images are divided by (measured: ~0.25)."""

ARCHITECTURE_VERSION = "shapes-net-v1"
"""Changes whenever :class:`ShapesNet` or the training procedure changes, retiring cached weights."""

_IMAGE_SIZE = 64

SHIPPED_DIR = Path(__file__).with_name("weights")
"""Where the package's trained weights live (``xaibench/weights/``)."""


@dataclass(frozen=True)
class TrainConfig:
    """The training configuration; its defaults are the one :func:`load_shapes_net` trains and caches.

    Attributes:
        n_train: Training images (``ShapesDataset(n_train, "train", seed)``).
        epochs: Passes over the training images.
        n_test: Test images the returned accuracy is measured on.
        batch_size: Images per optimisation step.
        lr: Peak learning rate of AdamW under a one-cycle schedule.
        weight_decay: AdamW weight decay.
        augment: Random horizontal and vertical flips (the classes are flip-invariant).
    """

    n_train: int = 8000
    epochs: int = 8
    n_test: int = 1000
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-4
    augment: bool = True


PERMUTED_LABELS_CONFIG = TrainConfig(
    n_train=500, epochs=150, n_test=0, batch_size=16, lr=5e-3, weight_decay=0.0, augment=False
)
"""How the network of the data randomization test is trained on permuted labels: few images, many
epochs, no augmentation and no weight decay, so that it memorises them (100% of its 500 permuted
training labels), as Adebayo et al.'s random-label networks fit theirs."""


class ShapesNet(nn.Module):
    """A small CNN with global average pooling and one linear classifier, for 64 x 64 inputs.

    conv3x3(3->16)-BN-ReLU-maxpool, conv3x3(16->32)-BN-ReLU-maxpool, then three conv3x3(->48)-BN-ReLU
    at H/4 x W/4, the last one dilated by 2, give a (48, 16, 16) map for a 64 px image; then global
    average pooling and ``Linear(48, K)``. The third layer at 16 x 16 and its dilation widen the
    receptive field to 42 px, so that the last map sees whole objects (up to 30 px): with four layers
    (26 px) training needed about twice as long for the same accuracy. Every activation is its own
    module, so a hook on any of them fires once per forward pass.

    The network expects images already normalised: ``(x - SHAPES_MEAN) / SHAPES_STD`` per channel,
    with ``x`` RGB in [0, 1].

    Args:
        n_classes: Number of output classes.

    Attributes:
        features: The convolutional trunk; its output (that of its last ReLU) is the map CAM uses.
        pool: Global average pooling to (N, 48).
        classifier: The final ``nn.Linear`` whose weights CAM reads.
    """

    def __init__(self, n_classes: int = len(SHAPE_CLASSES)) -> None:
        super().__init__()

        def block(c_in: int, c_out: int, dilation: int = 1) -> list[nn.Module]:
            conv = nn.Conv2d(c_in, c_out, 3, padding=dilation, dilation=dilation, bias=False)
            return [conv, nn.BatchNorm2d(c_out), nn.ReLU()]

        self.features = nn.Sequential(
            *block(3, 16),
            nn.MaxPool2d(2),
            *block(16, 32),
            nn.MaxPool2d(2),
            *block(32, 48),
            *block(48, 48),
            *block(48, 48, dilation=2),
        )
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(48, n_classes)

    def forward(self, x: Tensor) -> Tensor:
        """Logits (N, n_classes) of normalised images (N, 3, H, W)."""
        return self.classifier(self.pool(self.features(x)))


def _normalise(images: Tensor) -> Tensor:
    mean = torch.tensor(SHAPES_MEAN, dtype=images.dtype).view(1, 3, 1, 1)
    std = torch.tensor(SHAPES_STD, dtype=images.dtype).view(1, 3, 1, 1)
    return (images - mean) / std


def _render(n: int, split: str, seed: int) -> tuple[Tensor, Tensor]:
    """Images (n, 3, 64, 64) float32 and labels (n,) of the first ``n`` items of a split."""
    images = np.empty((n, 3, _IMAGE_SIZE, _IMAGE_SIZE), dtype=np.float32)
    labels = np.empty(n, dtype=np.int64)
    for i in range(n):
        scene = render_scene(seed, split, i, _IMAGE_SIZE)
        images[i] = scene.image
        labels[i] = scene.label
    return torch.from_numpy(images), torch.from_numpy(labels)


@torch.no_grad()
def _accuracy(model: nn.Module, images: Tensor, labels: Tensor, batch_size: int = 500) -> float:
    correct = 0
    for start in range(0, len(images), batch_size):
        logits = model(_normalise(images[start : start + batch_size]))
        correct += int((logits.argmax(1) == labels[start : start + batch_size]).sum())
    return correct / max(len(images), 1)


def train_shapes_net(
    seed: int = 0,
    n_train: int = TrainConfig.n_train,
    epochs: int = TrainConfig.epochs,
    *,
    n_test: int = TrainConfig.n_test,
    batch_size: int = TrainConfig.batch_size,
    lr: float = TrainConfig.lr,
    weight_decay: float = TrainConfig.weight_decay,
    augment: bool = TrainConfig.augment,
    permute_labels: bool = False,
) -> tuple[ShapesNet, float]:
    """Train a :class:`ShapesNet` from scratch on the shapes benchmark.

    Training uses ``ShapesDataset(n_train, "train", seed)``, AdamW with a one-cycle learning-rate
    schedule and cross-entropy; the result is reproducible from ``seed`` (initialisation and shuffling
    draw from seeded generators; torch's global RNG state is restored afterwards).

    With ``permute_labels`` the training labels are randomly permuted first (one seeded permutation
    of the label vector), the data randomization test of Adebayo et al., "Sanity Checks for Saliency
    Maps", NeurIPS 2018: the network can then only memorise, and a map that does not change is
    independent of what the labels mean. Its accuracy is then measured on the permuted training
    labels, the fit the test relies on (on test images it is at chance).

    Args:
        seed: Seed of the data and of the training.
        n_train: Training images.
        epochs: Passes over them.
        n_test: Images of ``ShapesDataset(n_test, "test", seed)`` to measure accuracy on.
        batch_size: Images per step.
        lr: Peak learning rate.
        weight_decay: AdamW weight decay.
        augment: Random flips of training images.
        permute_labels: Train on randomly permuted labels (see above).

    Returns:
        The network in eval mode and its top-1 accuracy: on the test images, or with
        ``permute_labels`` on the training images and their permuted labels.
    """
    if n_train < 1 or epochs < 1 or batch_size < 1:
        raise ValueError(
            f"n_train, epochs and batch_size must be >= 1, got {n_train}, {epochs}, {batch_size}"
        )
    started = time.perf_counter()
    images, labels = _render(n_train, "train", seed)
    mean, std = torch.tensor(SHAPES_MEAN).view(1, 3, 1, 1), torch.tensor(SHAPES_STD).view(1, 3, 1, 1)
    images.sub_(mean).div_(std)  # normalised once, in place
    logger.debug("rendered %d training images in %.1f s", n_train, time.perf_counter() - started)

    generator = torch.Generator().manual_seed(seed)
    if permute_labels:
        labels = labels[torch.randperm(n_train, generator=torch.Generator().manual_seed(seed + 1))]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ShapesNet(len(SHAPE_CLASSES))
    # channels_last makes the CPU convolutions markedly faster; undone before returning.
    model = model.to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = -(-n_train // batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=epochs * steps_per_epoch, pct_start=0.1
    )
    for epoch in range(epochs):
        order = torch.randperm(n_train, generator=generator)
        total_loss = 0.0
        for start in range(0, n_train, batch_size):
            index = order[start : start + batch_size]
            batch = images[index]
            if augment:
                flip = torch.rand(2, len(index), generator=generator) < 0.5
                batch[flip[0]] = batch[flip[0]].flip(3)
                batch[flip[1]] = batch[flip[1]].flip(2)
            batch = batch.contiguous(memory_format=torch.channels_last)
            loss = F.cross_entropy(model(batch), labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total_loss += float(loss.detach()) * len(index)
        logger.info("shapes net epoch %d/%d: loss %.4f", epoch + 1, epochs, total_loss / n_train)

    model = model.to(memory_format=torch.contiguous_format).eval()
    if permute_labels:  # the fit to the permuted labels, on the (unnormalised) training images
        accuracy = _accuracy(model, images * std + mean, labels)
    else:
        accuracy = _accuracy(model, *_render(n_test, "test", seed)) if n_test > 0 else float("nan")
    logger.info(
        "trained shapes net (seed %d%s) in %.0f s; accuracy %.2f%% on %d %s images",
        seed, ", permuted labels" if permute_labels else "", time.perf_counter() - started, 100 * accuracy,
        n_train if permute_labels else n_test, "training" if permute_labels else "test",
    )
    return model, accuracy


def _cache_dir(cache_dir: str | os.PathLike | None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    if os.environ.get("XAIBENCH_CACHE"):
        return Path(os.environ["XAIBENCH_CACHE"])
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]) / "xaibench"
    return Path.home() / ".cache" / "xaibench"


def _config_key(config: TrainConfig) -> str:
    """Short hash of everything that determines the weights besides the seed."""
    payload = json.dumps(
        {
            "generator": GENERATOR_VERSION,
            "architecture": ARCHITECTURE_VERSION,
            "image_size": _IMAGE_SIZE,
            "config": dataclasses.asdict(config),
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def cache_path(seed: int = 0, cache_dir: str | os.PathLike | None = None, *, permuted_labels: bool = False) -> Path:
    """Where :func:`load_shapes_net` keeps the network trained with ``seed`` (the file may not exist yet).

    The directory is ``cache_dir`` if given, else ``$XAIBENCH_CACHE``, else ``$XDG_CACHE_HOME/xaibench``,
    else ``~/.cache/xaibench``.
    """
    return _cache_dir(cache_dir) / _file_name(seed, permuted_labels)


def shipped_path(seed: int = 0, *, permuted_labels: bool = False) -> Path:
    """Where the package keeps the trained network for ``seed`` (only seed 0 ships, on true and on
    permuted labels)."""
    return SHIPPED_DIR / _file_name(seed, permuted_labels)


def _train_config(permuted_labels: bool) -> TrainConfig:
    return PERMUTED_LABELS_CONFIG if permuted_labels else TrainConfig()


def _file_name(seed: int, permuted_labels: bool = False) -> str:
    labels = "-permuted-labels" if permuted_labels else ""
    return f"shapes_net-seed{seed}{labels}-{_config_key(_train_config(permuted_labels))}.pt"


def _read_checkpoint(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise RuntimeError(
            f"cannot read the built-in network's weights {path} ({type(error).__name__}); delete the file "
            "and run 'xaibench train-builtin' to retrain it"
        ) from error


def train_builtin(
    seed: int = 0, out_dir: str | os.PathLike | None = None, *, permuted_labels: bool = False
) -> tuple[Path, float]:
    """Train the built-in network for ``seed`` with the default :class:`TrainConfig` and save it.

    Args:
        seed: Seed of the data and the training.
        out_dir: Folder to write the weights file to; the cache folder (:func:`cache_path`) when None.
            ``xaibench train-builtin --out xaibench/weights`` refreshes the file the package ships.
        permuted_labels: Train on permuted labels, with :data:`PERMUTED_LABELS_CONFIG` (the data
            randomization test; see :func:`train_shapes_net`).

    Returns:
        The weights file (a checkpoint holding ``state_dict``, ``accuracy``, the seed, the versions and
        the configuration) and the network's accuracy (see :func:`train_shapes_net`).
    """
    name = _file_name(seed, permuted_labels)
    path = Path(out_dir) / name if out_dir is not None else cache_path(seed, permuted_labels=permuted_labels)
    config = _train_config(permuted_labels)
    model, accuracy = train_shapes_net(seed, **dataclasses.asdict(config), permute_labels=permuted_labels)
    checkpoint = {
        "state_dict": model.state_dict(),
        "accuracy": accuracy,
        "permuted_labels": permuted_labels,
        "seed": seed,
        "generator_version": GENERATOR_VERSION,
        "architecture_version": ARCHITECTURE_VERSION,
        "config": dataclasses.asdict(config),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as file:
            torch.save(checkpoint, file)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path, accuracy


def _checkpoint(seed: int, cache_dir: str | os.PathLike | None, permuted_labels: bool = False) -> dict:
    """The shipped or cached checkpoint for ``seed``, training and caching it first if there is none."""
    target = cache_path(seed, cache_dir, permuted_labels=permuted_labels)
    for path in (shipped_path(seed, permuted_labels=permuted_labels), target):
        if path.is_file():
            return _read_checkpoint(path)
    logger.warning(
        "no trained built-in network for seed %d%s (only seed 0 ships, for the current data generator and "
        "architecture): training it now, once, about a minute and a half on two CPU cores; cached at %s",
        seed, " on permuted labels" if permuted_labels else "", target,
    )
    path, _ = train_builtin(seed, target.parent, permuted_labels=permuted_labels)
    return _read_checkpoint(path)


def load_shapes_net(
    seed: int = 0, cache_dir: str | os.PathLike | None = None, *, permuted_labels: bool = False
) -> ShapesNet:
    """The trained built-in network for ``seed``, in eval mode: the shipped weights for seed 0, else
    the cached ones, else trained now and cached.

    Args:
        seed: Seed of the data and training.
        cache_dir: Cache directory; see :func:`cache_path` for the default.
        permuted_labels: The network trained on permuted labels instead (the data randomization test).

    Returns:
        The network; it expects inputs normalised with :data:`SHAPES_MEAN` and :data:`SHAPES_STD`.
    """
    checkpoint = _checkpoint(seed, cache_dir, permuted_labels)
    model = ShapesNet(len(SHAPE_CLASSES))
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval()


def shapes_net_accuracy(
    seed: int = 0, cache_dir: str | os.PathLike | None = None, *, permuted_labels: bool = False
) -> float:
    """Test accuracy (on 1000 test images) of the shipped or cached network for ``seed``; with
    ``permuted_labels``, that network's accuracy on its training images and their permuted labels."""
    return float(_checkpoint(seed, cache_dir, permuted_labels)["accuracy"])
