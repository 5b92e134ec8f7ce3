"""Perturbation attributions: occlusion, LIME, Kernel SHAP and RISE.

Each method looks at the network as a black box: it runs the network on perturbed copies of the image
(parts replaced by a baseline, or the image multiplied by a random mask) and turns the changes of the
explained class's output into a map. No gradient and no layer is involved.

- Occlusion (Zeiler & Fergus, ECCV 2014): a square window slides over the image; each pixel gets the
  drop of the class's output when a window covering it is occluded, averaged over those windows.
- LIME (Ribeiro et al., KDD 2016) and Kernel SHAP (Lundberg & Lee, NeurIPS 2017): random coalitions of
  SLIC superpixels are kept, the others replaced by the baseline; a weighted linear model fitted to the
  outputs gives each superpixel a weight, which becomes the map value of its pixels.
- RISE (Petsiuk et al., BMVC 2018): the map is the average of random smooth masks weighted by the
  class's probability on the image multiplied by each mask.

What they share (:class:`_Perturbation`):

- ``output``: the explained output, ``"probability"`` (the softmax probability of the target class,
  computed in float64 so that a confident class's small changes are not lost to float32 rounding; the
  default: Zeiler & Fergus, LIME and RISE explain probabilities, and so do shap's image examples) or
  ``"logit"`` (RISE is defined on probabilities only).
- Every pass of the network is batched, ``batch_size`` perturbed images at a time (memory bounded by
  that, whatever the number of samples). The passes of one image are never mixed with another image's,
  and each image's random numbers come from :func:`xaibench.seeding.image_generator` (drawn on the
  CPU whatever the model's device), so an image gets bitwise the same map in any batch.
- The perturbed batches go through :meth:`xaibench.Model.normalize` like every input (RISE masks the
  image once normalised, as its authors do, and only lays it out), so they reach the network in
  channels-last layout where the model takes it (:attr:`xaibench.Model.channels_last`:
  the same numbers up to float rounding; oneDNN's convolutions run about 1.3-1.5x faster on a CPU in
  that layout, which is part of what puts these methods ahead of captum on the same number of passes).

Costs, in passes of the network per image, at 224 x 224 with the defaults: occlusion 170, LIME 1000,
Kernel SHAP about 800 (1000 draws, repeated coalitions run once), RISE 4000 (the paper's N).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from xaibench import Explainer, options, pass_rows, register_explainer
from xaibench.errors import XaibenchError
from xaibench.models import Model
from xaibench.seeding import image_generator

__all__ = ["RISE", "KernelShap", "Lime", "Occlusion", "slic_superpixels"]

OUTPUTS = ("probability", "logit")


# --------------------------------------------------------------------------------- shared machinery


class _Perturbation(Explainer):
    """The network's output for the target class on batches of perturbed copies of one image."""

    def __init__(self, model: Model, *, output: str, batch_size: int) -> None:
        super().__init__(model)
        self.output = options.choice("output", output, OUTPUTS)
        self.batch_size = pass_rows.pass_batch_size("batch_size", batch_size, model)

    def _scores(
        self, perturbed: Callable[[int, int], Tensor], count: int, target: int, progress: tuple[int, int, int]
    ) -> Tensor:
        """float64 (count,) outputs for class ``target`` of the perturbed images ``perturbed(start, stop)``.

        The images are made and run ``batch_size`` at a time; only one batch exists at once. After each
        batch, progress is reported as ``offset + share * stop // count`` of ``total`` for
        ``progress = (offset, share, total)``: this image's ``share`` of the call's passes, after the
        ``offset`` of the images before it.
        """
        offset, share, total = progress
        scores = []
        for start in range(0, count, self.batch_size):
            stop = min(start + self.batch_size, count)
            scores.append(self._batch_scores(perturbed(start, stop), target))
            self.report_progress(offset + share * stop // count, total)
        return torch.cat(scores)

    def _batch_scores(self, batch: Tensor, target: int) -> Tensor:
        """float64 (B,) outputs for class ``target`` of one batch of perturbed images (one pass)."""
        return self._target_outputs(self.model(batch), target)

    def _target_outputs(self, logits: Tensor, target: int) -> Tensor:
        """float64 (B,) outputs for class ``target`` from a batch's logits: its probability or its logit."""
        if self.output == "probability":
            return torch.softmax(logits.double(), dim=1)[:, target]
        return logits[:, target].double()


def _keep(image: Tensor, keep: Tensor, baseline: float) -> Tensor:
    """``image * keep + baseline * (1 - keep)`` for (B, H, W) masks ``keep`` in [0, 1]: (B, C, H, W)."""
    keep = keep[:, None].to(image.dtype)
    return image[None] * keep + baseline * (1 - keep)


# ------------------------------------------------------------------------------------------ occlusion


def _window_rows(size: int, window: int, stride: int) -> Tensor:
    """(P, size) 0/1 rows: the windows' extents along one side, as captum places them.

    The first window starts at 0, then every ``stride`` until the side is covered:
    ``P = ceil((size - window) / stride) + 1`` windows; the last one may be cut off by the border.
    """
    count = math.ceil((size - window) / stride) + 1
    rows = torch.zeros(count, size)
    for i in range(count):
        rows[i, i * stride : i * stride + window] = 1
    return rows


@register_explainer("occlusion")
class Occlusion(_Perturbation):
    """Occlusion: how much the class's output drops when a window covering the pixel is occluded.

    Zeiler & Fergus, ECCV 2014, "Visualizing and Understanding Convolutional Networks", Sec. 4.2
    (https://arxiv.org/abs/1311.2901). A ``window`` x ``window`` square, on all three channels, slides
    over the image with step ``stride`` and is set to ``baseline``; with I_w the image occluded by
    window w and f_c the output of the target class c,

        M(x, y) = 1 / |W(x, y)| * sum_{w in W(x, y)} ( f_c(I) - f_c(I_w) ),

    W(x, y) the windows covering pixel (x, y). That is captum's ``Occlusion`` (its ``use_weights``
    averaging over the windows covering a feature) with ``sliding_window_shapes=(3, window, window)``,
    ``strides=(3, stride, stride)`` and ``baselines=baseline``; windows are placed as captum places
    them (from 0, every ``stride``, the last one cut off by the border if the stride does not fit).
    Reduction over channels: each window covers the three channels, so captum's per-channel
    attributions are the same on every channel; the map is that common value (captum's mean over
    channels). A window larger than the image is clipped to it (then one window covers everything and
    the map is constant).

    Defaults (the issue's, and a common choice for 224 px ImageNet models): ``window=32``, ``stride=16``,
    ``baseline=0`` (black; Zeiler & Fergus used a grey square, ``baseline=0.5``); ``output=
    "probability"`` (Zeiler & Fergus's Fig. 7 maps the correct class's probability; ``"logit"`` gives
    captum's output when it is given the network itself).

    Cost: ``P + 1`` passes per image, P = P_h * P_w windows: 13 * 13 + 1 = 170 at 224 x 224, no
    gradient; memory is one batch of ``batch_size`` occluded images.

    Args:
        model: The model to explain.
        window: Side of the occluding square, in pixels.
        stride: Step between windows, in pixels; at most ``window``, so that every pixel is covered.
        baseline: The value of the occluded pixels, on the [0, 1] images (before the model's
            normalisation).
        output: ``"probability"`` or ``"logit"`` of the target class.
        batch_size: Occluded images per pass of the network (None: :func:`xaibench.pass_rows.pass_batch_size`).
    """

    full_precision_only = (
        "each value is the drop of the score when a window over the pixel is occluded, a difference of near-equal "
        "scores wherever the window misses what the network looks at, which 8 or 11 significant bits do not resolve"
    )

    def __init__(
        self,
        model: Model,
        *,
        window: int = 32,
        stride: int = 16,
        baseline: float = 0.0,
        output: str = "probability",
        batch_size: int | None = None,
    ) -> None:
        super().__init__(model, output=output, batch_size=batch_size)
        self.window = options.integer("window", window, 1)
        self.stride = options.integer("stride", stride, 1)
        if stride > window:
            raise XaibenchError(
                f"stride ({stride}) must be at most window ({window}): with a larger stride some pixels "
                "are never occluded"
            )
        self.baseline = options.number("baseline", baseline)

    def attribute(self, images: Tensor, targets: Tensor) -> Tensor:
        height, width = images.shape[-2:]
        device = images.device
        rows = _window_rows(height, min(self.window, height), min(self.stride, height)).to(device)
        cols = _window_rows(width, min(self.window, width), min(self.stride, width)).to(device)
        # Index 0 is the image itself (a window of zeros), then the windows row by row.
        rows0 = torch.cat([rows.new_zeros(1, height), rows])
        cols0 = torch.cat([cols.new_zeros(1, width), cols])
        n_cols = cols.shape[0]
        count = rows.shape[0] * n_cols + 1
        maps = []
        for i, (image, target) in enumerate(zip(images, targets.tolist())):

            def occluded(start: int, stop: int, image: Tensor = image) -> Tensor:
                k = torch.arange(start, stop, device=device)
                r = torch.where(k > 0, (k - 1) // n_cols + 1, 0)
                c = torch.where(k > 0, (k - 1) % n_cols + 1, 0)
                window = rows0[r][:, :, None] * cols0[c][:, None, :]
                return _keep(image, 1 - window, self.baseline)

            scores = self._scores(occluded, count, target, (i * count, count, len(images) * count))
            maps.append((scores[0] - scores[1:]).view(rows.shape[0], n_cols))
        drops = torch.stack(maps)  # (N, P_h, P_w)
        rows, cols = rows.double(), cols.double()
        total = torch.einsum("npq,ph,qw->nhw", drops, rows, cols)
        covering = rows.sum(0)[:, None] * cols.sum(0)[None, :]  # windows covering each pixel, >= 1
        return total / covering


# -------------------------------------------------------------------- superpixels: LIME, Kernel SHAP


def slic_superpixels(image: Tensor, n_segments: int, compactness: float) -> Tensor:
    """SLIC superpixels of one (3, H, W) image in [0, 1]: a (H, W) long tensor of labels 0..M-1.

    ``skimage.segmentation.slic(image as an H x W x 3 float64 array, n_segments=n_segments,
    compactness=compactness, start_label=0)`` (scikit-image's other defaults: 10 k-means iterations,
    no Gaussian smoothing, in CIELAB, connectivity enforced), labels renumbered to 0..M-1 in order.
    M is about ``n_segments`` on photographs, fewer on small or flat images.
    """
    from skimage.segmentation import slic

    array = image.detach().to("cpu", torch.float64).permute(1, 2, 0).numpy()
    labels = slic(array, n_segments=n_segments, compactness=compactness, start_label=0, channel_axis=-1)
    _, labels = np.unique(labels, return_inverse=True)
    return torch.from_numpy(labels.reshape(array.shape[:2]).astype(np.int64)).to(image.device)


class _Superpixels(_Perturbation):
    """Coalitions of superpixels kept or replaced by the baseline; a weighted linear fit per image."""

    def __init__(
        self,
        model: Model,
        *,
        n_samples: int = 1000,
        n_segments: int = 50,
        compactness: float = 10.0,
        baseline: float = 0.0,
        output: str = "probability",
        seed: int = 0,
        batch_size: int | None = None,
    ) -> None:
        super().__init__(model, output=output, batch_size=batch_size)
        self.n_samples = options.integer("n_samples", n_samples, self._min_samples)
        self.n_segments = options.integer("n_segments", n_segments, 1)
        self.compactness = options.number("compactness", compactness, 0.0, open_low=True)
        self.baseline = options.number("baseline", baseline)
        self.seed = options.seed("seed", seed)

    _min_samples = 1

    def _coalitions(self, n_features: int, generator: torch.Generator) -> Tensor:
        """(n, M) bool: which superpixels each sample keeps."""
        raise NotImplementedError

    def _fit(self, coalitions: Tensor, scores: Tensor) -> Tensor:
        """(M,) float64 weights of the superpixels from the (n, M) coalitions and their (n,) outputs."""
        raise NotImplementedError

    def attribute(self, images: Tensor, targets: Tensor) -> Tensor:
        maps = []
        for i, (image, target) in enumerate(zip(images, targets.tolist())):
            segments = slic_superpixels(image, self.n_segments, self.compactness)
            n_features = int(segments.max()) + 1
            coalitions = self._coalitions(n_features, image_generator(image, self.seed))
            # A coalition drawn twice is run once: the network is deterministic, so its output is the same.
            distinct, which = torch.unique(coalitions.to(torch.uint8), dim=0, return_inverse=True)
            distinct = distinct.bool().to(image.device)

            def perturbed(start: int, stop: int, image: Tensor = image, segments: Tensor = segments) -> Tensor:
                keep = distinct[start:stop][:, segments]  # (B, H, W)
                return _keep(image, keep, self.baseline)

            # Progress in coalitions drawn: this image's n_samples, whatever number of them is distinct.
            progress = (i * self.n_samples, self.n_samples, len(images) * self.n_samples)
            scores = self._scores(perturbed, distinct.shape[0], target, progress)[which.to(image.device)]
            weights = self._fit(coalitions.double().to(image.device), scores)
            maps.append(weights[segments])
        return torch.stack(maps)


def _lstsq(a: Tensor, b: Tensor) -> Tensor:
    """Least-squares (minimum-norm if rank-deficient) solution of ``a x = b``, in float64 on the CPU."""
    a, b = a.to("cpu", torch.float64), b.to("cpu", torch.float64)
    return torch.linalg.lstsq(a, b[:, None], driver="gelsd").solution[:, 0]


@register_explainer("lime")
class Lime(_Superpixels):
    """LIME on SLIC superpixels: a locally weighted linear model of the class's output.

    Ribeiro, Singh & Guestrin, KDD 2016, "'Why Should I Trust You?': Explaining the Predictions of Any
    Classifier" (https://arxiv.org/abs/1602.04938), Eq. 1-2:

        xi(x) = argmin_g  sum_z pi_x(z) (f_c(h(z)) - g(z))^2 + Omega(g),   g(z) = b + sum_j beta_j z_j,

    z in {0, 1}^M a coalition of the image's M superpixels (``slic_superpixels``; defaults
    ``n_segments=50``, ``compactness=10``, scikit-image's default), h(z) the image with the superpixels
    outside z set to ``baseline``, f_c the target class's output. The map gives each pixel the weight
    beta_j of its superpixel.

    Definition followed: the authors' reference implementation, ``lime.lime_image.LimeImageExplainer``
    with its defaults, since the paper leaves the image kernel and regulariser open: z drawn uniformly
    from {0, 1}^M (Bernoulli(1/2) per superpixel); pi(z) = sqrt(exp(-d(z)^2 / w^2)) with d the cosine
    distance between z and the all-ones vector, d = 1 - sqrt(|z| / M), and kernel width ``w = 0.25``;
    Omega = ``alpha`` ||beta||^2 with ``alpha = 1`` (``sklearn.linear_model.Ridge``, intercept not
    penalised); every superpixel kept (lime_image explains up to 100000 features, so its K-Lasso
    feature selection keeps all; a localization map needs every superpixel's weight). ``n_samples =
    1000`` as lime_image. Two departures from lime_image: the perturbed superpixels take ``baseline``
    (captum's default, 0 = black) instead of their mean colour, and the unperturbed image is not added
    as an extra sample.

    captum's ``Lime`` computes the same estimator given this kernel and regulariser
    (``interpretable_model=SkLearnRidge(alpha=1)`` and this ``similarity_func``; its Bernoulli(1/2)
    sampling is the same), and then draws the same coalitions when torch's global generator is seeded
    as :func:`xaibench.seeding.image_seed` seeds this one: the tests check agreement that way. Its own
    defaults differ: ``Lasso(alpha=0.01)`` (a sparse fit: many superpixels get exactly 0), an
    exponential kernel ``exp(-d^2 / 2)`` on the cosine distance between the perturbed and original
    *images*, ``n_samples=25`` and one sample per pass (``perturbations_per_eval=1``).

    Randomness: the coalitions of each image come from :func:`xaibench.seeding.image_generator`
    (``seed``), one ``torch.bernoulli`` draw of (n_samples, M), so maps do not depend on the batch.
    Cost: at most ``n_samples`` passes per image, no gradient, one SLIC segmentation (about 0.1 s at
    224 px) and an (n_samples x M) least-squares fit per image. A coalition drawn twice is run once and
    its output used twice (the network is deterministic in eval mode, so a second pass would return
    the same output); with M >= 20 superpixels that almost never happens, with M = 10 a third of 1000
    Bernoulli draws are repeats.

    Args:
        model: The model to explain.
        n_samples: Perturbed images per image.
        n_segments: SLIC's target number of superpixels.
        compactness: SLIC's compactness (colour against space; higher gives squarer superpixels).
        kernel_width: w of the kernel pi.
        alpha: Ridge penalty (0 gives weighted least squares).
        baseline: The value of the removed superpixels' pixels, on the [0, 1] images.
        output: ``"probability"`` or ``"logit"`` of the target class.
        seed: The run's seed for :func:`xaibench.seeding.image_generator`.
        batch_size: Perturbed images per pass of the network (None: :func:`xaibench.pass_rows.pass_batch_size`).
    """

    def __init__(
        self,
        model: Model,
        *,
        n_samples: int = 1000,
        n_segments: int = 50,
        compactness: float = 10.0,
        kernel_width: float = 0.25,
        alpha: float = 1.0,
        baseline: float = 0.0,
        output: str = "probability",
        seed: int = 0,
        batch_size: int | None = None,
    ) -> None:
        super().__init__(
            model,
            n_samples=n_samples,
            n_segments=n_segments,
            compactness=compactness,
            baseline=baseline,
            output=output,
            seed=seed,
            batch_size=batch_size,
        )
        self.kernel_width = options.number("kernel_width", kernel_width, 0.0, open_low=True)
        self.alpha = options.number("alpha", alpha, 0.0)

    def _coalitions(self, n_features: int, generator: torch.Generator) -> Tensor:
        # One call draws what captum's default_perturb_func draws in n_samples calls of (1, M).
        return torch.bernoulli(torch.full((self.n_samples, n_features), 0.5), generator=generator).bool()

    def _fit(self, coalitions: Tensor, scores: Tensor) -> Tensor:
        n_features = coalitions.shape[1]
        distance = 1 - torch.sqrt(coalitions.sum(1).cpu() / n_features)  # cosine distance to all-ones
        weights = torch.exp(-(distance**2) / self.kernel_width**2).sqrt()
        x, y = coalitions.cpu(), scores.cpu()
        x_mean = (weights[:, None] * x).sum(0) / weights.sum()
        y_mean = (weights * y).sum() / weights.sum()
        root = weights.sqrt()[:, None]
        a = torch.cat([root * (x - x_mean), math.sqrt(self.alpha) * torch.eye(n_features, dtype=torch.float64)])
        b = torch.cat([root[:, 0] * (y - y_mean), torch.zeros(n_features, dtype=torch.float64)])
        return _lstsq(a, b).to(scores.device)


@register_explainer("kernelshap")
class KernelShap(_Superpixels):
    """Kernel SHAP on SLIC superpixels: Shapley values of the superpixels by a weighted linear fit.

    Lundberg & Lee, NeurIPS 2017, "A Unified Approach to Interpreting Model Predictions"
    (https://arxiv.org/abs/1705.07874), Theorem 2 (Shapley kernel): with M superpixels
    (``slic_superpixels``, defaults ``n_segments=50``, ``compactness=10``), z in {0, 1}^M a coalition,
    h(z) the image with the superpixels outside z set to ``baseline`` and f_c the target class's
    output, the SHAP values phi solve

        min_phi  sum_z pi(z) (f_c(h(z)) - phi_0 - sum_j phi_j z_j)^2,
        pi(z) = (M - 1) / (C(M, |z|) |z| (M - |z|)),

    whose infinite weights at |z| = 0 and |z| = M force phi_0 = f_c(h(0)) and sum_j phi_j =
    f_c(image) - f_c(h(0)). The map gives each pixel its superpixel's phi_j.

    Estimator (captum's ``KernelShap``): the first two samples are z = 1 and z = 0; each other sample
    draws |z| = k in 1..M-1 with probability proportional to (M - 1) / (k (M - k)) and then k
    superpixels uniformly (the k largest of M standard normal draws), so that each coalition is drawn
    with probability proportional to pi(z) and the fit weights them equally. Where captum stands in a
    weight of 10^6 for the infinite ones, the two constraints are imposed exactly here (phi_0 fixed,
    phi_M eliminated, as the shap package does), a difference of the order of 10^-6 relative. The
    draws are made in captum's order from :func:`xaibench.seeding.image_generator` (``seed``), one
    coalition at a time (about 0.1 ms each, against a pass of the network per coalition), so captum
    seeded with :func:`xaibench.seeding.image_seed` draws the same coalitions: the tests check agreement
    that way. The shap package's own sampler (paired samples, subset sizes enumerated when the budget
    allows) estimates the same values with other samples.

    Defaults: ``n_samples=1000`` (the paper gives none; the same budget as LIME's reference default,
    so the two compare like for like; shap's ``"auto"`` would be 2M + 2048), ``baseline=0`` (captum's),
    ``output="probability"`` (shap's image examples explain the softmax output).

    Cost: at most ``n_samples`` passes per image (two of them the endpoints), no gradient, one SLIC
    segmentation and an (n_samples x M) least-squares fit per image. A coalition drawn twice is run
    once and its output used twice (the network is deterministic in eval mode, so a second pass would
    return the same output): the Shapley kernel draws |z| = 1 and |z| = M - 1 most often, among only M
    coalitions each, so about 20% of 1000 draws are repeats at M = 30-40 (measured: 788 distinct
    coalitions of 1000 at M = 28, 823 at M = 41), passes captum makes. With one superpixel only the
    two endpoints are run (phi_1 = f_c(image) - f_c(h(0)) exactly).

    Args:
        model: The model to explain.
        n_samples: Perturbed images per image, the two endpoints included (at least 2).
        n_segments: SLIC's target number of superpixels.
        compactness: SLIC's compactness.
        baseline: The value of the removed superpixels' pixels, on the [0, 1] images.
        output: ``"probability"`` or ``"logit"`` of the target class.
        seed: The run's seed for :func:`xaibench.seeding.image_generator`.
        batch_size: Perturbed images per pass of the network (None: :func:`xaibench.pass_rows.pass_batch_size`).
    """

    _min_samples = 2  # the constructor is the superpixel base's, with its defaults

    def _coalitions(self, n_features: int, generator: torch.Generator) -> Tensor:
        m = n_features
        count = self.n_samples if m > 1 else 2
        coalitions = torch.zeros(count, m, dtype=torch.bool)
        coalitions[0] = True
        if m > 1:
            sizes = torch.arange(m, dtype=torch.float)
            probs = torch.tensor(m - 1) / (sizes * (m - sizes))
            probs[0] = 0.0
            probs = (probs / probs.sum(-1, keepdim=True)).reshape(1, m)  # as torch's Categorical
            for i in range(2, count):
                k = int(torch.multinomial(probs, 1, True, generator=generator))
                draws = torch.randn(1, m, generator=generator)
                coalitions[i] = draws[0] > torch.kthvalue(draws, m - k).values.item()
        return coalitions

    def _fit(self, coalitions: Tensor, scores: Tensor) -> Tensor:
        z, y = coalitions.cpu(), scores.cpu()
        full, empty = y[0], y[1]
        if z.shape[1] == 1 or z.shape[0] == 2:
            return torch.full((z.shape[1],), float(full - empty) / z.shape[1], dtype=torch.float64).to(scores.device)
        # sum_j phi_j = full - empty: phi_M = (full - empty) - sum_{j<M} phi_j.
        z, y = z[2:], y[2:] - empty
        last = z[:, -1]
        rest = _lstsq(z[:, :-1] - last[:, None], y - last * (full - empty))
        phi = torch.cat([rest, (full - empty - rest.sum())[None]])
        return phi.to(scores.device)


# ---------------------------------------------------------------------------------------------- RISE


def _linear_resize_matrix(size_in: int, size_out: int) -> Tensor:
    """(size_out, size_in) weights of linear interpolation from ``size_in`` to ``size_out`` samples.

    Half-pixel centres (source = (i + 0.5) * size_in / size_out - 0.5) and mirror-reflected borders
    (sample -1 is sample 1): ``skimage.transform.resize(order=1, mode="reflect", anti_aliasing=False)``
    along one axis, as RISE's reference code upsamples its masks.
    """
    source = (torch.arange(size_out, dtype=torch.float64) + 0.5) * size_in / size_out - 0.5
    low = torch.floor(source)
    frac = source - low
    low = low.long()

    def reflect(index: Tensor) -> Tensor:
        if size_in == 1:
            return torch.zeros_like(index)
        period = 2 * (size_in - 1)
        index = index.abs() % period
        return torch.where(index >= size_in, period - index, index)

    weights = torch.zeros(size_out, size_in, dtype=torch.float64)
    rows = torch.arange(size_out)
    weights.index_put_((rows, reflect(low)), 1 - frac, accumulate=True)
    weights.index_put_((rows, reflect(low + 1)), frac, accumulate=True)
    return weights.float()


@register_explainer("rise")
class RISE(_Perturbation):
    """RISE: random masks weighted by the class's probability on the masked image.

    Petsiuk, Das & Saenko, BMVC 2018, "RISE: Randomized Input Sampling for Explanation of Black-box
    Models" (https://arxiv.org/abs/1806.07421), Eq. 6 with Monte Carlo sampling:

        S_c(x, y) = 1 / (N p) * sum_{i=1..N} P_c(I * M_i) * M_i(x, y),

    P_c the softmax probability of the target class c, I the network's (normalised) input, as the
    authors' code and TorchRay's mask it (a masked-out pixel is the normalisation's mean colour, not
    black; the Score-CAM family masks the same input), and M_i random masks made as in Sec. 3.2 and
    the authors' code (github.com/eclique/RISE): a ``grid_size`` x ``grid_size`` (s x s) grid of
    independent Bernoulli(p) cells, upsampled linearly (``skimage.transform.resize(order=1,
    mode="reflect")``) to (s + 1) * cell pixels per side, cell = ceil(H / s) (resp. W), and cropped to
    H x W at a random offset in [0, cell) per axis. The map is S_c itself (the base class upsamples
    nothing: it is at the image's resolution).

    Defaults: the paper's for ImageNet, ``n_masks=4000`` (N), ``grid_size=7`` (s), ``p=0.5``. 4000
    passes of EfficientNet-Lite0 take about a minute per image on two CPU cores; ``n_masks=1000``
    takes a quarter of that, its Monte Carlo noise per pixel twice the paper's (sqrt(4000 / 1000)).

    Randomness: per image, from :func:`xaibench.seeding.image_generator` (``seed``), in this order:
    ``torch.rand(N, s, s) < p`` (the grids), ``torch.randint(0, cell_h, (N,))`` (row offsets),
    ``torch.randint(0, cell_w, (N,))`` (column offsets); so the maps do not depend on the batch.
    Cost: N passes per image, no gradient; memory bounded by ``batch_size``: the upsampled masks are
    made ``batch_size`` at a time, as a product of small interpolation matrices, never all N at once.

    Args:
        model: The model to explain.
        n_masks: N, masks per image.
        grid_size: s, cells per side of the random grid.
        p: The probability that a cell is kept (1).
        seed: The run's seed for :func:`xaibench.seeding.image_generator`.
        batch_size: Masked images per pass of the network (None: :func:`xaibench.pass_rows.pass_batch_size`).
    """

    def __init__(
        self,
        model: Model,
        *,
        n_masks: int = 4000,
        grid_size: int = 7,
        p: float = 0.5,
        seed: int = 0,
        batch_size: int | None = None,
    ) -> None:
        super().__init__(model, output="probability", batch_size=batch_size)
        self.n_masks = options.integer("n_masks", n_masks, 1)
        self.grid_size = options.integer("grid_size", grid_size, 1)
        self.p = options.number("p", p, 0.0, 1.0, open_low=True)
        self.seed = options.seed("seed", seed)

    def draw(self, image: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The random numbers of ``image``'s masks: (N, s, s) bool grids, (N,) row and column offsets."""
        s, n = self.grid_size, self.n_masks
        height, width = image.shape[-2:]
        generator = image_generator(image, self.seed)
        grids = torch.rand(n, s, s, generator=generator) < self.p
        rows = torch.randint(0, math.ceil(height / s), (n,), generator=generator)
        cols = torch.randint(0, math.ceil(width / s), (n,), generator=generator)
        return grids, rows, cols

    def attribute(self, images: Tensor, targets: Tensor) -> Tensor:
        s = self.grid_size
        height, width = images.shape[-2:]
        device = images.device
        resize_h = _linear_resize_matrix(s, (s + 1) * math.ceil(height / s)).to(device)
        resize_w = _linear_resize_matrix(s, (s + 1) * math.ceil(width / s)).to(device)
        span_h = torch.arange(height, device=device)
        span_w = torch.arange(width, device=device)
        inputs = self.model.normalize(images)
        maps = []
        for i, (image, x, target) in enumerate(zip(images, inputs, targets.tolist())):
            grids, rows, cols = (t.to(device) for t in self.draw(image))
            total = torch.zeros(height * width, dtype=torch.float64, device=device)
            for start in range(0, self.n_masks, self.batch_size):
                stop = min(start + self.batch_size, self.n_masks)
                # Upsample and crop in one product: rows of the interpolation matrices at the offsets.
                left = resize_h[rows[start:stop, None] + span_h]  # (B, H, s)
                right = resize_w[cols[start:stop, None] + span_w]  # (B, W, s)
                masks = left @ grids[start:stop].float() @ right.transpose(1, 2)  # (B, H, W)
                logits = self.model.network(self.model.layout(x[None] * masks[:, None]))
                probs = self._target_outputs(logits, target)
                total += probs @ masks.flatten(1).double()
                self.report_progress(i * self.n_masks + stop, len(images) * self.n_masks)
            maps.append(total.view(height, width) / (self.n_masks * self.p))
        return torch.stack(maps)
