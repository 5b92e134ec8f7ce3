"""Faithfulness metrics as plugins: deletion and insertion (RISE), Average Drop and Increase in
Confidence (Grad-CAM++), ROAD's most- and least-relevant-first removal.

Each runs the network on perturbed copies of the image (the extra passes per image and map are in
``passes_per_image``) in eval mode and inference mode, never changing it. The formulas are in
:mod:`xaibench.faithfulness`; each class says which paper's definition it follows and how the peers
differ.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from xaibench import faithfulness, options, pass_rows
from xaibench.errors import OptionError
from xaibench.metric import MetricInput, Metric, register_metric
from xaibench.models import eval_mode
from xaibench.seeding import image_generator

__all__ = ["AverageDrop", "DeletionAUC", "IncreaseInConfidence", "InsertionAUC", "RoadLeRF", "RoadMoRF"]

#: What replaces a removed pixel (or where insertion starts): ``zero``, the network input 0 (the
#: normalised image's zero, i.e. the data set's mean colour, as RISE's code ``torch.zeros_like`` on the
#: normalised tensor); ``black``, the [0, 1] image's 0; ``blur``, RISE's blurred image.
SUBSTRATES = ("zero", "black", "blur")


def _substrate(kind: str, batch: MetricInput, inputs: torch.Tensor) -> torch.Tensor:
    if kind == "zero":
        return torch.zeros_like(inputs)
    if kind == "black":
        return batch.model.normalize(torch.zeros_like(batch.images))
    return faithfulness.blur(inputs, faithfulness.rise_blur_kernel())


class _Causal(Metric):
    """RISE's deletion or insertion game; see :func:`xaibench.faithfulness.causal_curves`."""

    family = "faithfulness"
    unit = "AUC"
    passes_per_image = 225
    deleting = True

    def __init__(self, *, steps: int = 224, substrate: str = "zero", batch_size: int | None = None) -> None:
        self.steps = options.integer("steps", steps, 1)
        self.passes_per_image = self.steps + 1
        self.substrate = options.choice("substrate", substrate, SUBSTRATES)
        self.batch_size = batch_size if batch_size is None else options.integer("batch_size", batch_size, 1)

    def score(self, batch: MetricInput) -> dict[str, Sequence]:
        network = batch.model.network
        with eval_mode(network), torch.inference_mode():
            inputs = batch.model.normalize(batch.images)
            substrate = _substrate(self.substrate, batch, inputs)
            start, finish = (inputs, substrate) if self.deleting else (substrate, inputs)
            pixels = inputs.shape[-2] * inputs.shape[-1]
            step = -(-pixels // self.steps)
            rows = pass_rows.pass_batch_size("batch_size", self.batch_size, batch.model, input_size=tuple(inputs.shape[-2:]))
            curves = faithfulness.causal_curves(network, inputs, batch.maps, batch.targets, start, finish, step, rows)
        prefix = "deletion" if self.deleting else "insertion"
        return {f"{prefix}_auc": faithfulness.auc(curves), f"{prefix}_curve": [c.astype(np.float32) for c in curves]}


@register_metric("deletion_auc")
class DeletionAUC(_Causal):
    """Deletion (Petsiuk, Das & Saenko, BMVC 2018, "RISE", Sec. 4.1): area under the target's probability as the map's top pixels are removed.

    With p_k the softmax probability of the target class after the k x ``step`` pixels ranked highest
    by the map are replaced by the substrate (k = 0..K, K = ceil(H W / step), step = ceil(H W / steps)):

        deletion = (sum_k p_k - p_0 / 2 - p_K / 2) / K      (the trapezoidal area over [0, 1])

    Lower is better: a faithful map destroys the class score fast. Defaults are the authors'
    (``evaluation.py`` and its notebook): 224 steps (224 pixels each at 224 x 224), removed pixels set
    to 0 in the network's normalised input (``substrate="zero"``; ``"black"`` for the [0, 1] image's
    0). Differences: the authors explain the top-1 class, xaibench the run's target (the same with
    ``--target prediction``); they order pixels with numpy's unstable ``argsort``, xaibench breaks ties
    in row-major order. Quantus's ``PixelFlipping`` (one feature per step, ``perturb_baseline=0.0``:
    its ``"black"`` is the image's minimum) gives the same curve on one-channel inputs and maps
    without ties; on colour images it removes each channel value as a feature of its own. Cost: K + 1 forward passes per image and map.
    """

    title = "Deletion AUC"
    description = "area under the target's probability as the map's top pixels are removed (RISE)"
    higher_is_better = False
    columns = {"deletion_auc": "scalar", "deletion_curve": "array"}
    curve = "deletion_curve"
    curve_axes = ("fraction of pixels removed", "probability of the target class")


@register_metric("insertion_auc")
class InsertionAUC(_Causal):
    """Insertion (Petsiuk et al., BMVC 2018, "RISE", Sec. 4.1): area under the target's probability as the map's top pixels are put back into a blurred image.

    As :class:`DeletionAUC`, starting from the substrate (default the authors' blurred image: 11 x 11
    kernel ``gkern(11, 5)``, zero padding, on the normalised input) and setting the pixels ranked
    highest to the image's own values: ``insertion = (sum_k p_k - p_0 / 2 - p_K / 2) / K``. Higher is
    better. Cost: K + 1 forward passes per image and map (225 at 224 x 224).
    """

    title = "Insertion AUC"
    description = "area under the target's probability as the map's top pixels are inserted into a blurred image (RISE)"
    columns = {"insertion_auc": "scalar", "insertion_curve": "array"}
    curve = "insertion_curve"
    curve_axes = ("fraction of pixels inserted", "probability of the target class")
    deleting = False

    def __init__(self, *, steps: int = 224, substrate: str = "blur", batch_size: int | None = None) -> None:
        super().__init__(steps=steps, substrate=substrate, batch_size=batch_size)


def _confidences(batch: MetricInput) -> tuple[np.ndarray, np.ndarray]:
    """(Y, O): the target's softmax probability on the image and on the explanation map E = L o I.

    Y comes from the batch's clean logits when the harness shares them (:attr:`MetricInput.logits`,
    the classification pass: no pass of its own); else the image and E run in one pass."""

    def compute() -> tuple[np.ndarray, np.ndarray]:
        model = batch.model
        maps = torch.as_tensor(batch.maps, device=batch.images.device, dtype=batch.images.dtype)
        with eval_mode(model.network), torch.inference_mode():
            shown = batch.images * maps[:, None]
            if batch.logits is not None:
                y = faithfulness.softmax_of_target(batch.logits, batch.targets)
                o = faithfulness.target_probabilities(model.network, model.normalize(shown), batch.targets)
                return y.cpu().numpy().astype(np.float64), o.cpu().numpy().astype(np.float64)
            both = torch.cat([batch.images, shown])
            targets = torch.cat([batch.targets, batch.targets])
            p = faithfulness.target_probabilities(model.network, model.normalize(both), targets).cpu().numpy()
        return p[: len(batch)].astype(np.float64), p[len(batch) :].astype(np.float64)

    return batch.shared("confidence_of_map_times_image", compute)


@register_metric("average_drop")
class AverageDrop(Metric):
    """Average Drop % (Chattopadhay, Sarkar, Howlader & Balasubramanian, WACV 2018, "Grad-CAM++", Sec. 4.1): the relative loss of confidence when only the map's region is shown.

    With Y_i the softmax probability of the target class on image i and O_i on its explanation map
    E = L o I (the [0, 1] map multiplied into every channel of the [0, 1] image):

        Average Drop % = 100 / N sum_i max(0, Y_i - O_i) / Y_i

    Lower is better. pytorch-grad-cam's ``DropInConfidence`` multiplies the map into the normalised
    tensor instead and returns ``max(0, Y - O)`` without dividing by Y (the same number as xaibench,
    times Y, for a model without normalisation). Cost: 1 forward pass per image and map (shared
    with :class:`IncreaseInConfidence`), on E: Y comes from the run's classification pass of the batch
    (:attr:`~xaibench.metric.MetricInput.logits`), computed once for every method; 2 passes when no
    logits are given.
    """

    title = "Average Drop"
    description = "relative loss of the target's probability when only the map's region is shown (Grad-CAM++)"
    family = "faithfulness"
    higher_is_better = False
    passes_per_image = 1
    columns = {"average_drop": "scalar"}

    def score(self, batch: MetricInput) -> dict[str, Sequence]:
        y, o = _confidences(batch)
        with np.errstate(divide="ignore", invalid="ignore"):
            return {"average_drop": 100.0 * np.maximum(0.0, y - o) / y}


@register_metric("increase_in_confidence")
class IncreaseInConfidence(Metric):
    """Increase in Confidence (Chattopadhay et al., WACV 2018, "Grad-CAM++", Sec. 4.1): how often showing only the map's region raises the confidence.

    With Y_i and O_i as in :class:`AverageDrop`: ``100 / N sum_i [Y_i < O_i]``. Higher is better.
    pytorch-grad-cam's ``IncreaseInConfidence`` is the same indicator (on the normalised tensor).
    Cost: shared with :class:`AverageDrop`.
    """

    title = "Increase in Confidence"
    description = "share of images whose target probability rises when only the map's region is shown (Grad-CAM++)"
    family = "faithfulness"
    passes_per_image = 1
    columns = {"increase_in_confidence": "scalar"}

    def score(self, batch: MetricInput) -> dict[str, Sequence]:
        y, o = _confidences(batch)
        return {"increase_in_confidence": 100.0 * (o > y)}


class _Road(Metric):
    """ROAD: remove a fraction of the pixels by the map's order, impute them, re-classify."""

    family = "faithfulness"
    passes_per_image = len(faithfulness.ROAD_FRACTIONS)
    most_relevant = True

    def __init__(
        self,
        *,
        fractions: tuple = faithfulness.ROAD_FRACTIONS,
        noise: float = faithfulness.ROAD_NOISE,
        seed: int = 0,
    ) -> None:
        if not fractions or not all(isinstance(f, (int, float)) and 0 < f < 1 for f in fractions):
            raise OptionError(f"option fractions must be fractions in (0, 1), got {fractions!r}")
        self.fractions = tuple(float(f) for f in fractions)
        self.passes_per_image = len(self.fractions)
        self.noise = options.number("noise", noise, 0.0)
        self.seed = options.seed("seed", seed)

    def score(self, batch: MetricInput) -> dict[str, Sequence]:
        model = batch.model
        curves = np.empty((len(batch), len(self.fractions)))
        with eval_mode(model.network), torch.inference_mode():
            for i, (image, saliency) in enumerate(zip(batch.images, batch.maps)):
                generator = image_generator(image, self.seed)
                order = faithfulness.road_order(saliency, generator)
                imputed = torch.stack([
                    faithfulness.noisy_linear_imputation(
                        image, faithfulness.removal_mask(order, saliency.shape, f, self.most_relevant), self.noise, generator
                    )
                    for f in self.fractions
                ])
                logits = model(imputed)
                curves[i] = (logits.argmax(1) == batch.targets[i]).cpu().numpy()
        prefix = "road_morf" if self.most_relevant else "road_lerf"
        return {prefix: 100.0 * curves.mean(1), f"{prefix}_curve": [c.astype(np.float32) for c in curves]}

    def curve_x(self, points: int) -> np.ndarray:
        return np.asarray(self.fractions)


@register_metric("road_morf")
class RoadMoRF(_Road):
    """ROAD, most relevant first (Rong, Leemann, Borisov, Kasneci & Kasneci, ICML 2022): the model's accuracy after the map's top pixels are removed by noisy linear imputation, averaged over 10 % to 90 %.

    For each fraction f in ``fractions`` (the paper's 10 %, 20 %, ..., 90 %), the int(f H W) pixels
    ranked highest by the map (:func:`xaibench.faithfulness.road_order`: ties broken by the authors'
    1e-4 noise) are imputed from their neighbours in the [0, 1] image
    (:func:`xaibench.faithfulness.noisy_linear_imputation`, noise of standard deviation 0.01 in pixel
    values, as the authors' ``run_road``, which normalises after imputing; seeded per image) and the
    image classified again; per image the value is the mean over the fractions of
    [top-1 class = target] (in %), the area under the paper's accuracy curve. Lower is better. pytorch-grad-cam's ``ROADMostRelevantFirst``
    uses the same imputer, on the normalised tensor (its noise is 0.01 in normalised units), but
    thresholds the map at a percentile (ties and interpolation change the
    count by a pixel or more) and returns the change of the target's probability at one percentile.
    Cost: 9 forward passes and 9 sparse solves per image and map.
    """

    title = "ROAD MoRF"
    description = "accuracy after the map's top 10-90 % pixels are imputed away, averaged (ROAD)"
    higher_is_better = False
    columns = {"road_morf": "scalar", "road_morf_curve": "array"}
    curve = "road_morf_curve"
    curve_axes = ("fraction of top pixels imputed", "accuracy (top-1 = target)")


@register_metric("road_lerf")
class RoadLeRF(_Road):
    """ROAD, least relevant first (Rong et al., ICML 2022): the model's accuracy after the map's bottom pixels are removed by noisy linear imputation, averaged over 10 % to 90 %.

    As :class:`RoadMoRF` with the pixels ranked lowest removed first: at fraction f, the authors' LeRF
    at ``th_p = 1 - f`` (their LeRF counts the fraction kept), so both orders' curves run over the
    fraction removed. Higher is better (a faithful map keeps what the model needs).
    """

    title = "ROAD LeRF"
    description = "accuracy after the map's bottom 10-90 % pixels are imputed away, averaged (ROAD)"
    columns = {"road_lerf": "scalar", "road_lerf_curve": "array"}
    curve = "road_lerf_curve"
    curve_axes = ("fraction of bottom pixels imputed", "accuracy (top-1 = target)")
    most_relevant = False
