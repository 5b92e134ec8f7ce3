"""How alike two explanation maps are: the four measures of Adebayo et al.'s sanity checks.

Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018, Sec. 3 and Fig. 2, compare the map
of a trained network with that of a randomized one by

- the Spearman rank correlation of the absolute maps (``spearman_abs``) and of the maps with their
  signs (``spearman``, for methods whose maps have signs);
- the structural similarity index, SSIM (Wang et al., IEEE TIP 2004), of the maps scaled to [0, 1];
- the Pearson correlation of their histograms of oriented gradients, HOG (Dalal & Triggs, CVPR 2005).

SSIM and HOG see each map as Adebayo et al.'s code shows it: the absolute map divided by its maximum
(``abs_grayscale_norm``), a map in [0, 1]. Each function takes two maps of one image, (H, W), and
returns a number in [-1, 1], or NaN where the measure is undefined (a constant map has no ranks and
no gradients); scikit-image and SciPy compute them, with their default parameters.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["SIMILARITIES", "spearman", "spearman_abs", "ssim", "hog_similarity", "scaled_abs"]


def scaled_abs(x: np.ndarray) -> np.ndarray:
    """``|x| / max |x|`` (all zeros for a map of zeros): a map in [0, 1]."""
    x = np.abs(np.asarray(x, dtype=np.float64))
    peak = x.max(initial=0.0)
    return x / peak if peak > 0 else x


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of the signed maps: Pearson's r of their ranks (ties share the mean rank)."""
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    from scipy import stats  # loaded when maps are compared, not with the command line

    return float(stats.spearmanr(a, b).statistic)


def spearman_abs(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of ``|a|`` and ``|b|``."""
    return spearman(np.abs(a), np.abs(b))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of ``scaled_abs(a)`` and ``scaled_abs(b)`` (scikit-image's ``structural_similarity``,
    7 x 7 uniform window, ``data_range=1``)."""
    from skimage.metrics import structural_similarity

    return float(structural_similarity(scaled_abs(a), scaled_abs(b), data_range=1.0))


def hog_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of the HOG features of ``scaled_abs(a)`` and ``scaled_abs(b)``
    (scikit-image's ``hog``: 9 orientations, 8 x 8 pixel cells, 3 x 3 cell blocks, L2-Hys)."""
    from skimage.feature import hog

    fa, fb = hog(scaled_abs(a)), hog(scaled_abs(b))
    if fa.size < 2 or np.ptp(fa) == 0 or np.ptp(fb) == 0:  # no gradient, no orientation: undefined
        return float("nan")
    from scipy import stats

    return float(stats.pearsonr(fa, fb).statistic)


SIMILARITIES: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "spearman_abs": spearman_abs,
    "spearman": spearman,
    "ssim": ssim,
    "hog": hog_similarity,
}
"""The measures by the names ``sanity.csv`` gives them, in the order of Adebayo et al.'s Fig. 2."""
