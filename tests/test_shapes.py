"""Tests of the built-in shapes data (xaibench/data/shapes.py) and its network (xaibench/shapes_net.py)."""

from __future__ import annotations

import dataclasses
import math
from collections import Counter

import numpy as np
import pytest
import torch
from scipy import ndimage
from torch import nn

from xaibench import shapes_net
from xaibench.data.shapes import (
    SHAPE_CLASSES,
    ShapesDataset,
    mask_box,
    render_scene,
    shape_mask,
)
from xaibench.shapes_net import (
    SHAPES_MEAN,
    SHAPES_STD,
    ShapesNet,
    TrainConfig,
    cache_path,
    load_shapes_net,
    shapes_net_accuracy,
    train_shapes_net,
)

from conftest import SLOW


def _normalise(images: torch.Tensor) -> torch.Tensor:
    return (images - torch.tensor(SHAPES_MEAN).view(1, 3, 1, 1)) / torch.tensor(SHAPES_STD).view(1, 3, 1, 1)


# ---------------------------------------------------------------------------------------------- data


def test_same_arguments_give_identical_items():
    a, b = ShapesDataset(10, "test", seed=3), ShapesDataset(10, "test", seed=3)
    for i in (0, 7, 9):
        sa, sb = a[i], b[i]
        assert torch.equal(sa.image, sb.image)
        assert torch.equal(sa.mask, sb.mask)
        assert torch.equal(sa.boxes, sb.boxes)
        assert sa.label == sb.label and sa.id == sb.id
    assert torch.equal(a[4].image, a[4].image)  # lazily re-rendered, still the same


def test_seeds_and_splits_give_different_images():
    images = {
        (seed, split): torch.stack([ShapesDataset(20, split, seed=seed)[i].image for i in range(20)])
        for seed in (0, 1)
        for split in ("train", "test", "distractor")
    }
    keys = list(images)
    for i, k1 in enumerate(keys):
        for k2 in keys[i + 1 :]:
            # no single image is shared between any two (seed, split) streams
            diff = (images[k1][:, None] - images[k2][None]).abs().flatten(2).amax(2)
            assert diff.min() > 0.1, (k1, k2)


@pytest.mark.parametrize("split", ["train", "test", "distractor"])
def test_sample_format_and_boxes_are_the_tight_inclusive_box_of_the_mask(split):
    ds = ShapesDataset(40, split, seed=5)
    assert len(ds) == 40 and ds.name == "builtin" and ds.class_names == list(SHAPE_CLASSES)
    for i in range(len(ds)):
        s = ds[i]
        assert s.id == f"shapes-{split}-{i:06d}"
        assert s.image.shape == (3, 64, 64) and s.image.dtype == torch.float32
        assert 0.0 <= float(s.image.min()) and float(s.image.max()) <= 1.0
        assert isinstance(s.label, int) and 0 <= s.label < len(SHAPE_CLASSES)
        assert s.mask.shape == (64, 64) and s.mask.dtype == torch.bool
        ys, xs = torch.nonzero(s.mask, as_tuple=True)
        assert len(ys) >= 60  # the smallest object (a star 16 px across) covers ~75 px
        assert s.boxes.dtype == torch.float32 and s.boxes.shape == (1, 4)
        expected = [xs.min(), ys.min(), xs.max(), ys.max()]
        assert s.boxes[0].tolist() == [float(v) for v in expected]
        assert 0 <= s.boxes.min() and s.boxes.max() <= 63
        # the object's size lies in the documented range, 16-30 px across (a rotated shape is narrower)
        assert 6 <= float((s.boxes[0, 2:] - s.boxes[0, :2]).max()) + 1 <= 31


def test_other_image_sizes_scale_the_objects():
    s = ShapesDataset(3, "test", seed=0, image_size=128)[1]
    assert s.image.shape == (3, 128, 128) and s.mask.shape == (128, 128)
    assert float((s.boxes[0, 2:] - s.boxes[0, :2]).max()) + 1 >= 12


def test_mask_box_known_answer():
    mask = torch.zeros(10, 12, dtype=torch.bool)
    mask[2:5, 3:9] = True  # rows 2-4, columns 3-8
    mask[7, 0] = True
    assert mask_box(mask).tolist() == [[0.0, 2.0, 8.0, 7.0]]


def test_mask_is_exactly_the_solid_object():
    """Every mask pixel shows the object's one colour (plus 2% noise); the ring around it differs."""
    ds = ShapesDataset(30, "test", seed=2)
    for i in range(len(ds)):
        s = ds[i]
        inside = s.image[:, s.mask]
        assert float(inside.std(1).max()) < 0.04
        border = torch.from_numpy(ndimage.binary_dilation(s.mask.numpy(), iterations=2)) & ~s.mask
        outside = s.image[:, border].mean(1)
        assert float((inside.mean(1) - outside).norm()) > 0.2


def test_labels_cover_all_classes_uniformly():
    counts = Counter(render_scene(0, "train", i).label for i in range(600))
    assert set(counts) == set(range(len(SHAPE_CLASSES)))
    assert all(60 <= c <= 140 for c in counts.values()), counts  # expected 100 each, sd ~9


@pytest.mark.parametrize(
    ("name", "area"),
    [
        ("disk", math.pi),
        ("square", 2.0),
        ("triangle", 3.0 * math.sqrt(3.0) / 4.0),
        ("cross", 2 * 0.6 * 2 * math.sqrt(1 - 0.09) - 0.36),
        ("ring", math.pi * (1 - 0.55**2)),
        ("star", 10 * 0.5 * 0.4 * math.sin(math.pi / 5)),
    ],
)
def test_shape_masks_have_the_known_area_and_stay_in_their_circle(name, area):
    cls, radius, centre = SHAPE_CLASSES.index(name), 40.0, 50.0
    for angle in (0.3, 0.7, 2.0):  # at 0 the edges fall on pixel centres, adding a row
        mask = shape_mask(cls, centre, centre, radius, angle, 101)
        assert abs(mask.sum() / (area * radius**2) - 1) < 0.02
        ys, xs = np.nonzero(mask)
        assert ((ys - centre) ** 2 + (xs - centre) ** 2).max() <= radius**2


def test_distractor_split_has_a_second_object_of_another_class_apart_from_the_first():
    ds = ShapesDataset(100, "distractor", seed=1)
    for i in range(len(ds)):
        scene, sample = ds.scene(i), ds[i]
        assert scene.distractor_label is not None and scene.distractor_label != scene.label
        assert scene.distractor_mask.sum() > 0
        assert torch.equal(sample.mask, torch.from_numpy(scene.mask))  # ground truth: labelled object only
        assert torch.equal(sample.image, torch.from_numpy(scene.image))
        # disjoint, and at least 2 px apart
        grown = ndimage.binary_dilation(scene.mask, iterations=2)
        assert not (grown & scene.distractor_mask).any()
    for split in ("train", "test"):
        scene = ShapesDataset(2, split).scene(1)
        assert scene.distractor_label is None and scene.distractor_mask is None


def test_index_errors_and_bad_arguments():
    ds = ShapesDataset(5, "test")
    with pytest.raises(IndexError):
        ds[5]
    with pytest.raises(IndexError):
        ds[-6]
    assert ds[-1].id == ds[4].id
    with pytest.raises(ValueError, match="split"):
        ShapesDataset(5, "validation")


# ------------------------------------------------------------------------------------------- network


def test_shapes_net_structure():
    net = ShapesNet().eval()
    assert isinstance(net.classifier, nn.Linear) and net.classifier.out_features == len(SHAPE_CLASSES)
    assert isinstance(net.features[-1], nn.ReLU)
    assert not any(getattr(m, "inplace", False) for m in net.modules())
    calls: Counter[str] = Counter()
    handles = [
        m.register_forward_hook(lambda mod, inp, out, name=name: calls.update([name]))
        for name, m in net.named_modules()
        if name
    ]
    try:
        x = torch.randn(2, 3, 64, 64)
        with torch.no_grad():
            maps = net.features(x)
            logits = net(x)
    finally:
        for h in handles:
            h.remove()
    assert maps.shape == (2, net.classifier.in_features, 16, 16)
    assert logits.shape == (2, len(SHAPE_CLASSES))
    # every module ran exactly once in the forward pass (features twice: once above, once in net)
    assert set(calls) == {name for name, _ in net.named_modules() if name}
    assert all(c == (2 if n.startswith("features") else 1) for n, c in calls.items()), calls
    # GAP + linear: the logits are the spatial mean of the class activation maps (CAM's identity)
    cams = torch.einsum("kc,nchw->nkhw", net.classifier.weight, maps)
    torch.testing.assert_close(logits, cams.mean((2, 3)) + net.classifier.bias, rtol=1e-4, atol=1e-5)


def test_small_training_runs_and_is_reproducible():
    state = torch.get_rng_state()
    kwargs = dict(n_train=128, epochs=1, n_test=32, batch_size=64)
    model, accuracy = train_shapes_net(seed=1, **kwargs)
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is left alone
    assert not model.training and 0.0 <= accuracy <= 1.0
    images = torch.stack([ShapesDataset(4, "test", seed=1)[i].image for i in range(4)])
    with torch.no_grad():
        assert model(_normalise(images)).shape == (4, len(SHAPE_CLASSES))
    again, accuracy_again = train_shapes_net(seed=1, **kwargs)
    assert accuracy_again == accuracy
    for (name, a), b in zip(model.state_dict().items(), again.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)


def test_cache_location_and_key(tmp_path, monkeypatch):
    monkeypatch.delenv("XAIBENCH_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_path(3).parent == tmp_path / "xdg" / "xaibench"
    assert "seed3" in cache_path(3).name and cache_path(3) != cache_path(4)
    monkeypatch.setenv("XAIBENCH_CACHE", str(tmp_path / "env"))
    assert cache_path(0).parent == tmp_path / "env"
    assert cache_path(0, tmp_path / "arg").parent == tmp_path / "arg"
    # a different training configuration or data generator never reuses the file
    key = shapes_net._config_key(TrainConfig())
    assert shapes_net._config_key(TrainConfig(epochs=TrainConfig.epochs + 1)) != key
    monkeypatch.setattr(shapes_net, "GENERATOR_VERSION", "something-else")
    assert shapes_net._config_key(TrainConfig()) != key


# The shipped network, and the one full training of the default configuration that reproduces it.


def _no_training(*args, **kwargs):
    raise AssertionError("the built-in network was retrained")


def test_shipped_network_is_current_and_loads_without_training(tmp_path, monkeypatch):
    shipped = shapes_net.shipped_path(0)
    assert shipped.is_file(), (
        f"{shipped.name} is not in xaibench/weights/: the data generator, the architecture or the training "
        "configuration changed; run 'xaibench train-builtin --out xaibench/weights' and commit the file"
    )
    monkeypatch.setattr(shapes_net, "train_shapes_net", _no_training)
    net = load_shapes_net(seed=0, cache_dir=tmp_path)
    assert not net.training and list(tmp_path.iterdir()) == []  # nothing trained, nothing cached
    assert shapes_net_accuracy(0, tmp_path) >= 0.95
    # the shipped network classifies unseen test images (beyond the stored accuracy's 1000)
    ds = ShapesDataset(1300, "test", seed=0)
    items = [ds[i] for i in range(1000, 1300)]
    with torch.no_grad():
        predictions = net(_normalise(torch.stack([s.image for s in items]))).argmax(1)
    accuracy = (predictions == torch.tensor([s.label for s in items])).float().mean().item()
    assert accuracy >= 0.93


def test_without_a_shipped_file_the_network_is_trained_once_and_cached(tmp_path, monkeypatch):
    calls = []

    def fake_training(seed, **config):
        calls.append(seed)
        return ShapesNet(len(SHAPE_CLASSES)).eval(), 0.5

    monkeypatch.setattr(shapes_net, "SHIPPED_DIR", tmp_path / "no-weights-here")
    monkeypatch.setattr(shapes_net, "train_shapes_net", fake_training)
    first = load_shapes_net(seed=0, cache_dir=tmp_path / "cache")
    again = load_shapes_net(seed=0, cache_dir=tmp_path / "cache")
    assert calls == [0]
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [cache_path(0, tmp_path / "cache").name]
    for (name, a), b in zip(first.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), name
    assert shapes_net_accuracy(0, tmp_path / "cache") == 0.5


@pytest.mark.skipif(not SLOW, reason="set XAIBENCH_SLOW=1 (a full training, about 80 s on two CPU cores)")
def test_training_from_the_seed_reproduces_the_shipped_network():
    """The shipped weights are what `xaibench train-builtin` makes: same accuracy, same predictions.

    The file name of the shipped weights carries the training configuration's key, the data generator's
    and the architecture's versions, so a change to any of them fails the fast test above; this one
    also catches a change to the training loop itself."""
    shipped = torch.load(shapes_net.shipped_path(0), weights_only=True)
    model, accuracy = train_shapes_net(seed=0, **dataclasses.asdict(TrainConfig()))
    assert abs(accuracy - shipped["accuracy"]) <= 0.005, (accuracy, shipped["accuracy"])
    reference = ShapesNet(len(SHAPE_CLASSES)).eval()
    reference.load_state_dict(shipped["state_dict"])
    images = torch.stack([ShapesDataset(300, "test", seed=0)[i].image for i in range(300)])
    with torch.no_grad():
        agree = (model(_normalise(images)).argmax(1) == reference(_normalise(images)).argmax(1)).float().mean()
    assert agree >= 0.99
