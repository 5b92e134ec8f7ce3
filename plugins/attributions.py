"""Gradient attributions in pixel space: integrated gradients, SmoothGrad, VarGrad, input x gradient,
guided backpropagation, deconvolution, Guided Grad-CAM, GradientSHAP and DeepLIFT.

Every method here attributes the class score (the logit) to the pixels of the [0, 1] image that the
explainer receives, so "zero baseline" means the black image, whatever the model's normalisation.
Each gives a (3, H, W) attribution per image and reduces it to one (H, W) map by one of three rules,
said in each class's docstring:

- ``|sum_c A_c|`` for the additive attributions (integrated gradients, input x gradient, GradientSHAP,
  DeepLIFT), whose channels add up to the pixel's share of the score's change: the magnitude of the
  pixel's total contribution, as captum's ``visualize_image_attr`` shows them by default (sum over
  the channel axis, ``sign="absolute_value"``);
- ``sum_c |A_c|`` for SmoothGrad and VarGrad, as the authors' code (PAIR ``saliency``,
  ``VisualizeImageGrayscale``) turns a sensitivity map into a grey-scale image;
- ``max_c |A_c|`` for the modified gradients (guided backpropagation, deconvolution, Guided
  Grad-CAM), Simonyan et al.'s reduction of a pixel-space gradient, as xaibench's ``saliency``.

Where captum runs the model as given (integrated gradients, input x gradient) it is called directly.
Guided backpropagation, deconvolution (and so Guided Grad-CAM) and DeepLIFT replace the backward rule
of the network's activations; captum does it with hooks on ``nn.ReLU`` modules only (DeepLIFT: on an
exact list of module types), so on a network with ``ReLU6`` (EfficientNet-Lite, MobileNet-V2) it
silently computes the plain gradient, and its DeepLIFT raises on an activation module that runs twice
in one forward pass. These methods therefore run a copy of the network, made once in the constructor,
in which each activation module is replaced by one whose backward applies the method's rule as a
``torch.autograd.Function`` (captum's rule exactly, verified in ``tests/test_attributions.py``): no
hooks, any number of calls per module, ``ReLU6`` treated as the ReLU it is, in-place activations made
out-of-place, and no more work than the plain gradient (DeepLIFT: one reference row for the whole
batch instead of one per image). The copy shares the parameters and buffers of the user's network (it follows in-place
weight updates) and is rebuilt when the network's modules, parameters or buffers are replaced (a
``.to(device)``, a new layer); the user's network is never modified. Activations applied as functions
(``F.relu(x)`` in a ``forward``) are not modules and keep their plain gradient, as in captum and
pytorch-grad-cam.

SmoothGrad, VarGrad and GradientSHAP draw their noise per image from
:func:`xaibench.seeding.image_generator` (captum draws from the global random state, so it cannot give
an image the same map in every batch); their (image, sample) rows run ``batch_size`` at a time, so
memory is bounded whatever the number of samples.
"""

from __future__ import annotations

import copy
import itertools
import logging
import math
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xaibench import Explainer, options, pass_rows, register_explainer
from xaibench.errors import LayerError, XaibenchError
from xaibench.hooks import capture, trace
from xaibench.models import Model, eval_mode
from xaibench.precision import PIXEL_GRADIENTS
from xaibench.seeding import image_generator

_log = logging.getLogger(__name__)


#: The integral approximations captum's ``IntegratedGradients`` accepts.
IG_METHODS = ("gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid")


# ------------------------------------------------------------------------------------- options


# ---------------------------------------------------------------------------------- reductions


def _abs_of_channel_sum(attributions: Tensor) -> Tensor:
    """``|sum_c A_c|``: the magnitude of each pixel's total contribution (additive attributions)."""
    return attributions.sum(1).abs()


def _sum_of_abs(attributions: Tensor) -> Tensor:
    """``sum_c |A_c|``: PAIR saliency's ``VisualizeImageGrayscale`` (SmoothGrad, VarGrad)."""
    return attributions.abs().sum(1)


def _max_of_abs(attributions: Tensor) -> Tensor:
    """``max_c |A_c|``: Simonyan et al.'s reduction of a pixel-space gradient."""
    return attributions.abs().amax(1)


def _scores(logits: Tensor, targets: Tensor) -> Tensor:
    """The sum of each row's target logit: one backward pass serves the whole batch (rows are
    independent in eval mode)."""
    return logits.gather(1, targets[:, None]).sum()


# ------------------------------------------------------------------------- a network's adapted copy


class _NetworkCopy:
    """A copy of ``model.network`` whose modules ``replace`` swaps, built once and reused.

    The copy shares every parameter and buffer with the user's network (``copy.deepcopy`` with those
    tensors in its memo), so it follows in-place updates of the weights; it is rebuilt when the
    network's modules, parameters or buffers are replaced by other objects (``.to(device)``, a new
    layer, ``load_state_dict(assign=True)``). The copy runs in eval mode, whatever the flags it was
    copied with. Hooks on the user's network are copied with it; hooks registered later run on the
    user's network only. The user's network is never modified.
    """

    def __init__(self, model: Model, replace: Callable[[nn.Module], nn.Module | None], what: str) -> None:
        self.model = model
        self.replace = replace
        self.what = what
        self._key: tuple[int, ...] = ()
        self._copy: nn.Module | None = None
        self.replaced = 0
        self.get()

    def _signature(self) -> tuple[int, ...]:
        network = self.model.network
        tensors = itertools.chain(network.modules(), network.parameters(), network.buffers())
        return (id(network), *map(id, tensors))

    def get(self) -> nn.Module:
        """The adapted copy, rebuilt first if the user's network changed since it was made."""
        key = self._signature()
        if self._copy is None or key != self._key:
            self._copy = self._build()
            self._key = key
        return self._copy

    def _build(self) -> nn.Module:
        network = self.model.network
        shared = {id(t): t for t in itertools.chain(network.parameters(), network.buffers())}
        try:
            adapted = copy.deepcopy(network, shared)
        except Exception as error:  # a module holding something that cannot be copied
            raise XaibenchError(
                f"{self.what} needs a copy of model '{self.model.name}' with its activations replaced, but "
                f"the network cannot be copied ({type(error).__name__}: {error})"
            ) from error
        done: dict[int, nn.Module] = {}
        replaced = 0
        for parent in list(adapted.modules()):
            # parent._modules, not named_children(): that skips a second name of the same module.
            for name, child in list(parent._modules.items()):
                if child is None:
                    continue
                if id(child) not in done:
                    new = self.replace(child)
                    done[id(child)] = child if new is None else new
                    replaced += new is not None
                if done[id(child)] is not child:
                    setattr(parent, name, done[id(child)])
        self.replaced = replaced
        return adapted

    def __call__(self, images: Tensor) -> Tensor:
        """Logits of the adapted copy for [0, 1] images (normalised first, as ``Model.__call__``)."""
        return self.get()(self.model.normalize(images))


def _out_of_place(module: nn.Module) -> nn.Module:
    """The module itself, with ``inplace`` switched off (it belongs to the copy)."""
    if getattr(module, "inplace", False):
        module.inplace = False
    return module


# -------------------------------------------------------------- guided backpropagation, deconvolution


def _relu_upper(module: nn.Module) -> float | None:
    """``inf`` for ``nn.ReLU``, the upper bound for ``nn.ReLU6`` / ``nn.Hardtanh(0, b)``, None for any
    other module (not a ReLU)."""
    if isinstance(module, nn.ReLU):
        return math.inf
    if isinstance(module, nn.Hardtanh) and module.min_val == 0 and module.max_val > 0:
        return float(module.max_val)
    return None


def _relu_forward(x: Tensor, upper: float) -> Tensor:
    return F.relu(x) if math.isinf(upper) else F.hardtanh(x, 0.0, upper)


def _relu_backward(grad: Tensor, output: Tensor, upper: float) -> Tensor:
    """The activation's true backward, ``grad * 1[0 < x < upper]``, from its output (the same mask:
    ``y <= 0`` iff ``x <= 0``, ``y >= upper`` iff ``x >= upper``), by the kernels autograd uses."""
    if math.isinf(upper):
        return torch.ops.aten.threshold_backward(grad, output, 0.0)
    return torch.ops.aten.hardtanh_backward(grad, output, 0.0, upper)


class _GuidedReLU(torch.autograd.Function):
    """ReLU (or ReLU6) forward; guided backpropagation's backward: ``relu(g * 1[0 < x < upper])``.

    Captum's rule, ``relu(grad_input)`` with ``grad_input`` the activation's true gradient, written as
    one function: the native forward and backward kernels plus one ``relu``; saves only the output,
    which the next layer keeps anyway.
    """

    @staticmethod
    def forward(ctx, x: Tensor, upper: float) -> Tensor:  # type: ignore[override]
        y = _relu_forward(x, upper)
        ctx.upper = upper
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        (y,) = ctx.saved_tensors
        return _relu_backward(grad, y, ctx.upper).clamp_min_(0), None


class _DeconvReLU(torch.autograd.Function):
    """ReLU (or ReLU6) forward; the deconvnet's backward: ``relu(g)``, whatever the input (captum's
    ``relu(grad_output)``). Saves nothing."""

    @staticmethod
    def forward(ctx, x: Tensor, upper: float) -> Tensor:  # type: ignore[override]
        return _relu_forward(x, upper)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        return grad.clamp_min(0), None


class _ModifiedReLU(nn.Module):
    """A ReLU / ReLU6 whose backward is guided backpropagation's or the deconvnet's."""

    def __init__(self, rule: type[torch.autograd.Function], upper: float) -> None:
        super().__init__()
        self.rule = rule
        self.upper = upper

    def forward(self, x: Tensor) -> Tensor:
        return self.rule.apply(x, self.upper)

    def extra_repr(self) -> str:
        return f"{self.rule.__name__.strip('_')}, upper={self.upper}"


def _relu_copy(model: Model, rule: type[torch.autograd.Function], what: str) -> _NetworkCopy:
    def replace(module: nn.Module) -> nn.Module | None:
        upper = _relu_upper(module)
        return None if upper is None else _ModifiedReLU(rule, upper)

    adapted = _NetworkCopy(model, replace, what)
    if adapted.replaced == 0:
        kinds = sorted({type(m).__name__ for m in model.network.modules() if not list(m.children())})
        raise LayerError(
            f"{what} changes the backward pass of ReLU activation modules (nn.ReLU, nn.ReLU6), but model "
            f"'{model.name}' has none (its layers: {', '.join(kinds)}); it would be the plain gradient"
        )
    return adapted


class _ModifiedGradient(Explainer):
    """The gradient of the class score through a copy of the network with modified ReLU backward rules."""

    full_precision_only = PIXEL_GRADIENTS

    rule: type[torch.autograd.Function]
    what = ""

    def __init__(self, model: Model) -> None:
        super().__init__(model)
        self.network = _relu_copy(model, self.rule, self.what)

    def attributions(self, images: Tensor, targets: Tensor) -> Tensor:
        """The modified gradient (N, 3, H, W) that :meth:`attribute` reduces."""
        network = self.network.get()
        pixels = images.detach().requires_grad_(True)
        with eval_mode(network), torch.enable_grad():
            (grads,) = torch.autograd.grad(_scores(self.network(pixels), targets), pixels)
        return grads

    def attribute(self, images: Tensor, targets: Tensor) -> Tensor:
        return _max_of_abs(self.attributions(images, targets))


@register_explainer("guided_backprop")
class GuidedBackprop(_ModifiedGradient):
    """Guided backpropagation: the score's gradient with only positive signals let back through ReLUs.

    Springenberg, Dosovitskiy, Brox & Riedmiller, "Striving for Simplicity: The All Convolutional Net",
    ICLR 2015 workshop track, https://arxiv.org/abs/1412.6806 (Fig. 1). Backward through a ReLU with
    input ``x`` and incoming signal ``R^{l+1}``:

        R^l = 1[x > 0] * 1[R^{l+1} > 0] * R^{l+1}

    and the ordinary gradient through every other layer, from the class score (logit) ``S_c`` down to
    the [0, 1] pixels. A ``ReLU6`` (EfficientNet-Lite, MobileNet-V2) is a ReLU whose gradient also
    vanishes above 6: ``R^l = 1[0 < x < 6] * relu(R^{l+1})``, i.e. ``relu`` of its true gradient,
    the same rule as for ``nn.ReLU``. Map: ``max_c |R^0_c|`` (the paper shows the RGB reconstruction;
    the per-pixel maximum of its magnitude is Simonyan et al.'s reduction of a pixel-space gradient,
    as xaibench's ``saliency``). No options. Cost: one forward and one backward pass per image, as
    saliency.

    Peers: captum's ``GuidedBackprop`` applies exactly this rule, ``relu(grad_input)``, through hooks on
    ``nn.ReLU`` modules only: on a network with ``nn.ReLU6`` it hooks nothing and returns the plain
    gradient (it agrees with this class on ReLU networks, and on EfficientNet-Lite0 once its ReLU6
    modules are given ``nn.ReLU``'s type). pytorch-grad-cam's ``GuidedBackpropReLUModel`` applies the
    same rule (``grad * 1[x > 0] * 1[grad > 0]``) to ``nn.ReLU`` modules only, one image at a time,
    replacing the user's ReLU modules during the call (by one shared ``nn.ReLU()`` afterwards). This
    class runs a copy of the network made once in the constructor (see the module's docstring).

    Raises:
        LayerError: the network has no ``nn.ReLU`` / ``nn.ReLU6`` module (it would be the plain gradient).
    """

    rule = _GuidedReLU
    what = "guided backpropagation"


@register_explainer("deconvolution")
class Deconvolution(_ModifiedGradient):
    """Deconvolution (the deconvnet): the score projected back with ReLUs applied to the signal itself.

    Zeiler & Fergus, "Visualizing and Understanding Convolutional Networks", ECCV 2014,
    https://arxiv.org/abs/1311.2901 (Sec. 2.1), in the gradient form of Springenberg et al. 2015
    (Fig. 1) and Simonyan et al. 2014 (Sec. 4). Backward through a ReLU (or ReLU6):

        R^l = relu(R^{l+1})

    whatever the forward input was (the deconvnet "passes the reconstructed signal through a relu"),
    and the transposed operation (the ordinary gradient) through every other layer, from the class
    score (logit) to the [0, 1] pixels. Max pooling's switches are the gradient's own routing. Map:
    ``max_c |R^0_c|`` (as :class:`GuidedBackprop`). No options. Cost: one forward and one backward
    pass per image; the activations save nothing for the backward pass.

    Peers: captum's ``Deconvolution`` applies exactly this rule, ``relu(grad_output)``, through hooks
    on ``nn.ReLU`` modules only, so on a network with ``nn.ReLU6`` it returns the plain gradient.

    Raises:
        LayerError: the network has no ``nn.ReLU`` / ``nn.ReLU6`` module.
    """

    rule = _DeconvReLU
    what = "deconvolution"


@register_explainer("guided_gradcam")
class GuidedGradCAM(_ModifiedGradient):
    """Guided Grad-CAM: guided backpropagation weighted by the bilinearly upsampled Grad-CAM.

    Selvaraju, Cogswell, Das, Vedantam, Parikh & Batra, "Grad-CAM: Visual Explanations from Deep
    Networks via Gradient-based Localization", ICCV 2017, https://arxiv.org/abs/1610.02391 (Sec. 3.1):

        L^c = ReLU(sum_k alpha_k^c A^k),  alpha_k^c = mean_ij dy^c / dA^k_ij       (xaibench's gradcam)
        G^c = R^0 (x) up(L^c)

    with ``R^0`` guided backpropagation (:class:`GuidedBackprop`, ReLU6 treated as a ReLU), ``up``
    bilinear upsampling to the image (``align_corners=False``; the paper: "upsampled to the input
    image resolution using bilinear interpolation") and ``(x)`` the element-wise product. Map:
    ``max_c |G^c| = max_c |R^0| * up(L^c)`` (channel-wise maximum, as :class:`GuidedBackprop`). No
    options. Cost: one forward and one backward pass
    per image when no ReLU runs after the target layer (EfficientNet-Lite0, the built-in network, any
    GAP -> linear head): the guided backward pass then carries the true gradient at the target layer,
    which Grad-CAM needs, so both come from the same pass. Otherwise a second, Grad-CAM pass (a
    forward pass and the backward pass from the scores to the target layer).

    Peers: captum's ``GuidedGradCam`` multiplies the same two factors but upsamples Grad-CAM with
    ``interpolate_mode="nearest"`` by default (it agrees with this class with ``"bilinear"`` on ReLU
    networks) and runs two passes; its guided backpropagation ignores ``nn.ReLU6``.
    pytorch-grad-cam's recipe (``GradCAM`` times ``GuidedBackpropReLUModel``) min-max scales the
    upsampled Grad-CAM before multiplying (the same map where its minimum is 0, as wherever Grad-CAM's
    ReLU zeroes a corner; otherwise its minimum is subtracted) and ignores ``nn.ReLU6`` too.

    Raises:
        LayerError: the network has no ``nn.ReLU`` / ``nn.ReLU6`` module.
    """

    rule = _GuidedReLU
    what = "guided Grad-CAM"

    def __init__(self, model: Model) -> None:
        super().__init__(model)
        self._one_pass_key: tuple[int, ...] = ()
        self._one_pass = self._no_relu_after_target()

    def _no_relu_after_target(self) -> bool:
        """Whether no modified ReLU runs after the target layer (then the guided backward pass gives
        the true gradient at the target layer). Found by tracing the copy once."""
        network = self.network.get()
        layer = network.get_submodule(self.model.target_layer_name)
        example = torch.zeros(1, 3, *self.model.input_size, device=self.model.device)
        with eval_mode(network), torch.no_grad():
            calls = trace(network, lambda: network(self.model.normalize(example)))
        ends = [i for i, call in enumerate(calls) if call.module is layer]
        if len(ends) != 1:
            raise LayerError(
                f"target layer '{self.model.target_layer_name}' runs {len(ends)} times in one forward pass; "
                "choose a layer that runs once"
            )
        self._one_pass_key = self.network._key
        return not any(isinstance(call.module, _ModifiedReLU) for call in calls[ends[0] + 1 :])

    def attributions(self, images: Tensor, targets: Tensor) -> Tensor:
        """Guided Grad-CAM ``G^c`` (N, 3, H, W), which :meth:`attribute` reduces (call in eval mode)."""
        network = self.network.get()
        if self.network._key != self._one_pass_key:
            self._one_pass = self._no_relu_after_target()
        layer = network.get_submodule(self.model.target_layer_name)
        pixels = images.detach().requires_grad_(True)
        with eval_mode(network), torch.enable_grad():
            with capture(layer, self.model.target_layer_name, reshape=self.model.feature_grid) as feats:
                logits = self.network(pixels)
            score = _scores(logits, targets)
            if self._one_pass:
                guided, grads = torch.autograd.grad(score, (pixels, feats.output))
                features = feats.output.detach()
            else:
                (guided,) = torch.autograd.grad(score, pixels)
        if not self._one_pass:
            with torch.no_grad(), capture(self.model.target_layer, self.model.target_layer_name, graph=True,
                                            reshape=self.model.feature_grid) as feats:
                logits = self.model(images)
            with torch.enable_grad():
                (grads,) = torch.autograd.grad(_scores(logits, targets), feats.output)
            features = feats.output.detach()
        cam = F.relu((grads.mean((2, 3), keepdim=True) * features).sum(1))
        cam = F.interpolate(cam[:, None], size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
        return guided * cam[:, None]


# ---------------------------------------------------------------------------------------- DeepLIFT

#: Element-wise nonlinearities DeepLIFT's Rescale rule replaces (captum's list: ReLU, ELU, LeakyReLU,
#: Sigmoid, Tanh, Softplus; the others are element-wise too, and the rule is the same for all).
RESCALE_ACTIVATIONS: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.LeakyReLU, nn.ELU, nn.CELU, nn.SELU, nn.GELU, nn.SiLU, nn.Mish,
    nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid, nn.Tanh, nn.Softplus, nn.Softsign, nn.LogSigmoid,
)


#: DeepLIFT's summation-to-delta, ``sum_i C_i = S_c(x) - S_c(x')``, holds to float rounding (about 1e-6
#: relative on EfficientNet-Lite0) when every nonlinearity is replaced; a larger relative error is logged.
SUMMATION_RTOL = 1e-2

#: Max pooling keeps its gradient (see :class:`DeepLift`), which does not conserve the score's change
#: (nor does captum's DeepLIFT): no warning for networks with it.
MAX_POOLING = (nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AdaptiveMaxPoolNd)


def _derivative(activation: nn.Module, x: Tensor) -> Tensor:
    """``f'(x)`` element-wise, by autograd: exactly the gradient captum falls back to."""
    with torch.enable_grad():
        leaf = x.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(activation(leaf).sum(), leaf)
    return grad


class _RescaleFunction(torch.autograd.Function):
    """An element-wise nonlinearity ``f`` with DeepLIFT's Rescale multiplier as its backward.

    Row 0 of the batch is the reference. For every other row, ``m = (f(x) - f(x_ref)) / (x - x_ref)``,
    or ``f'(x)`` where ``|x - x_ref| < eps`` (captum's ``nonlinear``); row 0 gets 0 (its gradient is
    never used). Computed in the forward pass, so only ``m`` is kept.
    """

    @staticmethod
    def forward(ctx, x: Tensor, activation: nn.Module, eps: float) -> Tensor:  # type: ignore[override]
        y = activation(x)
        dx = x - x[:1]
        multiplier = (y - y[:1]).div_(dx)  # inf or nan where dx = 0: replaced below
        near = dx.abs_() < eps
        near[:1] = False
        if near.any():
            multiplier = torch.where(near, _derivative(activation, x), multiplier)
        multiplier[:1] = 0
        ctx.save_for_backward(multiplier)
        return y

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:  # type: ignore[override]
        (multiplier,) = ctx.saved_tensors
        return grad * multiplier, None, None


class _Rescale(nn.Module):
    """An element-wise activation module whose backward is DeepLIFT's Rescale rule."""

    def __init__(self, module: nn.Module, eps: float) -> None:
        super().__init__()
        self.inner = _out_of_place(module)
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        return _RescaleFunction.apply(x, self.inner, self.eps)


def _rescale_replacement(eps: float) -> Callable[[nn.Module], nn.Module | None]:
    def replace(module: nn.Module) -> nn.Module | None:
        return _Rescale(module, eps) if isinstance(module, RESCALE_ACTIVATIONS) else None

    return replace


@register_explainer("deeplift")
class DeepLift(Explainer):
    """DeepLIFT (Rescale rule): contributions of the pixels to the score's change from the black image.

    Shrikumar, Greenside & Kundaje, "Learning Important Features Through Propagating Activation
    Differences", ICML 2017, https://arxiv.org/abs/1704.02685, in its gradient form (Ancona, Ceolini,
    Oztireli & Gross, "Towards better understanding of gradient-based attribution methods for deep
    neural networks", ICLR 2018, https://arxiv.org/abs/1711.06104), as captum's ``DeepLift``. With
    ``x'`` the reference (the black image: zero in the [0, 1] space the explainer receives) and ``S_c``
    the class score (logit), every element-wise nonlinearity ``y = f(z)`` back-propagates the
    multiplier

        m = (f(z) - f(z')) / (z - z')      (f'(z) where |z - z'| < eps = 1e-10, captum's default)

    instead of its derivative (the Rescale rule; ``z'`` is its input on the reference), linear layers
    their weights, max pooling its gradient (the DeepLIFT authors' default,
    ``MaxPoolDeepLiftMode.gradient`` in kundajelab/deeplift); the chain rule of multipliers gives the
    contributions ``C_i = (x_i - x'_i) dS_c/dx_i``, and ``sum_i C_i = S_c(x) - S_c(x')``
    (summation-to-delta) when every nonlinearity is a module of :data:`RESCALE_ACTIVATIONS` and there
    is no max pooling. ``ReLU6`` is one; so are SiLU, GELU, Hardswish, beyond captum's list. Map:
    ``|sum_c C_c|`` (the pixel's contribution, its sign dropped; see the module's docstring). A
    nonlinearity left to its gradient (``F.relu`` called as a function, a product such as
    squeeze-and-excitation) breaks summation-to-delta; a network without max pooling whose
    contributions miss the score's change by more than :data:`SUMMATION_RTOL` gets a logged warning.

    Cost: one forward and one backward pass over the N images plus one reference row, from which every
    activation's reference value comes (captum runs the reference once per image: 2N rows).

    Args:
        model: The classifier.
        eps: Below this ``|z - z'|`` an activation's multiplier is its derivative (captum's default).

    Peers: captum's ``DeepLift`` (zero baseline, default ``eps``) computes the same rule and agrees with
    this class on networks of ``nn.ReLU`` and ``nn.MaxPool2d`` modules (the built-in network). It keeps
    max pooling's gradient too, although it registers a rule of its own for it: behind a ReLU module
    its ReLU hook reads the gradient at its output before its max-pooling hook has rescaled it (both
    hooks sit on that tensor). It raises on an activation module called twice in one forward pass, and
    leaves ``nn.ReLU6`` to the plain gradient (on EfficientNet-Lite0 it computes input x gradient,
    with the reference's pass for nothing). Both agree on EfficientNet-Lite0 once its ReLU6 modules
    are ``nn.ReLU`` objects each called once.
    """

    full_precision_only = PIXEL_GRADIENTS

    def __init__(self, model: Model, *, eps: float = 1e-10) -> None:
        super().__init__(model)
        self.eps = options.number("eps", eps, 0.0)
        self.network = _NetworkCopy(model, _rescale_replacement(self.eps), "deeplift")
        self._warned = False
        self._has_max_pooling = any(isinstance(m, MAX_POOLING) for m in model.network.modules())

    def contributions(self, images: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        """The contributions ``C`` (N, 3, H, W) and the score differences ``S_c(x) - S_c(x')`` (N,).

        What :meth:`attribute` computes before its reduction; call it in eval mode (``explain`` does)."""
        network = self.network.get()
        pixels = images.detach().requires_grad_(True)
        reference = torch.zeros_like(images[:1])
        with eval_mode(network), torch.enable_grad():
            logits = self.network(torch.cat([reference, pixels]))
            (grads,) = torch.autograd.grad(_scores(logits[1:], targets), pixels)
        scores = logits.detach()
        delta = scores[1:].gather(1, targets[:, None])[:, 0] - scores[0, targets]
        return (images - reference) * grads, delta

    def attributions(self, images: Tensor, targets: Tensor) -> Tensor:
        """The contributions ``C`` (N, 3, H, W); see :meth:`contributions`."""
        return self.contributions(images, targets)[0]

    def attribute(self, images: Tensor, targets: Tensor) -> Tensor:
        contributions, delta = self.contributions(images, targets)
        self._check_summation(contributions, delta)
        return _abs_of_channel_sum(contributions)

    def _check_summation(self, contributions: Tensor, delta: Tensor) -> None:
        """Log a warning (once) when the contributions do not add up to the score's change: then some
        nonlinearity kept its plain gradient (a function call such as ``F.relu``, a module type not in
        :data:`RESCALE_ACTIVATIONS`, a product of activations such as squeeze-and-excitation)."""
        if self._warned or self._has_max_pooling:
            return
        total = contributions.flatten(1).sum(1)
        scale = torch.maximum(delta.abs(), 1e-3 * contributions.flatten(1).abs().sum(1)).clamp_min(1e-12)
        error = float(((total - delta).abs() / scale).max())
        if error > SUMMATION_RTOL:
            self._warned = True
            _log.warning(
                "deeplift: the contributions differ from S_c(x) - S_c(black) by up to %.1f%% on model '%s': "
                "some nonlinearity is applied as a function or is a module this method does not replace, "
                "and keeps its plain gradient there",
                100 * error,
                self.model.name,
            )


# --------------------------------------------------------------------------- captum, called directly


@register_explainer("integrated_gradients")
class IntegratedGradients(Explainer):
    """Integrated gradients from the black image, by captum's ``IntegratedGradients``.

    Sundararajan, Taly & Yan, "Axiomatic Attribution for Deep Networks", ICML 2017,
    https://arxiv.org/abs/1703.01365 (Eq. 1). With ``x'`` the baseline (the black image: zero
    in the [0, 1] space the explainer receives, the paper's choice for images) and ``S_c`` the class
    score (logit):

        IG_i(x) = (x_i - x'_i) * int_0^1 dS_c(x' + a (x - x')) / dx_i da

    approximated with ``n_steps`` points of ``method`` (captum's defaults: 50 Gauss-Legendre points;
    the paper uses a Riemann sum with 20 to 300 steps). Completeness: ``sum_i IG_i = S_c(x) - S_c(x')``
    up to the quadrature's error. Map: ``|sum_c IG_c|`` (the pixel's contribution, its sign dropped;
    the authors' code shows the positive part, captum's visualisation the absolute value by default).

    Cost: ``n_steps`` forward and backward passes per image, run ``internal_batch_size`` rows at a time
    (captum's option; its default, all N * n_steps rows at once, needs about 64 GB for 16 images of
    224 px on EfficientNet-Lite0); images beyond ``internal_batch_size`` go to captum in groups, so
    memory is bounded by ``internal_batch_size`` alone. The default follows the model's device
    (:func:`xaibench.pass_rows.pass_batch_size`: 8 rows at 224 x 224 on a CPU, the fastest there; on a
    GPU, what a share of its free memory holds).

    Args:
        model: The classifier.
        n_steps: Points of the path integral (captum's default, 50).
        method: ``gausslegendre`` (captum's default) or ``riemann_left``/``_right``/``_middle``/``_trapezoid``.
        internal_batch_size: (image, step) rows per forward/backward pass (None: 8 at 224 x 224 on
            a CPU; on a GPU, what a share of its memory holds: :func:`xaibench.pass_rows.pass_batch_size`).

    Peers: captum's ``IntegratedGradients`` is what runs; pytorch-grad-cam and torchcam have no
    integrated gradients.
    """

    full_precision_only = PIXEL_GRADIENTS

    def __init__(
        self,
        model: Model,
        *,
        n_steps: int = 50,
        method: str = "gausslegendre",
        internal_batch_size: int | None = None,
    ) -> None:
        super().__init__(model)
        self.n_steps = options.integer("n_steps", n_steps, 1)
        self.method = options.choice("method", method, IG_METHODS)
        self.internal_batch_size = pass_rows.pass_batch_size("internal_batch_size", internal_batch_size, model, backward=True)

    def attributions(self, images: Tensor, targets: Tensor) -> Tensor:
        """The integrated gradients (N, 3, H, W) that :meth:`attribute` reduces (call in eval mode)."""
        from captum.attr import IntegratedGradients as CaptumIG

        ig = CaptumIG(self.model)
        group = min(images.shape[0], self.internal_batch_size)
        parts = []
        for start in range(0, images.shape[0], group):
            attributions = ig.attribute(
                images[start : start + group],
                baselines=0.0,
                target=targets[start : start + group],
                n_steps=self.n_steps,
                method=self.method,
                internal_batch_size=self.internal_batch_size,
            )
            parts.append(attributions.detach())
            self.report_progress((start + len(attributions)) * self.n_steps, images.shape[0] * self.n_steps)
        return torch.cat(parts)

    def attribute(self, images: Tensor, targets: Tensor) -> Tensor:
        return _abs_of_channel_sum(self.attributions(images, targets))


@register_explainer("inputxgradient")
class InputXGradient(Explainer):
    """Input x gradient, by captum's ``InputXGradient``.

    Shrikumar, Greenside, Shcherbina & Kundaje, "Not Just a Black Box: Learning Important Features
    Through Propagating Activation Differences", arXiv 2016, https://arxiv.org/abs/1605.01713:

        A_i = x_i * dS_c / dx_i

    with ``S_c`` the class score (logit) and ``x`` the [0, 1] image the explainer receives (so the
    product is the first-order contribution of each pixel relative to the black image). Map:
    ``|sum_c A_c|`` (the pixel's contribution, its sign dropped; see the module's docstring). No
    options. Cost: one forward and one backward pass per image, as saliency.

    Peers: captum's ``InputXGradient`` is what runs (in the [0, 1] space; on the normalised input it
    would be ``(x - mean) / std`` times its gradient, another quantity).
    """

    full_precision_only = PIXEL_GRADIENTS

    def attributions(self, images: Tensor, targets: Tensor) -> Tensor:
        """Input x gradient (N, 3, H, W), which :meth:`attribute` reduces (call in eval mode)."""
        from captum.attr import InputXGradient as CaptumIxG

        pixels = images.detach().requires_grad_(True)  # captum warns about inputs that do not require grad
        return CaptumIxG(self.model).attribute(pixels, target=targets).detach()

    def attribute(self, images: Tensor, targets: Tensor) -> Tensor:
        return _abs_of_channel_sum(self.attributions(images, targets))


# ---------------------------------------------------------------------------------- sampled methods


class _Sampled(Explainer):
    """Methods that average over ``n_samples`` random rows per image, drawn per image from its seed."""

    full_precision_only = PIXEL_GRADIENTS

    def __init__(self, model: Model, *, n_samples: int, batch_size: int | None, seed: int) -> None:
        super().__init__(model)
        self.n_samples = options.integer("n_samples", n_samples, 1)
        self.batch_size = pass_rows.pass_batch_size("batch_size", batch_size, model, backward=True)
        self.seed = options.seed("seed", seed)

    def _prepare(self, image: Tensor) -> object:
        """What :meth:`_draw` needs of ``image`` beside it, computed once per image."""
        return None

    def _draw(self, image: Tensor, generator: torch.Generator, prepared: object) -> tuple[Tensor, Tensor | None]:
        """One sample for ``image``: (the row whose gradient is taken, what the method needs beside it)."""
        raise NotImplementedError

    def _gradients(self, images: Tensor, targets: Tensor) -> Iterator[tuple[Tensor, list, Tensor]]:
        """Chunks of at most ``batch_size`` (image, sample) rows, in order: (the image index of each
        row, the rows' extras from :meth:`_draw`, the gradient of each row's target score at the row).

        An image's samples are drawn from its own generator, one sample at a time and in order, so its
        rows are the same whatever batch it comes in and however the rows are chunked."""
        generators = [image_generator(image, self.seed, image.device) for image in images]
        prepared = [self._prepare(image) for image in images]
        owner = torch.arange(images.shape[0], device=images.device).repeat_interleave(self.n_samples)
        for start in range(0, owner.numel(), self.batch_size):
            index = owner[start : start + self.batch_size]
            drawn = [self._draw(images[i], generators[i], prepared[i]) for i in index.tolist()]
            rows = torch.stack([row for row, _ in drawn]).requires_grad_(True)
            with torch.enable_grad():
                (grads,) = torch.autograd.grad(_scores(self.model(rows), targets[index]), rows)
            self.report_progress(start + len(index), owner.numel())
            yield index, [extra for _, extra in drawn], grads


class _NoiseTunnel(_Sampled):
    """SmoothGrad's sampling: the gradient at ``n_samples`` noisy copies of each image."""

    def __init__(
        self,
        model: Model,
        *,
        n_samples: int = 50,
        noise_level: float = 0.15,
        batch_size: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(model, n_samples=n_samples, batch_size=batch_size, seed=seed)
        self.noise_level = options.number("noise_level", noise_level, 0.0)

    def _prepare(self, image: Tensor) -> float:
        """The noise's standard deviation for ``image``: ``noise_level * (max x - min x)``."""
        return self.noise_level * float(image.max() - image.min())

    def _draw(self, image: Tensor, generator: torch.Generator, sigma: float) -> tuple[Tensor, None]:
        noise = torch.randn(image.shape, generator=generator, device=image.device, dtype=image.dtype)
        return image + noise * sigma, None

    def moments(self, images: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        """The mean and the mean square of the gradient over each image's samples (N, 3, H, W)."""
        total = torch.zeros_like(images)
        squares = torch.zeros_like(images)
        for index, _, grads in self._gradients(images, targets):
            total.index_add_(0, index, grads)
            squares.index_add_(0, index, grads * grads)
        return total / self.n_samples, squares / self.n_samples


@register_explainer("smoothgrad")
class SmoothGrad(_NoiseTunnel):
    """SmoothGrad: the score's gradient averaged over noisy copies of the image.

    Smilkov, Thorat, Kim, Viegas & Wattenberg, "SmoothGrad: removing noise by adding noise", ICML 2017
    workshop on visualization for deep learning, https://arxiv.org/abs/1706.03825:

        M(x) = 1/n sum_{s=1}^n dS_c(x + e_s) / dx,    e_s ~ N(0, sigma^2),
        sigma = noise_level * (max x - min x)

    with ``S_c`` the class score (logit) and ``x`` the [0, 1] image (the paper's ``sigma / (x_max -
    x_min)``, the image's own range as in its code). Map: ``sum_c |M_c|``: the paper visualises the
    absolute value of the averaged gradient, and its code (PAIR ``saliency``,
    ``VisualizeImageGrayscale``) sums it over the colour channels; the 99th-percentile capping there is
    display, left to xaibench's one post-processing step. Defaults from the paper: ``n_samples = 50``
    (little changes beyond 50 samples) and ``noise_level = 0.15`` (it finds 10 to 20 % best; 15 % is
    also its code's default). The noise is drawn per image from ``seed`` and the image's bytes
    (:func:`xaibench.seeding.image_generator`), so an image gets the same map in any batch.

    Cost: ``n_samples`` forward and backward passes per image, ``batch_size`` rows at a time.

    Args:
        model: The classifier.
        n_samples: Noisy copies per image.
        noise_level: Noise standard deviation as a fraction of the image's range ``max x - min x``.
        batch_size: (image, sample) rows per forward/backward pass: bounds the memory (None: 8 at
            224 x 224 on a CPU, :func:`xaibench.pass_rows.pass_batch_size`).
        seed: The run's seed.

    Peers: captum's ``NoiseTunnel(Saliency)`` with ``nt_type="smoothgrad"`` computes the same mean when
    given ``abs=False`` (and the same noise: it agrees exactly with this class seeded alike); with its
    ``Saliency`` default ``abs=True`` it averages ``|gradient|``, a different quantity, and it draws its
    noise from the global random state with one ``stdevs`` for the whole batch. pytorch-grad-cam and
    torchcam have no SmoothGrad on pixels.
    """

    def attributions(self, images: Tensor, targets: Tensor) -> Tensor:
        """The averaged gradient ``M`` (N, 3, H, W), which :meth:`attribute` reduces."""
        return self.moments(images, targets)[0]

    def attribute(self, images: Tensor, targets: Tensor) -> Tensor:
        return _sum_of_abs(self.attributions(images, targets))


@register_explainer("vargrad")
class VarGrad(_NoiseTunnel):
    """VarGrad: the variance of the score's gradient over noisy copies of the image.

    Adebayo, Gilmer, Goodfellow & Kim, "Local Explanation Methods for Deep Neural Networks Lack
    Sensitivity to Parameter Values", ICLR 2018 workshop, https://arxiv.org/abs/1810.03307:

        V(x) = 1/n sum_s g_s^2 - (1/n sum_s g_s)^2,    g_s = dS_c(x + e_s) / dx,  e_s ~ N(0, sigma^2)

    (the population variance, as captum's ``nt_type="vargrad"``), with SmoothGrad's sampling and
    defaults (``n_samples = 50``, ``sigma = 0.15 (max x - min x)``), whose variance counterpart it is.
    Map: ``sum_c V_c`` (``sum_c |V_c|`` as :class:`SmoothGrad`; the variance is non-negative). Noise drawn
    per image from ``seed``. Cost: ``n_samples`` forward and backward passes per image, ``batch_size``
    rows at a time.

    Args:
        model: The classifier.
        n_samples: Noisy copies per image.
        noise_level: Noise standard deviation as a fraction of the image's range.
        batch_size: (image, sample) rows per forward/backward pass (None: 8 at 224 x 224 on a CPU, :func:`xaibench.pass_rows.pass_batch_size`).
        seed: The run's seed.

    Peers: captum's ``NoiseTunnel(Saliency)`` with ``nt_type="vargrad"`` and ``abs=False`` (the same
    numbers from the same noise); with ``Saliency``'s default ``abs=True`` it is the variance of
    ``|gradient|`` instead.
    """

    def attributions(self, images: Tensor, targets: Tensor) -> Tensor:
        """The gradient's variance ``V`` (N, 3, H, W), which :meth:`attribute` reduces."""
        mean, squares = self.moments(images, targets)
        return squares - mean * mean

    def attribute(self, images: Tensor, targets: Tensor) -> Tensor:
        return _sum_of_abs(self.attributions(images, targets))


@register_explainer("gradientshap")
class GradientShap(_Sampled):
    """GradientSHAP: input-minus-baseline times the gradient at random points between them, averaged.

    Lundberg & Lee, "A Unified Approach to Interpreting Model Predictions", NeurIPS 2017,
    https://arxiv.org/abs/1705.07874 (SHAP values; the gradient estimator is the SHAP library's
    ``GradientExplainer``, "expected gradients", and captum's ``GradientShap``). For each of
    ``n_samples`` samples, a baseline ``b``, a point ``a ~ U(0, 1)`` on the path and input noise
    ``e ~ N(0, stdev^2)``:

        phi(x) = 1/n sum_s (x + e_s - b_s) * dS_c(b_s + a_s (x + e_s - b_s)) / dx

    (captum's order of operations: noise added to the input, then the point ``a x~ + (1 - a) b``).
    Baseline distribution: images of independent uniform pixels, ``b ~ U(0, 1)^(3 x H x W)``, a fresh
    one per sample: every image the explainer can receive is equally likely, no data set needed (the
    "uniform" baseline of Sturmfels, Lundberg & Lee, Distill 2020, "Visualizing the Impact of Feature
    Attribution Baselines"). Map: ``|sum_c phi_c|`` (see the module's docstring). Defaults from captum's
    ``GradientShap.attribute``: ``n_samples = 5``, ``stdev = 0``. Every draw (baseline, point, noise,
    in that order per sample) comes from the image's generator (``seed`` and its bytes).

    Cost: ``n_samples`` forward and backward passes per image, ``batch_size`` rows at a time.

    Args:
        model: The classifier.
        n_samples: Samples per image.
        stdev: Standard deviation of the noise added to the input, in [0, 1] pixel units.
        batch_size: (image, sample) rows per forward/backward pass (None: 8 at 224 x 224 on a CPU, :func:`xaibench.pass_rows.pass_batch_size`).
        seed: The run's seed.

    Peers: captum's ``GradientShap`` computes the same average from a given tensor of baselines,
    drawing baselines and points from numpy's global random state (it agrees exactly with this class
    given the same draws).
    """

    def __init__(
        self,
        model: Model,
        *,
        n_samples: int = 5,
        stdev: float = 0.0,
        batch_size: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(model, n_samples=n_samples, batch_size=batch_size, seed=seed)
        self.stdev = options.number("stdev", stdev, 0.0)

    def _draw(self, image: Tensor, generator: torch.Generator, prepared: object = None) -> tuple[Tensor, Tensor]:
        options = {"generator": generator, "device": image.device, "dtype": image.dtype}
        baseline = torch.rand(image.shape, **options)
        alpha = torch.rand((), **options)
        noisy = image + torch.randn(image.shape, **options) * self.stdev if self.stdev > 0 else image
        return alpha * noisy + (1.0 - alpha) * baseline, noisy - baseline

    def attributions(self, images: Tensor, targets: Tensor) -> Tensor:
        """The averaged attributions ``phi`` (N, 3, H, W) that :meth:`attribute` reduces."""
        total = torch.zeros_like(images)
        for index, differences, grads in self._gradients(images, targets):
            total.index_add_(0, index, torch.stack(differences) * grads)
        return total / self.n_samples

    def attribute(self, images: Tensor, targets: Tensor) -> Tensor:
        return _abs_of_channel_sum(self.attributions(images, targets))
