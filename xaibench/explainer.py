"""The one interface every explanation method implements, and the registry that finds methods by name.

A method subclasses :class:`Explainer` and implements :meth:`Explainer.attribute`, which returns raw
maps at any resolution and scale. Calling the explainer checks the input, runs ``attribute`` with the
model in eval mode (its flags restored afterwards), upsamples the maps to the input's size and min-max
scales each to [0, 1]. Post-processing lives here alone, so no method scores differently because of
its own resizing or normalisation.

Methods are found through the entry-point group ``xaibench.explainers``: xaibench's own methods are
declared there exactly as a third-party package declares its own. Looking up one name imports only
the module that provides it.
"""

from __future__ import annotations

import abc
import inspect
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Callable, TypeVar, final

import torch
import torch.nn.functional as F
from torch import Tensor

from xaibench.errors import UnknownNameError, XaibenchError
from xaibench.models import Model, eval_mode

ENTRY_POINT_GROUP = "xaibench.explainers"


class Explainer(abc.ABC):
    """An explanation method bound to one model.

    Constructed once per model; called with a batch of images and the class to explain for each.
    Subclasses implement :meth:`attribute` and must not leave hooks, gradients or mode changes behind.
    """

    #: The name the method is registered under (set by :func:`register_explainer`).
    name: str = ""

    def __init__(self, model: Model) -> None:
        self.model = model

    @abc.abstractmethod
    def attribute(self, images: Tensor, targets: Tensor) -> Tensor:
        """Raw maps (N, h, w) for ``images`` (N, 3, H, W) and ``targets`` (N,); any resolution or scale."""

    @final
    def __call__(self, images: Tensor, targets: Tensor) -> Tensor:
        """Explain ``targets`` on ``images``.

        Args:
            images: (N, 3, H, W) floating-point batch, on the model's device.
            targets: (N,) integer class indices, one per image: the class each map explains.

        Returns:
            (N, H, W) float32 maps at the input's resolution, each min-max scaled to [0, 1]; a
            constant map becomes all zeros.
        """
        images, targets = self._check(images, targets)
        with eval_mode(self.model.network):
            raw = self.attribute(images, targets)
        if raw.dim() != 3 or raw.shape[0] != images.shape[0]:
            raise XaibenchError(
                f"explainer '{self.name}' returned maps of shape {tuple(raw.shape)}; "
                f"attribute() must return (N, h, w) with N = {images.shape[0]}"
            )
        return normalize_maps(upsample_maps(raw.detach().float(), images.shape[-2:]))

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

_REGISTRY: dict[str, type[Explainer]] = {}

E = TypeVar("E", bound=type[Explainer])


def register_explainer(name: str) -> Callable[[E], E]:
    """Class decorator: make an :class:`Explainer` subclass available as ``name``.

    Raises:
        XaibenchError: ``name`` is already taken by another class.
    """

    def decorate(cls: E) -> E:
        if not (inspect.isclass(cls) and issubclass(cls, Explainer)):
            raise TypeError(f"@register_explainer('{name}') needs an Explainer subclass, got {cls!r}")
        taken = _REGISTRY.get(name)
        if taken is not None and _qualname(taken) != _qualname(cls):
            raise XaibenchError(
                f"explainer name '{name}' is already registered by {_qualname(taken)}; "
                f"choose another name for {_qualname(cls)}"
            )
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def _qualname(obj: object) -> str:
    return f"{obj.__module__}:{obj.__qualname__}"


def _entry_points(name: str | None = None) -> list[EntryPoint]:
    found = entry_points(group=ENTRY_POINT_GROUP)
    return [ep for ep in found if name is None or ep.name == name]


def available_explainers() -> list[str]:
    """Names of every method: those declared as entry points and those registered in this process."""
    return sorted({ep.name for ep in _entry_points()} | set(_REGISTRY))


def get_explainer(name: str) -> type[Explainer]:
    """The class registered as ``name``, importing only the plugin that declares it.

    Raises:
        UnknownNameError: no such method (the message lists the available ones).
        XaibenchError: two installed packages declare the same name.
    """
    if name in _REGISTRY:
        return _REGISTRY[name]
    found = _entry_points(name)
    if not found:
        raise UnknownNameError(
            f"unknown method '{name}'; available: {', '.join(available_explainers()) or 'none'}"
        )
    if len({ep.value for ep in found}) > 1:
        raise XaibenchError(
            f"method '{name}' is declared by several packages ({', '.join(_origin(ep) for ep in found)}); "
            "uninstall one of them"
        )
    cls = found[0].load()
    if name not in _REGISTRY:  # a plugin that relies on its entry point alone, without the decorator
        register_explainer(name)(cls)
    return _REGISTRY[name]


def create_explainer(name: str, model: Model, **options: object) -> Explainer:
    """Build the method registered as ``name`` for ``model``; ``options`` go to its constructor."""
    return get_explainer(name)(model, **options)


@dataclass(frozen=True)
class ExplainerInfo:
    """What ``xaibench list`` shows of a method."""

    name: str
    origin: str
    summary: str


def describe_explainers() -> list[ExplainerInfo]:
    """Every available method with where it comes from and the first line of its docstring."""
    infos = []
    for name in available_explainers():
        cls = get_explainer(name)
        eps = _entry_points(name)
        origin = _origin(eps[0]) if eps else f"{_qualname(cls)} (registered at run time)"
        summary = (inspect.getdoc(cls) or "").splitlines()[0] if inspect.getdoc(cls) else ""
        infos.append(ExplainerInfo(name, origin, summary))
    return infos


def _origin(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    where = f"{dist.name} {dist.version}" if dist is not None else "entry point"
    return f"{ep.value} ({where})"
