"""The contract checker for explanation methods, for xaibench's own tests and for plugin authors.

:func:`check_explainer` runs a method a few times on a small batch and asserts, with a message that
says what went wrong, everything a benchmark run relies on. Use it in your plugin's tests::

    import torch
    import xaibench
    from xaibench.testing import check_explainer

    def test_my_method_keeps_the_contract():
        model = xaibench.load_model("builtin")
        images = torch.rand(4, 3, *model.input_size, generator=torch.Generator().manual_seed(0))
        targets = torch.tensor([0, 1, 2, 0])
        check_explainer(xaibench.create_explainer("my-method", model), images, targets)

It needs no test framework (plain ``assert``-style :class:`AssertionError` s); run it on the CPU
with 2 to 8 images, so that it is fast and its determinism check is meaningful.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

import torch
from torch import Tensor, nn

from xaibench.errors import XaibenchError
from xaibench.explainer import Explainer, Explanation
from xaibench.forward_pass import classification_pass
from xaibench.hooks import count_hooks

__all__ = ["BATCH_ATOL", "check_explainer"]

#: How far (absolutely, on the [0, 1] scale) a map computed in a batch may be from the same image's
#: map computed alone. A batch may take other kernels than a single image (another summation order),
#: which changes float32 activations by a few ulps; min-max scaling divides by the map's span, which
#: can magnify that by a few orders of magnitude on flat maps. 1e-4 stays 100 times below the finest
#: threshold step metrics use (0.01), so a difference below it changes no number in a report.
BATCH_ATOL = 1e-4


class _Interrupt(Exception):
    """Raised from inside the model's forward pass by the check that hooks survive an exception."""


def check_explainer(
    explainer: Explainer,
    images: Tensor,
    targets: Tensor,
    *,
    allow_constant: bool = True,
    batch_atol: float = BATCH_ATOL,
) -> Explanation:
    """Assert that ``explainer`` keeps the contract every xaibench method is held to.

    Checks, in order:

    1. ``explain`` works on the batch: maps of shape (N, H, W), float32, in [0, 1], finite, not
       requiring grad; every raw map finite (``Explanation.finite``); none constant unless
       ``allow_constant``; the caller's ``images`` and ``targets`` unchanged.
    2. The model is left as it was: every module's train/eval flag, every parameter's
       ``requires_grad``, ``.grad`` (None stays None, a tensor keeps its values), every parameter
       and buffer value, the number of hooks, the grad mode.
    3. Deterministic: a second call gives exactly the same maps.
    4. The maps of the batch equal those of its images explained one at a time (within
       ``batch_atol``; see :data:`BATCH_ATOL`), and so do the ``finite``/``constant`` flags.
    5. The same maps under ``torch.no_grad()`` and under ``torch.inference_mode()``, and the grad
       mode restored after each.
    6. When the model raises in the middle of its forward pass (a temporary forward hook on the
       target layer raises), that exception reaches the caller unchanged, and the hooks, the
       train/eval flags and the grad mode are as before. Skipped for a method that never runs the
       model (a baseline).
    7. The progress the method reports (:meth:`~xaibench.explainer.Explainer.report_progress`), if
       any, counts up, one total throughout, and ends at the total.
    8. A method that :attr:`~xaibench.explainer.Explainer.uses_forward_pass`, given the batch's
       classification pass (:func:`xaibench.forward_pass.classification_pass`), returns the same raw
       maps, bit for bit, as when it runs the network itself.

    Args:
        explainer: The method, bound to its model (``xaibench.create_explainer(name, model)``).
        images: (N, 3, H, W) images in [0, 1] on the model's device; 2 to 8 are enough.
        targets: (N,) long class indices.
        allow_constant: Whether a constant map (a method that singles out nothing) is acceptable on
            these images. Pass False for a method that must single out something on every image.
        batch_atol: Tolerance of check 4.

    Returns:
        The explanation of the batch from check 1.

    Raises:
        AssertionError: a broken promise; the message names the method and what was broken.
    """
    name = explainer.name or type(explainer).__name__
    network = explainer.model.network
    what = f"explainer '{name}'"
    state = _State(network)
    images_before, targets_before = images.clone(), targets.clone()

    # 1. the maps
    reported: list[tuple[int, int]] = []
    explanation = _explain(explainer, images, targets, progress=lambda done, total: reported.append((done, total)))
    maps, n = explanation.maps, images.shape[0]
    _require(tuple(maps.shape) == (n, *images.shape[-2:]), f"{what}: maps of shape {tuple(maps.shape)}, expected {(n, *images.shape[-2:])}")
    _require(maps.dtype == torch.float32, f"{what}: maps of dtype {maps.dtype}, expected torch.float32")
    _require(not maps.requires_grad, f"{what}: the maps require grad")
    _require(bool(torch.isfinite(maps).all()), f"{what}: the maps hold NaN or infinite values")
    _require(bool((maps >= 0).all() and (maps <= 1).all()), f"{what}: maps outside [0, 1]")
    bad = (~explanation.finite).nonzero().flatten().tolist()
    _require(not bad, f"{what}: NaN or infinite raw maps for images {bad} of {n}")
    flat = explanation.constant.nonzero().flatten().tolist()
    _require(allow_constant or not flat, f"{what}: constant raw maps for images {flat} of {n}")
    _require(torch.equal(images, images_before), f"{what}: the caller's images were changed")
    _require(torch.equal(targets, targets_before), f"{what}: the caller's targets were changed")

    # 2. the model left alone
    state.assert_unchanged(what, "after a call")

    # 3. deterministic
    again = _explain(explainer, images, targets)
    _require(torch.equal(again.maps, maps), f"{what}: two calls on the same batch gave different maps {_diff(again.maps, maps)}")

    # 4. batch = one at a time
    for i in range(n):
        alone = _explain(explainer, images[i : i + 1], targets[i : i + 1])
        _require(
            torch.allclose(alone.maps[0], maps[i], rtol=0, atol=batch_atol),
            f"{what}: image {i} explained alone differs from the same image in a batch of {n} "
            f"{_diff(alone.maps[0], maps[i])} (atol {batch_atol})",
        )
        for flag in ("finite", "constant"):
            _require(
                bool(getattr(alone, flag)[0] == getattr(explanation, flag)[i]),
                f"{what}: image {i}'s '{flag}' flag differs between the batch and the image alone",
            )

    # 5. the caller's grad context changes nothing
    contexts: dict[str, Callable[[], AbstractContextManager]] = {
        "torch.no_grad()": torch.no_grad,
        "torch.inference_mode()": torch.inference_mode,
    }
    for context, enter in contexts.items():
        with enter():
            under = _explain(explainer, images, targets, f" under {context}")
            _require(not torch.is_grad_enabled(), f"{what}: grad mode switched on under {context}")
        _require(torch.equal(under.maps, maps), f"{what}: different maps under {context} {_diff(under.maps, maps)}")
    state.assert_unchanged(what, "after calls under torch.no_grad() and torch.inference_mode()")

    # 6. an exception in the middle of the forward pass
    with _raising_forward(explainer.model.target_layer) as fired:
        try:
            explainer.explain(images, targets)
        except _Interrupt:
            pass
        except Exception as error:
            raise AssertionError(
                f"{what}: the model's exception was replaced by {type(error).__name__}: {error}"
            ) from error
        else:
            _require(not fired, f"{what}: swallowed an exception the model raised in its forward pass")
    state.assert_unchanged(what, "after the model raised in its forward pass")

    # 7. progress counts up to its total
    if reported:
        done, totals = [d for d, _ in reported], {t for _, t in reported}
        _require(len(totals) == 1, f"{what}: reported progress towards several totals {sorted(totals)[:5]}")
        _require(
            all(a < b for a, b in zip(done, done[1:])) and done[0] > 0,
            f"{what}: reported progress that does not count up: {done[:10]}",
        )
        _require(done[-1] == totals.pop(), f"{what}: reported progress ends at {reported[-1]}, not at its total")

    # 8. the classification pass serves a method that says it needs nothing else
    if explainer.uses_forward_pass:
        forward = classification_pass(explainer.model, images, features=True)
        given = _explain(explainer, images, targets, " given the classification pass", forward=forward)
        _require(
            torch.equal(given.raw, explanation.raw) and torch.equal(given.maps, maps),
            f"{what}: given the classification pass, other maps than its own pass gives {_diff(given.raw, explanation.raw)}",
        )
        state.assert_unchanged(what, "after a call given the classification pass")
    return explanation


def _explain(explainer: Explainer, images: Tensor, targets: Tensor, context: str = "", **given: object) -> Explanation:
    try:
        return explainer.explain(images, targets, **given)
    except XaibenchError as error:
        raise AssertionError(f"explainer '{explainer.name}'{context}: {error}") from error


@contextmanager
def _raising_forward(layer: nn.Module) -> Iterator[list[bool]]:
    """A forward hook on ``layer`` that raises :class:`_Interrupt`; yields whether it fired."""
    fired: list[bool] = []

    def hook(module: nn.Module, inputs: tuple, output: object) -> None:
        fired.append(True)
        raise _Interrupt("raised by xaibench.testing in the middle of the forward pass")

    handle = layer.register_forward_hook(hook)
    try:
        yield fired
    finally:
        handle.remove()


class _State:
    """What a call must leave as it found: flags, gradients, values, hooks and grad mode."""

    def __init__(self, network: nn.Module) -> None:
        self.network = network
        self.training = self._training()
        self.requires_grad = self._requires_grad()
        self.grads = self._grads()
        self.values = [t.detach().clone() for t in self._tensors()]
        self.hooks = count_hooks(network)
        self.grad_mode = torch.is_grad_enabled()

    def _training(self) -> dict[str, bool]:
        return {name: m.training for name, m in self.network.named_modules()}

    def _requires_grad(self) -> dict[str, bool]:
        return {name: p.requires_grad for name, p in self.network.named_parameters()}

    def _grads(self) -> dict[str, Tensor | None]:
        return {name: None if p.grad is None else p.grad.clone() for name, p in self.network.named_parameters()}

    def _tensors(self) -> list[Tensor]:
        return [*self.network.parameters(), *self.network.buffers()]

    def assert_unchanged(self, what: str, when: str) -> None:
        changed = [n for n, t in self._training().items() if self.training.get(n) != t]
        _require(not changed, f"{what}: train/eval flags of {changed[:3]} changed {when}")
        changed = [n for n, r in self._requires_grad().items() if self.requires_grad.get(n) != r]
        _require(not changed, f"{what}: requires_grad of parameters {changed[:3]} changed {when}")
        grads = self._grads()
        changed = [
            n for n, g in grads.items()
            if (g is None) != (self.grads.get(n) is None) or (g is not None and not torch.equal(g, self.grads[n]))
        ]
        _require(not changed, f"{what}: .grad of parameters {changed[:3]} changed {when} (use torch.autograd.grad, not backward())")
        values = self._tensors()
        _require(
            len(values) == len(self.values) and all(torch.equal(a, b) for a, b in zip(values, self.values)),
            f"{what}: the model's parameters or buffers changed {when}",
        )
        hooks = count_hooks(self.network)
        _require(hooks == self.hooks, f"{what}: {hooks} hooks on the model {when}, {self.hooks} before")
        _require(
            torch.is_grad_enabled() == self.grad_mode,
            f"{what}: grad mode is {torch.is_grad_enabled()} {when}, was {self.grad_mode}",
        )


def _diff(a: Tensor, b: Tensor) -> str:
    return f"(largest difference {(a - b).abs().max().item():.3g})" if a.shape == b.shape else ""


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)
