"""The peers of the gradient attributions (plugins/attributions.py), run as their users run them.

``PEERS`` maps each xaibench method name to ``(library, factory)`` pairs; ``factory(model)`` returns a
callable ``(images, targets) -> maps`` that runs the peer's own implementation on a xaibench
:class:`~xaibench.Model` and reduces its (N, 3, H, W) attribution to (N, H, W) maps as xaibench's
method does (a negligible step, so that the maps can be compared too). Captum gets an ``nn.Module``
that normalises [0, 1] images and runs the network itself, and the options that give xaibench's
defaults (50 Gauss-Legendre steps, 50 samples of noise 0.15, 5 GradientSHAP samples, a zero baseline;
captum's ``abs=False`` for SmoothGrad and VarGrad, the papers' definition). Where captum holds no
batch option, or its default puts every (image, step) row in one pass, the peer runs ``ROWS`` rows per
pass as xaibench does (captum's ``internal_batch_size`` for integrated gradients,
``nt_samples_batch_size`` for the noise tunnel, groups of images for GradientSHAP): all 16 x 50 rows of
integrated gradients at once would need about 64 GB. The hook-based methods run on the user's network
as captum's users run them; on EfficientNet-Lite0, whose activations are ``nn.ReLU6``, captum's guided
backpropagation, deconvolution and DeepLIFT hook no activation at all (they compute the plain
gradient, or input x gradient), which makes them cheaper than on a ReLU network. pytorch-grad-cam's
``GuidedBackpropReLUModel`` explains one image per call (its API) and replaces the ReLU modules of the
model it is given, so it gets a copy made once by the factory; its ``GradCAM`` is built per call in a
``with`` block, as its README shows, so that no hook outlives the call.

Run this file to measure, on efficientnet_lite0 (CPU, 2 threads), the seconds per image of each method
and of each peer, interleaved, medians (wall-clock time and the process's CPU time)::

    python benchmarks/peers_attributions.py [--batch 16] [--repeats 5] [--methods deeplift,guided_backprop]
        [--expensive-batch 2] [--expensive-repeats 3]

The methods with 50 passes per image (integrated gradients, SmoothGrad, VarGrad) run on
``--expensive-batch`` images with ``--expensive-repeats`` repetitions.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
import warnings
from collections.abc import Callable

import torch
from torch import Tensor, nn

import xaibench
from xaibench import Model

Run = Callable[[Tensor, Tensor], Tensor]
Factory = Callable[[Model], Run]

#: (image, sample) rows per forward/backward pass: xaibench's default ``batch_size`` /
#: ``internal_batch_size``, given to the peers where their default has no bound.
ROWS = 16
#: Methods with 50 passes per image.
EXPENSIVE = ("integrated_gradients", "smoothgrad", "vargrad")


class Normalized(nn.Module):
    """What a captum user hands to captum: normalise [0, 1] images, then run the network."""

    def __init__(self, model: Model, network: nn.Module | None = None) -> None:
        super().__init__()
        self.model = model
        self.network = network if network is not None else model.network

    def forward(self, images: Tensor) -> Tensor:
        return self.network(self.model.normalize(images))


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


def captum_integrated_gradients(model: Model) -> Run:
    from captum.attr import IntegratedGradients

    ig = IntegratedGradients(Normalized(model))

    def run(images: Tensor, targets: Tensor) -> Tensor:
        maps = ig.attribute(images, target=targets, n_steps=50, method="gausslegendre", internal_batch_size=ROWS)
        return _abs_sum(maps)

    return run


def captum_noise_tunnel(nt_type: str) -> Factory:
    """``NoiseTunnel(Saliency)``, 50 samples of standard deviation 0.15 (the [0, 1] range's 15 %),
    ``abs=False`` (the papers' gradient), ``nt_samples_batch_size`` giving ``ROWS`` rows per pass."""

    def factory(model: Model) -> Run:
        from captum.attr import NoiseTunnel, Saliency

        tunnel = NoiseTunnel(Saliency(Normalized(model)))

        def run(images: Tensor, targets: Tensor) -> Tensor:
            per_pass = max(1, ROWS // images.shape[0])
            maps = tunnel.attribute(
                images, nt_type=nt_type, nt_samples=50, nt_samples_batch_size=per_pass, stdevs=0.15,
                target=targets, abs=False,
            )
            return _sum_abs(maps)

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


# ----------------------------------------------------------------------------------- measurement


def _seconds(run: Run, images: Tensor, targets: Tensor) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    run(images, targets)
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--expensive-batch", type=int, default=2)
    parser.add_argument("--expensive-repeats", type=int, default=3)
    parser.add_argument("--methods", default=",".join(PEERS))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model = xaibench.load_model("efficientnet_lite0")
    generator = torch.Generator().manual_seed(0)
    all_images = torch.rand(args.batch, 3, 224, 224, generator=generator)
    all_targets = torch.randint(0, 1000, (args.batch,), generator=generator)
    print(f"efficientnet_lite0, 3 x 224 x 224, cpu, {torch.get_num_threads()} threads, interleaved runs, medians; "
          "seconds per image, wall-clock (process CPU time)", flush=True)
    print("| method | images x runs | xaibench | peers | ratio xaibench / peer (wall; cpu) |")
    print("|---|---|---|---|---|", flush=True)
    for name in args.methods.split(","):
        expensive = name in EXPENSIVE
        n = args.expensive_batch if expensive else args.batch
        repeats = args.expensive_repeats if expensive else args.repeats
        images, targets = all_images[:n], all_targets[:n]
        runs = {"xaibench": xaibench.create_explainer(name, model)}
        runs.update({library: factory(model) for library, factory in PEERS[name]})
        if not expensive:
            for run in runs.values():  # warm-up
                run(images, targets)
        wall: dict[str, list[float]] = {key: [] for key in runs}
        cpu: dict[str, list[float]] = {key: [] for key in runs}
        for _ in range(repeats):
            for key, run in runs.items():
                w, c = _seconds(run, images, targets)
                wall[key].append(w / n)
                cpu[key].append(c / n)
        med_w = {key: statistics.median(v) for key, v in wall.items()}
        med_c = {key: statistics.median(v) for key, v in cpu.items()}
        peers = [key for key in runs if key != "xaibench"]
        cells = " / ".join(f"{key} {med_w[key]:.3f} ({med_c[key]:.3f})" for key in peers)
        ours_w, ours_c = med_w["xaibench"], med_c["xaibench"]
        ratios = " / ".join(f"{ours_w / med_w[key]:.2f}; {ours_c / med_c[key]:.2f}" for key in peers)
        print(f"| {name} | {n} x {repeats} | {ours_w:.3f} ({ours_c:.3f}) | {cells} | {ratios} |", flush=True)


if __name__ == "__main__":
    main()
