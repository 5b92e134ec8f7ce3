"""Cascading model parameter randomization (Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018).

The test randomizes a trained network's weights "starting from the top layer, successively, all the
way to the bottom layer" and compares the explanations of each partly randomized network with those
of the trained one. Adebayo et al. randomize Inception v3 by named block (``Logits``, ``Mixed_7c``,
..., ``Conv2d_1a_3x3``); :func:`randomization_blocks` finds the same kind of blocks in any PyTorch
network:

- the network's modules are expanded through containers (``nn.Sequential``, ``nn.ModuleList``,
  ``nn.ModuleDict``); every other module that holds parameters is one unit (a ResNet bottleneck,
  an EfficientNet MBConv block, a convolution, the final linear layer);
- units are ordered as the forward pass first calls them, and units it never calls are left out;
- a normalization layer (batch, group, layer or instance norm) joins the unit before it, as a
  convolution and its batch norm form one layer in Adebayo et al.'s Inception blocks.

On EfficientNet-Lite0 that gives 19 blocks (the stem, 16 MBConv blocks, the head convolution, the
classifier); on the built-in network 6 (five convolutions with their batch norms, the classifier).

A block is randomized with PyTorch's own initializer: ``reset_parameters()`` of each of its
modules, as Quantus's ``ModelParameterRandomisation`` does (batch norm's running statistics are reset
too). Quantus resets layer by layer and seeds every layer with the same ``seed + 1``, so layers of
equal shape get equal weights; here each block draws from its own seed, derived from the run's seed
and the block's depth. Parameters that no ``reset_parameters()`` covers (a layer scale, a learnt
embedding) are redrawn from N(0, s^2), s the trained tensor's root mean square (1 for a tensor of zeros).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor, nn

from xaibench.hooks import trace
from xaibench.models import Model, eval_mode

__all__ = ["Block", "randomization_blocks", "randomize_block", "cascading_randomization", "with_network"]

_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
_NORMALIZATION = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm)


@dataclass(frozen=True)
class Block:
    """One randomization step: the dotted names of its modules, in forward order."""

    modules: tuple[str, ...]

    @property
    def name(self) -> str:
        """The block's name in reports: its modules' names joined by ``+`` (``_conv_stem+_bn0``)."""
        return "+".join(self.modules)


def _units(module: nn.Module, prefix: str = "") -> Iterator[tuple[str, nn.Module]]:
    for name, child in module.named_children():
        dotted = f"{prefix}{name}"
        if isinstance(child, _CONTAINERS):
            yield from _units(child, dotted + ".")
        elif any(True for _ in child.parameters()):
            yield dotted, child


def randomization_blocks(network: nn.Module, example: Tensor) -> list[Block]:
    """The network's blocks from the input to the output (see the module's docstring).

    Args:
        network: The classifier.
        example: An input batch (normalised as the network expects) to find the forward order with.

    Returns:
        The blocks in forward order; randomization goes through them backwards.
    """
    units = dict(_units(network))
    if not units and any(True for _ in network.parameters()):  # a single layer: the network itself
        return [Block(("",))]
    with torch.no_grad(), eval_mode(network):  # units never nest: the order they end is the order they start
        order = [call.name for call in trace(network, lambda: network(example)) if call.name in units]
    blocks: list[list[str]] = []
    for name in dict.fromkeys(order):  # first calls, in order
        if blocks and isinstance(units[name], _NORMALIZATION):
            blocks[-1].append(name)
        else:
            blocks.append([name])
    return [Block(tuple(names)) for names in blocks]


def block_seed(seed: int, depth: int) -> int:
    """The seed block ``depth`` (1 = the top block) is drawn with, from the run's ``seed``."""
    return int(np.random.SeedSequence([seed, depth]).generate_state(1)[0])


@torch.no_grad()
def randomize_block(network: nn.Module, block: Block, seed: int) -> None:
    """Re-initialize, in place, every parameter of ``block`` in ``network``, drawing from ``seed``."""
    modules = [network.get_submodule(name) for name in block.modules]
    covered: set[int] = set()
    with torch.random.fork_rng(devices=[]):  # the caller's random state is left as it was
        torch.manual_seed(seed)
        for module in modules:
            for sub in module.modules():
                reset = getattr(sub, "reset_parameters", None)
                if callable(reset):
                    reset()
                    covered.update(id(p) for p in sub.parameters(recurse=False))
        for module in modules:
            for parameter in module.parameters():
                if id(parameter) not in covered:
                    rms = parameter.float().square().mean().sqrt()
                    parameter.copy_(torch.randn_like(parameter) * (rms if rms > 0 else 1.0))
                    covered.add(id(parameter))


def with_network(model: Model, network: nn.Module, name: str | None = None) -> Model:
    """``model`` with another network of the same architecture (target layer and classifier found by name)."""
    classifier = network.get_submodule(model.classifier_name) if model.classifier_name else None
    return replace(
        model,
        network=network,
        target_layer=network.get_submodule(model.target_layer_name),
        classifier=classifier,
        name=name or model.name,
    )


def cascading_randomization(
    model: Model, blocks: Sequence[Block], seed: int = 0
) -> Iterator[tuple[int, Block, Model]]:
    """The model with its blocks randomized from the top, one more block at each step.

    Yields ``(depth, block, randomized)`` for depth 1 (the top block, e.g. the logits) to
    ``len(blocks)`` (every block randomized), ``block`` being the one randomized last. ``randomized``
    is one copy of the network, randomized further at each step (use it before the next); ``model``
    is never changed.

    Args:
        model: The trained model.
        blocks: Its blocks in forward order, as :func:`randomization_blocks` finds them (or your own).
        seed: Seed of the random weights; block ``d`` draws from :func:`block_seed(seed, d) <block_seed>`.
    """
    network = copy.deepcopy(model.network)
    randomized = with_network(model, network)
    for depth, block in enumerate(reversed(blocks), start=1):
        randomize_block(network, block, block_seed(seed, depth))
        yield depth, block, randomized
