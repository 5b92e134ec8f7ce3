"""Known answers for the localization metrics, on hand-made maps and boxes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xaibench import metrics


def test_box_iou_inclusive_corners() -> None:
    gt = np.array([[0, 0, 9, 9], [20, 20, 29, 29]])
    assert metrics.box_iou((0, 0, 9, 9), gt).tolist() == [1.0, 0.0]
    # (0..4) x (0..9) = 50 pixels inside a 100-pixel box: IoU = 50 / 100.
    assert metrics.box_iou((0, 0, 4, 9), gt)[0] == pytest.approx(0.5)
    # One shared pixel: 1 / (4 + 4 - 1).
    assert metrics.box_iou((9, 9, 10, 10), np.array([[8, 8, 9, 9]]))[0] == pytest.approx(1 / 7)
    # A one-pixel box is not empty under the +1 convention.
    assert metrics.box_iou((3, 3, 3, 3), np.array([[3, 3, 3, 3]]))[0] == 1.0


def test_largest_component_box_uses_eight_connectivity_and_picks_the_largest() -> None:
    region = np.zeros((10, 10), dtype=bool)
    region[1, 1] = region[2, 2] = region[3, 3] = True  # a diagonal: one 8-connected component of 3
    region[6:8, 5:9] = True  # 8 pixels
    assert metrics.largest_component_box(region) == (5, 6, 8, 7)
    region[6:8, 5:9] = False
    assert metrics.largest_component_box(region) == (1, 1, 3, 3)
    assert metrics.largest_component_box(np.zeros((4, 4), dtype=bool)) is None


def test_largest_component_box_ties_go_to_the_first_in_row_major_order() -> None:
    region = np.zeros((8, 8), dtype=bool)
    region[5:7, 0:2] = True
    region[0:2, 5:7] = True  # the same size, met first in row-major order
    assert metrics.largest_component_box(region) == (5, 0, 6, 1)


def test_cam_box_threshold_is_a_fraction_of_the_normalised_max() -> None:
    m = np.zeros((10, 10))
    m[2:5, 2:5] = 1.0
    m[7:9, 0:10] = 0.25  # the larger blob, but it survives only thresholds <= 0.25
    assert metrics.cam_box(m, tau=0.2) == (0, 7, 9, 8)
    assert metrics.cam_box(m, tau=0.3) == (2, 2, 4, 4)
    # The threshold is >= tau: a pixel exactly at 20% of the max is kept.
    m2 = np.zeros((5, 5))
    m2[0, 0], m2[0, 1] = 1.0, 0.2
    assert metrics.cam_box(m2, tau=0.2) == (0, 0, 1, 0)
    # Normalisation first: an offset changes nothing.
    assert metrics.cam_box(m + 7.0, tau=0.3) == (2, 2, 4, 4)


def test_cam_box_of_a_flat_map_is_the_whole_image() -> None:
    assert metrics.cam_box(np.zeros((6, 8))) == (0, 0, 7, 5)


def test_cam_box_iou_takes_the_best_matching_box() -> None:
    maps = np.zeros((2, 20, 20))
    maps[0, 10:20, 10:20] = 1.0  # box (10, 10, 19, 19): at the image border
    maps[1, 0:5, 0:5] = 1.0
    boxes = [np.array([[0, 0, 4, 4], [10, 10, 19, 19]]), torch.tensor([[0.0, 0.0, 9.0, 4.0]])]
    assert metrics.cam_box_iou(maps, boxes).tolist() == [1.0, 0.5]


def test_boxes_to_mask_inclusive_and_clipped() -> None:
    mask = metrics.boxes_to_mask(np.array([[1, 1, 2, 3], [4, 4, 9, 9]]), (6, 6))
    assert mask.sum() == 2 * 3 + 2 * 2
    assert mask[1:4, 1:3].all() and mask[4:, 4:].all()


@pytest.mark.parametrize(
    "y, x, hit",
    [
        (0, 14, True),  # 14 px from the region's pixel at x = 0: inside the tolerance
        (0, 15, False),  # exactly 15 px: TorchRay's test is strict
        (9, 12, False),  # 9^2 + 12^2 = 225: exactly 15 px on a diagonal
        (9, 11, True),  # 81 + 121 = 202 < 225
    ],
)
def test_pointing_hit_tolerance_edge(y, x, hit) -> None:
    region = np.zeros((40, 40), dtype=bool)
    region[0, 0] = True
    m = np.zeros((40, 40))
    m[y, x] = 1.0
    assert metrics.pointing_hit(m, region, tolerance=15) is hit


def test_pointing_ties_take_the_first_maximum_and_empty_region_misses() -> None:
    region = np.zeros((30, 30), dtype=bool)
    region[25:, 25:] = True
    m = np.zeros((30, 30))
    m[0, 0] = m[29, 29] = 1.0  # a tie: the first in row-major order, (0, 0), is far from the region
    assert metrics.max_point(m) == (0, 0)
    assert not metrics.pointing_hit(m, region)
    assert not metrics.pointing_hit(m, np.zeros_like(region))
    assert metrics.pointing_hits(np.stack([m, m[::-1, ::-1]]), [region, region]).tolist() == [False, False]
    m[0, 0] = 0.5
    assert metrics.pointing_hit(m, region)
