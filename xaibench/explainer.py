"""The one interface every explanation method implements, and the registry that finds methods by name.

A method subclasses :class:`Explainer` and implements :meth:`Explainer.attribute`, which returns raw
maps at any resolution and scale. :meth:`Explainer.explain` holds every method, built-in or
third-party, to one contract, in this one place:

- the inputs are checked, and ``attribute`` receives its own copies of them (a method that edits its
  inputs in place cannot change the caller's tensors), in eval mode (every module's flag restored
  afterwards), with gradients disabled and outside inference mode, whatever the caller holds;
- every hook the call registers on the model and does not remove is removed, and reported;
- the raw maps must be an (N, h, w) tensor; a map with a NaN or infinite pixel is never scored (it
  becomes zeros and is flagged), nor is a map that is constant before upsampling (zeros, flagged);
- the maps are upsampled to the input's size and min-max scaled to [0, 1].

A method whose maps need only the batch's classification pass (CAM: the logits and the target layer's
output) says so with :attr:`Explainer.uses_forward_pass` and implements
:meth:`Explainer.attribute_from_pass`; given that pass (:class:`xaibench.forward_pass.ForwardPass`),
:meth:`Explainer.explain` calls it instead of :meth:`Explainer.attribute`, and the method runs no
network of its own. A method that runs many passes reports how far it has come
(:meth:`Explainer.report_progress`) to the callback the caller gives :meth:`Explainer.explain`.

Post-processing lives here alone, so no method scores differently because of its own resizing or
normalisation, and no method can make a run's numbers silently wrong.

Methods are found through the entry-point group ``xaibench.explainers`` (:mod:`xaibench.registry`):
xaibench's own methods are declared there exactly as a third-party package declares its own. Looking
up one name imports only the module that provides it.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar, final

import torch
import torch.nn.functional as F
from torch import Tensor

from xaibench.errors import NonFiniteMapError, OptionError, XaibenchError
from xaibench.forward_pass import ForwardPass
from xaibench.hooks import HookSnapshot
from xaibench.method_spec import check_options
from xaibench.models import Model, eval_mode
from xaibench.registry import PluginInfo, Registry

ENTRY_POINT_GROUP = "xaibench.explainers"

#: A raw map whose span is at most this fraction of its largest magnitude counts as constant:
#: ``max M - min M <= CONSTANT_RTOL * max |M|``. 1e-5 is about 84 float32 ulps (eps = 1.19e-7). Below
#: it, what is left of the map is of the order of float32 rounding: bilinear upsampling alone changes
#: each value by a few ulps of ``max |M|``, i.e. several percent of such a span, so min-max scaling
#: would stretch rounding noise (stripes) to [0, 1]. A map of exact zeros is constant too.
CONSTANT_RTOL = 1e-5

#: What :meth:`Explainer.explain` calls as a method advances: ``progress(done, total)``, the passes of
#: the network (or samples) done so far in this call and how many the call runs in all.
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Explanation:
    """What :meth:`Explainer.explain` returns for a batch of N images.

    Attributes:
        maps: (N, H, W) float32 maps in [0, 1] at the input's resolution; all zeros for an image
            whose raw map was non-finite or constant.
        finite: (N,) bool; False where the raw map had a NaN or infinite pixel. Such a map is no
            explanation: count it as the method's failure on that image, never score it.
        constant: (N,) bool; True where the raw map was finite and constant (see
            :data:`CONSTANT_RTOL`): the method singled out no region of that image.
        raw: (N, H, W) float32: the method's raw maps, signs and scale kept, upsampled as ``maps``
            (``maps`` is their min-max scaling); zeros where ``maps`` is. The sanity checks rank
            them with and without their signs.
        native: (N, h, w) float32: the raw maps at the method's own resolution (e.g. the target
            layer's), before upsampling; zeros where ``maps`` is. For metrics that resize a map
            once to another size (TorchRay's pointing game, to the photo's).
    """

    maps: Tensor
    finite: Tensor
    constant: Tensor
    raw: Tensor
    native: Tensor


class Explainer(abc.ABC):
    """An explanation method bound to one model.

    Constructed once per model; called with a batch of images and the class to explain for each.
    Subclasses implement :meth:`attribute` only; :meth:`explain` and calling the explainer enforce
    the contract (see the module's docstring) and do the post-processing.
    """

    #: The name the method is registered under (set by :func:`register_explainer`).
    name: str = ""
    #: True for a method whose maps need only the batch's classification pass (its logits and the
    #: target layer's output): :meth:`explain`, given that pass, calls :meth:`attribute_from_pass`.
    uses_forward_pass: bool = False
    #: Why the method refuses ``--precision bf16|fp16`` (:mod:`xaibench.precision`), or None: it runs
    #: under autocast. Set where the map is made of differences between near-equal network outputs
    #: (or activations), which 8 or 11 significant bits do not resolve.
    full_precision_only: str | None = None
    #: The callback of the :meth:`explain` call in progress, or None (see :meth:`report_progress`).
    _progress: Progress | None = None

    def __init__(self, model: Model) -> None:
        self.model = model

    @abc.abstractmethod
    def attribute(self, images: Tensor, targets: Tensor) -> Tensor:
        """Raw maps (N, h, w) for ``images`` (N, 3, H, W) and ``targets`` (N,); any resolution or scale.

        Runs with the model in eval mode and gradients disabled: a method that needs gradients
        computes them inside ``torch.enable_grad()``. ``images`` and ``targets`` are the method's own
        copies. Hooks must be removed in ``finally`` (:func:`xaibench.hooks.capture` does).
        """

    def attribute_from_pass(self, forward: ForwardPass, targets: Tensor) -> Tensor:
        """Raw maps (N, h, w) from the classification pass of the images, for a method that sets
        :attr:`uses_forward_pass`: bit for bit what :meth:`attribute` returns for ``forward.images``.

        ``forward`` holds the method's own copies of the logits and of the target layer's output
        (never None here); it runs in eval mode with gradients disabled, as :meth:`attribute`.
        """
        raise NotImplementedError(f"explainer '{self.name}' sets uses_forward_pass but has no attribute_from_pass()")

    def report_progress(self, done: int, total: int) -> None:
        """Tell the caller of :meth:`explain` how far the call has come: ``done`` of ``total`` passes of
        the network (or samples), ``done`` increasing to ``total``. For methods that run many passes
        per batch (Score-CAM, RISE, LIME, ...), so that a run shows their rate and time left; a no-op
        when the caller gave no callback."""
        if self._progress is not None:
            self._progress(done, total)

    @final
    def explain(
        self,
        images: Tensor,
        targets: Tensor,
        *,
        forward: ForwardPass | None = None,
        progress: Progress | None = None,
    ) -> Explanation:
        """Explain ``targets`` on ``images``, flagging the maps that must not be scored.

        Args:
            images: (N, 3, H, W) floating-point batch, on the model's device.
            targets: (N,) integer class indices, one per image: the class each map explains.
            forward: The classification pass of ``images``
                (:func:`xaibench.forward_pass.classification_pass`, with the target layer's output):
                a method that :attr:`uses_forward_pass` computes its maps from it instead of running
                the network; other methods ignore it.
            progress: Called as ``progress(done, total)`` while a method that runs many passes
                advances (:meth:`report_progress`), during this call only.

        Returns:
            The maps, (N, H, W) float32 in [0, 1], with per-image ``finite`` and ``constant`` flags;
            a non-finite or constant raw map becomes all zeros.

        Raises:
            XaibenchError: bad inputs; ``attribute`` returned something other than an (N, h, w)
                tensor; or it left hooks on the model (removed by then).
            Exception: whatever ``attribute`` raised, unchanged (the model is left clean).
        """
        images, targets = self._check(images, targets)
        if images.shape[0] == 0:  # nothing to explain; not every method copes with an empty batch
            flags = torch.zeros(0, dtype=torch.bool, device=images.device)
            empty = images.new_zeros((0, *images.shape[-2:]), dtype=torch.float32)
            return Explanation(empty, flags, flags, empty, empty)
        reuse = self.uses_forward_pass and forward is not None and forward.features is not None
        if reuse:
            self._check_forward(forward, images)
        self._progress = progress
        try:
            raw = self._attribute(images, targets, forward if reuse else None)
        finally:
            self._progress = None
        self._check_output(raw, images)
        raw = raw.detach().to(images.device)
        if not raw.is_floating_point():  # integer or boolean maps
            raw = raw.float()
        finite = torch.isfinite(raw).flatten(1).all(1)
        raw = torch.where(finite[:, None, None], raw, torch.zeros((), dtype=raw.dtype, device=raw.device))
        if raw.dtype == torch.float64:  # scale into float32's range first; min-max scaling ignores it
            raw = raw / raw.abs().flatten(1).amax(1).clamp_min(1e-300)[:, None, None]
        raw = raw.float()
        flat = raw.flatten(1)
        span = flat.amax(1) - flat.amin(1)
        constant = finite & (span <= CONSTANT_RTOL * flat.abs().amax(1))
        native = torch.where(constant[:, None, None], torch.zeros_like(raw), raw)
        raw = upsample_maps(native, images.shape[-2:])
        return Explanation(maps=normalize_maps(raw), finite=finite, constant=constant, raw=raw, native=native)

    @final
    def __call__(self, images: Tensor, targets: Tensor) -> Tensor:
        """The maps of :meth:`explain`, refusing non-finite ones.

        Returns:
            (N, H, W) float32 maps at the input's resolution, each min-max scaled to [0, 1]; a
            constant map becomes all zeros.

        Raises:
            NonFiniteMapError: the method returned NaN or infinite values for some image (named by
                its index in the batch).
            XaibenchError, Exception: as :meth:`explain`.
        """
        explanation = self.explain(images, targets)
        bad = (~explanation.finite).nonzero().flatten().tolist()
        if bad:
            raise NonFiniteMapError(
                f"explainer '{self.name}' returned NaN or infinite values for image(s) {bad} of a batch of "
                f"{len(explanation.finite)}; use explain() to get the other maps with per-image flags"
            )
        return explanation.maps

    def _attribute(self, images: Tensor, targets: Tensor, forward: ForwardPass | None = None) -> Tensor:
        """Run ``attribute`` (or, given ``forward``, ``attribute_from_pass``) on copies of the inputs, in
        eval mode, without gradients, outside inference mode; remove the hooks it leaves and restore the
        grad mode, whatever happens."""
        network = self.model.network
        grad_mode = torch.is_grad_enabled()
        snapshot = HookSnapshot(network)
        try:
            # inference_mode(False) switches grad mode on: no_grad must come after it.
            with torch.inference_mode(False), torch.no_grad(), eval_mode(network):
                # Clones made outside inference mode are normal tensors, even of inference tensors.
                if forward is None:
                    raw = self.attribute(images.detach().clone(), targets.detach().clone())
                else:
                    own = ForwardPass(*(t.detach().clone() for t in (images, forward.logits, forward.features)))
                    raw = self.attribute_from_pass(own, targets.detach().clone())
        except RuntimeError as error:
            if "does not require grad" in str(error) and hasattr(error, "add_note"):
                error.add_note(
                    f"xaibench: explainer '{self.name}' runs attribute() with gradients disabled; "
                    "compute gradients inside `with torch.enable_grad():`"
                )
            raise
        finally:
            leaked = snapshot.restore()
            torch.set_grad_enabled(grad_mode)
        if leaked:
            raise XaibenchError(
                f"explainer '{self.name}' left {leaked} hook(s) on model '{self.model.name}' (removed now); "
                "hooks must be removed in finally (use xaibench.hooks.capture)"
            )
        return raw

    def _check_forward(self, forward: ForwardPass, images: Tensor) -> None:
        """``forward`` must be the pass of ``images``: the same tensor, or one equal to it."""
        n = images.shape[0]
        if forward.logits.shape[0] != n or forward.features.shape[0] != n:
            raise XaibenchError(
                f"explainer '{self.name}' was given the forward pass of {forward.logits.shape[0]} images for {n} images"
            )
        if forward.images is not images and not (
            forward.images.shape == images.shape and torch.equal(forward.images, images.to(forward.images.device))
        ):
            raise XaibenchError(f"explainer '{self.name}' was given the forward pass of other images")

    def _check_output(self, raw: object, images: Tensor) -> None:
        n = images.shape[0]
        if not isinstance(raw, Tensor):
            raise XaibenchError(
                f"explainer '{self.name}' returned a {type(raw).__name__}; attribute() must return a "
                f"tensor of shape (N, h, w) with N = {n}"
            )
        if raw.dim() != 3 or raw.shape[0] != n or raw.shape[1] == 0 or raw.shape[2] == 0:
            raise XaibenchError(
                f"explainer '{self.name}' returned maps of shape {tuple(raw.shape)}; "
                f"attribute() must return (N, h, w) with N = {n} and h, w >= 1"
            )
        if raw.is_complex():
            raise XaibenchError(
                f"explainer '{self.name}' returned maps of dtype {raw.dtype}; attribute() must return real numbers"
            )

    def _check(self, images: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        if not isinstance(images, Tensor) or images.dim() != 4 or not images.is_floating_point():
            raise XaibenchError(
                "images must be a floating-point tensor of shape (N, C, H, W), got "
                + (f"{tuple(images.shape)} {images.dtype}" if isinstance(images, Tensor) else type(images).__name__)
            )
        if not isinstance(targets, Tensor) or targets.dim() != 1 or targets.dtype != torch.long:
            raise XaibenchError(
                "targets must be a LongTensor of shape (N,) with the class to explain for each image; "
                "there is no default class"
            )
        if targets.shape[0] != images.shape[0]:
            raise XaibenchError(f"{images.shape[0]} images but {targets.shape[0]} targets")
        n_classes = self.model.num_classes
        if targets.numel() and (targets.min() < 0 or targets.max() >= n_classes):
            raise XaibenchError(f"targets must lie in [0, {n_classes - 1}], got {targets.tolist()}")
        return images, targets.to(images.device)


def upsample_maps(maps: Tensor, size: tuple[int, int] | torch.Size) -> Tensor:
    """Bilinear upsampling of (N, h, w) maps to (N, H, W) (``align_corners=False``, as CAM's code)."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    return F.interpolate(maps[:, None], size=tuple(size), mode="bilinear", align_corners=False)[:, 0]


def normalize_maps(maps: Tensor) -> Tensor:
    """Min-max scale each (H, W) map to [0, 1]: ``(M - min M) / (max M - min M)``; constant maps -> 0."""
    flat = maps.flatten(1)
    low = flat.min(1).values[:, None, None]
    span = flat.max(1).values[:, None, None] - low
    safe = torch.where(span > 0, span, torch.ones_like(span))
    return torch.where(span > 0, (maps - low) / safe, torch.zeros_like(maps))


# --------------------------------------------------------------------------------------- registry

#: Every method: the entry points of ``xaibench.explainers`` and the classes registered at run time.
METHODS: Registry[type[Explainer]] = Registry(ENTRY_POINT_GROUP, "method", Explainer, "register_explainer")

E = TypeVar("E", bound=type[Explainer])


def register_explainer(name: str) -> Callable[[E], E]:
    """Class decorator: make an :class:`Explainer` subclass available as ``name``.

    Raises:
        XaibenchError: ``name`` is already taken by another class.
    """
    return METHODS.register(name)


def available_explainers() -> list[str]:
    """Names of every method: those declared as entry points and those registered in this process."""
    return METHODS.names()


def get_explainer(name: str) -> type[Explainer]:
    """The class registered as ``name``, importing only the plugin that declares it.

    Raises:
        UnknownNameError: no such method (the message suggests a close name and lists the available ones).
        XaibenchError: two installed packages declare the same name, or the plugin that declares it
            cannot be loaded (the message names the entry point and the cause).
    """
    return METHODS.get(name)


def create_explainer(name: str, model: Model, **options: object) -> Explainer:
    """Build the method registered as ``name`` for ``model``; ``options`` go to its constructor.

    Raises:
        UnknownNameError: no such method.
        XaibenchError: an option the constructor does not take, or of the wrong type (the message
            lists the valid options with their defaults); or the method cannot serve the model.
        OptionError: an option's value is out of its range (the message names the method).
    """
    cls = get_explainer(name)
    check_options(name, cls, options)
    try:
        return cls(model, **options)
    except OptionError as error:
        raise OptionError(f"method '{name}': {error}") from error


def describe_explainers() -> list[PluginInfo]:
    """Every available method with where it comes from and the first line of its docstring.

    A plugin that cannot be loaded is listed too, its summary saying why (``cannot be loaded: ...``),
    so that one broken package does not hide the others.
    """
    return METHODS.describe()
