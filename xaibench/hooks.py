"""Forward hooks that live for exactly one call.

Every method that needs a layer's activations goes through :func:`capture`: it registers one forward
hook, yields a :class:`Captured` holder, and removes the hook in ``finally``, so no hook outlives the
call, whatever happens inside it. A layer that runs more than once in one forward pass (one module
object called twice) raises at once instead of silently keeping one of its outputs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from xaibench.errors import LayerError


@dataclass
class Captured:
    """What :func:`capture` saw: the layer's output, once the forward pass has run."""

    name: str
    _output: Tensor | None = field(default=None, repr=False)

    @property
    def output(self) -> Tensor:
        if self._output is None:
            raise LayerError(
                f"layer '{self.name}' did not run in the forward pass; choose a layer the model uses"
            )
        return self._output


@contextmanager
def capture(layer: nn.Module, name: str = "target layer", *, graph: bool = False) -> Iterator[Captured]:
    """Record ``layer``'s output during the forward passes run inside the ``with`` block.

    The network after the layer receives a copy of the output, so an in-place operation that follows
    the layer (``ReLU(inplace=True)``) cannot change the captured activations.

    Args:
        layer: The module whose output to keep.
        name: How errors call the layer (its dotted name in the model).
        graph: If True, the captured output is a fresh leaf that requires grad and the rest of the
            forward pass records a graph from it, so ``torch.autograd.grad(score, captured.output)``
            works. Use it inside ``torch.no_grad()``: then nothing *before* the layer records a graph,
            which is the least work a gradient with respect to the layer needs. Grad mode is switched
            on inside the hook and restored when the block ends.

    Raises:
        LayerError: the layer ran a second time in the same forward pass.
    """
    captured = Captured(name)
    grad_mode = torch.is_grad_enabled()

    def hook(module: nn.Module, inputs: tuple, output: Tensor) -> Tensor:
        if captured._output is not None:
            raise LayerError(
                f"layer '{name}' ran more than once in one forward pass (one module object is called "
                "twice), so its output is ambiguous; choose a layer that runs once"
            )
        if not isinstance(output, Tensor):
            raise LayerError(f"layer '{name}' returns {type(output).__name__}, not a tensor")
        if graph:
            torch.set_grad_enabled(True)
            captured._output = output.detach().requires_grad_(True)
        else:
            captured._output = output
        return captured._output.clone()

    handle = layer.register_forward_hook(hook)
    try:
        yield captured
    finally:
        handle.remove()
        torch.set_grad_enabled(grad_mode)


@dataclass(frozen=True)
class Call:
    """One module call seen by :func:`trace`: the module's dotted name and its output."""

    name: str
    module: nn.Module
    output: object


def trace(model: nn.Module, run: Callable[[], object]) -> list[Call]:
    """Every submodule call of ``model`` while ``run()`` executes, in the order the calls finished."""
    calls: list[Call] = []
    handles = []
    try:
        for name, module in model.named_modules():
            if name:
                handles.append(
                    module.register_forward_hook(
                        lambda m, i, o, name=name: calls.append(Call(name, m, o))
                    )
                )
        run()
    finally:
        for handle in handles:
            handle.remove()
    return calls
