"""The peers of the gradient attributions (plugins/attributions.py), run as their users run them.

``PEERS`` maps each xaibench method name to ``(library, factory)`` pairs; ``factory(model)`` returns a
callable ``(images, targets) -> maps`` that runs the peer's own implementation on a xaibench
:class:`~xaibench.Model` and reduces its (N, 3, H, W) attribution to (N, H, W) maps as xaibench's
method does (a negligible step, so that the maps can be compared too). Captum gets an ``nn.Module``
that normalises [0, 1] images and runs the network itself, and the options that give xaibench's
defaults (50 Gauss-Legendre steps, 50 samples of noise 0.15, 5 GradientSHAP samples, a zero baseline;
captum's ``abs=False`` for SmoothGrad and VarGrad, the papers' definition). Where captum holds no
batch option, or its default puts every (image, step) row in one pass, the peer runs ``ROWS`` rows per
pass as xaibench does by default (captum's ``internal_batch_size`` for integrated gradients,
``nt_samples_batch_size`` for the noise tunnel, groups of images for GradientSHAP): all 16 x 50 rows of
integrated gradients at once would need about 64 GB. The hook-based methods run on the user's network
as captum's users run them; on EfficientNet-Lite0, whose activations are ``nn.ReLU6``, captum's guided
backpropagation, deconvolution and DeepLIFT hook no activation at all (they compute the plain
gradient, or input x gradient), which makes them cheaper than on a ReLU network. pytorch-grad-cam's
``GuidedBackpropReLUModel`` explains one image per call (its API) and replaces the ReLU modules of the
model it is given, so it gets a copy made once by the factory; its ``GradCAM`` is built per call in a
``with`` block, as its README shows, so that no hook outlives the call.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable

import torch
from torch import Tensor

from peers_core import Normalized  # bench_peers.py puts this folder on sys.path
from xaibench import Model
from xaibench.options import GRADIENT_PASS_PIXELS, pass_batch_size

Run = Callable[[Tensor, Tensor], Tensor]
Factory = Callable[[Model], Run]

#: (image, sample) rows per forward/backward pass: xaibench's default ``batch_size`` /
#: ``internal_batch_size`` at 224 x 224, given to the peers where their default has no bound.
ROWS = pass_batch_size("rows", None, (224, 224), GRADIENT_PASS_PIXELS)


def _abs_sum(a: Tensor) -> Tensor:
    return a.detach().sum(1).abs()


def _sum_abs(a: Tensor) -> Tensor:
    return a.detach().abs().sum(1)


def _max_abs(a: Tensor) -> Tensor:
    return a.detach().abs().amax(1)


def _quiet(run: Run) -> Run:
    """Captum warns at every call of its hook-based methods; a user silences it."""

    def quiet(images: Tensor, targets: Tensor) -> Tensor:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return run(images, targets)

    return quiet


# ------------------------------------------------------------------------------------------ captum


def captum_integrated_gradients(model: Model, *, n_steps: int = 50) -> Run:
    from captum.attr import IntegratedGradients

    ig = IntegratedGradients(Normalized(model))

    def run(images: Tensor, targets: Tensor) -> Tensor:
        maps = ig.attribute(images, target=targets, n_steps=n_steps, method="gausslegendre", internal_batch_size=ROWS)
        return _abs_sum(maps)

    return run


def captum_noise_tunnel(nt_type: str) -> Factory:
    """``NoiseTunnel(Saliency)``, ``n_samples`` (captum's ``nt_samples``) samples of standard deviation
    0.15 (the [0, 1] range's 15 %), ``abs=False`` (the papers' gradient), ``nt_samples_batch_size``
    and groups of images giving ``ROWS`` rows per pass (a noise-tunnel pass holds a sample of every
    image it is given)."""

    def factory(model: Model, *, n_samples: int = 50) -> Run:
        from captum.attr import NoiseTunnel, Saliency

        tunnel = NoiseTunnel(Saliency(Normalized(model)))

        def run(images: Tensor, targets: Tensor) -> Tensor:
            group = min(images.shape[0], ROWS)  # captum's passes hold every image of a call
            parts = [
                tunnel.attribute(
                    images[i : i + group], nt_type=nt_type, nt_samples=n_samples,
                    nt_samples_batch_size=max(1, ROWS // group), stdevs=0.15, target=targets[i : i + group],
                    abs=False,
                )
                for i in range(0, images.shape[0], group)
            ]
            return _sum_abs(torch.cat(parts))

        return run

    return factory


def captum_input_x_gradient(model: Model) -> Run:
    from captum.attr import InputXGradient

    ixg = InputXGradient(Normalized(model))

    def run(images: Tensor, targets: Tensor) -> Tensor:
        return _abs_sum(ixg.attribute(images.clone().requires_grad_(True), target=targets))

    return run


def captum_guided_backprop(model: Model) -> Run:
    from captum.attr import GuidedBackprop

    gb = GuidedBackprop(Normalized(model))
    return _quiet(lambda images, targets: _max_abs(gb.attribute(images, target=targets)))


def captum_deconvolution(model: Model) -> Run:
    from captum.attr import Deconvolution

    deconv = Deconvolution(Normalized(model))
    return _quiet(lambda images, targets: _max_abs(deconv.attribute(images, target=targets)))


def captum_guided_gradcam(model: Model) -> Run:
    from captum.attr import GuidedGradCam

    ggc = GuidedGradCam(Normalized(model), model.target_layer)
    return _quiet(lambda images, targets: _max_abs(ggc.attribute(images, target=targets)))


def captum_gradient_shap(model: Model) -> Run:
    """5 samples, no input noise (captum's defaults), baselines drawn from 8 fixed uniform-noise images
    (xaibench draws a fresh one per sample); images in groups of ``ROWS // 5``, since captum's
    GradientShap has no batch option and runs every (image, sample) row in one pass."""
    from captum.attr import GradientShap

    shap = GradientShap(Normalized(model))
    baselines = torch.rand(8, 3, *model.input_size, generator=torch.Generator().manual_seed(0)).to(model.device)

    def run(images: Tensor, targets: Tensor) -> Tensor:
        group = max(1, ROWS // 5)
        parts = [
            shap.attribute(
                images[i : i + group], baselines=baselines, n_samples=5, stdevs=0.0, target=targets[i : i + group]
            )
            for i in range(0, images.shape[0], group)
        ]
        return _abs_sum(torch.cat(parts))

    return run


def captum_deeplift(model: Model) -> Run:
    from captum.attr import DeepLift

    deeplift = DeepLift(Normalized(model))
    return _quiet(lambda images, targets: _abs_sum(deeplift.attribute(images, target=targets, baselines=0.0)))


# -------------------------------------------------------------------------------- pytorch-grad-cam


def _guided_backprop_model(model: Model):
    from pytorch_grad_cam import GuidedBackpropReLUModel

    return GuidedBackpropReLUModel(Normalized(model, copy.deepcopy(model.network)), device=model.device)


def grad_cam_guided_backprop(model: Model) -> Run:
    """``GuidedBackpropReLUModel``, one image per call, on a copy of the network (it swaps the ReLU
    modules of the model it is given)."""
    gb = _guided_backprop_model(model)

    def run(images: Tensor, targets: Tensor) -> Tensor:
        maps = [gb(images[i : i + 1], int(targets[i])) for i in range(images.shape[0])]
        return _max_abs(torch.stack([torch.from_numpy(m).permute(2, 0, 1) for m in maps]))

    return run


def grad_cam_guided_gradcam(model: Model) -> Run:
    """pytorch-grad-cam's recipe (its README's ``cam_mask * gb``): ``GradCAM`` on the batch, in a
    ``with`` block, times ``GuidedBackpropReLUModel`` image by image."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    gb = _guided_backprop_model(model)
    network = gb.model
    layer = network.network.get_submodule(model.target_layer_name)

    def run(images: Tensor, targets: Tensor) -> Tensor:
        with GradCAM(model=network, target_layers=[layer]) as cam:
            cams = cam(input_tensor=images, targets=[ClassifierOutputTarget(int(t)) for t in targets])
        maps = [
            torch.from_numpy(gb(images[i : i + 1], int(targets[i])) * cams[i][:, :, None]).permute(2, 0, 1)
            for i in range(images.shape[0])
        ]
        return _max_abs(torch.stack(maps))

    return run


PEERS: dict[str, list[tuple[str, Factory]]] = {
    "integrated_gradients": [("captum", captum_integrated_gradients)],
    "smoothgrad": [("captum", captum_noise_tunnel("smoothgrad"))],
    "vargrad": [("captum", captum_noise_tunnel("vargrad"))],
    "inputxgradient": [("captum", captum_input_x_gradient)],
    "guided_backprop": [("captum", captum_guided_backprop), ("pytorch-grad-cam", grad_cam_guided_backprop)],
    "deconvolution": [("captum", captum_deconvolution)],
    "guided_gradcam": [("captum", captum_guided_gradcam), ("pytorch-grad-cam", grad_cam_guided_gradcam)],
    "gradientshap": [("captum", captum_gradient_shap)],
    "deeplift": [("captum", captum_deeplift)],
}

#: What bench_peers.py runs per method, instead of 16 random images and 5 repetitions: the methods of
#: 50 passes per image run 4 images and 16 steps or samples (given to xaibench and to captum alike;
#: both sides' cost is linear in them).
CONFIGS: dict[str, dict] = {
    "integrated_gradients": {"images": 4, "repeats": 5, "options": {"n_steps": 16},
                             "note": "default 50, cost linear in it"},
    "smoothgrad": {"images": 4, "repeats": 5, "options": {"n_samples": 16}, "note": "default 50, cost linear in it"},
    "vargrad": {"images": 4, "repeats": 5, "options": {"n_samples": 16}, "note": "default 50, cost linear in it"},
}
