"""Faithfulness metrics: what happens to the model's output when the pixels a map ranks highest are
removed, inserted or kept. Pure functions of the network, its inputs, the maps and the targets (the
metric plugins call them); nothing here keeps state or touches the network's parameters.

Images are (N, 3, H, W), maps (N, H, W) at the same resolution. Each game works where its authors'
code does: RISE's deletion and insertion change the network's (normalised) inputs; ROAD imputes the
[0, 1] image and normalises afterwards (``transform_test`` of the authors' ``run_road``). RISE's pixel
order is a map's values in decreasing order, ties in row-major order (:func:`pixel_order`); ROAD's
breaks ties with the authors' small noise (:func:`road_order`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage, sparse
from scipy.sparse.linalg import spsolve
from torch import Tensor

#: RISE's insertion start: the image blurred by an 11 x 11 kernel of sigma 5 (``gkern(11, 5)`` in the
#: authors' ``evaluation.py``).
BLUR_SIZE, BLUR_SIGMA = 11, 5.0
#: ROAD's removal fractions (Rong et al., ICML 2022, Sec. 5: 10 % to 90 %).
ROAD_FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
#: ROAD's noisy linear imputation: the weight of each of the 8 neighbours (direct 1/6, diagonal 1/12)
#: and the standard deviation of the noise added to the imputed values.
ROAD_NEIGHBOURS = (
    ((1, 1), 1 / 12), ((0, 1), 1 / 6), ((-1, 1), 1 / 12), ((1, -1), 1 / 12),
    ((0, -1), 1 / 6), ((-1, -1), 1 / 12), ((1, 0), 1 / 6), ((-1, 0), 1 / 6),
)
ROAD_NOISE = 0.01
#: ROAD's tie-break: ``1e-4 N(0, 1)`` added to the min-max scaled map before sorting (``random_v`` in the
#: authors' ``ImputedDataset``), so the pixels of a plateau go in random, not row-major, order.
ROAD_TIE_NOISE = 1e-4


def pixel_order(saliency: np.ndarray) -> np.ndarray:
    """Flat pixel indices of an (H, W) map in decreasing value; among equal values, row-major order."""
    return np.argsort(-np.asarray(saliency, dtype=np.float64).reshape(-1), kind="stable")


def auc(curve: np.ndarray) -> np.ndarray:
    """Normalised area under curves sampled at evenly spaced points of [0, 1] (trapezoidal rule), as
    RISE's ``auc``: ``(sum_i a_i - a_0 / 2 - a_n / 2) / n`` over the last axis."""
    curve = np.asarray(curve, dtype=np.float64)
    return (curve.sum(-1) - curve[..., 0] / 2 - curve[..., -1] / 2) / (curve.shape[-1] - 1)


def rise_blur_kernel(size: int = BLUR_SIZE, sigma: float = BLUR_SIGMA) -> Tensor:
    """RISE's blur kernel: a Dirac in a ``size`` x ``size`` array smoothed by ``scipy.ndimage.gaussian_filter``
    (its default reflecting border folds the Gaussian's tails back in: the kernel sums to 1 but is
    flatter than a truncated Gaussian)."""
    dirac = np.zeros((size, size))
    dirac[size // 2, size // 2] = 1
    return torch.from_numpy(ndimage.gaussian_filter(dirac, sigma).astype(np.float32))


def blur(inputs: Tensor, kernel: Tensor) -> Tensor:
    """Each channel convolved with ``kernel`` with zero padding (``conv2d(x, gkern, padding=size // 2)``)."""
    channels = inputs.shape[1]
    weight = kernel.to(inputs)[None, None].expand(channels, 1, *kernel.shape)
    return F.conv2d(inputs, weight, padding=kernel.shape[-1] // 2, groups=channels)


def target_probabilities(network: Callable[[Tensor], Tensor], inputs: Tensor, targets: Tensor) -> Tensor:
    """The softmax probability of each row's target class, (n,)."""
    return softmax_of_target(network(inputs), targets)


def softmax_of_target(logits: Tensor, targets: Tensor) -> Tensor:
    """``p_i = softmax(z_i)[c_i]`` (in float32) for logits (n, C) and targets (n,): (n,)."""
    return torch.softmax(logits.float(), dim=1).gather(1, targets[:, None])[:, 0]


def causal_curves(
    network: Callable[[Tensor], Tensor],
    inputs: Tensor,
    maps: np.ndarray,
    targets: Tensor,
    start: Tensor,
    finish: Tensor,
    step: int,
    batch_size: int,
) -> np.ndarray:
    """RISE's deletion / insertion game (Petsiuk et al., BMVC 2018, Sec. 4.1; the authors' ``CausalMetric``).

    For each image, beginning from ``start`` (deletion: the image; insertion: the blurred image),
    ``step`` pixels at a time are set to their value in ``finish`` in the map's :func:`pixel_order`,
    all channels of a pixel at once; the curve is the target class's softmax probability after
    0, step, 2 step, ... pixels, until every pixel is changed: ``ceil(H W / step) + 1`` points.

    Returns:
        (N, ceil(H W / step) + 1) probabilities.
    """
    n, pixels = inputs.shape[0], inputs.shape[-2] * inputs.shape[-1]
    steps = -(-pixels // step)
    counts = torch.arange(steps + 1, device=inputs.device) * step
    curves = np.empty((n, steps + 1))
    with torch.no_grad():
        for i in range(n):
            _curve(network, inputs, maps[i], targets[i], start[i], finish[i], counts, batch_size, curves[i])
    return curves


def _curve(
    network: Callable[[Tensor], Tensor],
    inputs: Tensor,
    saliency: np.ndarray,
    target: Tensor,
    start: Tensor,
    finish: Tensor,
    counts: Tensor,
    batch_size: int,
    out: np.ndarray,
) -> None:
    """One image's curve of :func:`causal_curves`, written into ``out``: ``batch_size`` steps per pass."""
    height, width = inputs.shape[-2:]
    pixels = height * width
    rank = torch.empty(pixels, dtype=torch.long, device=inputs.device)
    rank[torch.from_numpy(pixel_order(saliency)).to(inputs.device)] = torch.arange(pixels, device=inputs.device)
    rank = rank.view(1, 1, height, width)
    for first in range(0, len(counts), batch_size):
        changed = rank < counts[first : first + batch_size].view(-1, 1, 1, 1)
        images = torch.where(changed, finish[None], start[None])
        rows = target.expand(images.shape[0])
        out[first : first + images.shape[0]] = target_probabilities(network, images, rows).cpu().numpy()


def road_order(saliency: np.ndarray, generator: torch.Generator | None) -> np.ndarray:
    """Flat pixel indices of an (H, W) map in ROAD's order, most relevant first: the decreasing order of
    ``(s - min s) / (max s - min s + 1e-5) + 1e-4 z``, z ~ N(0, 1) per pixel drawn from ``generator``
    (the authors' ``rescale_channel`` plus ``random_v``): ties fall in random order. The authors draw
    ``random_v`` once per data set and fraction and add it to every image's map; here it is drawn per
    image, from the image's own generator, and serves every fraction: the same distribution of orders,
    independent of the batch."""
    s = np.asarray(saliency, dtype=np.float64).reshape(-1)
    scaled = (s - s.min()) / (s.max() - s.min() + 1e-5)
    jitter = torch.randn(s.size, generator=generator, dtype=torch.float64).numpy()
    return np.argsort(-(scaled + ROAD_TIE_NOISE * jitter), kind="stable")


def removal_mask(order: np.ndarray, shape: tuple[int, int], fraction: float, most_relevant: bool) -> np.ndarray:
    """(H, W) bool: the pixels ROAD removes at ``fraction`` f, given the map's ``order`` (most relevant first).

    As the authors' ``ImputedDataset`` with ``th_p = p``: MoRF (``most_relevant``, p = f) removes
    ``order[:int(H W p)]``; LeRF removes ``order[int(H W p):]``, the least relevant pixels, with
    p = 1 - f, so that f is the fraction removed in both orders (the authors' LeRF ``th_p`` is the
    fraction kept). ``1 - f`` is rounded to 12 decimals first: the authors' ``th_p`` is a literal such as
    0.1, whereas ``1 - 0.9`` is 0.09999999999999998, which would remove one pixel too many whenever
    ``H W p`` is whole (9001 of a 100 x 100 map at f = 0.9, not 9000).
    """
    pixels = int(np.prod(shape))
    removed = np.zeros(pixels, dtype=bool)
    if most_relevant:
        removed[order[: int(pixels * fraction)]] = True
    else:
        removed[order[int(pixels * round(1.0 - fraction, 12)) :]] = True
    return removed.reshape(shape)


def noisy_linear_imputation(image: Tensor, removed: np.ndarray, noise: float, generator: torch.Generator | None) -> Tensor:
    """ROAD's noisy linear imputation (Rong, Leemann, Borisov, Kasneci & Kasneci, "A Consistent and
    Efficient Evaluation Strategy for Attribution Methods", ICML 2022, Sec. 4).

    Each removed pixel p takes the weighted mean of its 8 neighbours q inside the image,
    ``x_p = sum_q w_q x_q / sum_q w_q`` (w = 1/6 for the 4 direct neighbours, 1/12 for the diagonal
    ones; removed neighbours are unknowns too), one sparse linear system for all removed pixels,
    solved for every channel at once; then Gaussian noise of standard deviation ``noise`` is added to
    the imputed values (drawn from ``generator``). Kept pixels are unchanged. The system and the
    weights are the authors' ``NoisyLinearImputer`` (also pytorch-grad-cam's).

    Args:
        image: (C, H, W) one image in [0, 1], as ROAD imputes it (before the network's normalisation).
        removed: (H, W) bool, the pixels to impute.
    """
    channels, height, width = image.shape
    flat_removed = np.asarray(removed, dtype=bool).reshape(-1)
    unknown = np.flatnonzero(flat_removed)
    if unknown.size == 0:
        return image.clone()
    values = image.detach().cpu().double().reshape(channels, -1).numpy()
    index = np.full(flat_removed.size, -1)
    index[unknown] = np.arange(unknown.size)
    rows, cols, weights = [], [], []
    diagonal = np.zeros(unknown.size)
    rhs = np.zeros((unknown.size, channels))
    y, x = np.divmod(unknown, width)
    for (dy, dx), weight in ROAD_NEIGHBOURS:
        ny, nx = y + dy, x + dx
        inside = (ny >= 0) & (ny < height) & (nx >= 0) & (nx < width)
        neighbour = ny[inside] * width + nx[inside]
        which = np.flatnonzero(inside)
        diagonal[which] += weight
        free = flat_removed[neighbour]
        rows.append(which[free])
        cols.append(index[neighbour[free]])
        weights.append(np.full(int(free.sum()), weight))
        rhs[which[~free]] += weight * values[:, neighbour[~free]].T
    matrix = sparse.csc_matrix(
        (np.concatenate(weights + [-diagonal]), (np.concatenate(rows + [np.arange(unknown.size)]),
                                                  np.concatenate(cols + [np.arange(unknown.size)]))),
        shape=(unknown.size, unknown.size),
    )
    solution = np.asarray(spsolve(matrix, -rhs)).reshape(unknown.size, channels)
    imputed = torch.from_numpy(solution.T.copy()).to(image.dtype)
    if noise > 0:
        imputed = imputed + noise * torch.randn(imputed.shape, generator=generator, dtype=image.dtype)
    out = image.detach().cpu().clone().reshape(channels, -1)
    out[:, torch.from_numpy(unknown)] = imputed
    return out.reshape(image.shape).to(image.device)
