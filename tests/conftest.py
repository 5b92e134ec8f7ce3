"""Tiny models built in the tests (no downloads), and a session-wide cache for the built-in network."""

from __future__ import annotations

import os
from pathlib import Path

if os.environ.get("PYTEST_XDIST_WORKER"):  # one worker per core (pyproject's addopts): one thread each, and
    os.environ["OMP_NUM_THREADS"] = "1"  # in the processes the tests start

import pytest
import torch
from torch import nn

import xaibench
from xaibench.explainer import normalize_maps, upsample_maps
from xaibench.models import Model

from browser import browser  # noqa: F401  (the session-wide headless Chromium fixture, see tests/browser.py)

if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)

SHARED_IMAGENET = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-val-300"
SLOW = os.environ.get("XAIBENCH_SLOW") == "1"
"""Run the tests that take minutes to an hour of CPU time (the peers at full size, a full retraining)."""


def pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson correlation of each pair of maps (N, ...) -> (N,), in float64."""
    a, b = a.flatten(1).double(), b.flatten(1).double()
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))


def post(raw, size) -> torch.Tensor:
    """xaibench's post-processing of raw (N, h, w) maps (a tensor or an array, e.g. a peer's):
    bilinear upsampling to ``size``, then per-map min-max scaling."""
    return normalize_maps(upsample_maps(torch.as_tensor(raw).detach().float(), size))


@pytest.fixture(scope="session", autouse=True)
def _session_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep the built-in network's cache inside the test session (trained at most once per session)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("XAIBENCH_CACHE", str(tmp_path_factory.mktemp("xaibench-cache")))
    yield
    mp.undo()


class TinyGapNet(nn.Module):
    """conv -> ReLU -> conv -> ReLU (the CAM feature maps, 8 x 8 on a 16 x 16 input) -> GAP -> linear."""

    def __init__(self, n_classes: int = 5, inplace: bool = False) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1),
            nn.ReLU(inplace=inplace),
            nn.Conv2d(4, 6, 3, padding=1, stride=2),
            nn.ReLU(inplace=inplace),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(6, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


class SharedActNet(nn.Module):
    """One ReLU module object applied twice in a forward pass (the pitfall CAM libraries fall into)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 6, 3, padding=1)
        self.act = nn.ReLU()
        self.fc = nn.Linear(6, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.conv2(self.act(self.conv1(x))))
        return self.fc(x.mean((2, 3)))


class FlattenHeadNet(nn.Module):
    """Feature maps flattened into the linear layer: no global average pooling, so no CAM."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, stride=4), nn.ReLU())
        self.fc = nn.Linear(4 * 4 * 4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).flatten(1))


class ConvHeadNet(nn.Module):
    """A 1 x 1 convolution to class maps, then GAP: logits without any nn.Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.head = nn.Conv2d(4, 5, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)).mean((2, 3))


def tiny_model(network: nn.Module | None = None, **options) -> Model:
    torch.manual_seed(0)
    network = network if network is not None else TinyGapNet()
    return xaibench.wrap_model(network, **{"input_size": 16, **options})


@pytest.fixture
def temporary_name():
    """``temporary_name(registry, name)`` returns ``name`` and unregisters it from ``registry``
    (``xaibench.explainer.METHODS``, ``xaibench.metric.METRICS``, ...) after the test, so that a test
    can register a plugin with the public decorator: ``@register_metric(temporary_name(METRICS, "x"))``."""
    names = []

    def remember(registry, name: str) -> str:
        names.append((registry, name))
        return name

    yield remember
    for registry, name in names:
        registry._classes.pop(name, None)


@pytest.fixture
def model() -> Model:
    return tiny_model()


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.rand(4, 3, 16, 16, generator=g), torch.tensor([0, 1, 2, 4])


def tiny_vit(num_classes: int = 5) -> Model:
    """A small torchvision ViT (32 x 32 input, 8 px patches: a class token and a 4 x 4 grid; two blocks),
    random weights of seed 0, its head drawn at random too (torchvision initialises it to zeros)."""
    from torchvision.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    network = VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64,
                                num_classes=num_classes).eval()
    nn.init.normal_(network.heads.head.weight, std=0.5)
    return xaibench.wrap_model(network, input_size=32)
