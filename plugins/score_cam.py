"""The CAM family that weights feature maps by the scores of masked or ablated inputs.

- Score-CAM (Wang et al., CVPR-W 2020), SS-CAM (Wang, Naidu et al., 2020) and IS-CAM (Naidu et al.,
  2020): each feature map of the target layer, upsampled and min-max scaled, masks the network's input;
  the target class's score on the masked input weights that feature map.
- Ablation-CAM (Desai & Ramaswamy, WACV 2020): each feature map is zeroed in turn; the drop of the
  target class's score weights it.

All four cost one pass of (part of) the network per feature map (times the samples of SS-CAM and
IS-CAM), so they batch those passes (``batch_size``) and skip the ones whose result is known without
running them; each class docstring says which and why.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xaibench import Explainer, options, pass_rows, register_explainer
from xaibench.errors import LayerError, XaibenchError
from xaibench.feature_maps import TokenGrid
from xaibench.explainer import upsample_maps
from xaibench.forward_pass import ForwardPass
from xaibench.hooks import capture
from xaibench.models import Model, eval_mode, head_tolerance
from xaibench.precision import reduced
from xaibench.seeding import derived_seed, image_seed
from xaibench_plugins.cam_family import weighted_sum

__all__ = ["AblationCAM", "ISCAM", "SSCAM", "ScoreCAM"]

logger = logging.getLogger(__name__)


class ChannelNoise:
    """SS-CAM's noise source for one batch: a generator per (image, feature map), seeded from the image's
    seed (:func:`xaibench.seeding.image_seed`: the run's seed and the image's bytes) and the map's index.

    A feature map's noise therefore depends on neither the batch, nor ``batch_size``, nor which other
    feature maps are run: leaving out the all-zero maps changes no other map's noise. Each map's
    samples are drawn in order (sample 0, 1, ...), as the passes come.
    """

    def __init__(self, images: Tensor, seed: int) -> None:
        self.seeds = [image_seed(image, seed) for image in images]
        self.device = images.device
        self._generators: dict[tuple[int, int], torch.Generator] = {}

    def draw(self, image: int, channel: int, shape: torch.Size) -> Tensor:
        """The next standard normal sample of feature map ``channel`` of image ``image``."""
        generator = self._generators.get((image, channel))
        if generator is None:
            generator = torch.Generator(device=self.device).manual_seed(derived_seed(self.seeds[image], channel))
            self._generators[image, channel] = generator
        return torch.randn(shape, generator=generator, device=self.device)


def _features(model: Model, inputs: Tensor) -> tuple[Tensor, Tensor]:
    """One forward pass of the network on its (normalised) input: the target layer's output, the logits."""
    with capture(model.target_layer, model.target_layer_name, reshape=model.feature_grid) as feats:
        logits = model.network(inputs)
    features = feats.output.detach()
    if features.dim() != 4:
        raise LayerError(
            f"target layer '{model.target_layer_name}' outputs shape {tuple(features.shape)}; this method "
            "needs 4-D feature maps (N, K, h, w)"
        )
    return features, logits.detach()


# --------------------------------------------------------------------------- masked-input scores


class _MaskedInputCAM(Explainer):
    """Score-CAM and its variants: ``ReLU(sum_k softmax_k(S)_k A_k)`` with S from masked inputs.

    Subclasses say how many passes each feature map gets (``_steps``), which mask each pass uses
    (``_masks``) and which feature maps need no pass (``_skip_constant``, ``_skip_zero``).
    """

    def __init__(self, model: Model, *, batch_size: int | None = None) -> None:
        super().__init__(model)
        self.batch_size = pass_rows.pass_batch_size("batch_size", batch_size, model)

    # What subclasses define ------------------------------------------------------------------
    def _steps(self) -> int:
        return 1

    def _skip_constant(self) -> bool:
        """Whether a constant feature map's masked inputs are all the baseline (then S_k = 0 exactly)."""
        return True

    def _skip_zero(self) -> bool:
        """Whether all-zero feature maps are left out of the softmax over channels (and not run).

        An all-zero A_k adds alpha_k A_k = 0 to the sum whatever S_k is; its only effect is through the
        softmax's denominator Z, a positive factor common to every channel: leaving such channels out
        gives ``(Z / Z') L`` for the map L, which the min-max scaling of every map makes exactly L.
        """
        return False

    def _masks(
        self, unit_masks: Tensor, image_ids: Tensor, channel_ids: Tensor, steps: Tensor, noise: ChannelNoise | None
    ) -> Tensor:
        """The (B, 1, H, W) masks of one chunk of passes, from their normalised maps ``H_k``."""
        return unit_masks

    def _noise_source(self, images: Tensor) -> ChannelNoise | None:
        return None

    # The shared computation -------------------------------------------------------------------
    def attribute(self, images: Tensor, targets: Tensor) -> Tensor:
        inputs = self.model.normalize(images)
        features, _ = _features(self.model, inputs)
        scores = self.scores(inputs, features, targets, self._noise_source(images))
        if not self._skip_zero():
            return weighted_sum(torch.softmax(scores, dim=1), features)
        nonzero = _nonzero(features)
        weights = torch.softmax(scores.masked_fill(~nonzero, float("-inf")), dim=1)
        # An image whose feature maps are all zero has a zero map whatever its weights (its softmax
        # over no channel is NaN); any other NaN (a NaN score) stays, and its map is flagged.
        weights = torch.where(nonzero.any(1, keepdim=True), weights, torch.zeros_like(weights))
        return weighted_sum(weights, features)

    def scores(
        self, inputs: Tensor, features: Tensor, targets: Tensor, noise: ChannelNoise | None
    ) -> Tensor:
        """S (N, K): the mean over the passes of ``f^c(masked input) - f^c(X_b)``, f^c the logit.

        ``inputs`` are the network's (normalised) inputs X, ``features`` the target layer's output
        for them; X_b = 0 (the all-zero network input).
        """
        network = self.model.network
        n, k = features.shape[:2]
        size = inputs.shape[-2:]
        steps = self._steps()
        flat = features.flatten(2)
        live = flat.amax(2) > flat.amin(2)  # (N, K): not constant at the layer's resolution
        if self._skip_constant():
            run = live
        elif self._skip_zero():
            run = _nonzero(features)
        else:
            run = torch.ones_like(live)
        units = self._units(run, steps)
        with torch.inference_mode():
            baseline = network(torch.zeros_like(inputs[:1]))[0]  # f(X_b), one pass for the whole batch
            base = baseline[targets]  # (N,)
            sums = torch.zeros(n, k, dtype=torch.float32, device=inputs.device)
            buffer = self.model.layout(torch.empty(
                (min(self.batch_size, units[0].numel()), *inputs.shape[1:]),
                dtype=inputs.dtype, device=inputs.device,
            ))
            # (an image whose maps all go unrun, e.g. all zero, has no passes; split() of nothing is one
            # empty chunk)
            chunks = zip(*(u.split(self.batch_size) for u in units)) if units[0].numel() else ()
            done, total = 0, units[0].numel()
            for image, channel, step in chunks:
                unit_live = live[image, channel][:, None, None, None]
                masks = self._masks(
                    _normalised_masks(features[image, channel], size, unit_live), image, channel, step, noise
                )
                masked = torch.mul(inputs[image], masks, out=buffer[: image.numel()])
                logits = network(masked)
                score = logits.gather(1, targets[image][:, None])[:, 0] - base[image]
                sums.index_put_((image, channel), score.float(), accumulate=True)
                done += image.numel()
                self.report_progress(done, total)
        return (sums / steps).clone()

    @staticmethod
    def _units(run: Tensor, steps: int) -> tuple[Tensor, Tensor, Tensor]:
        """The passes to run for the (image, channel) pairs that ``run`` (N, K) marks, as (image,
        channel, step) index tensors, ordered by image, step, channel.

        The order is the one in which SS-CAM draws each image's noise, so an image's noise does not
        depend on the other images of the batch or on ``batch_size``.
        """
        images, channels, step_ids = [], [], []
        for i in range(run.shape[0]):
            chans = run[i].nonzero()[:, 0]
            images.append(torch.full((steps * chans.numel(),), i, dtype=torch.long, device=run.device))
            channels.append(chans.repeat(steps))
            step_ids.append(torch.arange(steps, device=run.device).repeat_interleave(chans.numel()))
        return torch.cat(images), torch.cat(channels), torch.cat(step_ids)


def _nonzero(features: Tensor) -> Tensor:
    """(N, K): whether feature map k of image n has a nonzero value (SS-CAM runs those alone)."""
    return features.flatten(2).ne(0).any(2)


def _normalised_masks(maps: Tensor, size: torch.Size, live: Tensor) -> Tensor:
    """``H = s(Up(A))`` for (B, h, w) maps -> (B, 1, H, W): bilinear upsampling to ``size``
    (``align_corners=False``), then min-max scaling of each map to [0, 1]. A map that is constant at
    the layer's resolution (``live`` False) is constant once upsampled: its mask is 0."""
    up = upsample_maps(maps, size)[:, None]
    low = up.amin((2, 3), keepdim=True)
    span = up.amax((2, 3), keepdim=True) - low
    ok = live & (span > 0)
    return torch.where(ok, (up - low) / torch.where(ok, span, torch.ones_like(span)), torch.zeros_like(up))


@register_explainer("scorecam")
class ScoreCAM(_MaskedInputCAM):
    """Score-CAM: feature maps weighted by the target's score on the input masked by each of them.

    Wang, Wang, Du, Yang, Zhang, Ding, Mardziel & Hu, "Score-CAM: Score-Weighted Visual Explanations
    for Convolutional Neural Networks", CVPR Workshops 2020, https://arxiv.org/abs/1910.01279.

    With A_k (k = 1..K) the target layer's feature maps for the input X (the network's input, i.e. the
    normalised image), Up bilinear upsampling to the input size (``align_corners=False``), s(.) min-max
    scaling of one map to [0, 1], f^c the logit of the target class c and X_b = 0 the baseline input:

        H_k = s(Up(A_k))                          (Eqs. 7-8)
        S_k = f^c(X o H_k) - f^c(X_b)             (Eq. 6, the channel-wise increase of confidence)
        alpha_k = exp(S_k) / sum_j exp(S_j)       (Algorithm 1, "post-softmax", Sec. 3.2)
        L = ReLU(sum_k alpha_k A_k)               (Eq. 9)

    where o is the element-wise product (the mask multiplies every colour channel). The map is (h, w),
    the target layer's resolution; the base class upsamples and min-max scales it like every map.

    Which definition: the paper's Algorithm 1, quoted above: S is the logit increase and the softmax
    runs over the K channels ("ensure sum_k alpha_k = 1"); X_b = 0 as in its Sec. 4. Both peers
    compute that same quantity: torchcam's ``ScoreCAM`` (softmax over channels of the logits minus the
    logit of the unmasked input, a per-image constant that the softmax removes) and pytorch-grad-cam's
    ``ScoreCAM`` (softmax over channels of the raw logits of its ``ClassifierOutputTarget``). They
    differ from the paper, and from each other, only in the mask: torchcam scales A_k to [0, 1]
    before upsampling (s(Up(A_k)) becomes Up(s(A_k)), whose extremes can fall inside [0, 1]) and
    pytorch-grad-cam upsamples with ``align_corners=True``; when the layer already has the input's
    resolution the three masks coincide. The authors' released code (haofanwang/Score-CAM) differs
    from the paper's algorithm: it weights A_k by the softmax *probability* of class c on X o H_k,
    without baseline and without the softmax over channels; neither peer does that, nor do we.

    Skipped work: a feature map that is constant at the layer's resolution gives H_k = 0 (its
    upsampling is constant and s of a constant is taken as 0), so its masked input is X o 0 = X_b and
    S_k = f^c(X_b) - f^c(X_b) = 0 exactly, known without running it (it still takes part in the
    softmax, with S_k = 0, as it does in both peers, which run it). On EfficientNet-Lite0's
    ``head_act`` (ReLU6, 1280 x 7 x 7) such all-zero maps are about half: 620 on average over the
    first 32 shared ImageNet photos (387 to 810), so about 660 passes per photo instead of 1280.

    Cost: 2 forward passes (the features, and one pass of X_b = 0 shared by the batch) plus one
    forward pass per non-constant feature map, per image, run in batches of ``batch_size`` masked
    inputs (memory: ``batch_size`` inputs and their activations; the masks are built per batch) in
    ``torch.inference_mode`` and the model's layout (:meth:`xaibench.Model.layout`: channels-last on the
    CPU, about 1.3 times faster than the default layout for EfficientNet-Lite0's convolutions). torchcam runs all K maps in batches of 32;
    pytorch-grad-cam all K maps in batches of 16, after building the N x K x 3 x H x W masked inputs
    of the whole batch at once (12 GB for 16 images on EfficientNet-Lite0).

    Args:
        model: The model to explain.
        batch_size: Masked inputs per forward pass (default None: as many as
            :func:`xaibench.pass_rows.pass_batch_size` gives for the model and its device, 4 at 224 x 224 on a CPU,
            the fastest on a CPU; torchcam uses 32, pytorch-grad-cam 16).
    """

    def __init__(self, model: Model, *, batch_size: int | None = None) -> None:
        super().__init__(model, batch_size=batch_size)


@register_explainer("sscam")
class SSCAM(_MaskedInputCAM):
    """SS-CAM: Score-CAM with Gaussian noise on each mask, the scores averaged over the noisy samples.

    Wang, Naidu, Michael & Kundu, "SS-CAM: Smoothed Score-CAM for Sharper Visual Feature
    Localization", arXiv 2020, https://arxiv.org/abs/2006.14255.

    With the notation of :class:`ScoreCAM` (H_k = s(Up(A_k)), f^c the logit, X_b = 0) and N samples of
    noise delta_{k,i} ~ Normal(0, std^2), drawn independently for every pixel of every mask:

        S_k = (1/N) sum_{i=1..N} [ f^c(X o (H_k + delta_{k,i})) - f^c(X_b) ]
        alpha_k = softmax_k(S)_k,      L = ReLU(sum_k alpha_k A_k)

    Which definition: torchcam's ``SSCAM``: noise on the upsampled, [0, 1]-scaled masks (the paper's
    smoothing of the masks, the first of its two variants; the second adds the noise to the input),
    the logit increases averaged over the samples, then Score-CAM's softmax over channels (its
    Algorithm 1). Defaults num_samples = 35 and std = 2.0 are torchcam's. The authors' code has the
    parameters ``param_n = 35`` and ``param_sigma_multiplier = 2`` but uses the second differently: its
    ``SSCAM1`` masks with the upsampled map itself, unscaled, plus noise of standard deviation
    (2 / (max - min))^2 in the map's own units (about 0.02 of the range of a ReLU6 map whose range is 6,
    where std = 2.0 here is twice the [0, 1] mask's range), and weights by the class probability, as
    their Score-CAM code does. torchcam also scales A_k to [0, 1] before upsampling (we after, as
    Score-CAM's paper) and draws its noise from the global random generator. pytorch-grad-cam has no
    SS-CAM.

    Randomness: each feature map's noise comes from its own generator, seeded from the run's seed, the
    image's bytes and the map's index (:class:`ChannelNoise`), so an image gets the same map whatever
    batch it is in, whatever ``batch_size``, and whether or not the all-zero maps are run. With std = 0
    SS-CAM is Score-CAM exactly.

    Skipped work: with std > 0 a constant feature map's masked input X o delta is not the baseline, so
    its S_k must be computed, except where A_k is all zero: there alpha_k A_k = 0 whatever S_k, and
    S_k enters the map only through the softmax's denominator Z, a positive factor common to every
    channel. Such channels are left out of the softmax and not run; the raw map is then
    ``(Z / Z') L`` with Z' the sum over the other channels, and every map the base class returns (min-max
    scaled) is exactly the paper's. (The raw map's scale is the only difference; torchcam runs every
    channel.) With std = 0, the constant feature maps are skipped as in Score-CAM.

    Cost: 2 forward passes plus num_samples forward passes per feature map that is not all zero, per
    image (35 x about 660 = 23,000 on EfficientNet-Lite0 instead of 35 x 1280 = 44,800: about 35 times
    Score-CAM's, minutes per image on a CPU), in batches of ``batch_size``; the noise is drawn one mask at a
    time (memory: ``batch_size`` masks).

    Args:
        model: The model to explain.
        num_samples: Noisy masks per feature map (default 35, torchcam's and the authors').
        std: Standard deviation of the noise added to the [0, 1] masks (default 2.0, torchcam's).
        batch_size: Masked inputs per forward pass (default None: as many as
            :func:`xaibench.pass_rows.pass_batch_size` gives for the model and its device, 4 at 224 x 224 on a CPU).
        seed: Seed of the per-image noise (see :mod:`xaibench.seeding`).
    """

    def __init__(
        self,
        model: Model,
        *,
        num_samples: int = 35,
        std: float = 2.0,
        batch_size: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(model, batch_size=batch_size)
        self.num_samples = options.integer("num_samples", num_samples, 1)
        self.std = options.number("std", std, 0.0)
        self.seed = options.seed("seed", seed)

    def _steps(self) -> int:
        return self.num_samples

    def _skip_constant(self) -> bool:
        return self.std == 0

    def _skip_zero(self) -> bool:
        return self.std > 0

    def _noise_source(self, images: Tensor) -> ChannelNoise | None:
        return ChannelNoise(images, self.seed) if self.std > 0 else None

    def _masks(
        self, unit_masks: Tensor, image_ids: Tensor, channel_ids: Tensor, steps: Tensor, noise: ChannelNoise | None
    ) -> Tensor:
        if noise is None:
            return unit_masks
        return unit_masks + self._noise(unit_masks.shape, image_ids, channel_ids, steps, noise)

    def _noise(
        self, shape: torch.Size, image_ids: Tensor, channel_ids: Tensor, steps: Tensor, noise: ChannelNoise
    ) -> Tensor:
        """delta for one chunk of passes, ``shape`` (B, 1, H, W): each mask's noise the next sample of
        its (image, feature map)'s generator (the passes come in the order of the samples)."""
        draws = [noise.draw(i, k, shape[1:]) for i, k in zip(image_ids.tolist(), channel_ids.tolist())]
        return torch.stack(draws).mul_(self.std)


@register_explainer("iscam")
class ISCAM(_MaskedInputCAM):
    """IS-CAM: Score-CAM whose masks are integrated along a path of growing intensities.

    Naidu, Ghosh, Maurya, Nayak K & Kundu, "IS-CAM: Integrated Score-CAM for axiomatic-based
    explanations", arXiv 2020, https://arxiv.org/abs/2010.03023.

    With the notation of :class:`ScoreCAM` (H_k = s(Up(A_k)), f^c the logit, X_b = 0) and N steps,
    the i-th mask is the running sum M_i = M_{i-1} + (i/N) H_k (M_0 = 0), i.e. c_i H_k with
    c_i = sum_{j=1..i} j/N = i(i+1)/(2N):

        S_k = (1/N) sum_{i=1..N} [ f^c(X o c_i H_k) - f^c(X_b) ]
        alpha_k = softmax_k(S)_k,      L = ReLU(sum_k alpha_k A_k)

    Which definition: torchcam's ``ISCAM``, followed exactly (its docstring writes the sum over j from
    0 to i - 1, one step behind its code; we follow the code, whose coefficients reach (N + 1)/2 at the
    last step), with Score-CAM's logit increase and softmax over channels. Default num_samples = 10 is
    torchcam's. The mask differs from torchcam's only as for Score-CAM (torchcam scales A_k to [0, 1]
    before upsampling). pytorch-grad-cam has no IS-CAM.

    Skipped work: a constant feature map has H_k = 0, so every one of its masked inputs is
    X o c_i 0 = X_b and S_k = 0 exactly (as in Score-CAM).

    Cost: 2 forward passes plus num_samples forward passes per non-constant feature map, per image
    (up to 12,800 on EfficientNet-Lite0), in batches of ``batch_size``.

    Args:
        model: The model to explain.
        num_samples: Integration steps N (default 10, torchcam's).
        batch_size: Masked inputs per forward pass (default None: as many as
            :func:`xaibench.pass_rows.pass_batch_size` gives for the model and its device, 4 at 224 x 224 on a CPU).
    """

    def __init__(
        self, model: Model, *, num_samples: int = 10, batch_size: int | None = None
    ) -> None:
        super().__init__(model, batch_size=batch_size)
        self.num_samples = options.integer("num_samples", num_samples, 1)

    def _steps(self) -> int:
        return self.num_samples

    def _masks(
        self, unit_masks: Tensor, image_ids: Tensor, channel_ids: Tensor, steps: Tensor, noise: ChannelNoise | None
    ) -> Tensor:
        i = (steps + 1).to(unit_masks.dtype)
        return unit_masks * (i * (i + 1) / (2 * self.num_samples))[:, None, None, None]


# --------------------------------------------------------------------------------- Ablation-CAM


@contextmanager
def _replaced_output(layer: nn.Module, name: str, replacement: Tensor, grid: TokenGrid | None = None) -> Iterator[None]:
    """Inside the block, ``layer``'s output is replaced by ``replacement`` (once per forward pass): feature
    maps, made tokens again by ``grid`` for a layer that outputs tokens (the prefix tokens its own)."""
    calls = []

    def hook(module: nn.Module, inputs: tuple, output: Tensor) -> Tensor:
        if calls:
            raise LayerError(
                f"layer '{name}' ran more than once in one forward pass (one module object is called "
                "twice), so its output is ambiguous; choose a layer that runs once"
            )
        calls.append(True)
        return replacement if grid is None else grid.restore(replacement, output)

    handle = layer.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


#: Why Ablation-CAM's general path refuses a reduced precision.
_ABLATED_DROPS = ("each weight is the relative drop (y - y_k) / y of the score when one of the feature maps is "
                  "zeroed, a difference of near-equal scores that 8 or 11 significant bits do not resolve")


@register_explainer("ablationcam")
class AblationCAM(Explainer):
    """Ablation-CAM: feature maps weighted by the relative drop of the target's score when each is zeroed.

    Desai & Ramaswamy, "Ablation-CAM: Visual Explanations for Deep Convolutional Network via
    Gradient-free Localization", WACV 2020,
    https://openaccess.thecvf.com/content_WACV_2020/papers/Desai_Ablation-CAM_Visual_Explanations_for_Deep_Convolutional_Network_via_Gradient-free_Localization_WACV_2020_paper.pdf
    (no arXiv version).

    With y_c the logit of the target class c, A_k (k = 1..K) the target layer's feature maps and
    y_c^k the logit when A_k is set to zero (the other maps unchanged):

        alpha_k = (y_c - y_c^k) / y_c,        L = ReLU(sum_k alpha_k A_k)

    (the paper's weight, the relative drop of the score, and its map). The map is (h, w), the target
    layer's resolution. As in the paper, alpha is divided by y_c itself, so a negative logit flips the
    map's sign, and y_c = 0 gives a non-finite map (flagged by the base class).

    Fast path (``closed_form=True``, the default): when the logits are the classifier applied to the
    spatial mean of the target layer's output, y = W mean_xy(A) + b (global average pooling straight
    into ``model.classifier``, verified numerically on every batch as CAM does), zeroing A_k changes
    y_c by exactly W[c, k] mean_xy(A_k), so

        alpha_k = W[c, k] mean_xy(A_k) / y_c      for all k at once, from one forward pass.

    Otherwise (or with ``closed_form=False``), the general path re-runs the network with a forward
    hook that replaces the target layer's output by ``batch_size`` copies of the cached activations,
    each with one channel zeroed, and reads y_c^k from the logits. The layers before the target layer
    then run on the single image only (the copies are broadcast from the layer on), when a probe at
    the first use shows that this network gives the same logits that way; else on ``batch_size``
    copies of the image.

    Skipped work: a feature map that is zero everywhere is not ablated: zeroing it leaves the layer's
    output unchanged, so y_c^k = y_c and alpha_k = 0 exactly.

    Which definition: the paper's. pytorch-grad-cam's ``AblationCAM`` computes the same alpha and map
    when the target layer's smallest output is exactly 0 (ReLU features); otherwise (``min(A) != 0``,
    e.g. features with negative values) it replaces an ablated channel by ``min(A) - 1e7`` instead of
    0 ("deviating from the paper", its comment says), which gives other weights. It always re-runs
    the whole network, on 32 copies of the image per pass. torchcam has no Ablation-CAM.

    Cost: one forward pass on the fast path (EfficientNet-Lite0: the cost of CAM; none in a run, whose
    classification pass of the batch gives the activations and logits). General path: per
    image, one forward pass plus ceil(K'/batch_size) passes of the layers after the target layer on
    ``batch_size`` ablated copies (and of the layers before it on one image), K' the number of
    non-zero feature maps.

    Args:
        model: The model to explain.
        batch_size: Ablated copies per forward pass on the general path (default 128).
        closed_form: Use the closed form when the head is global average pooling into
            ``model.classifier`` (default True); False forces the general path.
    """

    def __init__(self, model: Model, *, batch_size: int = 128, closed_form: bool = True) -> None:
        super().__init__(model)
        self.batch_size = options.integer("batch_size", batch_size, 1)
        if not isinstance(closed_form, bool):
            raise XaibenchError(f"closed_form must be True or False, got {closed_form!r}")
        self.closed_form = closed_form
        self._broadcast: bool | None = None  # decided by a probe at the first use of the general path
        self._gap_head: bool | None = None  # decided by a probe when a reduced precision is asked for

    uses_forward_pass = True

    @property
    def full_precision_only(self) -> str | None:
        """The general path's reason, when ``closed_form`` is False or the head is not GAP -> linear (one
        fp32 pass on a seeded random image tells, the first time it is asked: before a run starts)."""
        if not self.closed_form:
            return _ABLATED_DROPS
        if self._gap_head is None:
            model = self.model
            image = torch.rand(1, 3, *model.input_size, generator=torch.Generator().manual_seed(0)).to(model.device)
            with eval_mode(model.network), torch.inference_mode(), torch.autocast(model.device.type, enabled=False):
                features, logits = _features(model, model.normalize(image))
            self._gap_head = self._head_is_gap_linear(features, logits)
        if self._gap_head:
            return None
        return f"its head is not global average pooling into one nn.Linear, so it takes the general path: {_ABLATED_DROPS}"

    def attribute(self, images: Tensor, targets: Tensor) -> Tensor:
        inputs = self.model.normalize(images)
        features, logits = _features(self.model, inputs)
        return self._map(inputs, features, logits, targets)

    def attribute_from_pass(self, forward: ForwardPass, targets: Tensor) -> Tensor:
        """The closed form needs only the classification pass; the general path runs the network on
        the normalised images as :meth:`attribute` does."""
        inputs = self.model.normalize(forward.images)
        return self._map(inputs, forward.features, forward.logits, targets)

    def _map(self, inputs: Tensor, features: Tensor, logits: Tensor, targets: Tensor) -> Tensor:
        y = logits.gather(1, targets[:, None])[:, 0]
        if self.closed_form and self._head_is_gap_linear(features, logits):
            drop = self.model.classifier.weight.detach()[targets] * features.mean((2, 3))  # y_c - y_c^k
        else:
            if reduced():
                raise XaibenchError(f"ablationcam on model '{self.model.name}' takes the general path (its head is not "
                                    f"global average pooling into one nn.Linear): {_ABLATED_DROPS}; run it with --precision fp32")
            drop = y[:, None] - self.ablated_scores(inputs, features, targets, y)
        return weighted_sum(drop / y[:, None], features)

    def _head_is_gap_linear(self, features: Tensor, logits: Tensor) -> bool:
        """Whether ``logits == classifier(mean_xy(features))`` (CAM's check, same tolerance)."""
        head = self.model.classifier
        if head is None or features.shape[1] != head.in_features or logits.shape[1] != head.out_features:
            return False
        bias = None if head.bias is None else head.bias.detach()
        pooled = F.linear(features.mean((2, 3)), head.weight.detach(), bias)
        return (pooled - logits).abs().max().item() <= head_tolerance(features, logits)

    def ablated_scores(self, inputs: Tensor, features: Tensor, targets: Tensor, y: Tensor) -> Tensor:
        """y_c^k (N, K) by re-running the network with channel k of the target layer zeroed (the
        general path); y_c^k = y_c for the all-zero feature maps, which are not run."""
        network, layer, name = self.model.network, self.model.target_layer, self.model.target_layer_name
        n, k = features.shape[:2]
        with torch.inference_mode():
            if self._broadcast is None:
                self._broadcast = self._probe_broadcast(inputs[:1], features[:1])
            ablated = y[:, None].to(features.dtype).expand(n, k).clone()  # y_c^k = y_c where A_k = 0
            nonzero = features.flatten(2).ne(0).any(2)  # (N, K)
            done, total = 0, int(nonzero.sum())
            for i in range(n):
                x = inputs[i : i + 1]
                for channels in nonzero[i].nonzero()[:, 0].split(self.batch_size):
                    copies = self._ablate(features[i], channels)
                    batch = x if self._broadcast else x.expand(len(channels), *x.shape[1:])
                    with _replaced_output(layer, name, copies, self.model.feature_grid):
                        ablated[i, channels] = network(batch)[:, targets[i]]
                    done += len(channels)
                    self.report_progress(done, total)
        return ablated.clone()

    @staticmethod
    def _ablate(features: Tensor, channels: Tensor) -> Tensor:
        """(B, K, h, w): copies of one image's (K, h, w) features, copy j with channel ``channels[j]`` zeroed."""
        copies = features.expand(len(channels), *features.shape).clone()
        copies[torch.arange(len(channels), device=features.device), channels] = 0
        return copies

    def _probe_broadcast(self, x: Tensor, features: Tensor) -> bool:
        """Whether the network, fed one image, gives the same logits when the target layer's output is
        replaced by a batch of copies (i.e. nothing after the layer mixes in the batch size of a tensor
        from before it) as when it is fed as many copies of the image."""
        network, layer, name = self.model.network, self.model.target_layer, self.model.target_layer_name
        channels = torch.arange(min(2, features.shape[1]), device=features.device)
        copies = self._ablate(features[0], channels)  # cloned per pass: a later in-place op may change them
        with eval_mode(network), _replaced_output(layer, name, copies.clone(), self.model.feature_grid):
            expected = network(x.expand(len(channels), *x.shape[1:]))
        try:
            with eval_mode(network), _replaced_output(layer, name, copies.clone(), self.model.feature_grid):
                broadcast = network(x)
        except RuntimeError as error:  # e.g. a shape mismatch: then the copies of the image are needed
            logger.debug("ablationcam: layers before '%s' run on copies of the image (%s)", name, error)
            return False
        same = broadcast.shape == expected.shape and torch.allclose(
            broadcast, expected, rtol=1e-4, atol=1e-5 * (1 + expected.abs().max().item())
        )
        logger.debug("ablationcam: layers before '%s' run on %s", name, "one image" if same else "copies")
        return bool(same)
