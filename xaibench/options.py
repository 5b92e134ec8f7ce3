"""Checks for the values of a method's options, one wording for every method.

A method's constructor checks each option it takes with these functions, so that a bad value is a
one-line :class:`~xaibench.errors.OptionError` naming the option and the values it accepts, before
any work starts; :func:`xaibench.create_explainer` adds the method's name to the message. (:func:`xaibench.method_spec.check_options` has already checked the option's name
and its kind against the constructor's defaults.)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from xaibench.errors import OptionError
from xaibench.seeding import MAX_SEED

#: Input pixels per forward pass that the methods running the network once per mask, sample or
#: window aim for when their ``batch_size`` is None (:func:`pass_batch_size`): small passes stay in
#: the CPU's caches. ``benchmarks/bench_pass_batch.py`` measured efficientnet_lite0 (224 x 224) on 2
#: threads at 12.3 ms per image with 4 copies per pass, 17.5 ms with 8 and 36.5 ms with 64 (Score-CAM
#: on two photos: 16-26 s with 4, 51-56 s with 64); a 64 x 64 network runs fastest with about 49.
#: The CPU's default: on a GPU, :mod:`xaibench.pass_rows` sizes the passes by its free memory.
PASS_PIXELS = 4 * 224 * 224

#: Input pixels per forward *and backward* pass that the methods taking the gradient at many points
#: per image (integrated gradients, SmoothGrad, VarGrad, GradientSHAP) aim for when their batch option
#: is None. ``benchmarks/bench_pass_batch.py --backward`` measured efficientnet_lite0 (224 x 224) on 2
#: threads at 36.4 ms per image with 4 rows per pass, 35.0 with 8, 46.6 with 16 and 62.3 with 32.
GRADIENT_PASS_PIXELS = 8 * 224 * 224


def integer(name: str, value: object, minimum: int | None = None) -> int:
    """``value`` if it is an integer (not a bool) of at least ``minimum``; else an error naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or (minimum is not None and value < minimum):
        bound = f" >= {minimum}" if minimum is not None else ""
        raise OptionError(f"option {name} must be an integer{bound}, got {value!r}")
    return value


def seed(name: str, value: object) -> int:
    """``value`` if it is a seed :mod:`xaibench.seeding` takes: an integer in ``[0, MAX_SEED]``."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEED:
        raise OptionError(f"option {name} must be an integer in [0, 2**32 - 1], got {value!r}")
    return value


def number(
    name: str, value: object, low: float = -math.inf, high: float = math.inf, *, open_low: bool = False
) -> float:
    """``float(value)`` if it is a finite real number in ``[low, high]`` (``(low, high]`` with
    ``open_low``); else an error naming ``name`` and the bounds."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > low if open_low else value >= low) and value <= high
    if not ok:
        bounds = []
        if low > -math.inf:
            bounds.append(f"> {low}" if open_low else f">= {low}")
        if high < math.inf:
            bounds.append(f"<= {high}")
        bound = " " + " and ".join(bounds) if bounds else ""
        raise OptionError(f"option {name} must be a finite number{bound}, got {value!r}")
    return float(value)


def choice(name: str, value: object, choices: Sequence[str]) -> str:
    """``value`` if it is one of ``choices``; else an error listing them."""
    if not isinstance(value, str) or value not in choices:
        raise OptionError(f"option {name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def pass_batch_size(
    name: str, value: object, input_size: tuple[int, int], pixels: int = PASS_PIXELS
) -> int:
    """``value`` if it is an integer >= 1; for None, the number of copies of a ``input_size`` image
    that make ``pixels`` input pixels (at least 1). With :data:`PASS_PIXELS`: 4 at 224 x 224, 49 at
    64 x 64; with :data:`GRADIENT_PASS_PIXELS`: 8 at 224 x 224."""
    if value is None:
        return max(1, pixels // (input_size[0] * input_size[1]))
    return integer(name, value, 1)
