"""The baselines: a centred Gaussian and seeded noise."""

from __future__ import annotations

import pytest
import torch

import xaibench
from xaibench.errors import XaibenchError


def test_center_is_a_centred_gaussian(model) -> None:
    maps = xaibench.create_explainer("center", model)(torch.rand(2, 3, 16, 16), torch.tensor([0, 1]))
    assert torch.equal(maps[0], maps[1])
    assert maps[0, 7:9, 7:9].min() == 1.0  # the four centre pixels are equally near the centre
    assert torch.allclose(maps[0], maps[0].T) and torch.allclose(maps[0], maps[0].flip(0))
    # Gaussian profile along the middle row: log M is a parabola in x.
    raw = xaibench.create_explainer("center", model).attribute(torch.rand(1, 3, 16, 16), torch.tensor([0]))[0]
    xs = torch.arange(16) + 0.5 - 8
    profile = torch.exp(-0.5 * (xs / 4) ** 2)  # sigma = 16 / 4
    assert torch.allclose(raw[7] / raw[7].max(), profile / profile.max())


def test_random_depends_on_the_image_and_seed_not_the_batch(model) -> None:
    images = torch.rand(3, 3, 16, 16)
    random = xaibench.create_explainer("random", model)
    together = random(images, torch.tensor([0, 1, 2]))
    alone = random(images[1:2], torch.tensor([1]))
    assert torch.equal(together[1], alone[0])
    assert not torch.equal(together[0], together[1])
    other_seed = xaibench.create_explainer("random", model, seed=1)(images[1:2], torch.tensor([1]))
    assert not torch.equal(other_seed[0], alone[0])


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("center", {"sigma": 0}, "option sigma must be a finite number > 0.0, got 0"),
        ("center", {"sigma": -1.0}, "option sigma must be a finite number > 0.0"),
        ("center", {"sigma": float("inf")}, "option sigma must be a finite number"),
        ("random", {"seed": -1}, r"option seed must be an integer in \[0, 2\*\*32 - 1\]"),
        ("random", {"grid": 0}, "option grid must be an integer >= 1, got 0"),
        ("random", {"grid": 100_000}, "option grid must be at most the model's input side"),
    ],
)
def test_baseline_options_are_checked(model, name, options, message) -> None:
    with pytest.raises(XaibenchError, match=message):
        xaibench.create_explainer(name, model, **options)
