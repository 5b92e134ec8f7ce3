"""The harness: tidy rows, batching, incremental CSV, skipped images, known metric values."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import torch

import xaibench
from xaibench.data import Sample
from xaibench.errors import UnreadableImageError, XaibenchError
from xaibench.harness import COLUMNS, build_metrics, evaluate, explain_samples, metric_columns, read_per_image, read_timings


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
    assert list(df.columns) == COLUMNS + list(metric_columns(build_metrics(None))) and len(df) == 14
    bright = df[df.method == "brightness"]
    assert bright.mean_iou.tolist() == [1.0] * 7 and bright.gt_known_loc.all() and (bright.pointing == 1).all()
    assert np.allclose(bright.energy_pointing, 1.0)  # background 0.1 -> 0 after min-max: all mass on the object
    assert (bright.top1_loc == bright.top1_cls).all()
    # wsolevaluation's boxes end one pixel past the contour (x + w): a perfect 4 x 4 square scores
    # IoU 16 / 25 at every threshold that keeps it.
    assert np.allclose(np.stack(bright.box_iou_curve)[:, 1:], 16 / 25)
    assert bright.pxap_hist.iloc[0].shape == (2, 102)
    corner = df[df.method == "corner"].set_index("image_id")
    # The corner map is 0 except one pixel: its CAM box is that pixel (IoU 1/16 with sq0 at (0, 0)).
    assert corner.loc["sq0", "mean_iou"] == pytest.approx(1 / 16)
    # The square nearest the corner pixel is its own top-left corner (x_i, y_i): a hit iff x^2 + y^2 < 15^2.
    expected = [((i * 11) % 28) ** 2 + ((i * 7) % 28) ** 2 < 225 for i in range(7)]
    assert corner.pointing.tolist() == [float(e) for e in expected] and not all(expected)
    assert (df.target == df.label).all()
    assert bright["index"].tolist() == list(range(7)) and (df.status == "ok").all()


def test_target_prediction_and_bad_target(model) -> None:
    data = [_square(i) for i in range(4)]
    df = evaluate(model, data, ["cam"], target="prediction")
    with torch.no_grad():
        predicted = model(torch.stack([s.image for s in data])).argmax(1).tolist()
    assert df.target.tolist() == predicted == df.prediction.tolist()
    with pytest.raises(xaibench.XaibenchError, match="target must be one of label, prediction"):
        evaluate(model, data, ["cam"], target="argmax")


def test_n_limits_the_images_and_csv_matches_the_frame(model, tmp_path) -> None:
    data = [_square(i) for i in range(10)]
    df = evaluate(model, data, ["cam", "gradcam"], n=5, batch_size=2, out=tmp_path)
    assert len(df) == 10
    on_disk = pd.read_parquet(tmp_path / "per_image")
    assert on_disk.image_id.tolist() == df.image_id.tolist()
    assert on_disk.mean_iou.tolist() == df.mean_iou.tolist()
    assert evaluate(model, data, ["cam", "gradcam"], n=5, batch_size=2, out=tmp_path / "quiet", read_back=False) is None
    pd.testing.assert_frame_equal(read_per_image(tmp_path / "quiet"), read_per_image(tmp_path))
    in_memory = evaluate(model, data, ["cam", "gradcam"], n=5, batch_size=2)
    assert in_memory.mean_iou.tolist() == df.mean_iou.tolist()
    for a, b in zip(in_memory.box_iou_curve_v2, df.box_iou_curve_v2):
        assert np.array_equal(a, b)  # the curves are stored exactly


class _FailsOnce(xaibench.Explainer):
    """Brightness, except that the third call raises (as a method running out of memory would)."""

    calls = 0
    fail_at = 3

    def attribute(self, images, targets):
        type(self).calls += 1
        if type(self).calls == self.fail_at:
            raise RuntimeError("out of memory")
        return images.mean(1)


def test_a_crash_keeps_the_rows_and_running_again_computes_only_the_rest(model, tmp_path) -> None:
    data = [_square(i) for i in range(10)]
    explainer = _FailsOnce(model)
    explainer.name = "fails"
    with pytest.raises(XaibenchError, match="method 'fails' failed on images sq4 ... sq5: RuntimeError: out of memory"):
        evaluate(model, data, [explainer, "cam"], batch_size=2, out=tmp_path)
    assert read_per_image(tmp_path).image_id.tolist() == ["sq0", "sq1", "sq0", "sq1", "sq2", "sq3", "sq2", "sq3"]
    _FailsOnce.calls, _FailsOnce.fail_at = 0, -1
    resumed = evaluate(model, data, [explainer, "cam"], batch_size=2, out=tmp_path)
    assert _FailsOnce.calls == 3  # batches 3, 4 and 5 only: nothing computed twice
    fresh = evaluate(model, data, [explainer, "cam"], batch_size=2, out=tmp_path / "fresh")
    pd.testing.assert_frame_equal(read_per_image(tmp_path), read_per_image(tmp_path / "fresh"))
    assert resumed.image_id.tolist() == fresh.image_id.tolist()


def test_a_resumed_run_s_progress_bar_starts_at_the_images_already_done(model, tmp_path, capsys) -> None:
    """Its rate and time left are those of the images still to do, not inflated by the ones on disk."""
    data = [_square(i) for i in range(10)]
    evaluate(model, data, ["cam"], n=4, batch_size=2, out=tmp_path)
    evaluate(model, data, ["cam"], batch_size=2, out=tmp_path, progress=True)
    states = re.findall(r"(\d+)/10 ", capsys.readouterr().err)
    assert states[0] == "4" and states[-1] == "10" and "0" not in states


def test_a_method_that_fails_keeps_the_rows_of_the_methods_before_it_in_the_batch(model, tmp_path) -> None:
    """A method that fails (or is interrupted) loses only its own rows of the batch: an expensive method's
    hours are not lost because the method after it fails on the same batch."""
    data = [_square(i) for i in range(6)]
    explainer = _FailsOnce(model)
    explainer.name = "fails"
    _FailsOnce.calls, _FailsOnce.fail_at = 0, 2
    with pytest.raises(XaibenchError, match="method 'fails' failed on images sq2 ... sq3"):
        evaluate(model, data, ["cam", explainer], batch_size=2, out=tmp_path)
    kept = read_per_image(tmp_path)
    assert list(zip(kept.method, kept.image_id)) == [
        ("cam", "sq0"), ("cam", "sq1"), ("fails", "sq0"), ("fails", "sq1"), ("cam", "sq2"), ("cam", "sq3")
    ]
    assert read_timings(tmp_path).method.tolist() == ["cam", "fails", "cam"]
    _FailsOnce.calls, _FailsOnce.fail_at = 0, -1
    evaluate(model, data, ["cam", explainer], batch_size=2, out=tmp_path)
    assert _FailsOnce.calls == 2  # batches 2 and 3
    evaluate(model, data, ["cam", explainer], batch_size=2, out=tmp_path / "fresh")
    pd.testing.assert_frame_equal(read_per_image(tmp_path), read_per_image(tmp_path / "fresh"))


def test_a_part_killed_mid_write_is_discarded_and_its_batch_recomputed(model, tmp_path) -> None:
    """A kill during a part's write leaves a temporary file and no part: the batch is computed again,
    and the rows equal an uninterrupted run's."""
    data = [_square(i) for i in range(6)]
    evaluate(model, data, ["cam", "gradcam"], batch_size=3, out=tmp_path / "whole")
    evaluate(model, data, ["cam", "gradcam"], batch_size=3, out=tmp_path / "torn")
    parts = sorted((tmp_path / "torn" / "per_image").glob("part-*.parquet"))
    half = parts[-1].read_bytes()[:300]
    parts[-1].unlink()
    (parts[-1].parent / f".{parts[-1].name}.x1y2.partial").write_bytes(half)  # as atomic_write leaves it
    assert read_per_image(tmp_path / "torn").image_id.tolist() == ["sq0", "sq1", "sq2"] * 2
    evaluate(model, data, ["cam", "gradcam"], batch_size=3, out=tmp_path / "torn")
    pd.testing.assert_frame_equal(read_per_image(tmp_path / "torn"), read_per_image(tmp_path / "whole"))
    assert not list((tmp_path / "torn" / "per_image").glob(".*.partial"))


def test_an_unreadable_image_is_skipped_not_fatal(model, caplog, tmp_path) -> None:
    class Flaky(list):
        def __getitem__(self, i):
            if i == 2:
                raise UnreadableImageError("cannot read image broken.jpg: truncated data")
            return super().__getitem__(i)

    df = evaluate(model, Flaky(_square(i) for i in range(5)), ["cam"], batch_size=2)
    assert df.image_id.tolist() == ["sq0", "sq1", "sq3", "sq4"]
    assert df.attrs["skipped"] == ["2"]
    assert "broken.jpg" in caplog.text
    on_disk = evaluate(model, Flaky(_square(i) for i in range(5)), ["cam"], batch_size=2, out=tmp_path)
    assert on_disk.attrs["skipped"] == ["2"]
    assert pd.read_parquet(tmp_path / "skipped").reason.tolist() == ["cannot read image broken.jpg: truncated data"]


@pytest.mark.parametrize("error", [ValueError("bad annotation"), KeyError("x0"), OSError("disk gone")])
def test_any_other_data_set_error_stops_the_run_naming_the_sample(model, error) -> None:
    class Broken(list):
        def __getitem__(self, i):
            if i == 3:
                raise error
            return super().__getitem__(i)

    with pytest.raises(XaibenchError, match=f"the data set failed on sample 3 \\({type(error).__name__}"):
        evaluate(model, Broken(_square(i) for i in range(5)), ["cam"], batch_size=2)


def test_bad_arguments(model) -> None:
    data = [_square(i) for i in range(3)]
    with pytest.raises(XaibenchError, match="named more than once: cam"):
        evaluate(model, data, ["cam", "gradcam", "cam"])
    with pytest.raises(XaibenchError, match="n must be at least 1, got 0"):
        evaluate(model, data, ["cam"], n=0)
    with pytest.raises(XaibenchError, match="no method"):
        evaluate(model, data, [])


class _Constant(xaibench.Explainer):
    def attribute(self, images, targets):
        return torch.full((len(images), 4, 4), 2.0)


class _NaNOnOdd(xaibench.Explainer):
    """A map with one NaN pixel for every odd image; brightness otherwise."""

    def attribute(self, images, targets):
        maps = images.mean(1).clone()
        maps[1::2, 0, 0] = float("nan")
        return maps


class _EditsInputs(xaibench.Explainer):
    """Brightness, after scribbling over its inputs in place."""

    def attribute(self, images, targets):
        maps = images.mean(1).clone()
        images.zero_()
        targets.fill_(0)
        return maps


def test_non_finite_maps_are_failures_and_constant_maps_are_counted(model) -> None:
    explainers = [_NaNOnOdd(model), _Constant(model)]
    explainers[0].name, explainers[1].name = "nan_on_odd", "constant"
    df = evaluate(model, [_square(i) for i in range(4)], explainers, batch_size=4)
    nan = df[df.method == "nan_on_odd"]
    assert nan.status.tolist() == ["ok", "nonfinite", "ok", "nonfinite"]
    assert nan.mean_iou.isna().tolist() == [False, True, False, True] and nan.mean_iou.iloc[0] == 1.0
    assert nan.box_iou_curve.isna().tolist() == [False, True, False, True]
    assert nan.top1_cls.notna().all()  # the classification is not the map's
    constant = df[df.method == "constant"]
    assert (constant.status == "constant").all()
    # An all-zero map: the CAM box is the whole 32 x 32 image, IoU with a 4 x 4 box is 16 / 1024.
    assert np.allclose(constant.mean_iou, 16 / 1024)
    summary = xaibench.summarize(df).set_index(["method", "metric"]).value
    assert summary["nan_on_odd", "nonfinite_maps"] == 2 and summary["constant", "constant_maps"] == 4


def test_a_run_with_non_finite_maps_is_journaled_and_summarised(tmp_path, temporary_name) -> None:
    """Through the journal: a non-finite map's row keeps empty curve cells (pandas 3 made the
    missing cells NaN, written as 0-d arrays that the summary then tried to stack), and the run,
    its summary and its page complete."""
    from xaibench import cli
    from xaibench.explainer import METHODS

    xaibench.register_explainer(temporary_name(METHODS, "test-nan-on-odd"))(_NaNOnOdd)
    out = tmp_path / "run"
    assert cli.main(["run", "--methods", "cam,test-nan-on-odd", "--n", "8", "--out", str(out)]) == 0
    rows = pd.read_parquet(out / "per_image")
    failed = rows[rows.status == "nonfinite"]
    assert len(failed) == 4 and failed.box_iou_curve.isna().all() and failed.pxap_hist.isna().all()
    summary = pd.read_csv(out / "summary.csv").set_index(["method", "metric"])
    assert summary.loc[("test-nan-on-odd", "nonfinite_maps"), "value"] == 4
    assert summary.loc[("test-nan-on-odd", "maxboxacc"), "n"] == 4
    assert (out / "report.html").is_file()


def test_a_method_editing_its_inputs_changes_nothing_else(model) -> None:
    data = [_square(i) for i in range(4)]
    vandal = _EditsInputs(model)
    vandal.name = "vandal"
    alone = evaluate(model, data, ["cam"])
    after = evaluate(model, data, [vandal, "cam"])
    cam = after[after.method == "cam"].reset_index(drop=True)
    assert cam.mean_iou.tolist() == alone.mean_iou.tolist() and cam.label.tolist() == [s.label for s in data]
    assert after[after.method == "vandal"].mean_iou.tolist() == [1.0] * 4


def test_explain_samples_matches_a_direct_call(model) -> None:
    samples = [_square(i) for i in range(3)]
    maps = explain_samples(model, samples, ["cam"])
    direct = xaibench.create_explainer("cam", model)(torch.stack([s.image for s in samples]), torch.tensor([0, 1, 2]))
    assert np.allclose(maps["cam"], direct.numpy())


def _large(i: int) -> Sample:
    """_square(i) upsampled to 160 x 160: larger than a thumbnail."""
    small = _square(i)
    image = torch.nn.functional.interpolate(small.image[None], size=(160, 160), mode="nearest")[0]
    return Sample(small.id, image, small.label, small.boxes * 5, None)


class _Unreadable(list):
    """Samples, of which those at ``missing`` cannot be read."""

    missing: tuple[int, ...] = ()

    def __getitem__(self, i):
        if i in self.missing:
            raise UnreadableImageError(f"image {i} is truncated")
        return super().__getitem__(i)


def test_the_overlay_figure_shows_the_journaled_maps_of_the_first_readable_images_at_full_size(model, tmp_path) -> None:
    """The run's figure draws the maps that were scored (no method runs again): the first
    FIGURE_IMAGES readable images' maps are journaled at full size, the others as thumbnails."""
    from xaibench import thumbnails
    from xaibench.harness import figure_maps, read_thumbnails

    data = _Unreadable(_large(i) for i in range(thumbnails.FIGURE_IMAGES + 3))
    data.missing = (1,)
    first = [0, *range(2, thumbnails.FIGURE_IMAGES + 1)]  # the first readable ones
    bright = _Brightness(model)
    bright.name = "brightness"
    evaluate(model, data, ["cam", bright], batch_size=3, out=tmp_path)
    _, cells = read_thumbnails(tmp_path)
    sizes = {int(i): cell.shape for i, cell in zip(cells["index"], cells["map"])}
    assert sizes == {i: (160, 160) if i in first else (96, 96) for i in range(len(data)) if i != 1}

    samples, maps = figure_maps(tmp_path, model.name, data, ["brightness", "cam"])
    assert [s.id for s in samples] == [f"sq{i}" for i in first]
    assert list(maps) == ["brightness", "cam"] and maps["cam"].shape == (thumbnails.FIGURE_IMAGES, 160, 160)
    computed = explain_samples(model, samples, [bright, "cam"])
    for method in maps:  # the same maps, rounded to 1/255
        assert np.abs(maps[method] - computed[method]).max() <= 0.5 / 255 + 1e-6
    # A thumbnail drawn over a full-size image is resized to it; a full-size map drawn over a
    # thumbnail is area-averaged down as the thumbnails are.
    assert thumbnails.map_image(cells["map"].iloc[-1], (160, 160)).shape == (160, 160)
    full = cells[(cells["index"] == 0) & (cells.method == "brightness")]["map"].iloc[0]
    assert np.abs(thumbnails.map_image(full, (96, 96)) - thumbnails.map_image(
        thumbnails.map_rows("m", [99], "x", computed["brightness"][:1])["map"].iloc[0])).max() <= 1 / 255 + 1e-6
    # An image that cannot be read any more is passed over for the next one (a thumbnail, resized).
    data.missing = (1, 0)
    samples, maps = figure_maps(tmp_path, model.name, data, ["brightness", "cam"])
    assert [s.id for s in samples] == [f"sq{i}" for i in [*first[1:], thumbnails.FIGURE_IMAGES + 1]]
    assert maps["cam"].shape == (thumbnails.FIGURE_IMAGES, 160, 160)
    # Images that some method has no map of are left out.
    assert figure_maps(tmp_path, model.name, data, ["cam", "gradcam"]) == ([], {})


def test_first_samples_skips_unreadable_images() -> None:
    from xaibench.harness import first_samples

    class Flaky(list):
        def __getitem__(self, i):
            if i in (0, 2):
                raise UnreadableImageError("truncated file")
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
    for column in ("mean_iou", "energy_pointing"):  # batched arithmetic may differ in the last bits
        assert np.allclose(by_one[column], by_four[column])


def test_all_difficult_objects_are_not_scored_and_an_empty_region_is_a_miss(model) -> None:
    """As TorchRay: an (image, class) whose boxes are all difficult is skipped; an empty mask is a miss."""
    data = [_square(i) for i in range(3)]
    data[0] = Sample(data[0].id, data[0].image, data[0].label, data[0].boxes, data[0].mask,
                     torch.tensor([True]))
    empty = torch.zeros(32, 32, dtype=torch.bool)
    data[1] = Sample(data[1].id, data[1].image, data[1].label, data[1].boxes, empty)
    df = evaluate(model, data, ["cam"])
    assert df.pointing.isna().tolist() == [True, False, False] and df.pointing[1] == 0.0


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


def test_the_pointing_game_of_a_run_is_played_in_the_photos_pixels(tmp_path) -> None:
    """Through the harness: a 400 x 100 photo fed at 64 x 64. The centre baseline's peak lands at
    x = 199 of the photo; a box starting 20 photo pixels to its right is a miss there (TorchRay's
    15 px), but only 4 px away at the fed size, a hit with ``pointing(resolution=input)``."""
    from PIL import Image

    from xaibench.data import load_dataset
    from xaibench.metric import create_metric

    Image.new("RGB", (400, 100), (90, 120, 150)).save(tmp_path / "wide.png")
    (tmp_path / "boxes.csv").write_text("image,label,x0,y0,x1,y1\nwide.png,disk,219,40,260,60\n")
    model = xaibench.load_model("builtin")
    data = load_dataset(f"csv:{tmp_path / 'boxes.csv'}", image_size=model.input_size, class_names=model.class_names)
    assert data[0].original.size == (100, 400)
    photo = evaluate(model, data, ["center"], metrics=["pointing"])
    fed = evaluate(model, data, ["center"], metrics=[create_metric("pointing", resolution="input")])
    assert photo.pointing.tolist() == [0.0] and fed.pointing.tolist() == [1.0]


def test_the_pointing_game_resizes_the_methods_own_map_straight_to_the_photo(tmp_path) -> None:
    """Through the harness, with ``random`` (a 7 x 7 map) on 300 x 200 photos fed at 64 x 64: as in
    TorchRay, the map is resized once, 7 x 7 -> photo. Each photo's box is one pixel 14 px right of
    that map's maximum: every one a hit. Resizing the 64 x 64 map instead moves the maximum on some
    photos, which would make misses of them."""
    from PIL import Image

    from xaibench.data import load_dataset
    from xaibench.explainer import create_explainer, normalize_maps, upsample_maps

    rng = np.random.default_rng(0)
    for k in range(16):
        Image.fromarray(rng.integers(0, 256, (200, 300, 3), dtype=np.uint8)).save(tmp_path / f"p{k}.png")
    model = xaibench.load_model("builtin")
    method = create_explainer("random", model, seed=3)

    def photos(rows: list[str]):
        (tmp_path / "boxes.csv").write_text("image,label,x0,y0,x1,y1\n" + "".join(rows))
        return load_dataset(f"csv:{tmp_path / 'boxes.csv'}", image_size=model.input_size, class_names=model.class_names)

    fed = photos([f"p{k}.png,disk,0,0,1,1\n" for k in range(16)])
    explanation = method.explain(torch.stack([s.image for s in fed]), torch.zeros(16, dtype=torch.long))
    once = upsample_maps(explanation.native, (200, 300)).flatten(1).argmax(1)
    twice = upsample_maps(normalize_maps(explanation.raw), (200, 300)).flatten(1).argmax(1)
    assert (once != twice).any()
    rows = []
    for k, at in enumerate(once.tolist()):
        y, x = divmod(at, 300)
        assert x + 14 < 300
        rows.append(f"p{k}.png,disk,{x + 14},{y},{x + 14},{y}\n")
    scored = evaluate(model, photos(rows), [method], metrics=["pointing"])
    assert scored.pointing.tolist() == [1.0] * 16


def test_timings_hold_the_seconds_in_the_method_and_in_the_metrics_of_its_maps(model, tmp_path, monkeypatch) -> None:
    """A clock that moves only in the method (1 s per batch) and in the metric (0.25 s per batch)."""
    import time

    clock = [0.0]
    monkeypatch.setattr(time, "perf_counter", lambda: clock[0])

    class Slow(xaibench.Explainer):
        name = "slow"

        def attribute(self, images, targets):
            clock[0] += 1.0
            return images.mean(1)

    class SlowMetric(xaibench.Metric):
        name, columns = "slow_metric", {"slow": "scalar"}

        def score(self, batch):
            clock[0] += 0.25
            return {"slow": np.zeros(len(batch))}

    evaluate(model, [_square(i) for i in range(6)], [Slow(model)], metrics=[SlowMetric()], batch_size=4, out=tmp_path,
             workers=0)  # one thread: the clock moves in turn
    timings = read_timings(tmp_path)
    assert timings[["batch", "images", "seconds", "metric_seconds"]].values.tolist() == [[0, 4, 1.0, 0.25], [4, 2, 1.0, 0.25]]


def test_a_run_whose_timings_have_no_metric_time_is_resumed(model, tmp_path) -> None:
    """timings.csv as xaibench 0.3 wrote it, without metric_seconds: converted on resume, its rows kept,
    the new rows with their metric time."""
    import shutil

    from xaibench.harness import TIMING_COLUMNS
    from xaibench.journal import Journal

    data = [_square(i) for i in range(6)]
    evaluate(model, data, ["cam"], n=4, batch_size=2, out=tmp_path)
    rows = read_timings(tmp_path).drop(columns="metric_seconds")
    shutil.rmtree(tmp_path / "timings")
    journal = Journal(tmp_path / "timings.csv", TIMING_COLUMNS[:-1])
    journal.create()
    journal.append(rows)
    evaluate(model, data, ["cam"], batch_size=2, out=tmp_path)
    timings = read_timings(tmp_path)
    assert not (tmp_path / "timings.csv").exists()
    assert timings.batch.tolist() == [0, 2, 4] and timings.metric_seconds.isna().tolist() == [True, True, False]
