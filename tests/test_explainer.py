"""The Explainer interface (checks, post-processing, state left alone) and the registry."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import EntryPoint

import pytest
import torch

import xaibench
import xaibench.explainer as explainer_module
from xaibench.errors import NonFiniteMapError, UnknownNameError, XaibenchError
from xaibench.explainer import METHODS, CONSTANT_RTOL, Explanation, normalize_maps, upsample_maps
from xaibench.hooks import capture, count_hooks
from xaibench.testing import check_explainer

from conftest import tiny_model


def test_normalize_maps_known_values_and_flat_maps() -> None:
    maps = torch.tensor([[[1.0, 3.0], [5.0, 9.0]], [[2.0, 2.0], [2.0, 2.0]], [[-4.0, 0.0], [0.0, 4.0]]])
    out = normalize_maps(maps)
    assert torch.equal(out[0], torch.tensor([[0.0, 0.25], [0.5, 1.0]]))
    assert torch.equal(out[1], torch.zeros(2, 2))  # flat -> zeros, never NaN
    assert torch.equal(out[2], torch.tensor([[0.0, 0.5], [0.5, 1.0]]))


def test_upsample_maps_is_bilinear_and_keeps_constant_maps() -> None:
    maps = torch.stack([torch.full((2, 2), 3.0), torch.tensor([[0.0, 1.0], [0.0, 1.0]])])
    up = upsample_maps(maps, (4, 4))
    assert up.shape == (2, 4, 4)
    assert torch.allclose(up[0], torch.full((4, 4), 3.0))
    # align_corners=False: the outer columns copy the border values, the inner ones interpolate.
    assert torch.allclose(up[1, 0], torch.tensor([0.0, 0.25, 0.75, 1.0]))


class _Fixed(xaibench.Explainer):
    """Returns a fixed low-resolution map whatever the input."""

    def attribute(self, images, targets):
        return torch.arange(4.0).reshape(1, 2, 2).repeat(len(images), 1, 1)


def test_call_upsamples_and_normalises(model, batch) -> None:
    maps = _Fixed(model)(*batch)
    assert maps.shape == (4, 16, 16) and maps.dtype == torch.float32
    assert maps.min() == 0 and maps.max() == 1


@pytest.mark.parametrize(
    "targets, message",
    [
        (torch.tensor([0, 1, 2, 3]).int(), "LongTensor"),
        (torch.tensor([0, 1]), "4 images but 2 targets"),
        (torch.tensor([0, 1, 2, 5]), r"targets must lie in \[0, 4\]"),
        (None, "LongTensor"),
    ],
)
def test_call_rejects_bad_targets(model, batch, targets, message) -> None:
    with pytest.raises(XaibenchError, match=message):
        _Fixed(model)(batch[0], targets)


def test_call_rejects_bad_images(model) -> None:
    with pytest.raises(XaibenchError, match=r"\(N, C, H, W\)"):
        _Fixed(model)(torch.rand(3, 16, 16), torch.tensor([0, 1, 2]))


class _Raising(xaibench.Explainer):
    def attribute(self, images, targets):
        assert not self.model.network.training
        raise RuntimeError("boom")


def test_training_flags_restored_even_after_an_error(model, batch) -> None:
    model.network.train()
    model.network.features[0].eval()  # a mixed state must come back exactly
    before = {name: m.training for name, m in model.network.named_modules()}
    with pytest.raises(RuntimeError, match="boom"):
        _Raising(model)(*batch)
    assert {name: m.training for name, m in model.network.named_modules()} == before


# ------------------------------------------------------------------- misbehaving plugins and their fate


def returning(name: str, make_raw) -> xaibench.Explainer:
    """An explainer class (unregistered, named ``name``) whose attribute returns ``make_raw(images)``."""

    class Returning(xaibench.Explainer):
        def attribute(self, images, targets):
            return make_raw(images)

    Returning.name = name
    return Returning


def _pattern(n: int, size: int = 4, dtype=torch.float32) -> torch.Tensor:
    """n different non-constant raw maps (size x size)."""
    return torch.stack([torch.arange(size * size, dtype=dtype).reshape(size, size) + k for k in range(n)]) ** 2


def test_an_empty_batch_explains_nothing(model) -> None:
    """attribute() is not called: not every method copes with zero images (CAM's head check does not)."""
    explanation = xaibench.create_explainer("cam", model).explain(torch.rand(0, 3, 16, 16), torch.zeros(0, dtype=torch.long))
    assert explanation.maps.shape == (0, 16, 16) and explanation.finite.shape == explanation.constant.shape == (0,)


@pytest.mark.parametrize("bad_value", [float("nan"), float("inf"), float("-inf")])
def test_a_non_finite_map_is_flagged_zeroed_and_refused_by_call(model, batch, bad_value) -> None:
    def raw(images):
        maps = _pattern(len(images))
        maps[1, 2, 3] = bad_value
        maps[3] = bad_value
        return maps

    explainer = returning("non-finite", raw)(model)
    explanation = explainer.explain(*batch)
    assert isinstance(explanation, Explanation)
    assert explanation.finite.tolist() == [True, False, True, False]
    assert explanation.constant.tolist() == [False] * 4
    assert torch.equal(explanation.maps[1], torch.zeros(16, 16)) and torch.equal(explanation.maps[3], torch.zeros(16, 16))
    good = normalize_maps(upsample_maps(_pattern(4), (16, 16)))
    assert torch.equal(explanation.maps[[0, 2]], good[[0, 2]])  # the other images are scored as usual
    with pytest.raises(NonFiniteMapError, match=r"explainer 'non-finite' returned NaN or infinite values for image\(s\) \[1, 3\] of a batch of 4"):
        explainer(*batch)


def test_a_constant_map_is_flagged_and_zeroed_not_stretched(model, batch) -> None:
    """Bilinear upsampling of a constant 3 x 3 map leaves float32 rounding stripes, which min-max
    scaling used to stretch to [0, 1]; the raw map is now recognised as constant before upsampling."""
    stripes = normalize_maps(upsample_maps(torch.full((1, 3, 3), 0.1), (16, 16)))
    assert stripes.max() == 1  # the old way: noise scored as a map
    explainer = returning("constant", lambda images: torch.full((len(images), 3, 3), 0.1))(model)
    explanation = explainer.explain(*batch)
    assert explanation.constant.all() and explanation.finite.all()
    assert torch.equal(explanation.maps, torch.zeros(4, 16, 16))
    assert torch.equal(explainer(*batch), torch.zeros(4, 16, 16))  # constant maps are no error


@pytest.mark.parametrize(
    "name, raw, constant",
    [
        ("zeros", lambda n: torch.zeros(n, 7, 7), True),
        ("1e-10 noise in float64", lambda n: 1 + 1e-10 * torch.rand(n, 7, 7, dtype=torch.float64), True),
        ("a few float32 ulps", lambda n: 3 + 3 * 1.2e-7 * torch.randint(0, 8, (n, 7, 7)), True),
        ("span half the tolerance", lambda n: 1 + 0.5 * CONSTANT_RTOL * torch.eye(7).expand(n, 7, 7), True),
        ("span twice the tolerance", lambda n: 1 + 2 * CONSTANT_RTOL * torch.eye(7).expand(n, 7, 7), False),
        ("negative, twice the tolerance", lambda n: -1 + 2 * CONSTANT_RTOL * torch.eye(7).expand(n, 7, 7), False),
        ("tiny but shaped (scale-free)", lambda n: 1e-30 * torch.eye(7).expand(n, 7, 7), False),
    ],
)
def test_the_constant_tolerance(model, batch, name, raw, constant) -> None:
    """``max - min <= CONSTANT_RTOL * max |M|``: relative, so a map's scale never matters."""
    torch.manual_seed(0)
    explanation = returning("edge", lambda images: raw(len(images)))(model).explain(*batch)
    assert explanation.constant.tolist() == [constant] * 4, name
    if constant:
        assert torch.equal(explanation.maps, torch.zeros(4, 16, 16))
    else:
        # Just above the tolerance float32 rounding already shifts the scaled map by ~0.2% of its span.
        expected = normalize_maps(upsample_maps(torch.eye(7).expand(4, 7, 7), (16, 16)))
        assert torch.allclose(explanation.maps, expected, atol=5e-3), name


def test_float64_maps_beyond_float32_range_and_integer_maps(model, batch) -> None:
    expected = normalize_maps(upsample_maps(_pattern(4), (16, 16)))
    huge = returning("huge", lambda images: 1e300 * _pattern(len(images), dtype=torch.float64))(model).explain(*batch)
    assert huge.finite.all() and torch.allclose(huge.maps, expected, atol=1e-6)
    ints = returning("ints", lambda images: _pattern(len(images)).long())(model).explain(*batch)
    assert torch.allclose(ints.maps, expected)


def test_maps_that_require_grad_are_detached(model, batch) -> None:
    weight = torch.ones(1, requires_grad=True)
    maps = returning("graph", lambda images: weight * _pattern(len(images)))(model)(*batch)
    assert not maps.requires_grad and maps.max() == 1


@pytest.mark.parametrize(
    "raw, message",
    [
        (lambda images: [torch.zeros(4, 4)] * len(images), r"explainer 'bad-output' returned a list; attribute\(\) must return a tensor"),
        (lambda images: torch.zeros(len(images), 4, 4).numpy(), "returned a ndarray"),
        (lambda images: None, "returned a NoneType"),
        (lambda images: torch.rand(len(images), 16 * 16), r"explainer 'bad-output' returned maps of shape \(4, 256\); attribute\(\) must return \(N, h, w\) with N = 4"),
        (lambda images: torch.rand(len(images), 1, 4, 4), r"shape \(4, 1, 4, 4\)"),
        (lambda images: torch.rand(2, 4, 4), r"shape \(2, 4, 4\); .* with N = 4"),
        (lambda images: torch.rand(len(images), 0, 4), r"shape \(4, 0, 4\); .* h, w >= 1"),
        (lambda images: torch.rand(len(images), 4, 4, dtype=torch.complex64), "dtype torch.complex64"),
    ],
)
def test_wrong_outputs_are_reported_with_the_method_and_the_shape(model, batch, raw, message) -> None:
    explainer = returning("bad-output", raw)(model)
    with pytest.raises(XaibenchError, match=message):
        explainer.explain(*batch)
    with pytest.raises(XaibenchError, match=message):
        explainer(*batch)


class _EditsItsInputs(xaibench.Explainer):
    """Edits images and targets in place, then explains what is left."""

    name = "vandal"

    def attribute(self, images, targets):
        images.mul_(0).add_(1)
        targets.fill_(0)
        return images.mean(1) + targets[:, None, None]


def test_a_method_that_edits_its_inputs_cannot_change_the_callers(model, batch) -> None:
    images, targets = batch
    before = images.clone(), targets.clone()
    cam = xaibench.create_explainer("cam", model)
    expected = cam(images, targets)
    explanation = _EditsItsInputs(model).explain(images, targets)
    assert torch.equal(images, before[0]) and torch.equal(targets, before[1])
    assert explanation.constant.all()  # it explained its own (flattened) copy
    assert torch.equal(cam(images, targets), expected)  # the next method sees the real batch


class _RaisesWithAHook(xaibench.Explainer):
    """Registers a hook, switches grad mode on, then raises, cleaning up nothing."""

    name = "raiser"

    def attribute(self, images, targets):
        self.model.target_layer.register_forward_hook(lambda *args: None)
        torch.set_grad_enabled(True)
        raise ValueError("the plugin's own error")


@pytest.mark.parametrize("context", [torch.enable_grad, torch.no_grad, torch.inference_mode])
def test_a_method_that_raises_keeps_its_error_and_leaves_the_model_clean(model, batch, context) -> None:
    with context():
        grad_mode = torch.is_grad_enabled()
        with pytest.raises(ValueError, match="the plugin's own error"):
            _RaisesWithAHook(model).explain(*batch)
        assert torch.is_grad_enabled() == grad_mode
    assert count_hooks(model.network) == 0


class _Leaky(xaibench.Explainer):
    """Forgets to remove hooks of every kind: module, parameter tensor, process-wide."""

    name = "leaky"

    def attribute(self, images, targets):
        network = self.model.network
        network.features[0].register_forward_pre_hook(lambda *args: None)
        network.fc.register_full_backward_hook(lambda *args: None)
        network.fc.weight.register_hook(lambda grad: grad)
        torch.nn.modules.module.register_module_forward_hook(lambda *args: None)
        with capture(self.model.target_layer) as feats:  # removed properly: not counted
            logits = self.model(images)
        return feats.output.sum(1) + 0 * logits.sum()


def test_a_method_that_leaks_hooks_is_refused_and_the_hooks_removed(model, batch) -> None:
    kept = model.network.fc.register_forward_hook(lambda *args: None)  # the user's own hook stays
    try:
        with pytest.raises(XaibenchError, match=r"explainer 'leaky' left 4 hook\(s\) on model 'TinyGapNet' \(removed now\); hooks must be removed in finally"):
            _Leaky(model).explain(*batch)
        assert count_hooks(model.network) == 1 and list(model.network.fc._forward_hooks) == [kept.id]
        assert model.network.fc._is_full_backward_hook is None  # the bookkeeping is back as well
        assert not torch.nn.modules.module._global_forward_hooks
    finally:
        kept.remove()
    assert torch.equal(  # the model still works, without the leaked backward hook
        xaibench.create_explainer("gradcam", model)(*batch), xaibench.create_explainer("gradcam", model)(*batch)
    )


def test_a_method_that_leaves_grad_mode_on_does_not_change_the_callers(model, batch) -> None:
    class GradOn(xaibench.Explainer):
        name = "grad-on"

        def attribute(self, images, targets):
            torch.set_grad_enabled(True)
            return _pattern(len(images))

    with torch.no_grad():
        GradOn(model)(*batch)
        assert not torch.is_grad_enabled()


def test_attribute_runs_in_eval_mode_without_grad_outside_inference_mode(model, batch) -> None:
    seen = {}

    class Spy(xaibench.Explainer):
        name = "spy"

        def attribute(self, images, targets):
            seen.update(
                training=self.model.network.training,
                grad=torch.is_grad_enabled(),
                inference=torch.is_inference_mode_enabled(),
                inference_tensor=images.is_inference(),
            )
            return _pattern(len(images))

    for context in (torch.enable_grad, torch.no_grad, torch.inference_mode):
        with context():
            images = batch[0].clone()  # under inference_mode: an inference tensor
            Spy(model).explain(images, batch[1])
        assert seen == dict(training=False, grad=False, inference=False, inference_tensor=False), context


def test_gradient_methods_work_on_inference_tensors(model, batch) -> None:
    with torch.inference_mode():
        images, targets = batch[0].clone(), batch[1].clone()
        maps = {name: xaibench.create_explainer(name, model)(images, targets) for name in ("gradcam", "saliency")}
    for name, expected in maps.items():
        assert torch.equal(xaibench.create_explainer(name, model)(*batch), expected)


def test_a_method_that_forgets_enable_grad_gets_a_hint(model, batch) -> None:
    class NoEnableGrad(xaibench.Explainer):
        name = "no-enable-grad"

        def attribute(self, images, targets):
            pixels = images.requires_grad_(True)
            score = self.model(pixels).gather(1, targets[:, None]).sum()
            return torch.autograd.grad(score, pixels)[0].abs().amax(1)

    with pytest.raises(RuntimeError, match="does not require grad") as caught:
        NoEnableGrad(model)(*batch)
    if sys.version_info >= (3, 11):
        assert "compute gradients inside `with torch.enable_grad():`" in "".join(caught.value.__notes__)


# ------------------------------------------------------------------------------------------ registry


def test_builtins_are_found_through_entry_points() -> None:
    assert {"cam", "gradcam", "saliency"} <= set(xaibench.available_explainers())
    assert xaibench.get_explainer("cam").__module__ == "xaibench_plugins.cam"


def test_unknown_name_lists_the_available_ones(model) -> None:
    with pytest.raises(UnknownNameError, match="unknown method 'nope'; available: .*cam.*gradcam"):
        xaibench.create_explainer("nope", model)


def test_unknown_name_suggests_the_closest_one(model) -> None:
    with pytest.raises(UnknownNameError, match="unknown method 'gradcma'; did you mean 'gradcam'[?] available: ") as error:
        xaibench.get_explainer("gradcma")
    listed = str(error.value).split("available: ")[1].split(", ")
    assert listed == xaibench.available_explainers() and {"cam", "gradcam", "saliency"} <= set(listed)


@pytest.fixture
def broken_plugins(monkeypatch):
    """The installed entry points plus three broken ones: a missing module, a missing attribute, and
    an object that is no Explainer."""
    real = explainer_module.METHODS._entry_points
    group = explainer_module.ENTRY_POINT_GROUP
    fake = [
        EntryPoint(name="ghost", value="xaibench_no_such_module:Ghost", group=group),
        EntryPoint(name="typo", value="xaibench.explainer:NoSuchClass", group=group),
        EntryPoint(name="not-a-method", value="xaibench.explainer:Explanation", group=group),
    ]

    def entry_points(name=None):
        return real(name) + [ep for ep in fake if name is None or ep.name == name]

    monkeypatch.setattr(explainer_module.METHODS, "_entry_points", entry_points)
    return fake


def test_a_broken_plugin_is_listed_with_its_cause(broken_plugins) -> None:
    infos = {info.name: info for info in xaibench.explainer.describe_explainers()}
    assert {"cam", "gradcam", "ghost", "typo", "not-a-method"} <= set(infos)
    assert infos["ghost"].summary == "cannot be loaded: ModuleNotFoundError: No module named 'xaibench_no_such_module'"
    assert infos["ghost"].origin == "xaibench_no_such_module:Ghost (entry point)"
    assert infos["typo"].summary.startswith("cannot be loaded: AttributeError: ")
    assert infos["not-a-method"].summary.startswith("cannot be loaded: TypeError: @register_explainer('not-a-method') needs a subclass of Explainer")
    assert infos["cam"].summary.startswith("Class Activation Mapping")


def test_get_explainer_of_a_broken_plugin_names_the_entry_point_and_the_cause(broken_plugins) -> None:
    with pytest.raises(
        XaibenchError,
        match=r"^method 'ghost' cannot be loaded from entry point 'xaibench_no_such_module:Ghost' \(entry point\): "
        r"ModuleNotFoundError: No module named 'xaibench_no_such_module'$",
    ) as caught:
        xaibench.get_explainer("ghost")
    assert "\n" not in str(caught.value) and isinstance(caught.value.__cause__, ModuleNotFoundError)
    with pytest.raises(XaibenchError, match="entry point 'xaibench.explainer:NoSuchClass'.*AttributeError"):
        xaibench.get_explainer("typo")
    assert "not-a-method" not in METHODS._classes


def test_xaibench_list_shows_a_broken_plugin(broken_plugins, capsys) -> None:
    from xaibench import cli

    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "ghost" in out and "cannot be loaded: ModuleNotFoundError" in out and "gradcam" in out


def test_register_create_and_duplicate(model, batch, temporary_name) -> None:
    @xaibench.register_explainer(temporary_name(METHODS, "test-fixed"))
    class Mine(_Fixed):
        """My method."""

    assert "test-fixed" in xaibench.available_explainers()
    explainer = xaibench.create_explainer("test-fixed", model)
    assert isinstance(explainer, Mine) and explainer.name == "test-fixed"
    assert explainer(*batch).shape == (4, 16, 16)

    with pytest.raises(XaibenchError, match="method name 'test-fixed' is already registered"):
        @xaibench.register_explainer("test-fixed")
        class Other(_Fixed):
            pass

    xaibench.get_explainer("cam")  # a built-in's name is taken too
    with pytest.raises(XaibenchError, match="'cam' is already registered by xaibench_plugins.cam:CAM"):
        xaibench.register_explainer("cam")(_Fixed)


def test_register_needs_an_explainer_subclass() -> None:
    with pytest.raises(TypeError, match="subclass of Explainer"):
        xaibench.register_explainer("not-a-class")(object)


def test_loading_cam_imports_no_other_plugin() -> None:
    code = (
        "import sys, xaibench; xaibench.get_explainer('cam'); "
        "assert 'xaibench_plugins.cam' in sys.modules; "
        "bad = [m for m in ('xaibench_plugins.gradcam', 'xaibench_plugins.saliency', 'captum') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_tiny_model_fixture_is_deterministic() -> None:
    a, b = tiny_model(), tiny_model()
    assert all(torch.equal(p, q) for p, q in zip(a.network.parameters(), b.network.parameters()))


# ------------------------------------------------------------------------------ the contract checker


@pytest.mark.parametrize(
    "attribute, message",
    [
        (lambda self, x, t: torch.rand(len(x), 4, 4), "two calls on the same batch gave different maps"),
        (lambda self, x, t: x.mean(1) + (torch.arange(len(x)) == 0)[:, None, None] * torch.eye(16),
         "image 1 explained alone differs from the same image in a batch of 4"),
        (lambda self, x, t: torch.full((len(x), 4, 4), float("nan")), r"NaN or infinite raw maps for images \[0, 1, 2, 3\]"),
        (lambda self, x, t: [0], "returned a list"),
        (lambda self, x, t: (self.model.network.fc.weight.requires_grad_(False), x.mean(1))[1],
         r"requires_grad of parameters \['fc.weight'\] changed after a call"),
        (lambda self, x, t: (self.model.network.fc.bias.data.add_(1), x.mean(1))[1],
         "parameters or buffers changed after a call"),
        (lambda self, x, t: _backward(self, x, t), r"\.grad of parameters .* changed after a call \(use torch.autograd.grad"),
        (lambda self, x, t: _swallowing(self, x, t), "swallowed an exception the model raised in its forward pass"),
        (lambda self, x, t: _replacing(self, x, t), "the model's exception was replaced by ValueError: mine"),
        (lambda self, x, t: _inference_dependent(x), r"different maps under torch.inference_mode\(\)"),
    ],
)
def test_check_explainer_catches_each_broken_promise(model, batch, attribute, message) -> None:
    _inference_dependent.calls = 0
    cls = type("Broken", (xaibench.Explainer,), {"attribute": attribute, "name": "broken"})
    with pytest.raises(AssertionError, match=message):
        check_explainer(cls(model), *batch)


def _backward(self, images, targets):
    with torch.enable_grad():
        self.model(images).sum().backward()
    return images.mean(1)


def _swallowing(self, images, targets):
    try:
        self.model(images)
    except Exception:
        pass
    return images.mean(1)


def _replacing(self, images, targets):
    try:
        self.model(images)
    except Exception:
        raise ValueError("mine") from None
    return images.mean(1)


def _inference_dependent(images):
    """Differs on its 8th call, the one check_explainer makes under torch.inference_mode() (explain()
    hides the caller's grad and inference modes from attribute, so no real method can tell)."""
    _inference_dependent.calls += 1
    return images.mean(1) + torch.eye(16) * (_inference_dependent.calls == 8)


_inference_dependent.calls = 0


def test_check_explainer_refuses_constant_maps_when_asked(model, batch) -> None:
    explainer = returning("flat", lambda images: torch.ones(len(images), 4, 4))(model)
    assert check_explainer(explainer, *batch).constant.all()
    with pytest.raises(AssertionError, match=r"explainer 'flat': constant raw maps for images \[0, 1, 2, 3\] of 4"):
        check_explainer(explainer, *batch, allow_constant=False)


def test_check_explainer_reports_a_leaked_hook_as_an_assertion(model, batch) -> None:
    with pytest.raises(AssertionError, match="explainer 'leaky': explainer 'leaky' left 4 hook"):
        check_explainer(_Leaky(model), *batch)
    assert count_hooks(model.network) == 0
