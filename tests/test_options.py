"""xaibench.options: the one wording of a bad option value, and the default pass batch."""

import math

import pytest

import xaibench
from xaibench import options
from xaibench.errors import OptionError


@pytest.mark.parametrize(
    "check, message",
    [
        (lambda: options.integer("steps", 2.5, 1), "option steps must be an integer >= 1, got 2.5"),
        (lambda: options.integer("steps", True), "option steps must be an integer, got True"),
        (lambda: options.number("p", 0.0, 0.0, 1.0, open_low=True), r"option p must be a finite number > 0.0 and <= 1.0, got 0.0"),
        (lambda: options.number("std", math.nan, 0.0), "option std must be a finite number >= 0.0, got nan"),
        (lambda: options.number("alpha", "1"), "option alpha must be a finite number, got '1'"),
        (lambda: options.seed("seed", -1), r"option seed must be an integer in \[0, 2\*\*32 - 1\], got -1"),
        (lambda: options.seed("seed", 2**32), r"must be an integer in \[0, 2\*\*32 - 1\]"),
        (lambda: options.choice("output", "softmax", ("probability", "logit")), "one of 'probability', 'logit', got 'softmax'"),
        (lambda: options.pass_batch_size("batch_size", 0, (224, 224)), "option batch_size must be an integer >= 1, got 0"),
    ],
)
def test_bad_values_are_one_line_errors(check, message) -> None:
    with pytest.raises(OptionError, match=message) as error:
        check()
    assert "\n" not in str(error.value)


def test_good_values_pass_through() -> None:
    assert options.integer("k", 3, 1) == 3 and options.number("x", 2, 0.0) == 2.0
    assert options.seed("seed", 2**32 - 1) == 2**32 - 1 and options.choice("o", "logit", ["logit"]) == "logit"


def test_the_default_pass_batch_holds_about_pass_pixels() -> None:
    assert options.pass_batch_size("batch_size", None, (224, 224)) == 4
    assert options.pass_batch_size("batch_size", None, (64, 64)) == 49
    assert options.pass_batch_size("batch_size", None, (1024, 1024)) == 1
    assert options.pass_batch_size("batch_size", 64, (224, 224)) == 64
    assert options.pass_batch_size("batch_size", None, (224, 224), options.GRADIENT_PASS_PIXELS) == 8


def test_gradient_methods_default_to_gradient_pass_pixels(model) -> None:
    """The sampled gradient methods' batch follows the model's input size (``model`` is 64 x 64)."""
    rows = options.GRADIENT_PASS_PIXELS // (model.input_size[0] * model.input_size[1])
    assert xaibench.create_explainer("integrated_gradients", model).internal_batch_size == rows
    for name in ("smoothgrad", "vargrad", "gradientshap"):
        assert xaibench.create_explainer(name, model).batch_size == rows
    assert xaibench.create_explainer("smoothgrad", model, batch_size=3).batch_size == 3


def test_create_explainer_names_the_method(model) -> None:
    with pytest.raises(OptionError, match="^method 'scorecam': option batch_size must be an integer >= 1, got 0$"):
        xaibench.create_explainer("scorecam", model, batch_size=0)
