"""A network of your own, named on the command line: ``--model SOURCE:FACTORY``.

``SOURCE`` is a Python file (``path/to/my_net.py``) or an importable module (``package.module``);
``FACTORY`` is a function in it that takes no argument and returns the classifier (an ``nn.Module``
returning logits). Its weights are what the factory gives it, or a state-dict file (``--weights
my.pt``, loaded by :func:`xaibench.models.load_weights`); its input size, normalisation and class names
are options (``--image-size``, ``--mean``, ``--std``, ``--class-names FILE`` with one name per line),
since no weights file carries them.

Example:
    >>> parse_spec("nets/my_net.py:build")
    ('nets/my_net.py', 'build')
    >>> parse_spec("resnet18") is None
    True
    >>> model_name("nets/my_net.py:build")
    'my_net:build'
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from torch import nn

from xaibench.errors import XaibenchError

_SPEC = re.compile(r"(?P<source>.+\.py|[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*):(?P<factory>[A-Za-z_]\w*)", re.DOTALL)


def parse_spec(name: str) -> tuple[str, str] | None:
    """``SOURCE:FACTORY`` as (source, factory), or None for a name that is no such spec."""
    found = _SPEC.fullmatch(str(name).strip())
    return (found["source"], found["factory"]) if found else None


def model_name(spec: str) -> str:
    """The name reports give the network of ``spec``: ``STEM:FACTORY`` for a file (no folders in it,
    as it names files), the spec itself for a module."""
    source, factory = parse_spec(spec) or (spec, "")
    return f"{Path(source).stem}:{factory}" if source.endswith(".py") else f"{source}:{factory}"


def _module(spec: str, source: str):
    """The module of ``source``: the file run as a module of its own, or the module imported."""
    if source.endswith(".py"):
        path = Path(source)
        if not path.is_file():
            raise XaibenchError(f"--model {spec}: there is no file {path}; name a Python file and a function in it, "
                                "e.g. --model my_net.py:build")
        name = "xaibench_own_model_" + hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
        found = importlib.util.spec_from_file_location(name, path)
        if found is None or found.loader is None:
            raise XaibenchError(f"--model {spec}: {path} cannot be loaded as Python")
        module = importlib.util.module_from_spec(found)
        sys.modules[name] = module  # what pickling and dataclasses inside it look for
        try:
            found.loader.exec_module(module)
        except Exception as error:  # the user's code: whatever it raises is theirs to see
            sys.modules.pop(name, None)
            raise XaibenchError(f"--model {spec}: running {path} raised {type(error).__name__}: "
                                f"{' '.join(str(error).split())[:300]}") from None
        return module
    try:
        return importlib.import_module(source)
    except ModuleNotFoundError as error:
        raise XaibenchError(f"--model {spec}: no module {error.name!r} can be imported; install it, or name a file "
                            "(--model path/to/file.py:FACTORY)") from None
    except Exception as error:
        raise XaibenchError(f"--model {spec}: importing {source} raised {type(error).__name__}: "
                            f"{' '.join(str(error).split())[:300]}") from None


def build(spec: str) -> nn.Module:
    """The network that ``spec``'s factory returns, in eval mode.

    Raises:
        XaibenchError: a missing file or module, one that fails to run, no such function, a function
            that fails or returns something other than an ``nn.Module`` (one line each).
    """
    parsed = parse_spec(spec)
    if parsed is None:
        raise XaibenchError(f"--model {spec!r} is not SOURCE:FACTORY (e.g. my_net.py:build or package.module:build)")
    source, factory_name = parsed
    module = _module(spec, source)
    factory = getattr(module, factory_name, None)
    if not callable(factory):
        functions = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_")
                           and getattr(v, "__module__", None) == module.__name__)
        raise XaibenchError(f"--model {spec}: {source} has no function {factory_name!r}"
                            + (f" (it has {', '.join(functions)})" if functions else ""))
    try:
        network = factory()
    except Exception as error:
        raise XaibenchError(f"--model {spec}: {factory_name}() raised {type(error).__name__}: "
                            f"{' '.join(str(error).split())[:300]}") from None
    if not isinstance(network, nn.Module):
        raise XaibenchError(f"--model {spec}: {factory_name}() returned a {type(network).__name__}, not a torch "
                            "nn.Module; return the classifier itself")
    return network.eval()


def read_class_names(path: str | os.PathLike) -> list[str]:
    """One class name per line of the text file ``path`` (blank lines and surrounding spaces left out).

    Raises:
        XaibenchError: the file is missing, unreadable, not UTF-8 or holds no name.
    """
    path = Path(path)
    try:
        names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    except FileNotFoundError:
        raise XaibenchError(f"--class-names {path}: no such file; a text file with one class name per line") from None
    except (OSError, UnicodeDecodeError) as error:
        raise XaibenchError(f"--class-names {path} cannot be read ({' '.join(str(error).split())}); a UTF-8 text "
                            "file with one class name per line") from None
    names = [n for n in names if n]
    if not names:
        raise XaibenchError(f"--class-names {path} holds no name; write one class name per line")
    return names


def normalisation(values: str | Sequence[float] | None, option: str) -> tuple[float, float, float] | None:
    """``--mean`` / ``--std``: three numbers (``0.485,0.456,0.406``), one per RGB channel, or None.

    Raises:
        XaibenchError: not three finite numbers (for ``--std``, positive ones).
    """
    if values is None:
        return None
    parts = [p.strip() for p in values.split(",")] if isinstance(values, str) else list(values)
    try:
        numbers = tuple(float(p) for p in parts)
    except (TypeError, ValueError):
        numbers = ()
    if len(numbers) != 3 or not all(abs(v) < float("inf") for v in numbers) or (
            option == "--std" and not all(v > 0 for v in numbers)):
        kind = "positive numbers" if option == "--std" else "numbers"
        raise XaibenchError(f"{option} takes three {kind}, one per RGB channel (e.g. 0.485,0.456,0.406), got {values!r}")
    return numbers
