"""Known answers for the localization metrics, on hand-made maps and boxes."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from xaibench import localization as metrics
from xaibench.data.sample import Original
from xaibench.explainer import normalize_maps, upsample_maps
from xaibench.metric import MetricInput, create_metric


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
    assert not metrics.boxes_to_mask(np.array([[-10, 0, -3, 2]]), (6, 6)).any()  # no wrap-around


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
    m[0, 0] = 0.5
    assert metrics.pointing_hit(m, region)  # the maximum left alone at (29, 29): a hit


# ------------------------------------------------------------------------------ wsolevaluation metrics


def test_wsol_boxes_follow_opencv_conventions() -> None:
    m = np.zeros((20, 20), dtype=np.float32)
    m[5:10, 5:10] = 1.0  # 25 pixels
    m[15:18, 0:3] = 0.5  # 9 pixels, touching the left border
    boxes = metrics.wsol_boxes(m)
    all_boxes, largest = boxes[0]
    # x1 = x + w: one past the last pixel, as wsolevaluation; the largest contour area wins V1.
    assert sorted(map(tuple, all_boxes.tolist())) == [(0, 15, 3, 18), (5, 5, 10, 10)]
    assert tuple(all_boxes[largest]) == (5, 5, 10, 10)
    # uint8 and a strict threshold: 0.5 -> 127; int(0.5 * 255) = 127 is not > 127, so at 0.5 the
    # dimmer blob is gone, while at 0.49 (int(124.95) = 124) it is kept.
    assert len(metrics.wsol_boxes(m, np.array([0.49]))[0][0]) == 2
    assert len(metrics.wsol_boxes(m, np.array([0.5]))[0][0]) == 1


def test_wsol_boxes_clip_at_the_border_and_empty_maps() -> None:
    m = np.zeros((10, 10), dtype=np.float32)
    m[6:10, 6:10] = 1.0
    assert tuple(metrics.wsol_boxes(m, np.array([0.5]))[0][0][0]) == (6, 6, 9, 9)  # x + w clipped to W - 1
    assert tuple(metrics.wsol_boxes(np.zeros((10, 10)), np.array([0.0]))[0][0][0]) == (0, 0, 0, 0)


def test_box_iou_curves_v1_uses_the_largest_contour_v2_any() -> None:
    m = np.zeros((40, 40), dtype=np.float32)
    m[0:20, 0:20] = 1.0  # the larger blob, far from the object
    m[30:34, 30:34] = 1.0  # the object
    v1, v2 = metrics.box_iou_curves(m, np.array([[30, 30, 34, 34]]))
    assert v1[50] == 0.0 and v2[50] == 1.0


def test_max_box_acc_known_values_and_bootstrap_weights() -> None:
    ious = np.array([[0.6, 0.4], [0.2, 0.55], [0.5, 0.1]])  # 3 images, 2 thresholds
    assert metrics.max_box_acc(ious, 0.5) == pytest.approx(200 / 3)  # threshold 0: images 0 and 2 (>= is inclusive)
    assert metrics.max_box_acc(ious, 0.7) == 0.0
    # delta 0.3: 2 of 3 at either threshold; 0.5: 2 of 3 at threshold 0; 0.7: none.
    assert metrics.max_box_acc_v2(ious) == pytest.approx((200 / 3 + 200 / 3 + 0) / 3)
    weights = np.array([[1.0, 1.0, 1.0], [0.0, 3.0, 0.0]])  # the data itself; image 1 three times
    assert metrics.max_box_acc(ious, 0.5, weights).tolist() == pytest.approx([200 / 3, 100.0])


@pytest.mark.parametrize("name, column", [("maxboxacc", "box_iou_curve"), ("maxboxacc_v2", "box_iou_curve_v2"),
                                          ("pxap", "pxap_hist")])
def test_resampled_gives_what_aggregate_gives_from_the_raw_arrays(name, column) -> None:
    """The bootstrap's prepared arrays (hits, float64 counts) give, chunk after chunk, exactly what
    the published statistic gives from the stored arrays, rows without an array left out."""
    import pandas as pd

    from xaibench.significance import bootstrap_weight_chunks

    rng = np.random.default_rng(3)
    n = 40
    if column == "pxap_hist":
        arrays = [rng.integers(0, 50, (2, 102)) for _ in range(n)]
        direct = metrics.pxap
    else:
        arrays = [np.round(rng.random(100), 1) for _ in range(n)]  # values on the IoU thresholds too
        direct = metrics.max_box_acc if name == "maxboxacc" else (lambda a, weights=None: metrics.max_box_acc_v2(a, weights))
    cells = [None if k % 7 == 3 else a for k, a in enumerate(arrays)]
    keep = np.array([c is not None for c in cells])
    stacked = np.stack([c for c in cells if c is not None])
    metric = create_metric(name)
    rows = pd.DataFrame({column: cells})
    statistic = metric.resampled(rows)
    assert statistic(None) == direct(stacked) == metric.aggregate(rows, None)
    for weights in bootstrap_weight_chunks(n, n_boot=50, seed=1, max_values=7 * n):
        expected = direct(stacked, weights=weights[:, keep])
        assert statistic(weights).tobytes() == np.asarray(expected).tobytes()
        assert metric.aggregate(rows, weights).tobytes() == np.asarray(expected).tobytes()


def test_box_acc_curve() -> None:
    ious = np.array([[0.6, 0.4], [0.2, 0.55]])
    assert metrics.box_acc_curve(ious, 0.5).tolist() == [50.0, 50.0]


def test_pxap_perfect_and_hand_computed() -> None:
    mask = np.zeros((4, 4), dtype=bool)
    mask[:2] = True
    perfect = mask.astype(np.float64)
    assert metrics.pxap(metrics.pxap_histograms(perfect, mask)[None]) == pytest.approx(100.0)
    # Object pixels score 0.8 or 0.3, background pixels 0.5 or 0.0, four pixels of each.
    m = np.where(mask, 0.8, 0.5)
    m[1, :] = 0.3  # half of the object scores 0.3
    m[3, :] = 0.0  # half of the background scores 0.0
    # From high to low: t = 0.8 -> P 1, R 0.5; t = 0.5 -> P 0.5, R 0.5; t = 0.3 -> P 2/3, R 1.
    # PxAP = 1 * 0.5 + 0.5 * 0 + 2/3 * 0.5 = 5/6 (further thresholds add no recall).
    assert metrics.pxap(metrics.pxap_histograms(m, mask)[None]) == pytest.approx(100 * 5 / 6)


def test_class_mean_differs_from_instance_mean() -> None:
    hits = np.array([1, 1, 1, 0, np.nan])
    classes = np.array([0, 0, 0, 1, 1])
    assert metrics.class_mean(hits, classes) == pytest.approx(0.5)  # (3/3 + 0/1) / 2; the NaN left out
    assert np.nanmean(hits) == 0.75


def _pointing_input(maps, boxes, originals):
    n = len(maps)
    return MetricInput(
        maps=np.asarray(maps, dtype=np.float32), images=torch.zeros(n, 3, *np.shape(maps)[-2:]),
        targets=torch.zeros(n, dtype=torch.long), labels=np.zeros(n, int), top5=np.zeros((n, 1), int),
        boxes=boxes, difficult=[np.zeros(len(b), bool) for b in boxes], masks=[None] * n, target="label",
        model=None, originals=originals,
    )


@pytest.mark.parametrize(("x0", "hit"), [(55, True), (56, False)])
def test_pointing_measures_its_tolerance_in_the_image_files_pixels(x0, hit) -> None:
    """TorchRay resizes the map to the original image and measures 15 px there. A 200 x 100 photo fed
    at 50 x 50 (x scaled by 4, y by 2): the map's peak at (10, 10) lands at x = 41 (41 and 42 tie after
    bilinear upsampling; the first wins), y = 20. A box starting at x = 56 is 15 px away (a miss), at
    x = 55, 14 px (a hit); at the fed resolution both are 4 px away, which would hit."""
    saliency = np.zeros((50, 50))
    saliency[10, 10] = 1.0
    box = torch.tensor([[x0, 0.0, 199.0, 99.0]])
    fed = torch.tensor([[x0 // 4, 0.0, 49.0, 49.0]])
    with_file = _pointing_input([saliency], [fed.numpy()], [Original(size=(100, 200), boxes=box)])
    assert create_metric("pointing").score(with_file)["pointing"].tolist() == [float(hit)]
    without = _pointing_input([saliency], [fed.numpy()], [None])
    assert create_metric("pointing").score(without)["pointing"].tolist() == [1.0]
    assert create_metric("pointing", resolution="input").score(with_file)["pointing"].tolist() == [1.0]


@pytest.mark.parametrize(
    ("tolerance", "dy", "dx", "hit"),
    [
        (7.5, 2, 7, True),  # sqrt(53) = 7.28 px < 7.5
        (7.5, 3, 7, False),  # sqrt(58) = 7.62 px
        (7.5, 0, 7, True),
        (7.5, 0, 8, False),
        (5.0, 3, 4, False),  # exactly 5 px: TorchRay's (v + u) < tolerance**2 is strict, for a float too
        (5.01, 3, 4, True),
        (0.5, 0, 0, True),  # only the peak's own pixel
        (0.5, 0, 1, False),
    ],
)
def test_pointing_takes_a_float_tolerance(tolerance, dy, dx, hit) -> None:
    """``pointing(tolerance=7.5)`` as written on the command line: the peak at (10, 10), the object one pixel
    at (10 + dy, 10 + dx); a hit when their distance is strictly below the tolerance."""
    from xaibench.method_spec import parse_methods

    (spec,) = parse_methods(f"pointing(tolerance={tolerance})")
    metric = create_metric(spec.name, **spec.options)
    assert metric.tolerance == tolerance and metric.options["tolerance"] == tolerance
    saliency = np.zeros((30, 30))
    saliency[10, 10] = 1.0
    box = np.array([[10.0 + dx, 10.0 + dy, 10.0 + dx, 10.0 + dy]])
    assert metric.score(_pointing_input([saliency], [box], [None]))["pointing"].tolist() == [float(hit)]
    assert metrics.pointing_hit(saliency, metrics.boxes_to_mask(box, (30, 30)), tolerance) is hit


def test_pointing_uses_the_files_mask_when_there_is_one() -> None:
    saliency = np.zeros((50, 50))
    saliency[10, 10] = 1.0
    mask = torch.zeros(100, 200, dtype=torch.bool)
    mask[60:, 100:] = True  # far from (20, 41), though the box is near
    original = Original(size=(100, 200), boxes=torch.tensor([[30.0, 10.0, 199.0, 99.0]]), mask=mask)
    batch = _pointing_input([saliency], [np.array([[7.0, 5.0, 49.0, 49.0]])], [original])
    assert create_metric("pointing").score(batch)["pointing"].tolist() == [0.0]


def test_energy_pointing() -> None:
    m = np.zeros((10, 10))
    m[0, 0], m[5, 5] = 3.0, 1.0
    region = metrics.boxes_to_mask(np.array([[4, 4, 6, 6]]), (10, 10))
    assert metrics.energy_pointing(m, region) == 0.25
    assert np.isnan(metrics.energy_pointing(np.zeros((10, 10)), region))


def test_pointing_resizes_the_methods_own_map_once_to_the_photo() -> None:
    """TorchRay resizes the method's map from its own resolution (7 x 7 here) to the photo's size in
    one step; resizing the 224 px map again moves the maximum where two cells nearly tie. For each
    map, a 1 px box 14 px right of the one-step maximum: a hit by TorchRay's rule, often a miss
    after two steps."""
    native = torch.rand(40, 7, 7, generator=torch.Generator().manual_seed(0))
    maps = normalize_maps(upsample_maps(native, (224, 224)))
    size = (375, 500)
    once = upsample_maps(native, size).flatten(1).argmax(1)
    twice = upsample_maps(maps, size).flatten(1).argmax(1)
    assert (once != twice).any()  # the two ways differ on some of these maps
    originals, boxes = [], []
    for k in range(40):
        y, x = divmod(int(once[k]), size[1])
        x0 = min(x + 14, size[1] - 1)
        originals.append(Original(size=size, boxes=torch.tensor([[x0, y, x0, y]], dtype=torch.float32)))
        boxes.append(np.array([[0.0, 0.0, 1.0, 1.0]]))
    batch = _pointing_input(maps.numpy(), boxes, originals)
    twice_hits = create_metric("pointing").score(batch)["pointing"]  # no native maps: 224 px -> photo
    assert 0 < (twice_hits == 0).sum() < 40
    batch.native_maps = native.numpy()
    hits = create_metric("pointing").score(batch)["pointing"]
    assert hits.tolist() == [1.0] * 40


def test_pointing_skips_all_difficult_objects_and_misses_an_empty_region() -> None:
    """TorchRay's benchmark returns 0 (not scored) when every box of the class is difficult, and its
    ``PointingGame.evaluate`` a miss when the class mask has no pixel."""
    saliency = np.zeros((20, 20))
    saliency[5, 5] = 1.0
    boxes = [np.array([[0.0, 0.0, 9.0, 9.0]]), np.array([[0.0, 0.0, 9.0, 9.0]]), np.array([[0.0, 0.0, 9.0, 9.0]])]
    batch = _pointing_input([saliency] * 3, boxes, [None] * 3)
    batch.difficult = [np.array([True]), np.array([False]), np.array([False])]
    batch.masks = [None, None, torch.zeros(20, 20, dtype=torch.bool)]
    hits = create_metric("pointing").score(batch)["pointing"]
    assert np.isnan(hits[0]) and hits[1:].tolist() == [1.0, 0.0]


def test_pointing_hit_matches_the_distance_to_every_region_pixel() -> None:
    """The windowed search equals TorchRay's test over the whole image, ``min ||argmax - p||^2 < t^2``,
    on random maps, regions and tolerances (fractional, 0, and larger than the image)."""
    rng = np.random.default_rng(0)
    ys, xs = np.mgrid[0:30, 0:40]
    for _ in range(500):
        saliency = rng.random((30, 40))
        region = rng.random((30, 40)) < rng.choice([0.0, 0.002, 0.02, 0.3])
        tolerance = float(rng.choice([0.0, 1.0, 1.5, 7.3, 15.0, 15.5, 60.0]))
        y, x = np.unravel_index(np.argmax(saliency), saliency.shape)
        expected = bool(region.any()) and bool((((ys - y) ** 2 + (xs - x) ** 2)[region]).min() < tolerance**2)
        assert metrics.pointing_hit(saliency, region, tolerance) == expected


def test_class_mean_with_bootstrap_weights_equals_the_one_hot_formula() -> None:
    """Per-class sums by sorting equal the one-hot matrix products they replace: exactly for hits (0/1)
    and integer weights, to rounding for other values; a resample that draws no image of a class leaves
    that class out, and no scored value at all is NaN."""
    rng = np.random.default_rng(0)
    classes = rng.integers(0, 7, 300)
    hits = rng.integers(0, 2, 300).astype(float)
    hits[rng.integers(0, 300, 20)] = np.nan
    weights = rng.multinomial(300, np.full(300, 1 / 300), size=50).astype(float)

    def one_hot(values, weights):
        keep = ~np.isnan(values)
        onehot = (classes[keep][:, None] == np.unique(classes[keep])[None, :]).astype(float)
        w = weights[:, keep]
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanmean((w @ (onehot * values[keep][:, None])) / (w @ onehot), axis=-1)

    assert np.array_equal(metrics.class_mean(hits, classes, weights), one_hot(hits, weights))
    assert metrics.class_mean(hits, classes) == one_hot(hits, np.ones((1, 300)))[0]
    scores = rng.random(300)
    np.testing.assert_allclose(metrics.class_mean(scores, classes, weights), one_hot(scores, weights), rtol=1e-12)
    assert np.isnan(metrics.class_mean(np.full(3, np.nan), np.arange(3)))
    assert np.isnan(metrics.class_mean(np.full(3, np.nan), np.arange(3), np.ones((2, 3)))).all()


def test_weighted_sums_of_whole_numbers_are_exact_whatever_their_dtype_and_chunks() -> None:
    """The bootstrap's weighted hit and pixel counts, summed a block of rows at a time from the compact
    dtypes the metrics keep, are the integer matrix product, exactly."""
    from xaibench.localization import compact_counts, weighted_sums

    rng = np.random.default_rng(0)
    n = 10_000  # more rows than one block
    hits = rng.random((n, 7)) < 0.3
    counts = compact_counts(rng.integers(0, 60_000, (n, 2, 5)))
    assert counts.dtype == np.uint16
    weights = rng.multinomial(n, np.full(n, 1 / n), size=3).astype(np.float64)
    for values in (hits, counts):
        exact = weights.astype(np.int64) @ values.reshape(n, -1).astype(np.int64)
        assert np.array_equal(weighted_sums(values, weights).reshape(3, -1), exact.astype(np.float64))
