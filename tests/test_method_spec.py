"""Methods with options: parsing, checking against the constructor, and what config.json records."""

from __future__ import annotations

import pytest

import xaibench
from xaibench.errors import XaibenchError
from xaibench.method_spec import MethodSpec, check_options, effective_options, parse_methods


def test_parse_names_and_options() -> None:
    specs = parse_methods(" cam, scorecam(batch_size=64),ig(steps=32, method=riemann_trapezoid, shift=(1, 2)) ,")
    assert specs == [
        MethodSpec("cam"),
        MethodSpec("scorecam", {"batch_size": 64}),
        MethodSpec("ig", {"steps": 32, "method": "riemann_trapezoid", "shift": (1, 2)}),
    ]
    assert str(specs[1]) == "scorecam(batch_size=64)"
    assert parse_methods("") == [] and parse_methods(" , ") == []
    # parentheses and commas inside a string value are text
    assert parse_methods("""shapleycam(score=")"),x(a="a,(b", b='it\\'s)')""") == [
        MethodSpec("shapleycam", {"score": ")"}), MethodSpec("x", {"a": "a,(b", "b": "it's)"}),
    ]


@pytest.mark.parametrize(
    "text, message",
    [
        ("cam,scorecam(batch_size=64", "a '(' without its ')'"),
        ("cam)", "a ')' without its '('"),
        ("cam(x='a)", "a ' without its closing '"),
        ("scorecam(64)", "must be named"),
        ("scorecam(batch_size=)", "cannot read the options"),
        ("scorecam(batch_size=[1, x])", "not a number, string"),
        ("score cam", "write NAME or NAME(option=value"),
    ],
)
def test_malformed_specs_are_one_clear_error(text, message) -> None:
    with pytest.raises(XaibenchError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_methods(text)


class _WithOptions(xaibench.Explainer):
    def __init__(self, model, *, steps: int = 50, sigma: float = 0.25, relu: bool = True, mode: str = "a") -> None:
        super().__init__(model)

    def attribute(self, images, targets):
        return images.mean(1)


def test_options_are_checked_against_the_constructor() -> None:
    check_options("m", _WithOptions, {"steps": 8, "sigma": 1, "relu": False, "mode": "b"})
    with pytest.raises(XaibenchError, match="method 'm' has no option 'step'; its options: steps=50, sigma=0.25, relu=True, mode='a'"):
        check_options("m", _WithOptions, {"step": 8})
    with pytest.raises(XaibenchError, match="option steps of method 'm' must be an integer, got 8.5"):
        check_options("m", _WithOptions, {"steps": 8.5})
    with pytest.raises(XaibenchError, match="option relu of method 'm' must be True or False"):
        check_options("m", _WithOptions, {"relu": 1})
    assert effective_options(_WithOptions, {"steps": 8}) == {"steps": 8, "sigma": 0.25, "relu": True, "mode": "a"}


class _FloatWithIntegerDefault(xaibench.Explainer):
    def __init__(self, model, *, tolerance: float = 15, steps: int = 50) -> None:
        super().__init__(model)

    def attribute(self, images, targets):
        return images.mean(1)


def test_a_float_option_with_an_integer_default_takes_any_number() -> None:
    """An option annotated float takes 7.5 though its default is the integer 15; the default stays 15, an
    integer, so config.json writes it as before ("tolerance": 15) and existing runs keep the same options."""
    import json

    from xaibench.metric import create_metric

    check_options("m", _FloatWithIntegerDefault, {"tolerance": 7.5})
    check_options("m", _FloatWithIntegerDefault, {"tolerance": 7})
    with pytest.raises(XaibenchError, match=r"option tolerance of method 'm' must be a number, got True; its options: tolerance=15"):
        check_options("m", _FloatWithIntegerDefault, {"tolerance": True})
    with pytest.raises(XaibenchError, match="option steps of method 'm' must be an integer, got 8.5"):
        check_options("m", _FloatWithIntegerDefault, {"steps": 8.5})  # an int annotation stays an integer
    assert json.dumps(create_metric("pointing").options) == '{"tolerance": 15, "resolution": "file"}'
    assert json.dumps(create_metric("pointing", tolerance=7.5).options) == '{"tolerance": 7.5, "resolution": "file"}'
    for bad in (-1, float("nan"), float("inf")):
        with pytest.raises(XaibenchError, match=rf"metric 'pointing': option tolerance must be a finite number >= 0.0, got {bad}"):
            create_metric("pointing", tolerance=bad)


def test_create_explainer_refuses_unknown_options(model) -> None:
    with pytest.raises(XaibenchError, match="method 'center' has no option 'width'; its options: sigma=0.25"):
        xaibench.create_explainer("center", model, width=3)
    assert xaibench.create_explainer("center", model, sigma=0.5).sigma == 0.5
