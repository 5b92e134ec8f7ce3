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


@pytest.mark.parametrize(
    "value",
    [
        "[" * 4000 + "]" * 4000,  # a list in a list ... (Python's parser stops at 200 brackets)
        "(" * 300 + "1" + ",)" * 300,  # tuples
        "{1: " * 1500 + "1" + "}" * 1500,  # dicts
        "[" * 21 + "]" * 21,  # just past the limit
        "-" * 2500 + "1",  # RecursionError in the parser
        "-" * 9000 + "1",  # MemoryError in the parser
        "1+" * 4000 + "1",  # a chain of operators nests too
        "not " * 2400 + "1",
    ],
    ids=["lists", "tuples", "dicts", "21 lists", "unary 2500", "unary 9000", "a chain", "not"],
)
def test_a_value_nested_too_deep_is_one_short_error(value) -> None:
    for text in (f"center(sigma={value})", f"cam,pointing(tolerance={value})"):
        with pytest.raises(XaibenchError) as raised:
            parse_methods(text)
        message = str(raised.value)
        assert "nests deeper than 20 levels" in message and "write a flatter value" in message, message[:300]
        assert len(message) < 300 and "\n" not in message


def test_a_value_at_the_depth_limit_is_read() -> None:
    expected = 1
    for _ in range(19):
        expected = (expected,)
    assert parse_methods("center(sigma=" + "(" * 19 + "1" + ",)" * 19 + ")")[0].options["sigma"] == expected
    assert parse_methods("x(a={'k': [(-1.5, 2)]})")[0].options == {"a": {"k": [(-1.5, 2)]}}


@pytest.mark.parametrize("text", ["center(sigma=" + "-" * 100_000 + "1)", "cam," * 3000, "x(s='" + "a" * 20_000 + "')"],
                         ids=["operators", "names", "a string"])
def test_a_text_too_long_is_one_short_error(text) -> None:
    with pytest.raises(XaibenchError, match=r"characters long, more than 10,000; name fewer methods, or give them "
                                            r"shorter options$") as raised:
        parse_methods(text)
    assert len(str(raised.value)) < 300


@pytest.mark.parametrize("option", ["--methods", "--metrics"])
def test_the_command_line_refuses_a_deep_option_in_one_line(option, capsys, tmp_path) -> None:
    from xaibench.cli import main

    value = {"--methods": "center(sigma=" + "[" * 3000 + "]" * 3000 + ")",
             "--metrics": "pointing(tolerance=" + "-" * 3000 + "1)"}[option]
    assert main(["run", option, value, "--n", "2", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("xaibench: error: cannot read the options of") and "nests deeper than 20 levels" in err
    assert err.count("\n") == 1 and len(err) < 300
    assert not (tmp_path / "run").exists()
