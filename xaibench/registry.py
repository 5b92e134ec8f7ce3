"""Plugins found by name: an entry-point group, plus the classes registered in this process.

Methods (``xaibench.explainers``) and metrics (``xaibench.metrics``) are found the same way: xaibench's
own are declared as entry points in its ``pyproject.toml`` exactly as a third-party package declares
its own, and a class decorated at run time (``@register_explainer``, ``@register_metric``) joins them.
Looking up one name imports only the module that provides it; a plugin that cannot be imported is an
error naming its entry point and the cause, and never hides the others.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Generic, TypeVar

from xaibench.errors import UnknownNameError, XaibenchError

T = TypeVar("T", bound=type)


@dataclass(frozen=True)
class PluginInfo:
    """What ``xaibench list`` shows of a plugin."""

    name: str
    origin: str
    summary: str


class Registry(Generic[T]):
    """The plugins of one kind.

    Args:
        group: The entry-point group, e.g. ``xaibench.metrics``.
        kind: The word for one plugin in messages, e.g. ``metric``.
        base: The class every plugin subclasses.
        decorator: The decorator's name, for messages (e.g. ``register_metric``).
    """

    def __init__(self, group: str, kind: str, base: type, decorator: str) -> None:
        self.group = group
        self.kind = kind
        self.base = base
        self.decorator = decorator
        self._classes: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Class decorator: make a subclass of :attr:`base` available as ``name`` (sets ``cls.name``).

        Raises:
            XaibenchError: ``name`` is already taken by another class.
        """

        def decorate(cls: T) -> T:
            if not (inspect.isclass(cls) and issubclass(cls, self.base)):
                raise TypeError(f"@{self.decorator}('{name}') needs a subclass of {self.base.__name__}, got {cls!r}")
            taken = self._classes.get(name)
            if taken is not None and _qualname(taken) != _qualname(cls):
                raise XaibenchError(
                    f"{self.kind} name '{name}' is already registered by {_qualname(taken)}; "
                    f"choose another name for {_qualname(cls)}"
                )
            cls.name = name
            self._classes[name] = cls
            return cls

        return decorate

    def _entry_points(self, name: str | None = None) -> list[EntryPoint]:
        found = entry_points(group=self.group)
        return [ep for ep in found if name is None or ep.name == name]

    def names(self) -> list[str]:
        """Every name: those declared as entry points and those registered in this process."""
        return sorted({ep.name for ep in self._entry_points()} | set(self._classes))

    def get(self, name: str) -> T:
        """The class registered as ``name``, importing only the plugin that declares it.

        Raises:
            UnknownNameError: no such name (the message suggests a close one and lists the others).
            XaibenchError: two installed packages declare the name, or its plugin cannot be loaded.
        """
        if name in self._classes:
            return self._classes[name]
        found = self._entry_points(name)
        if not found:
            available = self.names()
            raise UnknownNameError(
                f"unknown {self.kind} '{name}'; {did_you_mean(name, available)}available: "
                f"{', '.join(available) or 'none'}"
            )
        if len({ep.value for ep in found}) > 1:
            raise XaibenchError(
                f"{self.kind} '{name}' is declared by several packages ({', '.join(_origin(ep) for ep in found)}); "
                "uninstall one of them"
            )
        try:
            cls = found[0].load()
            if name not in self._classes:  # a plugin that relies on its entry point alone
                self.register(name)(cls)
        except (Exception, SystemExit) as error:  # a plugin may even call sys.exit() at import
            cause = " ".join(f"{type(error).__name__}: {error}".split())  # one line
            raise XaibenchError(
                f"{self.kind} '{name}' cannot be loaded from entry point '{found[0].value}' "
                f"({_where(found[0])}): {cause}"
            ) from error
        return self._classes[name]

    def describe(self) -> list[PluginInfo]:
        """Every plugin with where it comes from and the first line of its docstring; one that cannot
        be loaded is listed too, its summary saying why."""
        infos = []
        for name in self.names():
            eps = self._entry_points(name)
            try:
                cls = self.get(name)
            except XaibenchError as error:
                cause = error.__cause__ or error
                summary = " ".join(f"cannot be loaded: {type(cause).__name__}: {cause}".split())
                infos.append(PluginInfo(name, ", ".join(_origin(ep) for ep in eps), summary))
                continue
            origin = _origin(eps[0]) if eps else f"{_qualname(cls)} (registered at run time)"
            doc = inspect.getdoc(cls)
            infos.append(PluginInfo(name, origin, doc.splitlines()[0] if doc else ""))
        return infos


def did_you_mean(name: str, choices: list[str]) -> str:
    """``"did you mean 'X'? "`` for the closest of ``choices`` to a mistyped ``name``, or ``""``."""
    close = difflib.get_close_matches(name, choices, n=1)
    return f"did you mean '{close[0]}'? " if close else ""


def _qualname(obj: object) -> str:
    return f"{obj.__module__}:{obj.__qualname__}"


def _where(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return f"{dist.name} {dist.version}" if dist is not None else "entry point"


def _origin(ep: EntryPoint) -> str:
    return f"{ep.value} ({_where(ep)})"
