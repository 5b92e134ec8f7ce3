"""The localization metrics give the numbers of xaibench 0.3.0's one-map-at-a-time code
(tests/localization_reference.py) bit for bit: per-threshold boxes, IoU curves, CAM boxes, PxAP
histograms, pointing hits and energy shares, on seeded random maps and on the cases where a batched
or shared computation could go astray (constant maps, holes, nested and touching components, ties in
float32, several and border-touching boxes, non-square and tiny images, maps that do not reach 1)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import localization_reference as reference
from xaibench import localization
from xaibench.data.sample import Original
from xaibench.errors import XaibenchError
from xaibench.explainer import normalize_maps, upsample_maps
from xaibench.metric import DEFAULT_METRICS, MetricInput, create_metric

SIZES = [(64, 64), (37, 53), (53, 37), (16, 9), (5, 5), (2, 3), (1, 1), (1, 7), (96, 96)]
#: The metrics' batches: fewer and smaller (the reference's contour search dominates the test's time).
BATCH_SIZES = [(48, 40), (16, 9), (2, 3), (1, 1)]


def same(ours: object, theirs: object) -> bool:
    """Equal to the bit: the same type, dtype, shape and bytes (so -0.0 differs from 0.0 and NaN equals
    NaN), element by element for lists and tuples."""
    if isinstance(theirs, (list, tuple)):
        return type(ours) is type(theirs) and len(ours) == len(theirs) and all(map(same, ours, theirs))
    if theirs is None or isinstance(theirs, (int, float, bool)):
        return type(ours) is type(theirs) and (ours == theirs or (ours != ours and theirs != theirs))
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    return ours.dtype == theirs.dtype and ours.shape == theirs.shape and ours.tobytes() == theirs.tobytes()


def smooth(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """A CAM-like map: random coarse cells, ReLU, bilinear upsampling, min-max scaling (float32)."""
    coarse = torch.from_numpy(rng.standard_normal((1, cells, cells)).astype(np.float32)).clamp(min=0)
    return normalize_maps(upsample_maps(coarse, (h, w)))[0].numpy()


def rings(h: int, w: int) -> np.ndarray:
    """Nested rings and a hole: contours inside contours (RETR_TREE's hierarchy), brighter inwards."""
    ys, xs = np.mgrid[0:h, 0:w]
    r = np.hypot(ys - h / 2, xs - w / 2)
    m = np.zeros((h, w), np.float32)
    m[(r > 0.35 * min(h, w)) & (r < 0.45 * min(h, w))] = 0.4
    m[(r > 0.15 * min(h, w)) & (r < 0.25 * min(h, w))] = 0.7
    m[r < 0.06 * min(h, w)] = 1.0
    return m


def blobs(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Several rectangles of random levels, some touching the border, some of equal area (ties)."""
    m = np.zeros((h, w), np.float32)
    for _ in range(rng.integers(1, 7)):
        y0, x0 = rng.integers(0, h), rng.integers(0, w)
        m[y0 : y0 + rng.integers(1, h // 3 + 2), x0 : x0 + rng.integers(1, w // 3 + 2)] = rng.choice([0.3, 0.5, 1.0])
    m[: max(h // 8, 1), : max(w // 8, 1)] = 0.5  # a corner block
    m[-max(h // 8, 1) :, -max(w // 8, 1) :] = 0.5  # the opposite corner, the same area
    return m


def maps_of_every_kind(rng: np.random.Generator, h: int, w: int) -> list[np.ndarray]:
    noise = rng.random((h, w)).astype(np.float32)
    cam = smooth(rng, h, w, int(rng.integers(2, 9)))
    gradient = np.abs(rng.standard_normal((h, w))).astype(np.float32)
    gradient /= gradient.max()
    single = np.zeros((h, w), np.float32)
    single[rng.integers(0, h), rng.integers(0, w)] = 1.0
    return [
        cam,
        noise**4,  # many small contours
        gradient,
        np.round(cam * 3) / np.float32(3),  # few levels: ties, large flat regions
        np.round(noise * 255) / np.float32(255),  # exactly k / 255: on the uint8 steps
        np.minimum(cam * 2, 1).astype(np.float32),  # a plateau at the maximum
        cam * np.float32(0.3),  # does not reach 1: thresholds of a smaller peak
        cam * np.float32(0.003),  # under 1 / 255 everywhere: all zero in uint8
        rings(h, w),
        blobs(rng, h, w),
        single,
        np.zeros((h, w), np.float32),  # a constant map (scored as all-zero)
        np.ones((h, w), np.float32),
        np.full((h, w), 0.5, np.float32),
        cam.astype(np.float64),  # a float64 map
    ]


def random_boxes(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """1 to 4 inclusive boxes inside the image: random, the whole image, a border strip, a pixel."""
    boxes = []
    for _ in range(rng.integers(1, 5)):
        kind = rng.integers(0, 5)
        if kind == 0:
            boxes.append([0, 0, w - 1, h - 1])
        elif kind == 1:
            boxes.append([0, rng.integers(0, h), rng.integers(0, w), h - 1])
        elif kind == 2:
            x, y = rng.integers(0, w), rng.integers(0, h)
            boxes.append([x, y, x, y])
        else:
            x0, x1 = np.sort(rng.integers(0, w, 2))
            y0, y1 = np.sort(rng.integers(0, h, 2))
            boxes.append([x0, y0, x1, y1])
    return np.asarray(boxes, dtype=np.float32)


def cases(seed: int = 0):
    """(map, boxes) pairs over every size and kind of map."""
    rng = np.random.default_rng(seed)
    for h, w in SIZES:
        for m in maps_of_every_kind(rng, h, w):
            yield m, random_boxes(rng, h, w)


def test_wsol_boxes_equal_the_reference_at_every_threshold() -> None:
    for m, _ in cases():
        assert same(localization.wsol_boxes(m), reference.wsol_boxes(m)), m.shape


def test_wsol_boxes_equal_the_reference_with_binary_maps_made_a_few_at_a_time(monkeypatch) -> None:
    for m, _ in list(cases(8))[:: len(SIZES)]:
        monkeypatch.setattr(localization, "_BINARY_MAP_BYTES", 3 * m.size)
        assert same(localization.wsol_boxes(m), reference.wsol_boxes(m)), m.shape


def test_wsol_boxes_equal_the_reference_at_thresholds_out_of_order_and_out_of_range() -> None:
    rng = np.random.default_rng(1)
    thresholds = np.array([0.5, 0.0, 0.99, 0.49, 0.5, -0.3, 1.0, 1.7, 0.2])
    for m, _ in cases(1):
        assert same(localization.wsol_boxes(m, thresholds), reference.wsol_boxes(m, thresholds))
    m = smooth(rng, 30, 40, 4)
    assert same(localization.wsol_boxes(m, np.array([0.3])), reference.wsol_boxes(m, np.array([0.3])))
    assert same(localization.wsol_boxes(m, np.array([])), reference.wsol_boxes(m, np.array([])))


def test_box_iou_curves_equal_the_reference() -> None:
    for k, (m, boxes) in enumerate(cases(2)):
        gt = (boxes, torch.from_numpy(boxes), boxes + np.float32(0.25))[k % 3]  # tensors, fractional corners
        assert same(localization.box_iou_curves(m, gt), reference.box_iou_curves(m, gt)), m.shape


@pytest.mark.parametrize("tau", [0.0, 0.2, 0.5, 1.0])
def test_cam_box_iou_equals_the_reference(tau) -> None:
    for h, w in SIZES:
        rng = np.random.default_rng(3)
        maps = np.stack([m.astype(np.float32) for m in maps_of_every_kind(rng, h, w)])
        boxes = [random_boxes(rng, h, w) for _ in maps]
        assert same(localization.cam_box_iou(maps, boxes, tau), reference.cam_box_iou(maps, boxes, tau))
        as_tensors = [torch.from_numpy(b) for b in boxes]
        assert same(localization.cam_box_iou(torch.from_numpy(maps), as_tensors, tau), reference.cam_box_iou(maps, boxes, tau))
        for m, b in zip(maps, boxes):
            assert same(localization.cam_box(m, tau), reference.cam_box(m, tau))


def test_largest_component_box_equals_the_reference_on_random_regions() -> None:
    """Sparse regions have many components of equal size: ties go to the first in row-major order."""
    rng = np.random.default_rng(7)
    for _ in range(300):
        h, w = rng.integers(1, 25, 2)
        region = rng.random((h, w)) < rng.choice([0.0, 0.05, 0.2, 0.5, 0.9])
        assert same(localization.largest_component_box(region), reference.largest_component_box(region))


def test_cam_box_iou_says_what_is_missing() -> None:
    maps = np.zeros((2, 4, 4), np.float32)
    boxes = [np.array([[0, 0, 1, 1]]), np.array([[1, 1, 2, 2]])]
    with pytest.raises(XaibenchError, match="cam_box_iou got 2 maps and ground truth for 1 images"):
        localization.cam_box_iou(maps, boxes[:1])
    with pytest.raises(XaibenchError, match="image 1 has no ground-truth box"):
        localization.cam_box_iou(maps, [boxes[0], np.zeros((0, 4))])
    with pytest.raises(XaibenchError, match="map 0 keeps no pixel at tau=1.5"):
        localization.cam_box_iou(maps, boxes, tau=1.5)
    assert localization.cam_box_iou(maps[:0], []).shape == (0,)


def test_pxap_histograms_equal_the_reference(monkeypatch) -> None:
    """One map and a stack of them, in [0, 1] (float32 and float64: values on and next to the edges)
    and outside it (values below 0, from 1 to 3, past 3, NaN: np.histogram's rules)."""
    rng = np.random.default_rng(4)
    edges = localization.PXAP_EDGES
    on_edges = np.concatenate([edges, np.nextafter(edges, -1), np.nextafter(edges, 4)])
    for h, w in SIZES:
        maps = maps_of_every_kind(rng, h, w)
        maps += [rng.choice(on_edges[on_edges <= 1], (h, w)).astype(dtype) for dtype in (np.float32, np.float64)]
        maps += [rng.choice(on_edges, (h, w)), maps[0] * 5 - 1, np.where(rng.random((h, w)) < 0.2, np.nan, maps[0])]
        masks = [rng.random((h, w)) < rng.choice([0.0, 0.1, 0.5, 1.0]) for _ in maps]
        for m, mask in zip(maps, masks):
            assert same(localization.pxap_histograms(m, mask), reference.pxap_histograms(m, mask))
        stack = np.stack([m.astype(np.float32) for m in maps])
        expected = np.stack([reference.pxap_histograms(m, mask) for m, mask in zip(stack, masks)])
        assert same(localization.pxap_histograms(stack, np.stack(masks)), expected)
        assert same(localization.pxap_histograms(stack, torch.from_numpy(np.stack(masks))), expected)
        with monkeypatch.context() as patch:
            patch.setattr(localization, "_PXAP_CHUNK", 2 * h * w)  # two maps per pass
            assert same(localization.pxap_histograms(stack, np.stack(masks)), expected)


def test_energy_pointing_and_pointing_hit_equal_the_reference() -> None:
    rng = np.random.default_rng(5)
    for h, w in SIZES:
        for m in maps_of_every_kind(rng, h, w):
            region = rng.random((h, w)) < rng.choice([0.0, 0.01, 0.3])
            assert same(localization.energy_pointing(m, region), reference.energy_pointing(m, region))
            for tolerance in (0.0, 1.5, 15):
                assert same(localization.pointing_hit(m, region, tolerance), reference.pointing_hit(m, region, tolerance))


@pytest.mark.parametrize("lookups", [1 << 20, 1], ids=["one-pass", "a-map-a-pass"])
def test_pointing_hits_equal_the_reference(lookups, monkeypatch) -> None:
    """Maps with tied maxima, regions from empty to full, tolerances 0, fractional, 15 and past the image."""
    monkeypatch.setattr(localization, "_POINTING_LOOKUPS", lookups)
    rng = np.random.default_rng(9)
    for h, w in SIZES:
        maps = np.stack([m.astype(np.float32) for m in maps_of_every_kind(rng, h, w)])
        regions = rng.random(maps.shape) < rng.choice([0.0, 0.002, 0.05, 0.5, 1.0], (len(maps), 1, 1))
        for tolerance in (0.0, 0.5, 1.0, 7.5, 15, 15.5, 200):
            expected = np.array([reference.pointing_hit(m, r, tolerance) for m, r in zip(maps, regions)])
            assert same(localization.pointing_hits(maps, regions, tolerance), expected), (h, w, tolerance)


def batches(seed: int):
    """Batches as the harness builds them (tensors for boxes and masks), one per size, with masks for
    some images, all-difficult boxes for some, and the image file's ground truth for some."""
    rng = np.random.default_rng(seed)
    for h, w in BATCH_SIZES:
        maps = np.stack([m.astype(np.float32) for m in maps_of_every_kind(rng, h, w)])
        n = len(maps)
        boxes = [torch.from_numpy(random_boxes(rng, h, w)) for _ in range(n)]
        masks = [torch.from_numpy(rng.random((h, w)) < 0.3) if rng.random() < 0.5 else None for _ in range(n)]
        difficult = [torch.from_numpy(rng.random(len(b)) < 0.3) for b in boxes]
        originals = []
        for b, mask in zip(boxes, masks):
            if rng.random() < 0.5:
                originals.append(None)
                continue
            size = (int(h * 2 + 3), int(w * 3 + 1))
            scale = torch.tensor([size[1] / w, size[0] / h] * 2)
            file_boxes = torch.minimum(b * scale, torch.tensor([size[1] - 1, size[0] - 1] * 2, dtype=torch.float32))
            file_mask = torch.from_numpy(rng.random(size) < 0.2) if mask is not None else None
            originals.append(Original(size=size, boxes=file_boxes, mask=file_mask))
        labels = rng.integers(0, 5, n)
        top5 = np.stack([rng.permutation(5) for _ in range(n)])
        for target in ("label", "prediction"):
            yield MetricInput(
                maps=maps, images=torch.zeros(n, 3, h, w), targets=torch.from_numpy(labels), labels=labels,
                top5=top5, boxes=boxes, difficult=difficult, masks=masks, target=target, model=None,
                originals=originals, native_maps=maps[:, ::2, ::2].copy(),
            )


@pytest.mark.parametrize(
    "options",
    [{}, {"tau": 0.5, "tolerance": 7.5}, {"tau": 0.0, "tolerance": 0.0, "resolution": "input"}],
    ids=["defaults", "tau-tolerance", "zero-input"],
)
def test_every_default_metric_scores_the_reference_columns(options) -> None:
    """Each default localization metric's ``score``, on a fresh batch (nothing shared) and on one batch
    scored by all of them in the run's order (work shared), writes the reference's columns."""
    own = {"gt_known_loc": ["tau"], "top1_loc": ["tau"], "top5_loc": ["tau"], "mean_iou": ["tau"],
           "pointing": ["tolerance", "resolution"]}
    metrics = [create_metric(n, **{k: v for k, v in options.items() if k in own.get(n, [])}) for n in DEFAULT_METRICS]
    for batch in batches(6):
        expected = reference.columns(batch, **options)
        shared_batch = MetricInput(**{**batch.__dict__, "cache": {}})
        for metric in metrics:
            alone = metric.score(MetricInput(**{**batch.__dict__, "cache": {}}))
            together = metric.score(shared_batch)
            for column in metric.columns:
                for values in (alone[column], together[column]):
                    got = values if isinstance(values, list) else np.asarray(values)
                    want = expected[column]
                    if not isinstance(want, list):
                        want = np.asarray(want)
                    assert same(got, want), (metric.name, column, batch.maps.shape)
