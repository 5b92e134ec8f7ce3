"""The gradient-based CAM family: maps built from the target layer's activations and the gradients of a
class score (Grad-CAM++, Smooth Grad-CAM++, XGrad-CAM, LayerCAM, HiResCAM, element-wise Grad-CAM,
Eigen-CAM, Eigen-Grad-CAM, FullGrad, Finer-CAM, ShapleyCAM).

Notation in every docstring: ``x`` the image, ``y^c`` the score (logit, before softmax) of class ``c``,
``A`` (K, h, w) the target layer's output, ``A_k(i, j)`` channel ``k`` at position ``(i, j)``,
``g_k(i, j) = dy^c / dA_k(i, j)`` its gradient and ``Z = h * w``. Every method returns its raw
(h, w) map; :class:`xaibench.Explainer` upsamples it and min-max scales it, so a method's positive
per-image factors (``1 / Z``, ``exp(y^c)``) change nothing and are left out.

Most methods need one forward pass and the backward pass from the scores to the target layer only
(:func:`_activations_and_gradients`): the layers before the target layer record no graph, and one
backward pass serves the whole batch, since in eval mode every image's score depends on that image
alone. Where torchcam (``torchcam.methods``) or pytorch-grad-cam (``pytorch_grad_cam``) define a
method differently, the class docstring says which definition is followed (the paper's) and what
each library computes; ``tests/test_cam_family.py`` checks every method against them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xaibench import Explainer, options, pass_rows, register_explainer
from xaibench.errors import LayerError, XaibenchError
from xaibench.forward_pass import ForwardPass
from xaibench.hooks import capture
from xaibench.models import Model
from xaibench.seeding import image_generator
from xaibench.precision import PIXEL_GRADIENTS

#: A score to explain: ``(logits (N, n_classes), targets (N,)) -> (N,)`` scores, one per image.
Score = Callable[[Tensor, Tensor], Tensor]


def _logit(logits: Tensor, targets: Tensor) -> Tensor:
    """The target's logit ``y^c``."""
    return logits.gather(1, targets[:, None])[:, 0]


# ------------------------------------------------------------------------------------------ helpers


def _activations_and_gradients(
    model: Model, images: Tensor, targets: Tensor, score: Score = _logit, *, create_graph: bool = False
) -> tuple[Tensor, Tensor, Tensor]:
    """The target layer's output ``A``, the gradient ``dS / dA`` of each image's score, and the logits.

    One forward pass in which only the layers after the target layer record a graph, and one backward
    pass from the scores to the target layer. ``A`` is the graph's leaf (it requires grad); the logits
    still carry their graph; with ``create_graph`` the gradient has a graph too (for second derivatives).
    """
    with torch.no_grad(), capture(model.target_layer, model.target_layer_name, graph=True,
                                          reshape=model.feature_grid) as feats:
        logits = model(images)
    with torch.enable_grad():  # the caller holds no_grad; the graph after the layer exists
        scores = score(logits, targets)
        (grads,) = torch.autograd.grad(scores.sum(), feats.output, create_graph=create_graph)
    return feats.output, grads, logits


def _activations(model: Model, images: Tensor) -> Tensor:
    """The target layer's output for ``images``, one forward pass without gradients."""
    with torch.no_grad(), capture(model.target_layer, model.target_layer_name, reshape=model.feature_grid) as feats:
        model(images)
    return feats.output


def weighted_sum(weights: Tensor, acts: Tensor) -> Tensor:
    """``ReLU(sum_k w_k A_k)`` for channel weights (N, K) and activations (N, K, h, w)."""
    return F.relu(torch.einsum("nk,nkhw->nhw", weights.to(acts.dtype), acts))


def _first_component(features: Tensor) -> Tensor:
    """Each image's (h * w, K) matrix of ``features`` (N, K, h, w), centred over the positions,
    projected on its first principal axis: (N, h, w).

    The projection is ``X v_1 = sigma_1 u_1`` for the centred matrix ``X = U S V^T``; it is computed from
    the eigenvector of the smaller of ``X X^T`` (h w x h w) and ``X^T X`` (K x K) with the largest
    eigenvalue, in float64, for the whole batch at once. An eigenvector's sign is arbitrary; the one
    returned makes the projection correlate positively with the centred channel sum ``X 1``
    (i.e. ``v_1 . 1 >= 0``, since ``(X v_1) . (X 1) = sigma_1^2 v_1 . 1``): the map points where the
    features are, in sum, stronger.
    """
    n, k, h, w = features.shape
    x = features.detach().flatten(2).transpose(1, 2).double()  # (N, P, K)
    x = x - x.mean(1, keepdim=True)
    if h * w <= k:
        values, vectors = torch.linalg.eigh(x @ x.transpose(1, 2))  # ascending eigenvalues
        projection = vectors[..., -1] * values[..., -1:].clamp_min(0).sqrt()
    else:
        _, vectors = torch.linalg.eigh(x.transpose(1, 2) @ x)
        projection = (x @ vectors[..., -1:])[..., 0]
    alignment = (projection * x.sum(2)).sum(1, keepdim=True)
    projection = torch.where(alignment < 0, -projection, projection)
    return projection.reshape(n, h, w).to(features.dtype)


# ---------------------------------------------------------------------- one gradient at the target layer


class _TargetLayerGradientCAM(Explainer):
    """A map from the target layer's activations ``A`` and gradients ``g`` of the target's logit.

    Subclasses implement :meth:`_combine`. Cost: one forward pass (graph recorded after the target
    layer only) and one backward pass from the scores to the target layer, for the whole batch.
    """

    def attribute(self, images: Tensor, targets: Tensor) -> Tensor:
        acts, grads, _ = _activations_and_gradients(self.model, images, targets)
        return self._combine(acts.detach(), grads)

    def _combine(self, acts: Tensor, grads: Tensor) -> Tensor:
        raise NotImplementedError


def _gradcampp_weights(acts: Tensor, d1: Tensor, d2: Tensor, d3: Tensor) -> Tensor:
    """Grad-CAM++'s channel weights (N, K) from the activations and the first three derivatives.

    ``alpha = d2 / (2 d2 + sum_ab A(a, b) d3)`` and ``w = sum_ij alpha relu(d1)``; ``alpha`` is only
    needed where ``d1 > 0`` (elsewhere ``relu(d1) = 0``), and a zero denominator gives ``alpha = 0``.
    """
    denominator = 2 * d2 + acts.sum((2, 3), keepdim=True) * d3
    usable = (d1 > 0) & (denominator != 0)
    alpha = torch.where(usable, d2 / torch.where(usable, denominator, torch.ones_like(denominator)), 0.0)
    return (alpha * F.relu(d1)).sum((2, 3))


@register_explainer("gradcampp")
class GradCAMPlusPlus(_TargetLayerGradientCAM):
    r"""Grad-CAM++: channels weighted by their positive gradients, each position weighted by a closed-form alpha.

    Chattopadhay, Sarkar, Howlader and Balasubramanian, WACV 2018, "Grad-CAM++: Generalized
    Gradient-Based Visual Explanations for Deep Convolutional Networks", https://arxiv.org/abs/1710.11063.

    The paper explains ``Y^c = exp(y^c)`` and, for a network that is piecewise linear after the
    target layer, writes its higher derivatives with the first derivative ``g = dy^c / dA`` of the
    logit: ``dY/dA = Y g``, ``d^2Y/dA^2 = Y g^2``, ``d^3Y/dA^3 = Y g^3``. Its Eq. 19 then gives

        alpha_k^c(i, j) = g_k(i, j)^2 / (2 g_k(i, j)^2 + sum_ab A_k(a, b) g_k(i, j)^3)
        w_k^c = sum_ij alpha_k^c(i, j) ReLU(g_k(i, j))
        L^c = ReLU(sum_k w_k^c A_k)

    (``Y`` cancels in alpha; the factor ``exp(y^c)`` it leaves in ``w_k^c`` is one positive number
    per image, which the min-max scaling removes). So every derivative here is of the logit
    ``y^c``, as in torchcam's ``GradCAMpp`` and pytorch-grad-cam's ``GradCAMPlusPlus``. Where a
    denominator is zero, alpha is 0.

    pytorch-grad-cam adds 1e-6 to the denominator, which is not in the paper; it changes the weights
    by a few per cent where ``g^2`` is small (about 1e-6 on efficientnet_lite0), and its maps still
    correlate at >= 0.999 with this class's. torchcam's ``GradCAMpp`` means to compute the same (with
    1e-8), but its in-place division ``alpha[idx][mask].div_(...)`` acts on the copy that boolean-mask
    indexing makes, so its alpha stays ``g^2`` and its weights are ``sum_ij g^2 ReLU(g)`` (the tests
    show it). torchcam's own formula, as its ``SmoothGradCAMpp`` applies it (without noise), sums
    over the positions *after* multiplying, ``2 g(i, j)^2 + sum_ab A(a, b) g(a, b)^3``, where Eq. 19
    has ``2 g(i, j)^2 + g(i, j)^3 sum_ab A(a, b)``: the two are equal where the gradient is the same at
    every position (a global-average-pooling and linear head after the target layer, as
    efficientnet_lite0's ``head_act``), and their maps correlate at >= 0.99 on the tests' other
    networks.

    No options. Cost: one forward pass and the backward pass from the scores to the target layer.
    """

    def _combine(self, acts: Tensor, grads: Tensor) -> Tensor:
        g2 = grads * grads
        return weighted_sum(_gradcampp_weights(acts, grads, g2, g2 * grads), acts)


@register_explainer("smoothgradcampp")
class SmoothGradCAMPlusPlus(Explainer):
    r"""Smooth Grad-CAM++: Grad-CAM++ with its three derivatives averaged over noisy copies of the image.

    Omeiza, Speakman, Cintas and Weldemariam, 2019, "Smooth Grad-CAM++: An Enhanced Inference Level
    Visualization Technique for Deep Convolutional Neural Network Models",
    https://arxiv.org/abs/1908.01224.

    With ``x_m = x + eps_m``, ``eps_m ~ N(0, std^2)`` (m = 1..n) and ``g^(m)`` the gradient of the
    logit ``y^c(x_m)`` at the target layer, ``D^p = (1/n) sum_m (g^(m))^p`` for p = 1, 2, 3, and with
    the activations ``A`` of the clean image:

        alpha_k^c(i, j) = D^2_k(i, j) / (2 D^2_k(i, j) + sum_ab A_k(a, b) D^3_k(i, j))
        w_k^c = sum_ij alpha_k^c(i, j) ReLU(D^1_k(i, j))
        L^c = ReLU(sum_k w_k^c A_k)

    i.e. Grad-CAM++ (:class:`GradCAMPlusPlus`, derivatives of the logit) with every derivative
    replaced by its mean over the noisy copies. The paper prints ``D^1`` in alpha's numerator;
    ``D^2`` (Grad-CAM++'s Eq. 19, which the method averages) is used here, as torchcam does. With
    ``std = 0`` the method is Grad-CAM++ exactly.

    torchcam's ``SmoothGradCAMpp`` averages ``D^2`` and ``D^3`` the same way but then weights with
    ``ReLU`` of the *last* noisy copy's gradient and sums the *last* noisy copy's activations, since
    its forward hook keeps overwriting them, and its alpha's denominator is
    ``2 D^2(i, j) + sum_ab A(a, b) D^3(a, b)`` (see :class:`GradCAMPlusPlus`); pytorch-grad-cam has no
    Smooth Grad-CAM++. The tests show that, with the same noise, torchcam equals the formula above
    with those three substitutions.

    Options (defaults from torchcam's ``SmoothGradCAMpp``; the paper leaves them to the user):
        num_samples: n, noisy copies per image (4).
        std: the noise's standard deviation, in units of the network's input, i.e. after the model's
            normalisation (0.3): torchcam adds it to whatever tensor the network receives.
        seed: seeds each image's noise with :func:`xaibench.seeding.image_generator`, so an image
            gets the same noise whatever batch it comes in (0).
        batch_size: noisy copies per forward pass (None: :func:`xaibench.pass_rows.pass_batch_size`,
            4 at 224 x 224); bounds memory. Only the layers after the
            target layer record a graph, so a pass holds little more than inference does.

    Cost: one forward pass without gradients (the clean activations), then ``num_samples`` forward
    passes and backward passes from the scores to the target layer per image, in batches.
    """

    def __init__(
        self,
        model: Model,
        *,
        num_samples: int = 4,
        std: float = 0.3,
        seed: int = 0,
        batch_size: int | None = None,
    ) -> None:
        super().__init__(model)
        self.num_samples = options.integer("num_samples", num_samples, 1)
        self.std = options.number("std", std, 0.0)
        self.seed = options.seed("seed", seed)
        self.batch_size = pass_rows.pass_batch_size("batch_size", batch_size, model)

    def attribute(self, images: Tensor, targets: Tensor) -> Tensor:
        model = self.model
        acts = _activations(model, images)
        inputs = model.normalize(images)
        sums = [torch.zeros_like(acts) for _ in range(3)]  # sum_m g, g^2, g^3 per image
        done, passes = 0, images.shape[0] * self.num_samples
        for index, noisy in _noisy_batches(images, inputs, self.num_samples, self.std, self.seed, self.batch_size):
            with torch.no_grad(), capture(model.target_layer, model.target_layer_name, graph=True,
                                          reshape=model.feature_grid) as feats:
                logits = model.network(model.layout(noisy))
            with torch.enable_grad():
                (grads,) = torch.autograd.grad(_logit(logits, targets[index]).sum(), feats.output)
            squared = grads * grads
            for total, power in zip(sums, (grads, squared, squared * grads)):
                total.index_add_(0, index, power)
            done += len(index)
            self.report_progress(done, passes)
        d1, d2, d3 = (total / self.num_samples for total in sums)
        return weighted_sum(_gradcampp_weights(acts, d1, d2, d3), acts)


def _noise(images: Tensor, num_samples: int, std: float, seed: int) -> Iterator[tuple[int, Tensor]]:
    """``(image index, std * N(0, 1) noise of one image's shape)``: each image's ``num_samples`` draws
    in order, from its own generator (:func:`xaibench.seeding.image_generator`)."""
    for i, image in enumerate(images):
        generator = image_generator(image, seed, image.device)
        for _ in range(num_samples):
            noise = torch.randn(image.shape, generator=generator, device=image.device, dtype=image.dtype)
            yield i, noise * std


def _noisy_batches(
    images: Tensor, inputs: Tensor, num_samples: int, std: float, seed: int, batch_size: int
) -> Iterator[tuple[Tensor, Tensor]]:
    """Batches of at most ``batch_size`` noisy copies ``x_m = x + eps_m`` of the network's ``inputs``
    (the normalised ``images``, which seed the noise): ``(image indices, copies)``."""
    index: list[int] = []
    copies: list[Tensor] = []
    for i, noise in _noise(images, num_samples, std, seed):
        index.append(i)
        copies.append(inputs[i] + noise)
        if len(index) == batch_size:
            yield torch.tensor(index, device=inputs.device), torch.stack(copies)
            index, copies = [], []
    if index:
        yield torch.tensor(index, device=inputs.device), torch.stack(copies)


@register_explainer("xgradcam")
class XGradCAM(_TargetLayerGradientCAM):
    r"""XGrad-CAM: gradients weighted by the normalised activations (Axiom-based Grad-CAM).

    Fu, Hu, Dong, Guo, Gao and Li, BMVC 2020, "Axiom-based Grad-CAM: Towards Accurate Visualization
    and Explanation of CNNs", https://arxiv.org/abs/2008.02312.

        w_k^c = sum_ij (A_k(i, j) / sum_ab A_k(a, b)) g_k(i, j)
        L^c = ReLU(sum_k w_k^c A_k)

    (the weights the paper derives from its sensitivity and conservation axioms); a channel whose
    activations sum to zero gets weight 0. The final ReLU is Grad-CAM's, applied by both peers.
    torchcam's ``XGradCAM`` and pytorch-grad-cam's ``XGradCAM`` compute the same, with 1e-8 and
    1e-7 added to the denominator. On a network ending in global average pooling and one linear
    layer, ``g`` is constant over positions, so ``w_k^c = W[c, k] / Z`` and XGrad-CAM is Grad-CAM.
    No options. Cost: one forward pass and the backward pass to the target layer.
    """

    def _combine(self, acts: Tensor, grads: Tensor) -> Tensor:
        total = acts.sum((2, 3))
        weights = (grads * acts).sum((2, 3))
        weights = torch.where(total != 0, weights / torch.where(total != 0, total, torch.ones_like(total)), 0.0)
        return weighted_sum(weights, acts)


@register_explainer("layercam")
class LayerCAM(_TargetLayerGradientCAM):
    r"""LayerCAM: each activation weighted by its own positive gradient.

    Jiang, Zhang, Hou, Cheng and Wei, IEEE Transactions on Image Processing 30, 2021, "LayerCAM:
    Exploring Hierarchical Class Activation Maps for Localization",
    https://doi.org/10.1109/TIP.2021.3089943.

        L^c(i, j) = ReLU(sum_k ReLU(g_k(i, j)) A_k(i, j))

    (one layer). torchcam's ``LayerCAM`` and pytorch-grad-cam's ``LayerCAM``
    compute the same; the paper's tanh scaling (its Eq. 9) only combines several layers, which
    xaibench does not do. No options. Cost: one forward pass and the backward pass to the target layer.
    """

    def _combine(self, acts: Tensor, grads: Tensor) -> Tensor:
        return F.relu((F.relu(grads) * acts).sum(1))


@register_explainer("hirescam")
class HiResCAM(_TargetLayerGradientCAM):
    r"""HiResCAM: the element-wise product of gradients and activations, summed over channels.

    Draelos and Carin, 2020, "Use HiResCAM instead of Grad-CAM for faithful explanations of
    convolutional neural networks", https://arxiv.org/abs/2011.08891.

        L^c(i, j) = ReLU(sum_k g_k(i, j) A_k(i, j))

    Unlike Grad-CAM it does not average the gradients over positions, so it highlights only the
    locations the score used. The final ReLU keeps the positive evidence, as Grad-CAM's Eq. 2 and
    pytorch-grad-cam's ``HiResCAM`` (which applies it to every CAM); torchcam has no HiResCAM. On a
    network ending in global average pooling and one linear layer it is ReLU(CAM) / Z, i.e. Grad-CAM
    (the paper proves HiResCAM equals CAM there). No options. Cost: one forward pass and the backward
    pass to the target layer.
    """

    def _combine(self, acts: Tensor, grads: Tensor) -> Tensor:
        return F.relu((grads * acts).sum(1))


@register_explainer("gradcam_elementwise")
class GradCAMElementwise(_TargetLayerGradientCAM):
    r"""Element-wise Grad-CAM: the ReLU of each gradient-activation product, summed over channels.

    pytorch-grad-cam's ``GradCAMElementWise`` (Gildenblat and contributors, "PyTorch library for CAM
    methods", 2021, https://github.com/jacobgil/pytorch-grad-cam), a variant of HiResCAM
    (https://arxiv.org/abs/2011.08891) without a paper of its own:

        L^c(i, j) = sum_k ReLU(g_k(i, j) A_k(i, j))

    Only pytorch-grad-cam has it; this is its definition. No options. Cost: one forward pass and the
    backward pass to the target layer.
    """

    def _combine(self, acts: Tensor, grads: Tensor) -> Tensor:
        return F.relu(grads * acts).sum(1)


@register_explainer("eigencam")
class EigenCAM(Explainer):
    r"""Eigen-CAM: the activations projected on their first principal component (class-agnostic).

    Muhammad and Yeasin, IJCNN 2020, "Eigen-CAM: Class Activation Map using Principal Components",
    https://arxiv.org/abs/2008.00299.

    With ``X`` the (h w, K) matrix of the target layer's activations (one row per position), centred
    over the positions (as pytorch-grad-cam's ``get_2d_projection``, which notes that without the
    centring the map comes out negative), and ``X = U S V^T``:

        L(i, j) = ReLU((X v_1)(i, j))

    the projection on the first right singular vector ``v_1``; the ReLU is the one pytorch-grad-cam
    applies to every CAM. The map does not depend on the target class.

    Sign convention: a singular vector's sign is arbitrary. pytorch-grad-cam takes whatever LAPACK's
    SVD returns (``np.linalg.svd``), which depends on the LAPACK build, and then keeps the positive
    part, so on some images it keeps the background. Here ``v_1`` is oriented so that the projection
    correlates positively with the centred channel sum ``X 1`` (``v_1 . 1 >= 0``): the map points
    where the features are, in sum, stronger. On 77 of the first 80 shared ImageNet photos with
    efficientnet_lite0, LAPACK's sign (numpy's OpenBLAS build) is this one. The tests check that the
    projections agree with pytorch-grad-cam's up to the sign, and the maps wherever the signs agree.

    The projection comes from the top eigenvector of the (h w x h w) Gram matrix, batched (about
    6 MFLOP per image at 7 x 7 x 1280) instead of a full SVD with ``full_matrices=True`` (a 1280 x 1280
    ``V``) per image. No options. Cost: one forward pass without gradients; none in a run, whose
    classification pass of the batch gives the activations (:attr:`uses_forward_pass`).
    """

    uses_forward_pass = True

    def attribute(self, images: Tensor, targets: Tensor) -> Tensor:
        return F.relu(_first_component(_activations(self.model, images)))

    def attribute_from_pass(self, forward: ForwardPass, targets: Tensor) -> Tensor:
        return F.relu(_first_component(forward.features))


@register_explainer("eigengradcam")
class EigenGradCAM(_TargetLayerGradientCAM):
    r"""Eigen-Grad-CAM: the first principal component of gradient x activations (class-specific Eigen-CAM).

    pytorch-grad-cam's ``EigenGradCAM`` (https://github.com/jacobgil/pytorch-grad-cam), Eigen-CAM
    (Muhammad and Yeasin, IJCNN 2020, https://arxiv.org/abs/2008.00299) applied to the element-wise
    product ``g * A`` instead of ``A``:

        L^c(i, j) = ReLU((X v_1)(i, j)),   X = (g * A) as an (h w, K) matrix, centred over positions

    with the sign convention of :class:`EigenCAM`: the projection correlates positively with the
    centred channel sum of ``g * A``, i.e. with the (centred) HiResCAM map, so the component points
    towards the class evidence. pytorch-grad-cam takes LAPACK's sign (the same on 80 of the first 80
    shared photos). No options. Cost: one forward pass and the backward pass to the target layer.
    """

    def _combine(self, acts: Tensor, grads: Tensor) -> Tensor:
        return F.relu(_first_component(grads * acts))


# ------------------------------------------------------------------------------------------ FullGrad


def _bias_layers(network: nn.Module) -> list[tuple[str, nn.Module]]:
    """Every ``nn.Conv2d`` with a bias and every ``nn.BatchNorm2d`` of ``network``, in order."""
    found = []
    for name, module in network.named_modules():
        if isinstance(module, nn.BatchNorm2d):
            if module.running_mean is None or module.running_var is None:
                raise LayerError(
                    f"FullGrad needs the running statistics of BatchNorm2d layer '{name}' (its bias in eval "
                    "mode); it has track_running_stats=False, so its output depends on the batch"
                )
            found.append((name, module))
        elif isinstance(module, nn.Conv2d) and module.bias is not None:
            found.append((name, module))
    return found


def _effective_bias(module: nn.Module) -> Tensor:
    """A layer's bias per output channel; BatchNorm's in eval mode is ``beta - mu gamma / sqrt(var + eps)``."""
    if isinstance(module, nn.BatchNorm2d):
        scale = torch.rsqrt(module.running_var + module.eps)
        if module.weight is not None:
            scale = scale * module.weight
        bias = -module.running_mean * scale
        return bias + module.bias if module.bias is not None else bias
    return module.bias


@contextmanager
def _record_outputs(
    layers: list[tuple[str, nn.Module]], copied: set[nn.Module]
) -> Iterator[list[tuple[nn.Module, Tensor, int]]]:
    """Keep ``(layer, output, version)`` for every call of ``layers`` during the block (a layer called
    twice contributes twice). The layers in ``copied`` pass a copy of their output on, so that an
    in-place operation after them cannot change the tensor whose gradient is taken; for the others the
    caller compares ``output._version`` with ``version`` to detect one. Hooks are removed in ``finally``."""
    outputs: list[tuple[nn.Module, Tensor, int]] = []

    def hook(module: nn.Module, inputs: tuple, output: Tensor) -> Tensor | None:
        outputs.append((module, output, output._version))
        return output.clone() if module in copied else None

    handles = []
    try:
        for _, module in layers:
            handles.append(module.register_forward_hook(hook))
        yield outputs
    finally:
        for handle in handles:
            handle.remove()


def _rescaled_sum(maps: Tensor, keep: Tensor | None = None) -> Tensor:
    """``sum_c rescale(|maps_c|)`` for (N, C, h, w): each channel's absolute value min-max scaled to
    [0, 1] over its positions (a constant channel gives 0), summed over the channels (those where
    ``keep`` (C,) is True) -> (N, h, w). One pass for ``|.|``, one for the extremes, one product:
    ``sum_c (|m_c| - low_c) / span_c = sum_c |m_c| / span_c - sum_c low_c / span_c``, in the layout
    the tensor has (channels-last or not) without copying it."""
    n, c, h, w = maps.shape
    magnitude = maps.abs()
    channels_last = not magnitude.is_contiguous() and magnitude.is_contiguous(memory_format=torch.channels_last)
    flat = magnitude.permute(0, 2, 3, 1).reshape(n, h * w, c) if channels_last else magnitude.reshape(n, c, h * w)
    low, high = torch.aminmax(flat, dim=1 if channels_last else 2)  # (N, C)
    span = high - low
    inverse = torch.where(span > 0, 1 / torch.where(span > 0, span, torch.ones_like(span)), 0.0)
    if keep is not None:
        inverse = inverse * keep
    if channels_last:
        total = torch.bmm(flat, inverse[:, :, None])[..., 0]
    else:
        total = torch.bmm(inverse[:, None, :], flat)[:, 0]
    return (total - (low * inverse).sum(1, keepdim=True)).reshape(n, h, w)


@register_explainer("fullgrad")
class FullGrad(Explainer):
    r"""FullGrad: input-gradient x input plus the bias-gradients x biases of every convolutional layer.

    Srinivas and Fleuret, NeurIPS 2019, "Full-Gradient Representation for Neural Network
    Visualization", https://arxiv.org/abs/1905.00780.

    The logit decomposes exactly as ``y^c = grad_x y^c . x + sum_l sum_c f^b_l,c(x)`` with the
    bias-gradients ``f^b_l,c = (dy^c / dz_l,c) b_l,c`` of every layer output ``z_l = W_l * input + b_l``
    (completeness). For convolutional networks the paper's saliency map is

        S^c = psi(grad_x y^c * x) + sum_l sum_c psi(f^b_l,c(x)),
        psi(M) = bilinear_upsample(rescale(|M|)),   rescale(m) = (m - min m) / (max m - min m)

    with ``psi`` applied to each channel's 2-D map (the input's RGB channels too) and the results
    summed. ``x`` is the network's input (after the model's normalisation). The layers are every
    ``nn.Conv2d`` with a bias and every ``nn.BatchNorm2d``, whose bias in eval mode is
    ``beta - mu gamma / sqrt(var + eps)`` (as the authors' code and pytorch-grad-cam); the final
    linear layer's bias-gradient is not a map, and the paper's sum leaves it out.

    Work skipped because it provably contributes nothing:

    - a channel with bias 0 has ``f^b = 0`` everywhere, so ``psi`` gives 0: it is not computed;
    - ``rescale(|b g|) = rescale(|g|)`` for ``b != 0``, since min-max scaling is invariant to a positive
      factor: the bias never multiplies the gradient;
    - bilinear upsampling is linear, so the channels of all layers at one resolution are summed before
      one upsampling per resolution (five on efficientnet_lite0) instead of one per channel.

    pytorch-grad-cam's ``FullGrad`` computes the same sum (per-channel rescaling with 1e-7 added to
    the span, OpenCV's bilinear resize, which samples like ``align_corners=False`` as here); it only
    takes layers whose type is exactly ``Conv2d`` or ``BatchNorm2d`` (not subclasses) and skips
    BatchNorm without affine parameters. The authors' code rescales each layer's tensor as a whole
    (over its channels and positions together) before summing its channels, and upsamples with
    ``align_corners=True``; this class follows the paper's equation and pytorch-grad-cam. torchcam has
    no FullGrad. No options. Cost: one forward pass and one full backward pass to the input.
    """

    full_precision_only = PIXEL_GRADIENTS

    def __init__(self, model: Model) -> None:
        super().__init__(model)
        self._layers = _bias_layers(model.network)
        #: Layers whose output an in-place operation later changed (found on a call, then copied).
        self._copied: set[nn.Module] = set()

    def attribute(self, images: Tensor, targets: Tensor) -> Tensor:
        pixels = self.model.normalize(images).detach().requires_grad_(True)
        with torch.enable_grad():
            while True:
                with _record_outputs(self._layers, self._copied) as outputs:
                    logits = self.model.network(pixels)
                changed = {module for module, out, version in outputs if out._version != version}
                if not changed:
                    break
                self._copied |= changed  # an in-place op rewrote these outputs: copy them and run again
            used = [(module, out) for module, out, _ in outputs if out.requires_grad]
            score = _logit(logits, targets).sum()
            grads = torch.autograd.grad(score, [pixels] + [out for _, out in used], allow_unused=True)
        saliency = _rescaled_sum(grads[0] * pixels.detach())
        by_size: dict[tuple[int, int], Tensor] = {}
        for (module, _), grad in zip(used, grads[1:]):
            keep = _effective_bias(module).detach() != 0
            if grad is None or not keep.any():
                continue
            part = _rescaled_sum(grad, None if keep.all() else keep.to(grad.dtype))
            size = tuple(part.shape[-2:])
            by_size[size] = part if size not in by_size else by_size[size] + part
        for size, part in by_size.items():
            saliency = saliency + F.interpolate(
                part[:, None], size=tuple(images.shape[-2:]), mode="bilinear", align_corners=False
            )[:, 0]
        return saliency


# ------------------------------------------------------------------------------ other scores to explain


@register_explainer("finercam")
class FinerCAM(Explainer):
    r"""Finer-CAM: Grad-CAM of the target's score minus alpha times the scores of the most similar classes.

    Zhang, Gu, Chowdhury, Mai, Carlyn, Berger-Wolf, Su and Chao, CVPR 2025, "Finer-CAM: Spotting the
    Difference Reveals Finer Details for Visual Explanation", https://arxiv.org/abs/2501.11309.

    The references ``d_1 .. d_m`` are the ``m`` classes whose logits are closest to the target's,
    ``|y^d - y^c|`` smallest (the target excluded). The score explained is their contrast with the
    target, weighted by the softmax probabilities ``p``:

        S^c = sum_i p_{d_i} (y^c - alpha y^{d_i}) / sum_i p_{d_i}
        L^c = ReLU(sum_k w_k A_k),   w_k = (1/Z) sum_ij dS^c / dA_k(i, j)   (Grad-CAM of S^c)

    as pytorch-grad-cam's ``FinerCAM`` (its ``FinerWeightedTarget``, base method ``GradCAM``) and the
    authors' code compute it, the gradient flowing through the weights ``p`` too. The full softmax's
    normaliser cancels in ``p_{d_i} / sum_i p_{d_i}``, which is computed as a softmax over the
    references' logits alone (the same function, without underflow; pytorch-grad-cam adds 1e-9 to the
    denominator instead). With one reference, ``S^c = y^c - alpha y^d``.

    torchcam's ``FinerCAM`` explains ``y^c - gamma mean_i y^{d_i}`` (unweighted mean, gamma = 0.6
    by default): the same with one reference and ``gamma = alpha``, which the tests check.

    Options (pytorch-grad-cam's defaults): alpha, the comparison strength (1.0); num_comparisons, the
    number m of reference classes (3, pytorch-grad-cam's ``comparison_categories=[1, 2, 3]``), capped by
    the number of other classes. Cost: one forward pass and the backward pass to the target layer.
    """

    def __init__(self, model: Model, *, alpha: float = 1.0, num_comparisons: int = 3) -> None:
        super().__init__(model)
        self.alpha = options.number("alpha", alpha)
        self.num_comparisons = options.integer("num_comparisons", num_comparisons, 1)
        if model.num_classes < 2:
            raise XaibenchError(
                f"Finer-CAM compares the target with other classes; model '{model.name}' has one class"
            )

    def _score(self, logits: Tensor, targets: Tensor) -> Tensor:
        target_logit = logits.gather(1, targets[:, None])
        distance = (logits - target_logit).detach().abs()
        distance.scatter_(1, targets[:, None], math.inf)
        count = min(self.num_comparisons, logits.shape[1] - 1)
        references = distance.topk(count, dim=1, largest=False).indices
        others = logits.gather(1, references)
        weights = torch.softmax(others, dim=1)
        return (weights * (target_logit - self.alpha * others)).sum(1)

    def attribute(self, images: Tensor, targets: Tensor) -> Tensor:
        acts, grads, _ = _activations_and_gradients(self.model, images, targets, self._score)
        return weighted_sum(grads.mean((2, 3)), acts.detach())


def _rest(logits: Tensor, targets: Tensor) -> Tensor:
    """ReST, ``y^c - CE(y, c) = y^c + log softmax(y)_c`` (Cai 2025)."""
    return _logit(logits, targets) + _logit(torch.log_softmax(logits, dim=1), targets)


@register_explainer("shapleycam")
class ShapleyCAM(Explainer):
    r"""ShapleyCAM: Grad-CAM with the gradient corrected by half the Hessian-activation product.

    Cai, 2025, "CAMs as Shapley Value-based Explainers", https://arxiv.org/abs/2501.06261 (code in
    pytorch-grad-cam's ``ShapleyCAM``).

    A second-order Taylor expansion of the score in the activations gives the Shapley value of each
    channel in closed form; with ``H`` the Hessian of the score with respect to ``A``:

        w_k^c = (1/Z) sum_ij (g - (1/2) H A)_k(i, j)
        L^c = ReLU(sum_k w_k^c A_k)

    ``H A`` is one Hessian-vector product: the gradient of ``g . A`` (``A`` held fixed) with respect
    to ``A``, a second backward pass over the graph of the first. On a network that is linear after
    the target layer (global average pooling and one linear layer) ``H = 0`` and ShapleyCAM is
    Grad-CAM. Where ``g`` does not depend on ``A`` at all, ``H A`` is 0.

    Options: score, the utility explained: ``"logit"`` (``y^c``, default, the score every xaibench
    method explains and pytorch-grad-cam's ``ClassifierOutputTarget``) or ``"rest"`` (the paper's
    Residual Softmax Target-class utility, ``y^c + log softmax(y)_c``, pytorch-grad-cam's
    ``ClassifierOutputReST``), which makes ``H`` nonzero even after a linear head.

    pytorch-grad-cam computes the same weights but records a graph with ``create_graph=True`` through
    the whole network, back to the input; here only the layers after the target layer do. Cost: one
    forward pass, the backward pass to the target layer with its graph, and one more backward pass
    over that part of the network.
    """

    SCORES: dict[str, Score] = {"logit": _logit, "rest": _rest}

    def __init__(self, model: Model, *, score: str = "logit") -> None:
        super().__init__(model)
        self.score = options.choice("score", score, list(self.SCORES))

    def attribute(self, images: Tensor, targets: Tensor) -> Tensor:
        acts, grads, _ = _activations_and_gradients(
            self.model, images, targets, self.SCORES[self.score], create_graph=True
        )
        hvp = None
        if grads.requires_grad:
            with torch.enable_grad():
                (hvp,) = torch.autograd.grad(grads, acts, grad_outputs=acts.detach(), allow_unused=True)
        corrected = grads.detach() if hvp is None else grads.detach() - 0.5 * hvp
        return weighted_sum(corrected.mean((2, 3)), acts.detach())
