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


def test_create_explainer_refuses_unknown_options(model) -> None:
    with pytest.raises(XaibenchError, match="method 'center' has no option 'width'; its options: sigma=0.25"):
        xaibench.create_explainer("center", model, width=3)
    assert xaibench.create_explainer("center", model, sigma=0.5).sigma == 0.5
