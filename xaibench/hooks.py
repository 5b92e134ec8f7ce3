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
from xaibench.feature_maps import TokenGrid


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
def capture(layer: nn.Module, name: str = "target layer", *, graph: bool = False,
            reshape: TokenGrid | None = None) -> Iterator[Captured]:
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
        reshape: For a layer whose output is tokens (a vision transformer's): the captured output is
            its patch tokens as maps (N, C, h, w) (:class:`~xaibench.feature_maps.TokenGrid`); with
            ``graph``, those maps are the leaf, and the network goes on from the tokens they make again.

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
        if reshape is not None:
            if graph:
                torch.set_grad_enabled(True)
                captured._output = reshape.to_maps(output.detach()).contiguous().requires_grad_(True)
                return reshape.restore(captured._output, output.detach())
            captured._output = reshape.to_maps(output)
            return output.clone()
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


# ------------------------------------------------------------------------------------ hook bookkeeping

#: A module's hook dictionaries: the four that hold hooks, then the bookkeeping keyed by the same
#: handle ids (present in recent torch versions only).
_MODULE_HOOKS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
_MODULE_BOOKKEEPING = tuple(
    name
    for name in ("_forward_hooks_with_kwargs", "_forward_hooks_always_called", "_forward_pre_hooks_with_kwargs")
    if hasattr(nn.Module(), name)
)
#: Hook dictionaries of a tensor (a parameter): ``register_hook`` and ``register_post_accumulate_grad_hook``.
_TENSOR_HOOKS = ("_backward_hooks", "_post_accumulate_grad_hooks")
#: The process-wide module hooks of ``torch.nn.modules.module`` (``register_module_forward_hook``, ...).
_GLOBAL_HOOKS = ("_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks", "_global_backward_pre_hooks")
_ABSENT = object()
_GLOBAL_BOOKKEEPING = ("_global_forward_hooks_with_kwargs", "_global_forward_hooks_always_called")


def _global_dicts(names: tuple[str, ...]) -> list[dict]:
    from torch.nn.modules import module as module_py

    return [d for d in (getattr(module_py, name, None) for name in names) if isinstance(d, dict)]


def _tensor_dicts(tensor: Tensor) -> dict[str, dict]:
    found = {name: getattr(tensor, name, None) for name in _TENSOR_HOOKS}
    return {name: hooks for name, hooks in found.items() if isinstance(hooks, dict)}


def count_hooks(network: nn.Module) -> int:
    """Forward, forward-pre, backward and backward-pre hooks on ``network``'s modules, tensor hooks on
    its parameters, and the process-wide module hooks (``torch.nn.modules.module.register_module_*``)."""
    total = sum(len(getattr(m, name)) for m in network.modules() for name in _MODULE_HOOKS)
    total += sum(len(d) for p in network.parameters() for d in _tensor_dicts(p).values())
    return total + sum(len(d) for d in _global_dicts(_GLOBAL_HOOKS))


class HookSnapshot:
    """Which hooks a network (and the process-wide module hook registry) holds at one moment.

    :meth:`restore` removes every hook registered since, exactly as its ``RemovableHandle.remove()``
    would have (the handle's id is the key in every dictionary, bookkeeping included), so a call that
    leaks hooks, or raises before removing them, leaves the network as it found it.

        snapshot = HookSnapshot(model.network)
        try:
            run_the_method()
        finally:
            leaked = snapshot.restore()
    """

    def __init__(self, network: nn.Module) -> None:
        self._modules = [
            (m, {name: set(getattr(m, name)) for name in _MODULE_HOOKS + _MODULE_BOOKKEEPING},
             getattr(m, "_is_full_backward_hook", _ABSENT))
            for m in network.modules()
        ]
        self._tensors = [
            (p, {name: set(hooks) for name, hooks in _tensor_dicts(p).items()}) for p in network.parameters()
        ]
        self._globals = [(d, set(d)) for d in _global_dicts(_GLOBAL_HOOKS)]
        self._global_bookkeeping = [(d, set(d)) for d in _global_dicts(_GLOBAL_BOOKKEEPING)]

    def restore(self) -> int:
        """Remove every hook added since the snapshot; return how many hooks that was."""
        removed = 0
        for module, before, full_backward in self._modules:
            for name, keys in before.items():
                dropped = _drop_new(getattr(module, name), keys)
                removed += dropped if name in _MODULE_HOOKS else 0
            if full_backward is not _ABSENT and not module._backward_hooks:
                module._is_full_backward_hook = full_backward
        for tensor, before in self._tensors:
            for name, hooks in _tensor_dicts(tensor).items():  # a dict created since holds only new hooks
                removed += _drop_new(hooks, before.get(name, set()))
        removed += sum(_drop_new(hooks, keys) for hooks, keys in self._globals)
        for hooks, keys in self._global_bookkeeping:
            _drop_new(hooks, keys)
        return removed


def _drop_new(hooks: dict, keep: set) -> int:
    """Delete the entries of ``hooks`` whose key is not in ``keep``; return how many there were."""
    extra = [key for key in hooks if key not in keep]
    for key in extra:
        del hooks[key]
    return len(extra)
