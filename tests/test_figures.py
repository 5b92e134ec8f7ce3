"""``xaibench explain`` and :mod:`xaibench.figures`: the CAM paper's Figure 4 for one's own photos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from PIL import Image

import xaibench
from xaibench import figures
from xaibench.cli import main
from xaibench.data.transforms import load_image
from xaibench.errors import UnknownNameError, UnreadableImageError, XaibenchError

from conftest import SHARED_IMAGENET, pearson

ORIENTATION = 0x0112


@pytest.fixture(scope="module")
def photo() -> Path:
    files = sorted((SHARED_IMAGENET / "images").glob("*.JPEG")) if SHARED_IMAGENET.is_dir() else []
    if not files:
        pytest.skip(f"shared ImageNet photos not found at {SHARED_IMAGENET}")
    return files[0]


@pytest.fixture(scope="module")
def lite0() -> xaibench.Model:
    return xaibench.load_model("efficientnet_lite0")


@pytest.fixture(scope="module")
def builtin() -> xaibench.Model:
    return xaibench.load_model("builtin")


def _map_axes(fig, method: str | None = None) -> list:
    """The map panels (labelled METHOD:INDEX), row by row; of one method's row if given."""
    return [ax for ax in fig.axes if ":" in ax.get_label() and (method is None or ax.get_label().startswith(f"{method}:"))]


def _maps(fig, method: str) -> np.ndarray:
    return np.stack([np.asarray(ax.images[1].get_array()) for ax in _map_axes(fig, method)])


def _expected_top(model: xaibench.Model, image: torch.Tensor, k: int) -> tuple[list[int], list[str]]:
    """The model's top-k classes and their titles, computed here without xaibench.figures."""
    with torch.no_grad():
        probabilities = model(image[None]).softmax(-1)[0]
    values, indices = probabilities.topk(k)
    titles = [f"{model.class_names[i]} ({100 * float(p):.1f}%)" for p, i in zip(values, indices.tolist())]
    return indices.tolist(), titles


# ------------------------------------------------------------------------------ a real photo, a real model


def test_explain_top5_titles_are_the_models_top5_and_maps_are_cam(photo, lite0, tmp_path, capsys) -> None:
    assert main(["explain", str(photo), "--model", "efficientnet_lite0", "--method", "cam", "--topk", "5",
                 "--out", str(tmp_path)]) == 0
    written = tmp_path / f"{photo.stem}-cam.png"
    assert capsys.readouterr().out.strip() == f"xaibench: wrote {written}"
    with Image.open(written) as png:
        assert png.format == "PNG" and png.width > 5 * png.height > 0

    image, _ = load_image(photo, lite0.input_size)  # the benchmark's loader: the same pixels for this JPEG
    indices, titles = _expected_top(lite0, image, 5)
    fig = figures.explain_figure(photo, lite0, "cam", topk=5)
    assert [ax.get_title() for ax in _map_axes(fig)] == titles
    assert fig.axes[0].get_label() == "image" and fig.axes[0].get_title() == photo.name
    assert [ax.get_label() for ax in _map_axes(fig)] == [f"cam:{i}" for i in indices]
    assert _map_axes(fig)[0].get_ylabel() == "cam"
    assert len(fig.axes) == 1 + 5 + 1  # the image, five maps, one colour bar
    cam = xaibench.create_explainer("cam", lite0)
    direct = cam(image[None].expand(5, -1, -1, -1), torch.tensor(indices)).numpy()
    np.testing.assert_allclose(_maps(fig, "cam"), direct, atol=1e-6)
    assert [(i, n) for i, n, _ in figures.top_classes(lite0, photo, 5)] == [(i, lite0.class_names[i]) for i in indices]


def test_explain_one_class_by_name_any_case(photo, lite0, tmp_path) -> None:
    image, _ = load_image(photo, lite0.input_size)
    indices, titles = _expected_top(lite0, image, 3)
    name = lite0.class_names[indices[2]]  # the third most probable class, not the obvious one
    fig = figures.explain_figure(photo, lite0, "cam", class_name=f" {name.upper()} ")
    (panel,) = _map_axes(fig)
    assert panel.get_title() == titles[2]
    direct = xaibench.create_explainer("cam", lite0)(image[None], torch.tensor([indices[2]]))[0].numpy()
    np.testing.assert_allclose(np.asarray(panel.images[1].get_array()), direct, atol=1e-6)
    assert figures.resolve_class(lite0, str(indices[2])) == indices[2]  # an index works too


def test_cli_class_and_two_methods(photo, builtin, tmp_path, capsys) -> None:
    argv = ["explain", str(photo), "--model", "builtin", "--method", "cam,gradcam", "--class", "Cross ",
            "--format", "pdf", "--out", str(tmp_path)]
    assert main(argv) == 0
    written = tmp_path / f"{photo.stem}-cam+gradcam-cross.pdf"
    assert capsys.readouterr().out.strip() == f"xaibench: wrote {written}"
    assert written.read_bytes().startswith(b"%PDF")


def test_two_methods_make_two_rows_with_the_same_classes(photo, builtin) -> None:
    fig = figures.explain_figure(photo, builtin, "cam,gradcam", topk=2)
    rows = [_map_axes(fig, "cam"), _map_axes(fig, "gradcam")]
    assert [len(r) for r in rows] == [2, 2]
    assert [r[0].get_ylabel() for r in rows] == ["cam", "gradcam"]
    assert [ax.get_title() for ax in rows[0]] == [ax.get_title() for ax in rows[1]]
    assert [ax.get_label().split(":")[1] for ax in rows[0]] == [ax.get_label().split(":")[1] for ax in rows[1]]
    # CAM and Grad-CAM agree on a GAP-linear network (Selvaraju et al., Sec. 3.1)
    assert pearson(torch.from_numpy(_maps(fig, "cam")), torch.from_numpy(_maps(fig, "gradcam"))).min() > 0.99


# ------------------------------------------------------------------------------ image files of every kind


def _formats(photo: Path, folder: Path) -> dict[str, Path]:
    """Files made from one photo: the ways people store images."""
    folder.mkdir()
    with Image.open(photo) as opened:
        rgb = opened.convert("RGB").crop((0, 0, 227, 160))  # not square: a rotation changes the shape
    files = {}
    files["png"] = folder / "photo.png"
    rgb.save(files["png"])
    files["webp"] = folder / "webp.webp"
    rgb.save(files["webp"], quality=95)
    files["gray_jpeg"] = folder / "gray_jpeg.jpg"
    rgb.convert("L").save(files["gray_jpeg"])
    files["gray_png"] = folder / "gray.png"
    rgb.convert("L").save(files["gray_png"])
    files["palette_png"] = folder / "palette.png"
    rgb.convert("P").save(files["palette_png"])
    rgba = rgb.convert("RGBA")
    pixels = np.asarray(rgba).copy()
    pixels[:, :60] = (0, 0, 0, 0)  # the left strip transparent, black underneath
    files["rgba_png"] = folder / "rgba.png"
    Image.fromarray(pixels, mode="RGBA").save(files["rgba_png"])
    files["png16"] = folder / "gray16.png"
    Image.fromarray(np.asarray(rgb.convert("L")).astype(np.uint16) * 257).save(files["png16"])
    files["upright_jpeg"] = folder / "upright.jpg"
    rgb.save(files["upright_jpeg"], quality=95)
    exif = Image.Exif()
    exif[ORIENTATION] = 6  # "rotate 90 degrees clockwise to show": the pixels are stored turned left
    files["rotated_jpeg"] = folder / "rotated.jpg"
    rgb.transpose(Image.Transpose.ROTATE_90).save(files["rotated_jpeg"], quality=95, exif=exif)
    return files


def test_every_kind_of_image_file_gives_a_figure(photo, builtin, tmp_path, capsys) -> None:
    files = _formats(photo, tmp_path / "in")
    with Image.open(files["png16"]) as check:
        assert check.mode in ("I;16", "I")  # 16 bits per pixel as stored
    out = tmp_path / "out"
    assert main(["explain", *map(str, files.values()), "--model", "builtin", "--topk", "1", "--dpi", "40", "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"xaibench: wrote {out / (p.stem + '-cam.png')}" for p in files.values()]
    for path in files.values():
        with Image.open(out / f"{path.stem}-cam.png") as png:
            assert png.width > png.height > 50

    size = builtin.input_size
    gray8, _ = figures.load_photo(files["gray_png"], size)
    gray16, _ = figures.load_photo(files["png16"], size)
    torch.testing.assert_close(gray16, gray8, atol=1 / 255, rtol=0)  # 16 bits read by their range, not clipped
    rgba, shown = figures.load_photo(files["rgba_png"], (160, 227))
    assert shown.mode == "RGB" and rgba[:, :, :58].min() == 1.0  # transparent: composited onto white
    png, _ = figures.load_photo(files["png"], size)
    torch.testing.assert_close(png, load_image(files["png"], size)[0])  # the benchmark's pixels, bit for bit


def test_exif_rotated_photo_is_explained_upright(photo, builtin, tmp_path) -> None:
    files = _formats(photo, tmp_path / "in")
    upright, shown_upright = figures.load_photo(files["upright_jpeg"], builtin.input_size)
    rotated, shown_rotated = figures.load_photo(files["rotated_jpeg"], builtin.input_size)
    assert shown_rotated.size == shown_upright.size == (227, 160)
    assert (rotated - upright).abs().mean() < 0.02
    stored, _ = load_image(files["rotated_jpeg"], builtin.input_size)  # the benchmark's loader keeps the stored frame
    assert (stored - upright).abs().mean() > 0.05

    assert figures.top_classes(builtin, files["rotated_jpeg"], 1)[0][0] == figures.top_classes(builtin, files["upright_jpeg"], 1)[0][0]
    maps = [_maps(figures.explain_figure(files[k], builtin, "cam", topk=1), "cam") for k in ("upright_jpeg", "rotated_jpeg")]
    assert np.abs(maps[0] - maps[1]).max() < 0.05  # 0.72 without EXIF
    assert pearson(torch.from_numpy(maps[0]), torch.from_numpy(maps[1])).item() > 0.995  # 0.45 without EXIF


def test_explain_figure_takes_a_pil_image_or_a_tensor(builtin) -> None:
    image = torch.rand(3, 40, 50, generator=torch.Generator().manual_seed(0))
    fig = figures.explain_figure(image, builtin, ["cam", xaibench.create_explainer("gradcam", builtin)], topk=2)
    assert fig.axes[0].get_title() == "input" and len(_map_axes(fig)) == 4
    assert _maps(fig, "cam").shape == (2, *builtin.input_size)
    pil = Image.fromarray((image.permute(1, 2, 0).numpy() * 255).astype(np.uint8))
    assert len(_map_axes(figures.explain_figure(pil, builtin, "cam", topk=1, figsize=(5, 2.5)))) == 1


def test_a_map_that_is_no_map_says_so(builtin) -> None:
    class Broken(xaibench.Explainer):
        name = "broken"

        def attribute(self, images, targets):
            maps = torch.ones(len(images), 4, 4)
            maps[0, 0, 0] = float("nan")  # the first class: non-finite; the second: constant
            return maps

    fig = figures.explain_figure(torch.rand(3, 64, 64), builtin, [Broken(builtin)], topk=2)
    notes = [[t.get_text() for t in ax.texts] for ax in _map_axes(fig)]
    assert notes == [["no map:\nNaN or inf values"], ["constant map:\nno region singled out"]]
    assert np.all(_maps(fig, "broken") == 0)


# ------------------------------------------------------------------------------------------------ errors


def test_unreadable_images_are_reported_and_skipped_exit_1(photo, tmp_path, capsys) -> None:
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    argv = ["explain", str(photo), str(tmp_path / "missing.jpg"), str(text), "--model", "builtin", "--topk", "1",
            "--out", str(tmp_path / "out")]
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert captured.out.splitlines() == [f"xaibench: wrote {tmp_path / 'out' / (photo.stem + '-cam.png')}"]
    skipped = captured.err.splitlines()
    assert len(skipped) == 2 and all(line.startswith("xaibench: skipped ") for line in skipped)
    assert "missing.jpg does not exist" in skipped[0] and "notes.jpg cannot be read" in skipped[1]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["{photo}", "--class", "sqare"], "has no class 'sqare'; did you mean 'square' or 'star'? list them with: xaibench explain --model builtin --list-classes"),
        (["{photo}", "--class", "6"], "class index 6 is out of range"),
        (["{tmp}/missing.jpg"], "missing.jpg does not exist"),
        (["{tmp}/missing.jpg", "{tmp}/also.png"], "missing.jpg does not exist; restore it or name another image file (and 1 more image)"),
        (["{tmp}/text.jpg"], "text.jpg cannot be read"),
        (["{photo}", "--topk", "0"], "--topk must be at least 1, got 0"),
        (["{photo}", "--topk", "7"], "--topk must lie in [1, 6]"),
        ([], "name at least one image file"),
        (["{photo}", "--method", "cma"], "did you mean 'cam'?"),
        (["{photo}", "--model", "nope"], "unknown model 'nope'"),
        (["{photo}", "--model", "builtin,efficientnet_lite0"], "one model"),
        (["{photo}", "--cmap", "jett"], "unknown colour map 'jett'; did you mean 'jet'?"),
        (["{photo}", "--alpha", "1.5"], "--alpha must lie in [0, 1]"),
        (["{photo}", "--figsize", "12"], "--figsize must be W,H in inches"),
        (["{photo}", "--seed", "-1"], "--seed must lie in"),
        (["{photo}", "--max-image-pixels", "0"], "--max-image-pixels must be at least 1, got 0"),
        (["{photo}", "--max-image-pixels", "100"], "has more pixels than the limit of 100 "),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, message, photo, tmp_path, capsys) -> None:
    (tmp_path / "text.jpg").write_text("hello")
    argv = [a.format(photo=photo, tmp=tmp_path) for a in argv]
    model = [] if "--model" in argv else ["--model", "builtin"]
    assert main(["explain", *argv, *model, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("xaibench: error: ") and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_out_in_an_image_format_not_written_is_refused_not_made_a_folder(photo, tmp_path, capsys) -> None:
    assert main(["explain", str(photo), "--model", "builtin", "--out", str(tmp_path / "cat.gif")]) == 2
    assert "figures are not written as .gif; name a .png, .pdf, .svg or .jpg file, or a folder" in capsys.readouterr().err
    assert not (tmp_path / "cat.gif").exists()
    assert main(["explain", str(photo), "--model", "builtin", "--topk", "1", "--out", str(tmp_path / "run.v2")]) == 0
    figures_there = [p.suffix for p in (tmp_path / "run.v2").iterdir() if p.name != ".xaibench-outputs.json"]
    assert figures_there == [".png"]  # a folder with a dot in its name


def test_out_folder_keeps_figures_that_explain_did_not_write(photo, tmp_path, capsys) -> None:
    """A figure of the name explain would give, but that it did not write there (or that was changed
    since), is refused in one line before anything is drawn; its own figures are replaced."""
    out = tmp_path / "figs"
    out.mkdir()
    theirs = out / f"{photo.stem}-cam.png"
    theirs.write_bytes(b"someone's figure")
    argv = ["explain", str(photo), "--model", "builtin", "--topk", "1", "--dpi", "40", "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err == (f"xaibench: error: {theirs} was not written by xaibench explain (it is not in .xaibench-outputs.json), "
                   "so it is not replaced; remove or rename it, or choose another --out\n")
    assert theirs.read_bytes() == b"someone's figure" and [p.name for p in out.iterdir()] == [theirs.name]
    theirs.unlink()
    assert main(argv) == 0 and main(argv) == 0  # its own figure, replaced
    capsys.readouterr()
    with open(theirs, "ab") as file:  # changed since
        file.write(b"notes")
    assert main(argv) == 2
    assert f"{theirs} changed since xaibench explain wrote it" in capsys.readouterr().err


def test_out_names_one_file_for_one_image(photo, tmp_path, capsys) -> None:
    figure = tmp_path / "figs" / "figure.svg"
    assert main(["explain", str(photo), "--model", "builtin", "--topk", "1", "--out", str(figure)]) == 0
    assert capsys.readouterr().out.strip() == f"xaibench: wrote {figure}"
    assert b"<svg" in figure.read_bytes()[:1000] and list(figure.parent.iterdir()) == [figure]
    assert main(["explain", str(photo), str(photo), "--model", "builtin", "--out", str(tmp_path / "a.png")]) == 2
    assert "names one file but 2 images are given" in capsys.readouterr().err
    assert main(["explain", str(photo), "--model", "builtin", "--format", "pdf", "--out", str(tmp_path / "a.png")]) == 2
    assert "names a .png file but --format is pdf" in capsys.readouterr().err


def test_library_errors(builtin) -> None:
    with pytest.raises(UnknownNameError, match="did you mean 'triangle'"):
        figures.resolve_class(builtin, "triangel")
    with pytest.raises(XaibenchError, match=r"must lie in \[1, 6\]"):
        figures.top_classes(builtin, torch.rand(3, 64, 64), 0)
    with pytest.raises(UnreadableImageError, match="does not exist"):
        figures.load_photo("/no/such/photo.jpg", 64)
    with pytest.raises(XaibenchError, match="name it .png"):
        figures.save_figure(figures.explain_figure(torch.rand(3, 64, 64), builtin, topk=1), "figure.gif")
    for dpi in (0.0, -1.0, float("nan"), 2401.0):  # the library's rule is the command line's, vector formats too
        with pytest.raises(XaibenchError, match=r"--dpi must be a number in \(0, 2400\]"):
            figures.save_figure(Figure(figsize=(1, 1)), "figure.pdf", dpi=dpi)


def test_list_classes(capsys) -> None:
    assert main(["explain", "--model", "builtin", "--list-classes"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"{k}\t{name}" for k, name in enumerate(("disk", "square", "triangle", "cross", "ring", "star"))
    ]


def test_figures_too_large_to_draw_are_refused_before_drawing(tmp_path, capsys) -> None:
    from xaibench.figures import MAX_FIGURE_SIDE, check_raster_size

    check_raster_size(10, 10, 1000)  # 10,000 x 10,000 = 1e8 pixels: the largest that is drawn
    with pytest.raises(XaibenchError, match=r"10001 x 10000 pixels .*lower the dpi or the figure's size \(--dpi, --figsize\)"):
        check_raster_size(10.001, 10, 1000)
    with pytest.raises(XaibenchError, match=f"{MAX_FIGURE_SIDE + 1} x 10 pixels"):
        check_raster_size(MAX_FIGURE_SIDE + 1, 10, 1)  # one side too long, though few pixels
    image = tmp_path / "a.png"
    Image.new("RGB", (20, 20)).save(image)
    for extra, message in ((["--dpi", "inf"], "--dpi must be a number in (0, 2400], got inf"),
                           (["--dpi", "1e9"], "--dpi must be a number in (0, 2400]"),
                           (["--figsize", "999,999"], "the figure would be 99900 x 99900 pixels")):
        assert main(["explain", str(image), "--model", "builtin", "--out", str(tmp_path / "f.png"), *extra]) == 2
        assert message in capsys.readouterr().err


def test_a_photo_is_drawn_at_its_own_aspect_ratio(builtin, tmp_path) -> None:
    """The protocol resizes a 451 x 300 photo to the square input without a crop; the figure draws the
    photo and its maps 451 wide to 300 tall again, not squashed into a square."""
    path = tmp_path / "wide.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (300, 451, 3), dtype=np.uint8)).save(path)
    fig = figures.explain_figure(path, builtin, "cam", topk=2)
    fig.canvas.draw()
    panels = [ax for ax in fig.axes if ax.get_label() == "image" or ":" in ax.get_label()]
    assert len(panels) == 3 and all(ax.get_visible() for ax in panels)
    width, height = fig.get_size_inches()
    for ax in panels:
        box = ax.get_position()  # where the drawing put it, its aspect applied
        assert (box.height * height) / (box.width * width) == pytest.approx(300 / 451, rel=0.02), ax.get_label()


def test_thumbnails_keep_the_photos_size_and_are_shown_at_its_aspect_ratio() -> None:
    from xaibench import thumbnails

    images = torch.rand(2, 3, 224, 224)
    rows = thumbnails.image_rows("m", [0, 1], ["a", "b"], images, [0, 1], [torch.zeros(1, 4)] * 2, ["x", "y"],
                                 [(300, 451), None])
    assert [thumbnails.photo_size(r) for r in rows.itertuples()] == [(300, 451), (224, 224)]
    shown = thumbnails.at_own_aspect(thumbnails.decode_jpeg(rows.jpeg[0]), *thumbnails.photo_size(rows.iloc[0]))
    assert shown.shape == (64, 96, 3)
    old = rows.drop(columns=thumbnails.PHOTO_SIZE_COLUMNS).iloc[0]  # a run of xaibench 0.4: the size the model saw
    assert thumbnails.photo_size(old) == (224, 224)
