"""``xaibench video``: videos generated here with PyAV, explained with the built-in network and CAM."""

from __future__ import annotations

import math
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from xaibench import video
from xaibench.cli import main
from xaibench.data import shapes
from xaibench.errors import XaibenchError
from xaibench.explainer import create_explainer
from xaibench.models import load_model

av = pytest.importorskip("av")

CROSS = shapes.SHAPE_CLASSES.index("cross")
#: How far (px) outside the object's tight box a map's peak may lie and still count as on the object.
MARGIN = 2


@pytest.fixture(scope="module")
def model():
    return load_model("builtin")


@pytest.fixture(scope="module")
def cam(model):
    return create_explainer("cam", model)


def write_video(
    path: Path, frames: list[np.ndarray], fps: int, *, audio_seconds: float | None = None, crf: int = 4,
    codec: str = "libx264", pix_fmt: str = "yuv420p",
) -> Path:
    """Encode RGB uint8 frames (near-lossless by default), with a 440 Hz AAC sine when ``audio_seconds``."""
    height, width = frames[0].shape[:2]
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.options = {"crf": str(crf)}
        if audio_seconds is not None:
            sound = container.add_stream("aac", rate=16000)
            sound.layout = "mono"
        for image in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode(None))
        if audio_seconds is not None:
            total = int(16000 * audio_seconds)
            wave = (0.3 * np.sin(2 * np.pi * 440 * np.arange(total) / 16000)).astype(np.float32)
            for start in range(0, total, 1024):
                chunk = av.AudioFrame.from_ndarray(wave[None, start:start + 1024], format="flt", layout="mono")
                chunk.sample_rate, chunk.pts = 16000, start
                container.mux(sound.encode(chunk))
            container.mux(sound.encode(None))
    return path


def read_video(path: Path) -> dict:
    """The first video stream's frames, timestamps (s), size and rate; the audio packets' bytes and duration."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        out = {
            "rate": stream.average_rate,
            "width": stream.codec_context.width,
            "height": stream.codec_context.height,
            "audio": len(container.streams.audio),
        }
        frames = list(container.decode(video=0))
        out["images"] = [f.to_ndarray(format="rgb24") for f in frames]
        out["times"] = [f.pts * f.time_base for f in frames]
    if out["audio"]:
        with av.open(str(path)) as container:
            sound = container.streams.audio[0]
            packets = [p for p in container.demux(sound) if p.dts is not None]
            out["audio_codec"] = sound.codec_context.name
            out["audio_packets"] = [bytes(p) for p in packets]
            out["audio_seconds"] = float(sum(p.duration for p in packets) * sound.time_base)
    return out


def moving_cross(n: int, size: int = 64) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """A cross, drawn like the built-in data set's objects (22 px across, one flat colour of strong
    contrast), moving left to right along a sine over one of the data set's cluttered backgrounds."""
    background = shapes._background(np.random.default_rng(0), size).copy()
    colour = np.array([0.95, 0.95, 0.95] if background.mean() < 0.5 else [0.05, 0.05, 0.1], dtype=np.float32)
    radius = 11.0
    frames, masks = [], []
    for i in range(n):
        cx = radius + 1 + (size - 2 * radius - 3) * i / (n - 1)
        cy = size / 2 + 14 * math.sin(i / 4)
        mask = shapes.shape_mask(CROSS, cy, cx, radius, 0.02 * i, size)
        image = background.copy()
        image[mask] = colour
        frames.append(np.rint(image * 255).astype(np.uint8))
        masks.append(mask)
    return frames, masks


@pytest.fixture(scope="module")
def cross_video(tmp_path_factory) -> tuple[Path, list[np.ndarray]]:
    frames, masks = moving_cross(30)
    return write_video(tmp_path_factory.mktemp("cross") / "cross.mp4", frames, fps=10), masks


# ------------------------------------------------------------------------------------ the output file


def test_output_has_the_inputs_frames_size_rate_and_timestamps(tmp_path, model, cam) -> None:
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 256, (64, 96, 3), dtype=np.uint8) for _ in range(40)]
    source = write_video(tmp_path / "in.mp4", frames, fps=12)
    stats = video.explain_video(source, tmp_path / "out.mp4", model, cam, batch_size=7)
    before, after = read_video(source), read_video(tmp_path / "out.mp4")
    assert (stats.frames, stats.explained, stats.width, stats.height, stats.rate) == (40, 40, 96, 64, Fraction(12))
    assert len(after["images"]) == 40 and (after["width"], after["height"]) == (96, 64)
    assert after["rate"] == 12 and after["times"] == before["times"]  # 0, 1/12, 2/12, ...
    assert before["times"][:3] == [0, Fraction(1, 12), Fraction(2, 12)]
    assert stats.audio_streams == 0 and after["audio"] == 0
    assert stats.frames_per_second > 0
    assert not list(tmp_path.glob(".*partial*"))  # the temporary file was renamed


def test_every_frame_shows_the_heatmap_and_the_label(tmp_path, model, cam) -> None:
    frames, _ = moving_cross(24)
    source = write_video(tmp_path / "in.mp4", frames, fps=24)
    shown: list[video.FrameExplanation] = []
    video.explain_video(source, tmp_path / "out.mp4", model, cam, on_frame=shown.append)
    after = read_video(tmp_path / "out.mp4")["images"]
    for result, image in zip(shown, after):
        expected = video.annotate_frame(
            result.image, result.saliency, video.label_text(result.class_name, result.probability)
        )
        # The encoded frame is the annotated one, up to H.264's loss at CRF 18 (and yuv420p's halved
        # chroma resolution, felt at the map's and the text's sharp edges in a 64 px frame).
        assert np.abs(image.astype(int) - expected.astype(int)).mean() < 6
        assert np.abs(image.astype(int) - result.image.astype(int)).mean() > 20


# ------------------------------------------------------------------------------------- annotate_frame


def test_annotate_frame_blends_the_map_and_writes_the_label() -> None:
    frame = np.full((64, 80, 3), 200, np.uint8)
    saliency = np.zeros((64, 80), np.float32)
    saliency[:, 40:] = 1.0
    # alpha 0 and no label: the frame itself; alpha 1 with gray: the map itself.
    assert np.array_equal(video.annotate_frame(frame, saliency, "", alpha=0.0), frame)
    gray = video.annotate_frame(frame, saliency, "", cmap="gray", alpha=1.0)
    assert (gray[:, :40] == 0).all() and (gray[:, 40:] == 255).all()
    half = video.annotate_frame(frame, saliency, "", cmap="gray", alpha=0.5)
    assert (half[:, :40] == 100).all() and (half[:, 40:] == 228).all()  # (200 + 0) / 2, (200 + 255) / 2 rounded

    labelled = video.annotate_frame(frame, saliency, "cross 97.3%", alpha=0.0)
    dark = labelled < 200  # the box darkens the pixels under it to a third (66), the text is white
    ys, xs = np.nonzero(dark.all(2))
    assert ys.min() == 0 and xs.min() == 0 and 8 <= ys.max() < 20 and xs.max() > 30
    box = labelled[: ys.max() + 1, : xs.max() + 1]
    assert np.count_nonzero((box == 66).all(2)) > box.shape[0] * box.shape[1] / 2  # 200 // 3
    assert box.max() > 200  # the white (anti-aliased) text
    assert (labelled[ys.max() + 1:] == 200).all() and (labelled[:, xs.max() + 1:] == 200).all()
    assert np.array_equal(frame, np.full((64, 80, 3), 200, np.uint8))  # the input is left alone


def test_the_label_scales_with_the_frame_and_fits_its_width() -> None:
    def box_height(height: int, width: int, text: str = "triangle 99.9%") -> tuple[int, int]:
        out = video.annotate_frame(np.full((height, width, 3), 255, np.uint8), np.zeros((height, width), np.float32),
                                   text, alpha=0.0)
        ys, xs = np.nonzero((out < 255).all(2))
        return ys.max() + 1, xs.max() + 1

    small, large = box_height(64, 64), box_height(720, 1280)
    assert small[1] <= 64  # shrunk to fit a narrow frame
    assert 25 <= large[0] <= 60 and large[0] > 2 * small[0]


def test_annotate_frame_refuses_a_map_of_another_size() -> None:
    with pytest.raises(ValueError, match="upsample the map first"):
        video.annotate_frame(np.zeros((64, 64, 3), np.uint8), np.zeros((8, 8), np.float32), "x")


# ------------------------------------------------------------------------------------------- audio


def test_audio_is_copied_unchanged(tmp_path, model, cam) -> None:
    frames, _ = moving_cross(30)
    source = write_video(tmp_path / "in.mp4", frames, fps=15, audio_seconds=2.0)
    stats = video.explain_video(source, tmp_path / "out.mp4", model, cam)
    before, after = read_video(source), read_video(tmp_path / "out.mp4")
    assert stats.audio_streams == 1 and after["audio"] == 1 and after["audio_codec"] == "aac"
    assert after["audio_packets"] == before["audio_packets"]  # remuxed, not re-encoded
    assert after["audio_seconds"] == pytest.approx(2.0, abs=0.1)
    assert len(after["images"]) == 30


# ---------------------------------------------------------------------------------------- the maps


def test_the_heatmap_follows_the_object(tmp_path, model, cam, cross_video) -> None:
    source, masks = cross_video
    shown: list[video.FrameExplanation] = []
    video.explain_video(source, tmp_path / "out.mp4", model, cam, batch_size=8, on_frame=shown.append)
    assert len(shown) == len(masks) == 30
    on_object, peaks, centres = 0, [], []
    for result, mask in zip(shown, masks):
        assert result.saliency.shape == (64, 64) and 0 <= result.saliency.min() and result.saliency.max() <= 1
        y, x = np.unravel_index(np.argmax(result.saliency), result.saliency.shape)
        ys, xs = np.nonzero(mask)
        on_object += (xs.min() - MARGIN <= x <= xs.max() + MARGIN) and (ys.min() - MARGIN <= y <= ys.max() + MARGIN)
        peaks.append(x)
        centres.append(xs.mean())
    assert on_object >= 0.9 * len(masks)
    assert np.corrcoef(peaks, centres)[0, 1] > 0.9  # the peak travels with the object
    crosses = [r for r in shown if r.class_name == "cross"]
    assert len(crosses) >= 0.9 * len(shown)
    assert np.median([r.probability for r in crosses]) > 0.9


def test_every_k_explains_every_kth_frame_and_reuses_its_map(tmp_path, model, cam, cross_video) -> None:
    source, masks = cross_video
    shown: list[video.FrameExplanation] = []
    stats = video.explain_video(source, tmp_path / "out.mp4", model, cam, every=3, batch_size=4, on_frame=shown.append)
    assert stats.frames == 30 and stats.explained == math.ceil(30 / 3) == 10
    assert len(read_video(tmp_path / "out.mp4")["images"]) == 30
    assert [r.index for r in shown if r.explained] == list(range(0, 30, 3))
    for result in shown:
        explained = shown[result.index - result.index % 3]
        assert np.array_equal(result.saliency, explained.saliency)
        assert (result.label, result.probability) == (explained.label, explained.probability)
    assert not np.array_equal(shown[0].saliency, shown[3].saliency)

    odd = video.explain_video(source, tmp_path / "out7.mp4", model, cam, every=7)
    assert (odd.frames, odd.explained) == (30, math.ceil(30 / 7))


def test_explain_frames_streams(model, cam) -> None:
    """At most batch_size frames are held (every=1), at most MAX_HELD_FRAMES with a large every."""
    image = moving_cross(2)[0][0]
    pulled = 0

    def frames(n):
        nonlocal pulled
        for _ in range(n):
            pulled += 1
            yield image

    for n, every, batch_size, bound in ((32, 1, 5, 5), (150, 1000, 4, video.MAX_HELD_FRAMES)):
        pulled = 0
        results = video.explain_frames(frames(n), model, cam, every=every, batch_size=batch_size)
        for result in results:
            assert 1 <= pulled - result.index <= bound
        assert result.index == n - 1 and pulled == n


# --------------------------------------------------------------------------------------- bad inputs


def test_bad_inputs_raise_one_clear_error(tmp_path, model, cam, cross_video) -> None:
    source, _ = cross_video
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n")
    odd = write_video(tmp_path / "odd.mkv", [np.zeros((63, 65, 3), np.uint8)] * 3, fps=10, pix_fmt="yuv444p")
    sound = tmp_path / "sound.m4a"
    with av.open(str(sound), "w") as container:
        stream = container.add_stream("aac", rate=8000)
        chunk = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="flt", layout="mono")
        chunk.sample_rate, chunk.pts = 8000, 0
        container.mux(stream.encode(chunk))
        container.mux(stream.encode(None))
    still = tmp_path / "still.png"
    Image.new("RGB", (64, 48)).save(still)
    cases = [
        (tmp_path / "missing.mp4", tmp_path / "o.mp4", {}, "missing.mp4: no such file"),
        (text, tmp_path / "o.mp4", {}, "cannot read .*notes.mp4 as a video"),
        (tmp_path, tmp_path / "o.mp4", {}, "not a regular file"),
        (sound, tmp_path / "o.mp4", {}, "has no video stream"),
        (odd, tmp_path / "o.mp4", {}, "65x63 pixels.*even width and height"),
        (source, tmp_path / "o.mp4", {"every": 0}, "--every must be an integer of at least 1"),
        (source, tmp_path / "o.mp4", {"batch_size": 0}, "--batch-size must be"),
        (source, tmp_path / "o.mp4", {"alpha": 1.5}, "--alpha must lie in"),
        (source, tmp_path / "o.mp4", {"cmap": "jett"}, "did you mean 'jet'"),
        (source, tmp_path / "no" / "o.mp4", {}, "the folder .* does not exist"),
        (source, tmp_path / "o.txt", {}, r"o\.txt: write the video as \.mp4, \.mkv or \.mov"),
        (source, tmp_path / "o.avi", {}, r"o\.avi: write the video as \.mp4, \.mkv or \.mov"),
        (still, tmp_path / "o.mp4", {}, r"still\.png is a still image \(png\), not a video; explain it with xaibench explain"),
        (source, tmp_path, {}, "is a folder"),
        (source, source, {}, "is the input video itself"),
    ]
    for src, dst, options, message in cases:
        with pytest.raises(XaibenchError, match=message) as error:
            video.explain_video(src, dst, model, cam, **options)
        assert "\n" not in str(error.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.mp4", "odd.mkv", "sound.m4a", "still.png"]


def test_a_failure_half_way_leaves_no_output(tmp_path, model, cam, cross_video) -> None:
    source, _ = cross_video
    out = tmp_path / "out.mp4"

    def stop(result: video.FrameExplanation) -> None:
        if result.index == 12:
            raise RuntimeError("stopped")

    with pytest.raises(RuntimeError, match="stopped"):
        video.explain_video(source, out, model, cam, on_frame=stop)
    assert not list(tmp_path.iterdir())
    out.write_bytes(b"the old file")
    with pytest.raises(RuntimeError):
        video.explain_video(source, out, model, cam, on_frame=stop)
    assert out.read_bytes() == b"the old file" and [p.name for p in tmp_path.iterdir()] == ["out.mp4"]


def test_a_killed_jobs_temporary_file_is_removed_by_the_next_job_and_no_other_file(tmp_path, model, cam, cross_video) -> None:
    import tempfile

    source, _ = cross_video
    out = tmp_path / "out.mp4"

    def temporary(name: str, extension: str) -> Path:  # as run_folder.atomic_path(..., keep_extension=True) makes them
        return Path(tempfile.mkstemp(dir=tmp_path, prefix=f".{name}.", suffix=".partial" + extension)[1])

    stale = temporary("out.mp4", ".mp4")
    kept = [temporary("other.mp4", ".mp4"), temporary("out.mp4", ".mkv"), tmp_path / ".out.mp4.partial.mp4",
            tmp_path / "notes.txt"]
    for path in kept[2:]:
        path.write_text("someone else's")
    video.explain_video(source, out, model, cam, every=10)
    assert not stale.exists() and all(path.exists() for path in kept)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([out.name, *(p.name for p in kept)])


@pytest.mark.parametrize(("read_only", "reason"), [(True, "read-only file system"), (False, "permission denied")])
def test_an_unwritable_folder_is_named_by_its_reason(tmp_path, cross_video, capsys, monkeypatch, read_only, reason) -> None:
    import os

    real_access, real_statvfs = os.access, os.statvfs

    def access(path, mode, *args, **kwargs):
        return False if Path(path) == tmp_path and mode & os.W_OK else real_access(path, mode, *args, **kwargs)

    class Flags:
        f_flag = os.ST_RDONLY if read_only else 0

    monkeypatch.setattr(os, "access", access)
    monkeypatch.setattr(os, "statvfs", lambda path: Flags() if Path(path) == tmp_path else real_statvfs(path))
    assert main(["video", str(cross_video[0]), "--out", str(tmp_path / "o.mp4"), "--model", "builtin"]) == 2
    assert capsys.readouterr().err == (f"xaibench: error: --out {tmp_path / 'o.mp4'}: cannot write in the folder "
                                       f"{tmp_path} ({reason})\n")


def test_a_read_only_mount_is_named_so(tmp_path) -> None:
    """On a real read-only bind mount, in a mount namespace of its own (needs root and unshare)."""
    import shutil
    import subprocess

    if shutil.which("unshare") is None or shutil.which("mount") is None:
        pytest.skip("unshare or mount is not installed: no read-only mount to test on")
    folder = tmp_path / "ro"
    folder.mkdir()
    code = ("import sys\nfrom xaibench import video\ntry:\n    video.check_destination(sys.argv[1])\n"
            "except Exception as error:\n    print(error)")
    script = 'mount --bind -o ro "$1" "$1" || exit 97; exec "$2" -c "$3" "$1/o.mp4"'
    result = subprocess.run(["unshare", "-m", "sh", "-c", script, "sh", str(folder), sys.executable, code],
                            capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        pytest.skip(f"cannot make a read-only mount here ({' '.join(result.stderr.split())[:200]})")
    assert result.stdout.strip() == f"--out {folder / 'o.mp4'}: cannot write in the folder {folder} (read-only file system)"


def test_without_pyav_the_error_says_what_to_install(tmp_path, model, cam, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "av", None)  # import av raises ImportError
    with pytest.raises(XaibenchError, match=r"pip install 'xaibench\[video\]'"):
        video.explain_video(tmp_path / "in.mp4", tmp_path / "out.mp4", model, cam)


# ------------------------------------------------------------------------------------------ the CLI


def test_cli_writes_the_video(tmp_path, cross_video, capsys) -> None:
    source, _ = cross_video
    out = tmp_path / "explained.mkv"
    assert main(["video", str(source), "--out", str(out), "--model", "builtin", "--every", "2", "--batch-size", "4",
                 "--cmap", "viridis", "--alpha", "0.4"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1].startswith(f"xaibench: wrote {out} (30 frames, ") and lines[-1].endswith(" frames/s)")
    written = read_video(out)
    assert len(written["images"]) == 30 and written["rate"] == 10 and (written["width"], written["height"]) == (64, 64)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["{tmp}/missing.mp4", "--out", "{tmp}/o.mp4"], "missing.mp4: no such file"),
        (["{tmp}/notes.mp4", "--out", "{tmp}/o.mp4"], "as a video"),
        (["{video}", "--out", "{tmp}/o.mp4", "--every", "0"], "--every must be an integer of at least 1, got 0; 1 explains every frame"),
        (["{video}", "--out", "{tmp}/o.mp4", "--method", "cam,gradcam"], "--method takes one method, got 2"),
        (["{video}", "--out", "{tmp}/o.mp4", "--method", "nope"], "unknown method 'nope'"),
        (["{video}", "--out", "{tmp}/o.mp4", "--batch-size", "0"], "--batch-size must be at least 1"),
        (["{video}", "--out", "{tmp}/o.mp4", "--method", ""], "--method names no method; e.g. --method cam"),
        (["{video}", "--out", "{tmp}/notes.mp4/o.mp4"], "notes.mp4 is a file, not a folder; choose another --out"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(argv, message, tmp_path, cross_video, capsys) -> None:
    (tmp_path / "notes.mp4").write_text("not a video\n")
    argv = [a.format(tmp=tmp_path, video=cross_video[0]) for a in argv]
    assert main(["video", *argv]) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and captured.err.startswith("xaibench: error: ")
    assert message in captured.err
    assert not (tmp_path / "o.mp4").exists()


def test_a_truncated_video_is_explained_as_far_as_it_goes_with_a_warning(tmp_path, model, cam, caplog) -> None:
    """A Matroska file cut at 60 % decodes what it holds without an error from FFmpeg: the frames
    that are there are explained, and the shortfall against the 30 frames its header's duration
    gives (3.75 s at 8 fps; Matroska stores no frame count) is reported."""
    frames, _ = moving_cross(30)
    whole = write_video(tmp_path / "whole.mkv", frames, 8)
    assert video.probe_video(whole).frames == 30
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(whole.read_bytes()[: int(whole.stat().st_size * 0.6)])
    with av.open(str(cut)) as container:
        there = sum(1 for _ in container.decode(video=0))
    assert 0 < there < 29
    with caplog.at_level("WARNING", logger="xaibench.video"):
        written = video.explain_video(cut, tmp_path / "out.mp4", model, cam).frames
    assert written == there
    assert f"declares 30 frames but only {written} could be decoded" in caplog.text


def test_a_matroska_video_is_counted_by_its_own_duration_not_a_longer_audio_tracks(tmp_path, model, cam, caplog) -> None:
    """Matroska stores no frame count; the container's duration spans every stream, so with 3 s of
    audio beside 1 s of video (10 frames at 10 fps) it would give 31 frames and a false warning that
    the file is truncated. The video track's own DURATION tag gives 10."""
    frames, _ = moving_cross(10)
    source = write_video(tmp_path / "in.mkv", frames, fps=10, audio_seconds=3.0)
    with av.open(str(source)) as container:
        assert round(container.duration / 1e6 * 10) == 31  # what the container's duration alone gives
    assert video.probe_video(source).frames == 10
    with caplog.at_level("WARNING", logger="xaibench.video"):
        assert video.explain_video(source, tmp_path / "out.mkv", model, cam).frames == 10
    assert "truncated" not in caplog.text
