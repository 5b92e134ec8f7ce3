"""The harness: tidy rows, batching, incremental CSV, skipped images, known metric values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import xaibench
from xaibench.data import Sample
from xaibench.harness import COLUMNS, CURVE_COLUMNS, evaluate, explain_samples


def _square(i: int) -> Sample:
    """A 32 x 32 image with a bright 4 x 4 square at a position that depends on i."""
    image = torch.full((3, 32, 32), 0.1)
    y, x = (i * 7) % 28, (i * 11) % 28
    image[:, y : y + 4, x : x + 4] = 1.0
    mask = torch.zeros(32, 32, dtype=torch.bool)
    mask[y : y + 4, x : x + 4] = True
    return Sample(f"sq{i}", image, i % 5, torch.tensor([[x, y, x + 3, y + 3]], dtype=torch.float32), mask)


class _Brightness(xaibench.Explainer):
    """The image's brightness: a perfect localizer on these images."""

    def attribute(self, images, targets):
        return images.mean(1)


class _Corner(xaibench.Explainer):
    """All mass in the top-left pixel, (0, 0)."""

    def attribute(self, images, targets):
        maps = torch.zeros(images.shape[0], 32, 32)
        maps[:, 0, 0] = 1
        return maps


def test_rows_columns_and_known_values(model) -> None:
    data = [_square(i) for i in range(7)]
    methods = [_Brightness(model), _Corner(model)]
    methods[0].name, methods[1].name = "brightness", "corner"
    df = evaluate(model, data, methods, batch_size=3)
    assert list(df.columns) == COLUMNS + CURVE_COLUMNS and len(df) == 14
    bright = df[df.method == "brightness"]
    assert bright.iou.tolist() == [1.0] * 7 and bright.gt_known_loc.all() and (bright.pointing == 1).all()
    assert np.allclose(bright.energy_pointing, 1.0)  # background 0.1 -> 0 after min-max: all mass on the object
    assert (bright.top1_loc == bright.top1_cls).all()
    # wsolevaluation's boxes end one pixel past the contour (x + w): a perfect 4 x 4 square scores
    # IoU 16 / 25 at every threshold that keeps it.
    assert np.allclose(np.stack(bright.box_iou_curve)[:, 1:], 16 / 25)
    assert bright.pxap_hist.iloc[0].shape == (2, 102)
    corner = df[df.method == "corner"].set_index("image_id")
    # The corner map is 0 except one pixel: its CAM box is that pixel (IoU 1/16 with sq0 at (0, 0)).
    assert corner.loc["sq0", "iou"] == pytest.approx(1 / 16)
    # The square nearest the corner pixel is its own top-left corner (x_i, y_i): a hit iff x^2 + y^2 < 15^2.
    expected = [((i * 11) % 28) ** 2 + ((i * 7) % 28) ** 2 < 225 for i in range(7)]
    assert corner.pointing.tolist() == [float(e) for e in expected] and not all(expected)
    assert (df.target == df.label).all()
    assert (df.seconds > 0).all()


def test_target_prediction_and_bad_target(model) -> None:
    data = [_square(i) for i in range(4)]
    df = evaluate(model, data, ["cam"], target="prediction")
    with torch.no_grad():
        predicted = model(torch.stack([s.image for s in data])).argmax(1).tolist()
    assert df.target.tolist() == predicted == df.prediction.tolist()
    with pytest.raises(xaibench.XaibenchError, match="target must be one of label, prediction"):
        evaluate(model, data, ["cam"], target="argmax")


def test_n_limits_the_images_and_csv_matches_the_frame(model, tmp_path) -> None:
    df = evaluate(model, [_square(i) for i in range(10)], ["cam", "gradcam"], n=5, batch_size=2, out=tmp_path)
    assert len(df) == 10
    on_disk = pd.read_csv(tmp_path / "per_image.csv")
    assert on_disk.image_id.tolist() == df.image_id.tolist()
    assert np.allclose(on_disk.iou, df.iou)


def test_a_crash_keeps_the_rows_already_written(model, tmp_path) -> None:
    class Fails(xaibench.Explainer):
        calls = 0

        def attribute(self, images, targets):
            Fails.calls += 1
            if Fails.calls == 3:
                raise RuntimeError("out of memory")
            return images.mean(1)

    explainer = Fails(model)
    explainer.name = "fails"
    with pytest.raises(RuntimeError, match="out of memory"):
        evaluate(model, [_square(i) for i in range(10)], [explainer], batch_size=2, out=tmp_path)
    assert pd.read_csv(tmp_path / "per_image.csv").image_id.tolist() == ["sq0", "sq1", "sq2", "sq3"]


def test_an_unreadable_image_is_skipped_not_fatal(model, caplog) -> None:
    class Flaky(list):
        def __getitem__(self, i):
            if i == 2:
                raise OSError("cannot identify image file 'broken.jpg'")
            return super().__getitem__(i)

    df = evaluate(model, Flaky(_square(i) for i in range(5)), ["cam"], batch_size=2)
    assert df.image_id.tolist() == ["sq0", "sq1", "sq3", "sq4"]
    assert df.attrs["skipped"] == ["2"]
    assert "broken.jpg" in caplog.text


def test_explain_samples_matches_a_direct_call(model) -> None:
    samples = [_square(i) for i in range(3)]
    maps = explain_samples(model, samples, ["cam"])
    direct = xaibench.create_explainer("cam", model)(torch.stack([s.image for s in samples]), torch.tensor([0, 1, 2]))
    assert np.allclose(maps["cam"], direct.numpy())


def test_first_samples_skips_unreadable_images() -> None:
    from xaibench.harness import first_samples

    class Flaky(list):
        def __getitem__(self, i):
            if i in (0, 2):
                raise OSError("truncated file")
            return super().__getitem__(i)

    assert [s.id for s in first_samples(Flaky(_square(i) for i in range(6)), 3)] == ["sq1", "sq3", "sq4"]


def test_top1_top5_and_gt_known_follow_the_model_and_the_boxes() -> None:
    """With a perfect localizer, top1_loc / top5_loc reduce to the label being in the top-1 / top-5."""
    from conftest import TinyGapNet, tiny_model

    model = tiny_model(TinyGapNet(n_classes=12))
    data = [_square(i) for i in range(10)]
    explainer = _Brightness(model)
    explainer.name = "brightness"
    df = evaluate(model, data, [explainer], batch_size=4)
    with torch.no_grad():
        logits = model(torch.stack([s.image for s in data]))
    labels = torch.tensor([s.label for s in data])
    top1 = (logits.argmax(1) == labels).numpy()
    top5 = (logits.topk(5, 1).indices == labels[:, None]).any(1).numpy()
    assert 0 < top5.sum() < len(data) and top1.sum() < top5.sum()  # the case is not trivial
    assert df.gt_known_loc.all()
    assert df.top1_cls.tolist() == top1.tolist() == df.top1_loc.tolist()
    assert df.top5_loc.tolist() == top5.tolist()
    # target="prediction": the map explains the top-1 class; GT-known and top-5 are undefined there.
    by_prediction = evaluate(model, data, [explainer], batch_size=4, target="prediction")
    assert by_prediction.gt_known_loc.isna().all() and by_prediction.top5_loc.isna().all()
    assert by_prediction.top1_loc.tolist() == top1.tolist()


def test_masks_are_per_image_so_results_do_not_depend_on_the_batch(model) -> None:
    """One image without a mask must not take PxAP and the mask-based pointing from its batch mates."""
    data = [_square(i) for i in range(4)]
    data[1] = Sample(data[1].id, data[1].image, data[1].label, data[1].boxes, None)
    by_one = evaluate(model, data, ["cam"], batch_size=1)
    by_four = evaluate(model, data, ["cam"], batch_size=4)
    assert [h is None for h in by_four.pxap_hist] == [False, True, False, False]
    assert by_one.pointing.tolist() == by_four.pointing.tolist()
    for column in ("iou", "energy_pointing"):  # batched arithmetic may differ in the last bits
        assert np.allclose(by_one[column], by_four[column])


def test_all_difficult_or_empty_regions_are_not_scored(model) -> None:
    data = [_square(i) for i in range(3)]
    data[0] = Sample(data[0].id, data[0].image, data[0].label, data[0].boxes, data[0].mask,
                     torch.tensor([True]))
    empty = torch.zeros(32, 32, dtype=torch.bool)
    data[1] = Sample(data[1].id, data[1].image, data[1].label, data[1].boxes, empty)
    df = evaluate(model, data, ["cam"])
    assert df.pointing.isna().tolist() == [True, True, False]


def test_predictions_are_made_in_eval_mode() -> None:
    """A model left in train mode (dropout) must still give the same predictions twice."""
    from conftest import tiny_model

    network = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Dropout(0.9),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 5),
    )
    model = tiny_model(network)
    network.train()
    data = [_square(i) for i in range(12)]
    first = evaluate(model, data, ["gradcam"]).prediction.tolist()
    assert evaluate(model, data, ["gradcam"]).prediction.tolist() == first
    assert network.training
