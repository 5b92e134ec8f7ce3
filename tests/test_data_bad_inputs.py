"""Bad inputs for every data set kind: each gets a one-line error naming the file and the record.

The corpus is generated in ``tmp_path`` by the tests themselves (no binary fixture is committed).
Outcomes, as documented in ``xaibench/data``:

* an image file that cannot be read -> :class:`UnreadableImageError` naming the file (the one
  error a run skips);
* a malformed annotation -> :class:`DatasetError` naming the file and the record;
* pixel modes and boxes that can be read -> the decoded values and boxes, checked by known answers.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import threading
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils

import xaibench
import xaibench.data
from xaibench.data.coco import load_coco
from xaibench.data.csvfile import load_csv, read_masks
from xaibench.data.imagenet import load_imagenet
from xaibench.data.transforms import clip_boxes, load_image
from xaibench.data.voc import load_voc, read_xml_annotation
from xaibench.errors import DatasetError, UnknownNameError, UnreadableImageError

from test_data import SYNSETS, coco_folder, imagenet_ilsvrc, voc_folder, voc_xml, write_image

SIZE = (8, 8)
PIL_DEFAULT_MAX_PIXELS = int(1024 * 1024 * 1024 // 4 // 3)  # PIL's own default, 89478485


def rgb_reference(path: Path, size: tuple[int, int]) -> torch.Tensor:
    """wsolevaluation's protocol written out: ``Image.open(p).convert('RGB')``, bilinear resize, / 255."""
    with Image.open(path) as img:
        array = np.asarray(img.convert("RGB").resize((size[1], size[0]), Image.BILINEAR), dtype=np.float32)
    return torch.from_numpy((array / np.float32(255.0)).transpose(2, 0, 1).copy())


def one_line(err: pytest.ExceptionInfo[BaseException]) -> str:
    text = str(err.value)
    assert "\n" not in text
    return text


# ----------------------------------------------------------------------------- unreadable image files


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UnreadableImageError, match=r"image file .*nothing\.jpg does not exist") as err:
        load_image(tmp_path / "nothing.jpg", SIZE)
    one_line(err)


@pytest.mark.parametrize(
    "content",
    [b"", b"not an image at all", bytes(range(256)) * 4, b"\x89PNG\r\n\x1a\n" + b"\x00" * 40],
    ids=["empty", "text", "noise", "png-signature-only"],
)
def test_undecodable_bytes(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.jpg"
    path.write_bytes(content)
    with pytest.raises(UnreadableImageError, match=r"image file .*bad\.jpg cannot be") as err:
        load_image(path, SIZE)
    one_line(err)


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_truncated_file(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"cut{suffix}"
    write_image(path, 64, 48, seed=3)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(UnreadableImageError, match=rf"cut\{suffix} cannot be .*truncated"):
        load_image(path, SIZE)


def test_a_directory_named_like_an_image(tmp_path: Path) -> None:
    (tmp_path / "x.jpg").mkdir()
    with pytest.raises(UnreadableImageError, match=r"x\.jpg is a directory, not a regular file"):
        load_image(tmp_path / "x.jpg", SIZE)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_a_fifo_named_like_an_image_does_not_hang(tmp_path: Path) -> None:
    fifo = tmp_path / "x.jpg"
    os.mkfifo(fifo)
    outcome: list[BaseException] = []

    def read() -> None:
        try:
            load_image(fifo, SIZE)
        except BaseException as err:  # noqa: BLE001 - handed to the test thread
            outcome.append(err)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    thread.join(timeout=10)
    if thread.is_alive():  # blocked in open(): release it with a writer, then fail
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("load_image blocked on a FIFO")
    assert len(outcome) == 1 and isinstance(outcome[0], UnreadableImageError)
    assert "x.jpg is a FIFO, not a regular file" in str(outcome[0])


def test_more_pixels_than_the_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_image(tmp_path / "ten.png", 10, 10)
    write_image(tmp_path / "twelve.png", 12, 12)  # 144: over the limit, under PIL's hard limit (2x)
    write_image(tmp_path / "twenty.png", 20, 20)  # 400: over PIL's hard limit, DecompressionBombError
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # read at call time, as --max-image-pixels sets it
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no DecompressionBombWarning may escape
        assert load_image(tmp_path / "ten.png", SIZE)[1] == (10, 10)  # at the limit: fine
        with pytest.raises(UnreadableImageError, match=r"twelve\.png is 12 x 12 = 144 pixels, more than the limit of 100"):
            load_image(tmp_path / "twelve.png", SIZE)
        with pytest.raises(UnreadableImageError, match=r"twenty\.png has more pixels than the limit of 100 .*twice over.*max-image-pixels"):
            load_image(tmp_path / "twenty.png", SIZE)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # no limit
    assert load_image(tmp_path / "twenty.png", SIZE)[1] == (20, 20)


def bilevel_png(path: Path, width: int, height: int) -> None:
    """An all-black mode '1' PNG written chunk by chunk (never held as an image in memory)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = bytes(1 + (width + 7) // 8)  # filter byte 0, then all-zero bits
    packer = zlib.compressobj(9)
    block = row * 1000
    idat = b"".join(packer.compress(block) for _ in range(height // 1000)) + packer.compress(row * (height % 1000))
    idat += packer.flush()
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
        + chunk(b"IDAT", idat)
        + chunk(b"IEND", b"")
    )


def test_a_decompression_bomb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "bomb.png"
    bilevel_png(path, 20000, 20000)  # 4e8 pixels, 400 MB once decoded, past PIL's hard limit
    assert path.stat().st_size < 200_000
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", PIL_DEFAULT_MAX_PIXELS)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(UnreadableImageError, match=r"bomb\.png has more pixels than the limit of 89478485 .*, more than twice over") as err:
            load_image(path, SIZE)
    one_line(err)


def test_an_inaccessible_path_is_shown_as_the_path(tmp_path: Path) -> None:
    """A path the system refuses (here a NUL byte in it) is quoted as text, not as ``PosixPath(...)``."""
    with pytest.raises(UnreadableImageError, match=r"^image file '.*a\\x00b\.png' cannot be accessed \(embedded null byte\)") as err:
        load_image(tmp_path / "a\x00b.png", SIZE)
    assert "PosixPath" not in str(err.value)
    one_line(err)


def test_unreadable_image_through_a_data_set_and_a_mask(tmp_path: Path) -> None:
    write_image(tmp_path / "good.png", 10, 10)
    (tmp_path / "broken.png").write_bytes(b"\x00" * 100)
    (tmp_path / "boxes.csv").write_text(
        "image,label,x0,y0,x1,y1,mask\nbroken.png,cat,0,0,4,4,\ngood.png,cat,0,0,4,4,nomask.png\n"
    )
    ds = load_csv(str(tmp_path / "boxes.csv"), image_size=SIZE)  # the index reads no pixel
    with pytest.raises(UnreadableImageError, match=r"image file .*broken\.png cannot be"):
        ds[0]
    with pytest.raises(UnreadableImageError, match=r"mask file .*nomask\.png does not exist"):
        ds[1]
    with pytest.raises(UnreadableImageError, match=r"mask file .*broken\.png cannot be"):
        read_masks([tmp_path / "broken.png"])


# ----------------------------------------------------------------------------- pixel modes


@pytest.mark.parametrize("mode", ["1", "L", "P", "LA", "RGBA", "CMYK", "RGB"])
def test_eight_bit_modes_are_pils_convert_rgb(tmp_path: Path, mode: str) -> None:
    rng = np.random.default_rng(7)
    base = Image.fromarray(rng.integers(0, 256, size=(6, 10, 4), dtype=np.uint8), "RGBA")
    path = tmp_path / f"m.{'tif' if mode == 'CMYK' else 'png'}"
    (base if mode == "RGBA" else base.convert("RGB").convert(mode) if mode == "P" else base.convert(mode)).save(path)
    with Image.open(path) as img:
        assert img.mode == mode
    image, orig = load_image(path, (9, 7))
    assert orig == (10, 6)
    assert torch.equal(image, rgb_reference(path, (9, 7)))


def test_rgba_drops_alpha_and_cmyk_jpeg_is_rgb(tmp_path: Path) -> None:
    Image.new("RGBA", (4, 4), (10, 20, 30, 0)).save(tmp_path / "clear.png")
    image, _ = load_image(tmp_path / "clear.png", (4, 4))
    assert image[:, 0, 0].mul(255).round().tolist() == [10, 20, 30]  # not composited over white
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(tmp_path / "red.jpg")  # pure magenta + yellow
    with Image.open(tmp_path / "red.jpg") as img:
        assert img.mode == "CMYK"
    image, _ = load_image(tmp_path / "red.jpg", (16, 16))
    assert torch.equal(image, rgb_reference(tmp_path / "red.jpg", (16, 16)))
    assert torch.allclose(image[:, 8, 8], torch.tensor([1.0, 0.0, 0.0]), atol=3 / 255)


def sixteen_bit(path: Path, values: np.ndarray, mode: str = "I;16") -> None:
    raw = values.astype(">u2" if mode == "I;16B" else "<u2").tobytes()
    Image.frombytes(mode, (values.shape[1], values.shape[0]), raw).save(path)


@pytest.mark.parametrize(("suffix", "mode"), [(".png", "I;16"), (".tif", "I;16B")])
def test_sixteen_bit_grayscale_is_scaled_by_its_range(tmp_path: Path, suffix: str, mode: str) -> None:
    values = np.array([[0, 32768], [65535, 1]], dtype=np.uint16)
    path = tmp_path / f"g16{suffix}"
    sixteen_bit(path, values, mode)
    with Image.open(path) as img:
        assert img.mode == mode
        assert img.convert("RGB").getpixel((1, 0)) == (255, 255, 255)  # what convert('RGB') would do
    image, orig = load_image(path, (2, 2))
    assert orig == (2, 2) and image.dtype == torch.float32 and image.shape == (3, 2, 2)
    expected = torch.tensor([[0.0, 32768 / 65535], [1.0, 1 / 65535]], dtype=torch.float32)
    for channel in image:
        assert torch.equal(channel, expected)
    assert abs(image[0, 0, 1].item() - 0.5) < 1e-4


def test_sixteen_bit_resize_keeps_values_exact(tmp_path: Path) -> None:
    sixteen_bit(tmp_path / "flat.png", np.full((5, 7), 40000, dtype=np.uint16))
    image, _ = load_image(tmp_path / "flat.png", (11, 3))
    assert torch.allclose(image, torch.full((3, 11, 3), 40000 / 65535), atol=1e-6, rtol=0)
    ramp = np.array([[0, 65535]], dtype=np.uint16)  # 2 x 1 -> 4 x 1: PIL bilinear, in float
    sixteen_bit(tmp_path / "ramp.png", ramp)
    image, _ = load_image(tmp_path / "ramp.png", (1, 4))
    assert torch.allclose(image[0, 0], torch.tensor([0.0, 0.25, 0.75, 1.0]), atol=1e-6, rtol=0)


def test_thirty_two_bit_and_float_modes(tmp_path: Path) -> None:
    Image.fromarray(np.array([[0, 65535, 32768]], dtype=np.int32)).save(tmp_path / "i32.tif")
    image, _ = load_image(tmp_path / "i32.tif", (1, 3))
    assert torch.allclose(image[2, 0], torch.tensor([0.0, 1.0, 32768 / 65535]), atol=1e-7, rtol=0)
    Image.fromarray(np.array([[0, 70000]], dtype=np.int32)).save(tmp_path / "wide.tif")
    with pytest.raises(DatasetError, match=r"wide\.tif: 32-bit integer pixels span 0\.\.70000"):
        load_image(tmp_path / "wide.tif", (1, 2))
    Image.fromarray(np.array([[0.25, 1.0]], dtype=np.float32)).save(tmp_path / "f.tif")
    image, _ = load_image(tmp_path / "f.tif", (1, 2))
    assert image[:, 0].tolist() == [[0.25, 1.0]] * 3
    Image.fromarray(np.array([[0.5, 255.0]], dtype=np.float32)).save(tmp_path / "f255.tif")
    with pytest.raises(DatasetError, match=r"f255\.tif: float pixels span 0\.5\.\.255"):
        load_image(tmp_path / "f255.tif", (1, 2))


def test_exif_orientation_is_not_applied_but_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    pixels = np.zeros((20, 40, 3), dtype=np.uint8)
    pixels[:, :20] = 255  # left half white in the stored frame
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    Image.fromarray(pixels).save(tmp_path / "turned.jpg", exif=exif, quality=95)
    Image.fromarray(pixels).save(tmp_path / "plain.jpg", quality=95)
    with caplog.at_level(logging.WARNING, logger="xaibench.data.transforms"):
        image, orig = load_image(tmp_path / "turned.jpg", (20, 40))
    assert orig == (40, 20)  # the stored frame, not the displayed 20 x 40
    assert image[:, 10, 5].min() > 0.9 and image[:, 10, 35].max() < 0.1
    assert "turned.jpg: EXIF orientation 6 is not applied" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="xaibench.data.transforms"):
        load_image(tmp_path / "plain.jpg", (20, 40))
    assert caplog.text == ""


# ----------------------------------------------------------------------------- XML (ILSVRC and VOC)


def xml_text(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"<annotation><size><width>60</width><height>80</height></size>{body}</annotation>")
    return path


def obj(name: str, x0: str = "1", y0: str = "2", x1: str = "10", y1: str = "20") -> str:
    return (f"<object><name>{name}</name><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin>"
            f"<xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>")


@pytest.mark.parametrize(
    ("second", "message"),
    [
        (obj("dog", x0="nan"), r"has a coordinate that is not a finite number"),
        (obj("dog", y1="inf"), r"has a coordinate that is not a finite number"),
        (obj("dog", y1="-Infinity"), r"has a coordinate that is not a finite number"),
        (obj("dog", x0="30", x1="10"), r"\(30, 2, 10, 20\) is inverted"),
        (obj("dog", y0="30"), r"\(1, 30, 10, 20\) is inverted"),
        (obj("dog", x1="ten"), r"<xmax> is missing or not a number \('ten'\)"),
        ("<object><name>dog</name></object>", r"has no <bndbox>"),
    ],
    ids=["nan", "inf", "-inf", "inverted-x", "inverted-y", "not-a-number", "no-bndbox"],
)
def test_xml_bad_object_names_file_and_object(tmp_path: Path, second: str, message: str) -> None:
    path = xml_text(tmp_path / "a.xml", obj("cat") + second)
    with pytest.raises(DatasetError, match=rf"a\.xml, <object> 2 \('dog'\).*{message}") as err:
        read_xml_annotation(path)
    one_line(err)


def test_xml_not_well_formed_and_nameless(tmp_path: Path) -> None:
    (tmp_path / "broken.xml").write_text("<annotation><object><name>cat</name></annotation>")
    with pytest.raises(DatasetError, match=r"broken\.xml is not a well-formed XML annotation"):
        read_xml_annotation(tmp_path / "broken.xml")
    xml_text(tmp_path / "nameless.xml", obj("cat") + obj(""))
    with pytest.raises(DatasetError, match=r"nameless\.xml: <object> 2 has no <name>"):
        read_xml_annotation(tmp_path / "nameless.xml")
    (tmp_path / "size.xml").write_text("<annotation><size><width>nan</width><height>5</height></size></annotation>")
    with pytest.raises(DatasetError, match=r"size\.xml: <size> is nan x 5"):
        read_xml_annotation(tmp_path / "size.xml")


def difficult_obj(name: str, flag: str | None) -> str:
    tag = "" if flag is None else f"<difficult>{flag}</difficult>"
    return obj(name).replace("<bndbox>", f"{tag}<bndbox>")


@pytest.mark.parametrize("flag", ["abc", "-1", "yes", "2", "true", "0.0", "01"])
def test_xml_difficult_other_than_0_or_1_is_refused(tmp_path: Path, flag: str) -> None:
    path = xml_text(tmp_path / "a.xml", difficult_obj("cat", "1") + difficult_obj("dog", flag))
    with pytest.raises(DatasetError, match=rf"a\.xml, <object> 2 \('dog'\): <difficult> is '{flag}', not 0 or 1") as err:
        read_xml_annotation(path)
    one_line(err)


def test_xml_difficult_known_answers(tmp_path: Path) -> None:
    body = "".join(difficult_obj(name, flag) for name, flag in
                   [("a", "0"), ("b", "1"), ("c", " 1 "), ("d", ""), ("e", None), ("f", "\n0\n")])
    ann = read_xml_annotation(xml_text(tmp_path / "a.xml", body))
    assert [(o.name, o.difficult) for o in ann.objects] == [
        ("a", False), ("b", True), ("c", True), ("d", False), ("e", False), ("f", False)
    ]
    root = voc_folder(tmp_path / "VOC2007")
    xml = root / "Annotations" / "2007_000032.xml"
    xml.write_text(xml.read_text().replace("<difficult>1</difficult>", "<difficult>yes</difficult>"))
    with pytest.raises(DatasetError, match=r"2007_000032\.xml, <object> 1 \('diningtable'\): <difficult> is 'yes'"):
        load_voc(str(root), image_size=SIZE)


def test_imagenet_and_voc_refuse_a_bad_xml(tmp_path: Path) -> None:
    folder = imagenet_ilsvrc(tmp_path / "inet")
    voc_xml(folder / "bbox" / "ILSVRC2012_val_00000002.xml", (60, 80), [("n01443537", 0, 0, float("nan"), 79)])
    with pytest.raises(DatasetError, match=r"ILSVRC2012_val_00000002\.xml, <object> 1 \('n01443537'\).*not a finite"):
        load_imagenet(str(folder), image_size=SIZE)
    root = voc_folder(tmp_path / "VOC2007")
    voc_xml(root / "Annotations" / "2007_000032.xml", (40, 40), [("diningtable", 20, 3, 2, 21)])
    with pytest.raises(DatasetError, match=r"2007_000032\.xml, <object> 1 \('diningtable'\).*\(20, 3, 2, 21\) is inverted"):
        load_voc(str(root), image_size=SIZE)


# ----------------------------------------------------------------------------- ImageNet text files


def kaggle_folder(root: Path, solution: str, encoding: str = "utf-8") -> Path:
    val = root / "ILSVRC" / "Data" / "CLS-LOC" / "val"
    write_image(val / "ILSVRC2012_val_00000001.JPEG", 100, 50)
    (root / "LOC_synset_mapping.txt").write_text("\n".join(SYNSETS) + "\n", encoding=encoding)
    (root / "LOC_val_solution.csv").write_text(solution, encoding=encoding)
    return root


def test_imagenet_text_files_with_a_byte_order_mark(tmp_path: Path) -> None:
    header = "ImageId,PredictionString\n"
    root = kaggle_folder(tmp_path / "k", header + "ILSVRC2012_val_00000001,n01440764 10 5 59 29 \n", "utf-8-sig")
    ds = load_imagenet(str(root), image_size=(50, 100))
    assert [r.label for r in ds.records] == [0]  # the first synset: its wnid has no BOM glued to it
    assert ds[0].boxes.tolist() == [[10, 5, 59, 29]]
    (root / "LOC_synset_mapping.txt").write_bytes("n01440764 tench\n".encode() + b"\xff\xfe caf\xe9\n")
    with pytest.raises(DatasetError, match=r"LOC_synset_mapping\.txt is not UTF-8 text \(byte 0xff at offset 16\)"):
        load_imagenet(str(root), image_size=SIZE)


@pytest.mark.parametrize(
    ("boxes", "message"),
    [
        ("n01440764 10 5 nan 29", r"line 3, box 1 \(n01440764\).*not a finite number"),
        ("n01440764 10 5 59 29 n01440764 10 inf 59 29", r"line 3, box 2 \(n01440764\).*not a finite number"),
        ("n01440764 59 5 10 29", r"line 3, box 1 \(n01440764\).*\(59, 5, 10, 29\) is inverted"),
    ],
    ids=["nan", "inf", "inverted"],
)
def test_kaggle_solution_bad_boxes(tmp_path: Path, boxes: str, message: str) -> None:
    solution = f"ImageId,PredictionString\nILSVRC2012_val_00000002,n01440764 1 1 5 5\nILSVRC2012_val_00000001,{boxes}\n"
    root = kaggle_folder(tmp_path / "k", solution)
    with pytest.raises(DatasetError, match=rf"LOC_val_solution\.csv, {message}"):
        load_imagenet(str(root), image_size=SIZE)


# ----------------------------------------------------------------------------- COCO


def coco_json(tmp_path: Path, edit) -> tuple[Path, dict]:
    path = coco_folder(tmp_path / "coco")
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))  # json.dumps writes NaN and Infinity as such, as Python's json reads them
    return path, data


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["images"].append(dict(d["images"][0], file_name="other.jpg")),
         r'the image id 2 appears twice in "images"'),
        (lambda d: d["annotations"].append(dict(d["annotations"][0], bbox=[0, 0, 1, 1])),
         r'the annotation id 10 appears twice in "annotations"'),
        (lambda d: d["categories"].append({"id": 18, "name": "cat"}), r'the category id 18 appears twice'),
        (lambda d: d["annotations"][1].update(bbox=[0, 4, -2, 2]),
         r'annotation 11: "bbox" \[0, 4, -2, 2\] has a negative width or height'),
        (lambda d: d["annotations"][2].update(bbox=[0.5, 0.5, 2.0, float("nan")]),
         r'annotation 12: "bbox" .*not a finite number'),
        (lambda d: d["annotations"][2].update(bbox=[0.5, 0.5, float("inf"), 1]),
         r'annotation 12: "bbox" .*not a finite number'),
        (lambda d: d["annotations"][3].update(bbox=[1, 0, "3", 3]), r'annotation 13: "bbox" is \[1, 0, .3., 3\], not four numbers'),
        (lambda d: d["annotations"][3].update(bbox=[1, 0, 3]), r'annotation 13: "bbox" is \[1, 0, 3\], not four numbers'),
        (lambda d: d["images"][1].update(width="wide"), r'image 1: "width" is .wide., not a positive whole number'),
        (lambda d: d["images"][0].update(height=None), r'image 2: "height" is None, not a positive whole number'),
        (lambda d: d["annotations"][4].update(image_id=99), r"annotation 14 refers to the unknown image 99"),
        (lambda d: d["annotations"][4].pop("id"), r'"annotations" entry 4 has no integer "id"'),
        (lambda d: d.pop("categories"), r'is not a COCO instances json: it has no "categories" list'),
    ],
    ids=["dup-image", "dup-annotation", "dup-category", "negative-w", "nan", "inf", "string", "three",
         "width", "height", "unknown-image", "no-id", "no-categories"],
)
def test_coco_malformed_json_names_the_id(tmp_path: Path, edit, message: str) -> None:
    path, _ = coco_json(tmp_path, edit)
    with pytest.raises(DatasetError, match=rf"instances_val2017\.json.*{message}") as err:
        load_coco(str(path), image_size=SIZE)
    one_line(err)


def encoded(mask: np.ndarray) -> dict:
    """A compressed RLE as COCO's json holds it (``counts`` a str)."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode()}


def segmentation(index: int, segm):
    return lambda d: d["annotations"][index].update(segmentation=segm)


# annotations 10-12 are on image 1 (8 x 6), 13-14 on image 2 (4 x 3)
@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (segmentation(2, {"counts": "zzzz", "size": [64, 64]}),
         r'annotation 12: the RLE "size" \[64, 64\] is not the image\'s \[height, width\] \[6, 8\]'),
        (segmentation(2, {"counts": "zzzz", "size": [6, 8]}),
         r'annotation 12: the compressed RLE "counts" has .z. at position 0, outside COCO\'s alphabet'),
        (segmentation(4, encoded(np.ones((2, 4)))),
         r'annotation 14: the RLE "size" \[2, 4\] is not the image\'s \[height, width\] \[3, 4\]'),
        (segmentation(4, dict(encoded(np.ones((2, 4))), size=[3, 4])),  # 8 pixels for a 4 x 3 image
         r"annotation 14: the RLE run lengths add up to 8 pixels, not the 3 x 4 = 12 of the image"),
        (segmentation(4, {"counts": "0P", "size": [3, 4]}),
         r'annotation 14: the compressed RLE "counts" ends inside a run length'),
        (segmentation(4, {"counts": "@", "size": [3, 4]}),
         r'annotation 14: the compressed RLE "counts" decodes to the negative run length -16 \(run 1\)'),
        (segmentation(4, {"counts": "", "size": [3, 4]}), r"annotation 14: the RLE run lengths add up to 0 pixels"),
        (segmentation(3, {"size": [3, 4], "counts": [3, 2, 1, 4]}),
         r"annotation 13: the RLE run lengths add up to 10 pixels, not the 3 x 4 = 12 of the image"),
        (segmentation(3, {"size": [3, 4], "counts": [3, 2, 1, 4, 3]}),
         r"annotation 13: the RLE run lengths add up to 13 pixels"),
        (segmentation(3, {"size": [4, 3], "counts": [3, 2, 1, 4, 2]}),
         r'annotation 13: the RLE "size" \[4, 3\] is not the image\'s \[height, width\] \[3, 4\]'),
        (segmentation(3, {"size": [3, 4], "counts": [3, -2, 1, 4, 6]}),
         r'annotation 13: the RLE "counts" is \[3, -2, 1, 4, 6\], neither a string nor a list of non-negative'),
        (segmentation(3, {"size": [3, 4], "counts": [3.0, 2, 1, 4, 2]}), r'annotation 13: the RLE "counts" is \[3\.0'),
        (segmentation(3, {"counts": [3, 2, 1, 4, 2]}),
         r'annotation 13: "segmentation" is .*neither a list of polygons nor an RLE with "counts" and "size"'),
        (segmentation(0, "abc"), r'annotation 10: "segmentation" is .abc., neither a list of polygons nor an RLE'),
        (segmentation(0, [[2, 1, 6, 1, 6, 4, 2]]),
         r'annotation 10: "segmentation" polygon 1 has 7 numbers; a polygon is x, y pairs, an even number'),
        (segmentation(0, [[2, 1, 6, float("nan"), 6, 4, 2, 4]]),
         r'annotation 10: "segmentation" polygon 1 has a value that is not a finite number'),
        (segmentation(0, [[2, 1, 6, 1, float("inf"), 4, 2, 4]]),
         r'annotation 10: "segmentation" polygon 1 has a value that is not a finite number'),
        (segmentation(0, [[2, 1, 6, 1, 6, 4, 2, 10**400]]),
         r'annotation 10: "segmentation" polygon 1 has a value that is not a finite number'),
        (segmentation(0, [[2, 1, 6, 1, 6, "4", 2, 4]]),
         r'annotation 10: "segmentation" polygon 1 is \[2, 1, 6, 1, 6, .4., 2, 4\], not a list of numbers'),
        (segmentation(0, [[2, 1, 6, 1, 6, True, 2, 4]]), r'annotation 10: "segmentation" polygon 1 is .*not a list of'),
        (segmentation(0, [2, 1, 6, 1, 6, 4, 2, 4]), r'annotation 10: "segmentation" polygon 1 is 2, not a list of'),
    ],
    ids=["zzzz-64", "zzzz", "compressed-size", "compressed-short", "truncated", "negative-run", "empty-string",
         "uncompressed-short", "uncompressed-long", "uncompressed-transposed", "negative-count", "float-count",
         "no-size", "string", "odd", "nan", "inf", "huge", "string-number", "bool",
         "flat"],
)
def test_coco_malformed_segmentation_names_the_annotation(tmp_path: Path, edit, message: str) -> None:
    path, _ = coco_json(tmp_path, edit)
    with pytest.raises(DatasetError, match=rf"instances_val2017\.json, {message}.*; fix the json$") as err:
        load_coco(str(path), image_size=SIZE)  # when the json is read, not when a mask is made
    one_line(err)


def test_coco_valid_rles_keep_their_masks(tmp_path: Path) -> None:
    ring = np.zeros((5, 9), dtype=bool)
    ring[1:4, 2:8] = True
    ring[2, 4:6] = False
    square = np.zeros((5, 9), dtype=bool)
    square[0:2, 0:2] = True

    def edit(d: dict) -> None:
        d["images"][1].update(width=9, height=5)  # image 1
        d["annotations"][0].update(segmentation=encoded(ring), bbox=[2, 1, 6, 3])
        d["annotations"][1].update(segmentation={"size": [5.0, 9.0], "counts": [45]}, bbox=[0, 0, 1, 1])  # empty
        d["annotations"][2].update(segmentation=dict(encoded(square), size=[5, 9]))

    path, _ = coco_json(tmp_path, edit)
    write_image(path.parent.parent / "val2017" / "000000000001.jpg", 9, 5)
    person, dog = (load_coco(str(path), image_size=(5, 9))[k] for k in (0, 1))
    assert torch.equal(person.mask, torch.from_numpy(ring)) and int(person.mask.sum()) == 16
    assert torch.equal(dog.mask, torch.from_numpy(square))
    assert person.boxes.tolist() == [[2, 1, 7, 3], [0, 0, 0, 0]]


def test_coco_polygons_of_fewer_than_three_points_are_passed_over(tmp_path: Path) -> None:
    """COCO's own files hold a few polygons of 2 points (4 numbers); they cover no area, and tools built
    on pycocotools drop them: the instance's other polygons make its mask."""

    def edit(d: dict) -> None:
        d["annotations"][0].update(segmentation=[[2, 1, 6, 1], [], [2, 1, 6, 1, 6, 4, 2, 4]])

    path, _ = coco_json(tmp_path, edit)
    write_image(path.parent.parent / "val2017" / "000000000001.jpg", 8, 6)
    with_degenerate = load_coco(str(path), image_size=(6, 8))[0].mask

    def clean(d: dict) -> None:
        d["annotations"][0].update(segmentation=[[2, 1, 6, 1, 6, 4, 2, 4]])

    path, _ = coco_json(tmp_path / "clean", clean)
    write_image(path.parent.parent / "val2017" / "000000000001.jpg", 8, 6)
    assert torch.equal(with_degenerate, load_coco(str(path), image_size=(6, 8))[0].mask)
    assert with_degenerate.any()


def test_coco_invalid_json_and_bom(tmp_path: Path) -> None:
    path = coco_folder(tmp_path / "coco")
    text = path.read_text()
    path.write_text(text, encoding="utf-8-sig")
    assert len(load_coco(str(path), image_size=SIZE)) == 3
    path.write_text(text[:-10])
    with pytest.raises(DatasetError, match=r"instances_val2017\.json is not valid JSON"):
        load_coco(str(path), image_size=SIZE)


# ----------------------------------------------------------------------------- the csv kind


def test_csv_encodings(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_image(tmp_path / "café.png", 10, 10)  # the name on disk is UTF-8
    rows = "image,label,x0,y0,x1,y1\ncafé.png,crème,0,0,4,4\n"
    (tmp_path / "bom.csv").write_text(rows, encoding="utf-8-sig")
    ds = load_csv(str(tmp_path / "bom.csv"), image_size=SIZE)
    assert ds.class_names == ["crème"] and ds.records[0].id == "café.png"
    (tmp_path / "latin.csv").write_bytes(rows.encode("latin-1"))  # as Excel saves it on Windows
    with caplog.at_level(logging.WARNING, logger="xaibench.data.csvfile"):
        ds = load_csv(str(tmp_path / "latin.csv"), image_size=SIZE)
    assert "latin.csv is not valid UTF-8 (byte 0xe9 at offset 27); read as Latin-1" in caplog.text
    assert ds.class_names == ["crème"] and ds.records[0].id == "café.png"
    assert ds[0].boxes.tolist() == [[0, 0, 3, 3]]  # the image is found: 10 x 10 -> 8 x 8


def test_a_latin1_csv_names_files_by_their_latin1_bytes(tmp_path: Path) -> None:
    """A CSV saved as Latin-1 naming files whose names are those Latin-1 bytes (as on a Linux disk
    written from such a system): each name is the file with the same bytes, the id and the label read
    as Latin-1; a name whose bytes name no file falls back to the file of its Latin-1 reading."""
    try:
        write_image(tmp_path / os.fsdecode(b"caf\xe9.png"), 10, 10)
    except (OSError, UnicodeError):
        pytest.skip("this file system takes only UTF-8 file names")
    Image.fromarray(np.pad(np.ones((4, 4), np.uint8) * 255, 3)).save(tmp_path / os.fsdecode(b"caf\xe9-mask.png"))
    write_image(tmp_path / os.fsdecode(b"d\xe9j\xe0.png"), 12, 12, seed=1)  # these bytes win over ...
    write_image(tmp_path / "déjà.png", 20, 20, seed=2)  # ... the UTF-8 name of the same text
    write_image(tmp_path / "crème.png", 16, 16, seed=3)  # only the UTF-8 name exists
    rows = ("image,label,x0,y0,x1,y1,mask\ncafé.png,crème,0,0,4,4,café-mask.png\ndéjà.png,crème,0,0,4,4,\n"
            "crème.png,brûlée,1,1,5,5,\n")
    (tmp_path / "latin.csv").write_bytes(rows.encode("latin-1"))
    ds = load_csv(str(tmp_path / "latin.csv"), image_size=SIZE)
    assert [r.id for r in ds.records] == ["café.png", "déjà.png", "crème.png"] and ds.class_names == ["brûlée", "crème"]
    assert [os.fsencode(r.path.name) for r in ds.records] == [b"caf\xe9.png", b"d\xe9j\xe0.png", "crème.png".encode()]
    first = ds[0]  # the image and its mask are read
    assert first.mask is not None and first.mask.any() and tuple(first.image.shape[-2:]) == SIZE
    assert ds.records[1].path.stat().st_size == (tmp_path / os.fsdecode(b"d\xe9j\xe0.png")).stat().st_size
    assert tuple(ds[2].image.shape[-2:]) == SIZE


def test_a_run_on_a_latin1_csv_of_latin1_files(tmp_path: Path) -> None:
    from xaibench.cli import main

    try:
        for k, name in enumerate((b"caf\xe9.png", b"na\xefve.png")):
            write_image(tmp_path / os.fsdecode(name), 40, 40, seed=k)
    except (OSError, UnicodeError):
        pytest.skip("this file system takes only UTF-8 file names")
    (tmp_path / "latin.csv").write_bytes("image,label,x0,y0,x1,y1\ncafé.png,disk,4,4,30,30\nnaïve.png,ring,2,2,20,20\n"
                                         .encode("latin-1"))
    out = tmp_path / "run"
    assert main(["run", "--dataset", f"csv:{tmp_path / 'latin.csv'}", "--methods", "cam", "--no-report", "--out", str(out)]) == 0
    import pandas as pd

    assert pd.read_parquet(out / "per_image").image_id.tolist() == ["café.png", "naïve.png"]
    assert pd.read_parquet(out / "skipped").empty


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("a.png,cat,0,0,inf,4", r"line 3: the box .* = \(0, 0, inf, 4\) has a coordinate that is not a finite number"),
        ("a.png,cat,0,nan,4,4", r"line 3: the box .*not a finite number"),
        ("a.png,cat,5,0,4,4", r"line 3: the box .* = \(5, 0, 4, 4\) is inverted"),
        ("a.png,cat,0,0,4,", r"line 3: y1 is missing or not a number"),
        (",cat,0,0,4,4", r"line 3: the image is missing"),
    ],
    ids=["inf", "nan", "inverted", "missing-field", "no-image"],
)
def test_csv_bad_rows_name_the_line(tmp_path: Path, row: str, message: str) -> None:
    (tmp_path / "b.csv").write_text(f"image,label,x0,y0,x1,y1\na.png,cat,0,0,4,4\n{row}\n")
    with pytest.raises(DatasetError, match=rf"b\.csv, {message}") as err:
        load_csv(str(tmp_path / "b.csv"), image_size=SIZE)
    one_line(err)


def test_csv_missing_column(tmp_path: Path) -> None:
    (tmp_path / "b.csv").write_text("image,label,x0,y0,x1\na.png,cat,0,0,4\n")
    with pytest.raises(DatasetError, match=r"b\.csv lacks the column\(s\) y1"):
        load_csv(str(tmp_path / "b.csv"), image_size=SIZE)


@pytest.mark.parametrize(
    ("header", "column"),
    [("image,label,x0,y0,x1,y1,image", "image"), ("image,label,x0, x0 ,y0,x1,y1", "x0"),
     ("image,label,x0,y0,x1,y1,mask,mask", "mask"), ("image,label,x0,y0,x1,y1,note,note", "note")],
    ids=["image", "spaced", "mask", "other"],
)
def test_csv_repeated_column_is_refused(tmp_path: Path, header: str, column: str) -> None:
    fields = len(header.split(","))
    row = ",".join(["a.png", "cat", "0", "0", "4", "4", "b.png", "x"][:fields])
    (tmp_path / "b.csv").write_text(f"{header}\n{row}\n")
    with pytest.raises(DatasetError, match=rf"b\.csv has the column {column} more than once in its header; keep") as err:
        load_csv(str(tmp_path / "b.csv"), image_size=SIZE)
    one_line(err)


@pytest.mark.parametrize(
    ("header", "row", "fields", "columns"),
    [("image,label,x0,y0,x1,y1", "a.png,cat,0,0,4,4,a_mask.png", 7, 6),  # a mask the header does not name
     ("image,label,x0,y0,x1,y1,mask", "a.png,cat,0,0,4,4,,x,y", 9, 7)],
    ids=["unnamed-mask", "two-extra"],
)
def test_csv_row_with_more_fields_than_the_header(
    tmp_path: Path, header: str, row: str, fields: int, columns: int
) -> None:
    (tmp_path / "b.csv").write_text(f"{header}\na.png,cat,0,0,4,4{',' * (columns - 6)}\n{row}\n")
    with pytest.raises(DatasetError, match=rf"b\.csv, line 3: the row has {fields} fields, more than the {columns} col") as err:
        load_csv(str(tmp_path / "b.csv"), image_size=SIZE)
    one_line(err)


def test_csv_unnamed_empty_columns_are_fine(tmp_path: Path) -> None:
    write_image(tmp_path / "a.png", 10, 10)
    (tmp_path / "b.csv").write_text("image,label,x0,y0,x1,y1,,\na.png,cat,1,2,4,5,,\na.png,cat,0,0,9,9,,\n")
    ds = load_csv(str(tmp_path / "b.csv"), image_size=(10, 10))
    assert ds.class_names == ["cat"] and ds[0].boxes.tolist() == [[1, 2, 4, 5], [0, 0, 9, 9]]
    # a spreadsheet's trailing commas: empty fields past the header
    (tmp_path / "c.csv").write_text("image,label,x0,y0,x1,y1\na.png,cat,1,2,4,5,\na.png,cat,0,0,9,9,,\n")
    assert load_csv(str(tmp_path / "c.csv"), image_size=(10, 10))[0].boxes.tolist() == [[1, 2, 4, 5], [0, 0, 9, 9]]


# ----------------------------------------------------------------------------- boxes outside the image


@pytest.mark.parametrize(
    ("box", "clipped"),
    [
        ((0, 0, 9, 4), (0, 0, 9, 4)),  # the whole 10 x 5 image: its last pixel is (9, 4)
        ((2, 1, 9, 3), (2, 1, 9, 3)),  # ends at width - 1, on the last column: kept
        ((2, 1, 10, 3), (2, 1, 9, 3)),  # ends at the width, one column past the image
        ((2, 1, 14, 5), (2, 1, 9, 4)),  # past the width and the height
        ((-3, -1, 4, 2), (0, 0, 4, 2)),  # a negative origin
        ((-1, -1, 10, 5), (0, 0, 9, 4)),  # the whole image with one pixel more on every side
        ((0.5, 0, 9.5, 4), (0.5, 0, 9, 4)),  # a fractional far corner past the last pixel
    ],
    ids=["whole", "at-width-1", "at-width", "past", "negative-origin", "around", "fractional"],
)
def test_clip_boxes_keeps_the_images_pixels(box, clipped, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="xaibench.data.transforms"):
        out = clip_boxes([box], (10, 5), "sample a")
    assert out.tolist() == [list(map(float, clipped))]
    shown = "(" + ", ".join(f"{float(v):g}" for v in box) + ")"
    expected = [] if box == clipped else [f"sample a: box 0 {shown} extends outside the 10 x 5 image (pixels 0..9, 0..4); "
                                          "clipped to (" + ", ".join(f"{float(v):g}" for v in clipped) + ")"]
    assert [r.getMessage() for r in caplog.records] == expected


def test_a_box_ending_at_the_width_scores_as_the_whole_image(tmp_path: Path) -> None:
    """A box annotated one pixel past a 10 x 10 image is the whole image: a map covering the image gets IoU 1
    (with the far corner kept at x1 = 10, it was 100 / 121 = 0.8264), by the CAM box and by wsolevaluation's."""
    from xaibench import localization

    write_image(tmp_path / "a.png", 10, 10)
    (tmp_path / "b.csv").write_text("image,label,x0,y0,x1,y1\na.png,cat,0,0,10,10\n")
    sample = load_csv(str(tmp_path / "b.csv"), image_size=(10, 10))[0]
    assert sample.boxes.tolist() == [[0, 0, 9, 9]] and sample.original.boxes.tolist() == [[0, 0, 9, 9]]
    flat = np.ones((1, 10, 10))
    assert localization.cam_box_iou(flat, [sample.boxes]).tolist() == [1.0]
    v1, v2 = localization.box_iou_curves(flat[0], sample.boxes)
    assert v1.tolist() == v2.tolist() == [1.0] * len(localization.CAM_THRESHOLDS)
    assert localization.box_iou((0, 0, 9, 9), np.array([[0, 0, 10, 10]])).tolist() == [pytest.approx(100 / 121)]


def test_csv_boxes_partly_outside_are_clipped_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_image(tmp_path / "a.png", 100, 50)
    (tmp_path / "b.csv").write_text(
        "image,label,x0,y0,x1,y1\na.png,cat,-5,-3,120,40\na.png,cat,0,0,99,49\na.png,cat,0,0,100,50\n"
    )
    ds = load_csv(str(tmp_path / "b.csv"), image_size=(100, 200))
    with caplog.at_level(logging.WARNING, logger="xaibench.data.transforms"):
        sample = ds[0]
    # In the 100 x 50 file: (-5, -3, 120, 40) -> (0, 0, 99, 40); (0, 0, 99, 49) is the whole image, kept;
    # (0, 0, 100, 50) ends one pixel past it -> (0, 0, 99, 49). Then x * 200 / 100, y * 100 / 50, int().
    assert sample.original.boxes.tolist() == [[0, 0, 99, 40], [0, 0, 99, 49], [0, 0, 99, 49]]
    assert sample.boxes.tolist() == [[0, 0, 198, 80], [0, 0, 198, 98], [0, 0, 198, 98]]
    assert "sample a.png" in caplog.text and "box 0 (-5, -3, 120, 40) extends outside the 100 x 50 image" in caplog.text
    assert "box 1" not in caplog.text and "box 2 (0, 0, 100, 50) extends outside" in caplog.text


@pytest.mark.parametrize("box", ["100,0,110,10", "0,50,10,60", "-20,0,-1,10", "0,-9,10,-2"])
def test_a_box_wholly_outside_is_an_error(tmp_path: Path, box: str) -> None:
    write_image(tmp_path / "a.png", 100, 50)
    (tmp_path / "b.csv").write_text(f"image,label,x0,y0,x1,y1\na.png,cat,0,0,9,9\na.png,cat,{box}\n")
    ds = load_csv(str(tmp_path / "b.csv"), image_size=SIZE)
    shown = ", ".join(box.split(","))
    with pytest.raises(DatasetError, match=rf"sample a\.png .*box 1 \({shown}\) lies wholly outside the 100 x 50 image"):
        ds[0]


def test_voc_box_past_the_border_is_clipped(tmp_path: Path) -> None:
    root = voc_folder(tmp_path / "VOC2007")
    voc_xml(root / "Annotations" / "2007_000032.xml", (40, 40), [("diningtable", 1, 1, 43, 40)])  # 1-based x 43
    ds = load_voc(str(root), image_size=(40, 40))
    assert ds[2].boxes.tolist() == [[0, 0, 39, 39]]


def test_voc_one_based_corners_at_and_past_the_border(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """VOC's 1-based xmax = width is the last column (0-based width - 1), kept; xmax = width + 1 is one past, clipped
    to it, as TorchRay's voc_as_mask keeps the pixels inside the image."""
    root = voc_folder(tmp_path / "VOC2007")
    voc_xml(root / "Annotations" / "2007_000032.xml", (40, 40), [("diningtable", 1, 1, 40, 40), ("diningtable", 5, 2, 41, 41)])
    ds = load_voc(str(root), image_size=(40, 40))
    with caplog.at_level(logging.WARNING, logger="xaibench.data.transforms"):
        sample = ds[2]
    assert sample.boxes.tolist() == [[0, 0, 39, 39], [4, 1, 39, 39]]
    assert "box 0" not in caplog.text and "box 1 (4, 1, 40, 40) extends outside the 40 x 40 image" in caplog.text


def test_coco_boxes_at_and_past_the_border(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """COCO's [x, y, w, h] with x + w = width ends on the last column (x + w - 1), kept; one that runs past the
    image is clipped to its last pixel."""
    def edit(data: dict) -> None:
        data["annotations"][0]["bbox"] = [4, 1, 4, 5]  # x + w = 8 = width, y + h = 6 = height: touching
        data["annotations"][1]["bbox"] = [3, 2, 9.5, 7]  # ends at x 11.5, y 8: past both
    path, _ = coco_json(tmp_path, edit)
    ds = load_coco(str(path), image_size=(6, 8))
    with caplog.at_level(logging.WARNING, logger="xaibench.data.transforms"):
        sample = ds[0]
    assert sample.id == "000000000001/person"
    assert sample.boxes.tolist() == [[4, 1, 7, 5], [3, 2, 7, 5]]
    assert "box 0" not in caplog.text and "box 1 (3, 2, 11.5, 8) extends outside the 8 x 6 image" in caplog.text


@pytest.mark.parametrize("layout", ["ilsvrc", "kaggle"])
def test_imagenet_boxes_at_and_past_the_border(tmp_path: Path, layout: str, caplog: pytest.LogCaptureFixture) -> None:
    """ILSVRC's corners are 0-based: a box ending at width - 1 touches the border and is kept; one ending at the
    width is one pixel past the image, clipped to it; a negative origin is clipped to 0. Both layouts alike."""
    boxes = [(60, 30, 99, 49), (0, 0, 100, 50), (-2, 10, 40, 20)]
    if layout == "ilsvrc":
        root = tmp_path / "inet"
        (root / "images").mkdir(parents=True)
        (root / "LOC_synset_mapping.txt").write_text("\n".join(SYNSETS) + "\n")
        write_image(root / "images" / "ILSVRC2012_val_00000001.JPEG", 100, 50)
        voc_xml(root / "bbox" / "ILSVRC2012_val_00000001.xml", (100, 50), [("n02085782", *b) for b in boxes])
    else:
        root = kaggle_folder(tmp_path / "kaggle", "ImageId,PredictionString\nILSVRC2012_val_00000001,"
                             + "".join(f"n02085782 {' '.join(map(str, b))} " for b in boxes) + "\n")
    ds = load_imagenet(str(root), image_size=(50, 100))
    with caplog.at_level(logging.WARNING, logger="xaibench.data.transforms"):
        sample = ds[0]
    assert sample.boxes.tolist() == [[60, 30, 99, 49], [0, 0, 99, 49], [0, 10, 40, 20]]
    assert "box 0" not in caplog.text
    assert "box 1 (0, 0, 100, 50) extends outside" in caplog.text and "box 2 (-2, 10, 40, 20) extends outside" in caplog.text


def test_no_box_of_the_shared_photos_reaches_past_them() -> None:
    """The 452 boxes of the 300 shared ImageNet photos (227 x 227) all lie within pixels 0..226, so the clipping
    rule changes none of their numbers: 75 boxes end on the last column, 92 on the last row, none past."""
    from conftest import SHARED_IMAGENET

    if not SHARED_IMAGENET.is_dir():
        pytest.skip(f"shared ImageNet photos not found at {SHARED_IMAGENET}")
    ds = load_imagenet(str(SHARED_IMAGENET), image_size=(224, 224))
    assert {r.annotated_wh for r in ds.records} == {(227, 227)}
    boxes = np.concatenate([r.boxes for r in ds.records])
    assert len(boxes) == 452 and boxes.min() >= 0 and boxes.max() <= 226
    assert (boxes[:, 2] == 226).sum() == 75 and (boxes[:, 3] == 226).sum() == 92
    assert (clip_boxes(boxes, (227, 227), "shared") == boxes).all()


# ----------------------------------------------------------------------------- empty data sets


def test_empty_data_sets_of_every_kind(tmp_path: Path) -> None:
    inet = tmp_path / "inet"
    (inet / "images").mkdir(parents=True)
    (inet / "bbox").mkdir()
    (inet / "LOC_synset_mapping.txt").write_text("\n".join(SYNSETS))
    kaggle = tmp_path / "kaggle"
    (kaggle / "ILSVRC" / "Data" / "CLS-LOC" / "val").mkdir(parents=True)
    (kaggle / "LOC_synset_mapping.txt").write_text("\n".join(SYNSETS))
    (kaggle / "LOC_val_solution.csv").write_text("ImageId,PredictionString\n")
    voc = tmp_path / "voc"
    (voc / "JPEGImages").mkdir(parents=True)
    (voc / "Annotations").mkdir()
    voc_objectless = voc_folder(tmp_path / "voc2")
    voc_xml(voc_objectless / "Annotations" / "2007_000027.xml", (100, 50), [])
    voc_xml(voc_objectless / "Annotations" / "2007_000032.xml", (40, 40), [])
    coco, _ = coco_json(tmp_path, lambda d: d.update(annotations=[]))
    (tmp_path / "header.csv").write_text("image,label,x0,y0,x1,y1\n")
    cases = {
        f"imagenet:{inet}": r"images/ holds no image file \(.jpeg, .jpg, .png\)",
        f"imagenet:{kaggle}": r"ILSVRC/Data/CLS-LOC/val/ holds no image file",
        f"voc:{voc}": r"names no image, or no listed annotation has an <object>",
        f"voc:{voc_objectless}": r"no listed annotation has an <object>",
        f"coco:{coco}": r'its "annotations" list is empty',
        f"csv:{tmp_path / 'header.csv'}": r"has no row after its header",
        "builtin": r"would be empty: size is 0",
    }
    for spec, message in cases.items():
        with pytest.raises(DatasetError, match=rf"the data set '{spec}' .*{message}") as err:
            xaibench.load_dataset(spec, image_size=(64, 64), size=0)
        one_line(err)


def test_an_empty_plugin_data_set_and_an_unknown_kind(monkeypatch: pytest.MonkeyPatch) -> None:
    class EntryPoint:
        name = "mine"

        @staticmethod
        def load():
            return lambda path, **options: []

    monkeypatch.setattr(xaibench.data, "entry_points", lambda group: [EntryPoint()])
    with pytest.raises(DatasetError, match=r"the data set 'mine:/x' has no samples; .*'mine' kind"):
        xaibench.load_dataset("mine:/x")
    monkeypatch.undo()
    with pytest.raises(UnknownNameError, match=r"unknown data set kind 'imagnet'; did you mean 'imagenet'\? available: builtin"):
        xaibench.load_dataset("imagnet:/data")
    with pytest.raises(UnknownNameError) as err:
        xaibench.load_dataset("zzz")
    assert "did you mean" not in str(err.value)
