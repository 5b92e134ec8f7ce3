"""Methods (and metrics) with options, as the command line and ``config.json`` name them.

A method (or a metric, ``--metrics``) is named with its keyword options in parentheses, as in a Python call::

    cam,scorecam(batch_size=64),integrated_gradients(steps=32),rise(n_masks=2000, p=0.5)

Values are Python literals (numbers, strings, True/False/None, tuples); a bare word is taken as a
string. The options are the keyword parameters of the method's constructor, checked against it
(:func:`check_options`): an unknown option or a value of the wrong type is an error that lists the
valid options with their defaults, and :func:`effective_options` gives every option with the value a
run uses, for ``config.json``. A text longer than :data:`MAX_TEXT` characters, or a value nested
deeper than :data:`MAX_DEPTH` levels, is refused with one line (Python's parser would run out of
stack on it).
"""

from __future__ import annotations

import ast
import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field

from xaibench.errors import XaibenchError

#: The longest text of methods (or metrics) with their options that is read, in characters.
MAX_TEXT = 10_000
#: The deepest an option's value may nest: brackets, and operators, inside one another (``1`` is one
#: level, ``[(1, -2)]`` four).
MAX_DEPTH = 20
#: How much of a long text an error message quotes.
_QUOTED = 80


@dataclass(frozen=True)
class MethodSpec:
    """A method's registered name and the options given for it."""

    name: str
    options: dict[str, object] = field(default_factory=dict)

    def __str__(self) -> str:
        if not self.options:
            return self.name
        return f"{self.name}({', '.join(f'{k}={v!r}' for k, v in self.options.items())})"


def repeated(names: Sequence[str]) -> list[str]:
    """The names that occur more than once in ``names``, sorted (for the error that names them)."""
    return sorted({name for name in names if names.count(name) > 1})


def parse_methods(text: str) -> list[MethodSpec]:
    """Split ``"a,b(k=1, s='x'),c"`` into :class:`MethodSpec` s.

    Raises:
        XaibenchError: unbalanced parentheses, an option without ``=``, a malformed value, a value
            nested deeper than :data:`MAX_DEPTH` levels, or a text longer than :data:`MAX_TEXT`.
    """
    if len(text) > MAX_TEXT:
        raise XaibenchError(
            f"cannot read the methods '{_quoted(text)}': the text is {len(text):,} characters long, more than "
            f"{MAX_TEXT:,}; name fewer methods, or give them shorter options"
        )
    specs, depth, nested, start, quote, escaped = [], 0, 0, 0, "", False
    for k, char in enumerate(text + ","):
        if quote:  # inside a string value: its parentheses and commas are text
            escaped, quote = (not escaped and char == "\\"), ("" if char == quote and not escaped else quote)
            continue
        nested += (char in "([{") - (char in ")]}")
        if nested > MAX_DEPTH + 1:  # the method's own parentheses and the value's brackets
            raise _too_deep(text[start:].lstrip())
        if char in "'\"":
            quote = char
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                raise XaibenchError(f"cannot read the methods '{_quoted(text)}': a ')' without its '('")
        elif char == "," and depth == 0:
            part = text[start:k].strip()
            if part:
                specs.append(_parse_one(part, text))
            start = k + 1
    if quote:
        raise XaibenchError(f"cannot read the methods '{_quoted(text)}': a {quote} without its closing {quote}")
    if depth:
        raise XaibenchError(f"cannot read the methods '{_quoted(text)}': a '(' without its ')'")
    return specs


def _quoted(text: str) -> str:
    """``text`` as a message quotes it: whole, or its start when it is long."""
    return text if len(text) <= _QUOTED else f"{text[:_QUOTED - 3]}..."


def _too_deep(part: str) -> XaibenchError:
    return XaibenchError(
        f"cannot read the options of '{_quoted(part)}': a value nests deeper than {MAX_DEPTH} levels (brackets or "
        "operators inside one another); write a flatter value"
    )


def _nesting(value: ast.expr) -> int:
    """How many levels deep the expressions of ``value`` nest (1 for a constant), without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, level = stack.pop()
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in ast.iter_child_nodes(node) if isinstance(child, ast.expr))
    return deepest


def _parse_one(part: str, text: str) -> MethodSpec:
    name, paren, rest = part.partition("(")
    name = name.strip()
    if not name.replace("_", "").replace("-", "").isalnum():
        raise XaibenchError(
            f"cannot read the method '{_quoted(part)}' in '{_quoted(text)}': write NAME or NAME(option=value, ...)"
        )
    if not paren:
        return MethodSpec(name)
    if not rest.rstrip().endswith(")"):
        raise XaibenchError(f"cannot read the method '{_quoted(part)}': text after its ')'")
    try:
        call = ast.parse(f"f({rest.rstrip()[:-1]})", mode="eval").body
    except SyntaxError:
        raise XaibenchError(f"cannot read the options of '{_quoted(part)}': write {name}(option=value, ...)") from None
    except (RecursionError, MemoryError):  # the parser's stack, e.g. thousands of '-' before a number
        raise _too_deep(part) from None
    if any(_nesting(keyword.value) > MAX_DEPTH for keyword in call.keywords):
        raise _too_deep(part)
    if call.args or any(k.arg is None for k in call.keywords):
        raise XaibenchError(f"the options of '{_quoted(part)}' must be named: {name}(option=value, ...)")
    twice = repeated([k.arg for k in call.keywords])
    if twice:
        raise XaibenchError(f"'{_quoted(part)}' gives the option {', '.join(twice)} more than once; give each option once")
    options = {}
    for keyword in call.keywords:
        try:
            options[keyword.arg] = ast.literal_eval(keyword.value)
        except ValueError:
            if isinstance(keyword.value, ast.Name):  # a bare word: a string
                options[keyword.arg] = keyword.value.id
            else:
                raise XaibenchError(
                    f"the option {keyword.arg} of '{_quoted(part)}' is not a number, string, True/False/None or tuple"
                ) from None
    return MethodSpec(name, options)


def method_options(cls: type) -> dict[str, object] | None:
    """The keyword options of a method's (or a metric's) constructor with their defaults
    (``inspect.Parameter.empty`` for a required one), ``self`` and a method's ``model`` left out; None
    when the constructor takes ``**kwargs`` (its options cannot be listed). A class without a
    constructor of its own (``object.__init__``) takes none."""
    if cls.__init__ is object.__init__:
        return {}
    parameters = list(inspect.signature(cls.__init__).parameters.values())[1:]  # self
    if parameters and parameters[0].name == "model" and parameters[0].kind is not inspect.Parameter.KEYWORD_ONLY:
        parameters = parameters[1:]
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return {
        p.name: p.default
        for p in parameters
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    }


def check_options(name: str, cls: type, options: dict[str, object], kind: str = "method") -> None:
    """Refuse options the constructor does not take, and values whose type differs from the default's.

    The kind is the default's, except that a parameter annotated ``float`` takes any real number even
    when its default is an integer (the pointing game's ``tolerance: float = 15`` takes 7.5; its
    default stays the integer 15, as ``config.json`` records it).

    Raises:
        XaibenchError: naming the option and listing the valid ones with their defaults (``kind``,
            ``method`` or ``metric``, names what has the options).
    """
    valid = method_options(cls)
    if valid is None:
        return
    listing = ", ".join(_describe(k, v) for k, v in valid.items()) or "none"
    floats = _float_options(cls)
    for key, value in options.items():
        if key not in valid:
            raise XaibenchError(f"{kind} '{name}' has no option '{key}'; its options: {listing}")
        default = valid[key]
        if key in floats and isinstance(default, int) and not isinstance(default, bool):
            default = float(default)
        if not _same_kind(value, default):
            raise XaibenchError(
                f"option {key} of {kind} '{name}' must be {_kind(default)}, got {value!r}; its options: {listing}"
            )


def _float_options(cls: type) -> set[str]:
    """The constructor's parameters annotated ``float`` (the type, or the string that postponed
    annotations leave)."""
    if cls.__init__ is object.__init__:
        return set()
    parameters = inspect.signature(cls.__init__).parameters.values()
    return {p.name for p in parameters if p.annotation is float or p.annotation == "float"}


def effective_options(cls: type, options: dict[str, object]) -> dict[str, object]:
    """Every option of the method with the value used: the given ones, else the defaults."""
    valid = method_options(cls) or {}
    merged = {k: v for k, v in valid.items() if v is not inspect.Parameter.empty}
    merged.update(options)
    return merged


def _describe(key: str, default: object) -> str:
    return key if default is inspect.Parameter.empty else f"{key}={default!r}"


def _kind(default: object) -> str:
    if isinstance(default, bool):
        return "True or False"
    if isinstance(default, (int, float)):
        return "a number" if isinstance(default, float) else "an integer"
    return f"a {type(default).__name__}"


def _same_kind(value: object, default: object) -> bool:
    if default is inspect.Parameter.empty or default is None or value is None:
        return True
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, (tuple, list)):
        return isinstance(value, (tuple, list))
    return isinstance(value, type(default))
