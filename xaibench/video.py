"""Explain a video frame by frame: a heatmap over every frame, with the top-1 class and its probability.

Zhou et al. (CVPR 2016, *Learning Deep Features for Discriminative Localization*) showed CAM running
over the frames of videos: a network trained only to classify follows the object it recognises from
frame to frame. :func:`explain_video` does the same with any model and any method: it reads a video,
explains every frame (or every ``every``-th one, reusing the last map in between) for the model's
top-1 class, draws the map (:func:`xaibench.viz.heatmap_overlay`) and the class name with its softmax
probability over the frame (:func:`annotate_frame`), and writes a video of the same frame count, size,
frame rate and timestamps, with the input's audio copied unchanged.

It streams: frames are decoded, explained a batch at a time, encoded and dropped, so memory does not
grow with the video's length (at most ``max(batch_size, MAX_HELD_FRAMES)`` decoded frames are held).
:func:`explain_frames` is the same computation on any iterable of RGB arrays, yielding each frame's
map, class and probability, for callers that want the maps themselves.

The output is H.264 (libx264, ``yuv420p``, CRF 18 by default), which needs an even width and height:
a video of odd size is refused with a one-line error rather than padded or cropped, so that the
output always has the input's size. The output is written to a temporary file in the destination's
folder and renamed over the destination only when complete, so a failure half-way leaves no
truncated file behind; the temporary file a job killed half-way leaves (``.<name>.*.partial.<ext>``)
is removed by the next job that writes the same destination, and no other file.

Reading and writing video needs PyAV (``pip install 'xaibench[video]'``), imported only when used.
"""

from __future__ import annotations

import collections
import logging
import math
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from xaibench.errors import XaibenchError, unwritable_reason
from xaibench.explainer import Explainer
from xaibench.models import Model, eval_mode
from xaibench.output_folder import hold_temporary, remove_stale_temporaries
from xaibench.run_folder import atomic_path
from xaibench.viz import DEFAULT_ALPHA, DEFAULT_CMAP, check_style, heatmap_overlay

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_CRF",
    "MAX_HELD_FRAMES",
    "FrameExplanation",
    "VideoInfo",
    "VideoStats",
    "annotate_frame",
    "check_destination",
    "check_video_options",
    "explain_frames",
    "explain_video",
    "label_text",
    "probe_video",
]

DEFAULT_BATCH_SIZE = 16
#: The containers the explained video is written in: they hold H.264 with the input's timestamps.
OUTPUT_SUFFIXES = (".mp4", ".mkv", ".mov")
#: libx264's constant rate factor: 18 is visually lossless for most content (0 lossless, 51 worst).
DEFAULT_CRF = 18
#: With ``every`` > 1, a batch holds the frames between the explained ones too; it is cut short
#: (fewer than ``batch_size`` frames through the model) once it holds this many decoded frames, so
#: that memory stays bounded whatever ``every`` is.
MAX_HELD_FRAMES = 64
_CODEC = "libx264"
_PIX_FMT = "yuv420p"
_INSTALL_HINT = "xaibench video needs PyAV: pip install 'xaibench[video]'"


def _import_av() -> Any:
    try:
        import av
    except ImportError:
        raise XaibenchError(_INSTALL_HINT) from None
    return av


# ------------------------------------------------------------------------------------------ checks


def check_video_options(
    *, every: int = 1, batch_size: int = DEFAULT_BATCH_SIZE, cmap: str = DEFAULT_CMAP, alpha: float = DEFAULT_ALPHA,
    crf: int = DEFAULT_CRF,
) -> None:
    """Check the options of :func:`explain_video` without reading anything.

    Raises:
        XaibenchError: ``every`` or ``batch_size`` below 1, an unknown colour map, ``alpha`` outside
            [0, 1], or ``crf`` outside [0, 51]; the message says what to pass.
    """
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise XaibenchError(f"--every must be an integer of at least 1, got {every!r}; 1 explains every frame")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise XaibenchError(f"--batch-size must be an integer of at least 1, got {batch_size!r}")
    if isinstance(crf, bool) or not isinstance(crf, int) or not 0 <= crf <= 51:
        raise XaibenchError(f"crf must be an integer in [0, 51] (libx264's quality; 18 is the default), got {crf!r}")
    check_style(cmap, alpha)


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe_video` finds in a video file.

    Attributes:
        width, height: Frame size in pixels.
        rate: Average frame rate (frames per second).
        frames: Number of frames the container declares; else its duration times ``rate``, rounded
            (Matroska stores no count); None when it says neither.
        audio_streams: Number of audio streams.
        codec: Name of the video codec.
    """

    width: int
    height: int
    rate: Fraction
    frames: int | None
    audio_streams: int
    codec: str


def probe_video(source: str | os.PathLike) -> VideoInfo:
    """Open a video file and describe its first video stream, without decoding it.

    Raises:
        XaibenchError: the file is missing, is not a regular file, cannot be read as a video, has no
            video stream, has no frame rate, or has an odd width or height (libx264's yuv420p
            output needs even ones).
    """
    av = _import_av()
    source = Path(source)
    with _open_input(av, source) as container:
        return _describe(source, container)


def _describe(source: Path, container: Any) -> VideoInfo:
    demuxer = container.format.name
    if demuxer == "image2" or demuxer.endswith("_pipe"):  # FFmpeg's readers of still images (png_pipe, ...)
        raise XaibenchError(
            f"{source} is a still image ({demuxer.removesuffix('_pipe')}), not a video; explain it with "
            f"xaibench explain {source}"
        )
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["no streams"]
        raise XaibenchError(f"{source} has no video stream (it holds: {', '.join(kinds)}); pass a video file")
    stream = container.streams.video[0]
    width, height = stream.codec_context.width, stream.codec_context.height
    if not width or not height:
        raise XaibenchError(f"{source}: cannot tell the size of its video frames; is the file complete?")
    if width % 2 or height % 2:
        raise XaibenchError(
            f"{source} is {width}x{height} pixels, but the output's H.264 video (yuv420p) needs an even width "
            "and height; crop or scale the video to an even size first"
        )
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    if not rate:
        raise XaibenchError(f"{source}: its video stream declares no frame rate; remux it with one first")
    return VideoInfo(
        width=width,
        height=height,
        rate=Fraction(rate),
        frames=stream.frames or _frames_from_duration(stream, container, Fraction(rate)),
        audio_streams=len(container.streams.audio),
        codec=stream.codec_context.name,
    )


#: FFmpeg's per-track Matroska DURATION tag, e.g. ``00:00:01.000000000``.
_MATROSKA_DURATION = re.compile(r"(\d+):(\d{2}):(\d{2}(?:\.\d+)?)")


def _frames_from_duration(stream: Any, container: Any, rate: Fraction) -> int | None:
    """Frames of a video stream whose container counts none (Matroska): its duration times ``rate``.
    The stream's own duration: from its header, else from the ``DURATION`` tag FFmpeg's Matroska muxer
    writes per track (``HH:MM:SS.nnnnnnnnn``); only without either, the container's, which spans every
    stream (an audio track longer than the video lengthens it)."""
    tag = _MATROSKA_DURATION.fullmatch(str(stream.metadata.get("DURATION", "")).strip())
    if stream.duration and stream.time_base:
        seconds = stream.duration * Fraction(stream.time_base)
    elif tag:
        hours, minutes, rest = tag.groups()
        seconds = 3600 * int(hours) + 60 * int(minutes) + Fraction(rest)
    elif container.duration:
        seconds = Fraction(container.duration, 1_000_000)  # in av.time_base units (microseconds)
    else:
        return None
    return round(seconds * rate) or None


@contextmanager
def _open_input(av: Any, source: Path) -> Iterator[Any]:
    if not source.exists():
        raise XaibenchError(f"{source}: no such file; pass the path of a video file")
    if not source.is_file():
        raise XaibenchError(f"{source} is not a regular file (a folder?); pass the path of a video file")
    try:
        container = av.open(str(source))
    except av.error.FFmpegError as error:
        raise XaibenchError(
            f"cannot read {source} as a video ({_reason(error)}); pass a video file such as .mp4, .mkv, .mov, .webm"
        ) from None
    try:
        yield container
    finally:
        container.close()


def check_destination(destination: str | os.PathLike, source: str | os.PathLike | None = None) -> Path:
    """Check that a video can be written at ``destination``; nothing is created.

    Returns:
        The destination as a :class:`~pathlib.Path`.

    Raises:
        XaibenchError: its folder does not exist or cannot be written, it is a folder, it is the
            source itself, its extension is not one of :data:`OUTPUT_SUFFIXES`, or this PyAV cannot
            write H.264 into that container.
    """
    av = _import_av()
    destination = Path(destination)
    folder = destination.parent
    if destination.is_dir():
        raise XaibenchError(f"--out {destination} is a folder; pass a file name such as {destination / 'explained.mp4'}")
    if destination.suffix.lower() not in OUTPUT_SUFFIXES:  # (.avi takes H.264 but not the input's timestamps)
        raise XaibenchError(
            f"--out {destination}: write the video as {', '.join(OUTPUT_SUFFIXES[:-1])} or {OUTPUT_SUFFIXES[-1]}"
        )
    if not folder.is_dir():
        blocker = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), None)
        if blocker is not None:
            raise XaibenchError(f"--out {destination}: {blocker} is a file, not a folder; choose another --out")
        raise XaibenchError(f"--out {destination}: the folder {folder} does not exist; create it first")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise XaibenchError(f"--out {destination}: cannot write in the folder {folder} ({unwritable_reason(folder)})")
    if source is not None and destination.exists() and Path(source).exists() and os.path.samefile(source, destination):
        raise XaibenchError(f"--out {destination} is the input video itself; choose another file name")
    try:
        container = av.open(str(destination), "w")  # writes nothing until a header is written
    except ValueError:
        container = None
    try:
        if container is None or "h264" not in container.supported_codecs:
            raise XaibenchError(
                f"--out {destination}: cannot write H.264 video into a '{destination.suffix or 'file without extension'}' "
                "file; end the name with .mp4, .mkv or .mov"
            )
    finally:
        if container is not None:
            container.close()
    return destination


# ------------------------------------------------------------------------------------------ frames


@dataclass(frozen=True)
class FrameExplanation:
    """One frame with its explanation, as :func:`explain_frames` yields it.

    Attributes:
        index: The frame's position in the sequence, from 0.
        image: (H, W, 3) uint8 RGB: the frame as given.
        saliency: (H, W) float32 map in [0, 1] at the frame's size (the explained frame's map for a
            frame that was not explained itself).
        label: The top-1 class (of the explained frame).
        class_name: Its name, from ``model.class_names``.
        probability: Its softmax probability.
        explained: Whether this frame went through the model (else it reuses the last map).
    """

    index: int
    image: np.ndarray
    saliency: np.ndarray
    label: int
    class_name: str
    probability: float
    explained: bool


@dataclass
class _Explained:
    """The last explained frame's result; its map upsampled once per frame size."""

    small: torch.Tensor
    label: int
    probability: float
    upsampled: dict[tuple[int, int], np.ndarray]

    def saliency(self, size: tuple[int, int]) -> np.ndarray:
        if size not in self.upsampled:
            self.upsampled = {size: _upsample(self.small, size)}
        return self.upsampled[size]


def explain_frames(
    frames: Iterable[np.ndarray],
    model: Model,
    explainer: Explainer,
    *,
    every: int = 1,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> Iterator[FrameExplanation]:
    """Explain each frame's top-1 class, lazily, in batches; one result per frame, in order.

    Frame ``i`` is explained when ``i % every == 0``; the frames in between reuse that frame's map,
    class and probability. Up to ``batch_size`` explained frames go through the model at once, with
    the frames between them held until then (at most ``max(batch_size, MAX_HELD_FRAMES)`` frames).

    Each explained frame is converted to a float tensor in [0, 1], resized to ``model.input_size``
    (bilinear, antialiased), classified (softmax of the logits, without gradients), and explained
    for its top-1 class; the map (at the input size, in [0, 1]) is upsampled to the frame's size
    (bilinear). A frame whose map is non-finite or constant gets an all-zero map (logged).

    Args:
        frames: (H, W, 3) uint8 RGB arrays; sizes may differ from frame to frame.
        model: The classifier.
        explainer: A method built for ``model``.
        every: Explain every ``every``-th frame.
        batch_size: Explained frames per pass through the model.

    Yields:
        A :class:`FrameExplanation` per frame, as soon as its batch is explained.

    Raises:
        XaibenchError: ``every`` or ``batch_size`` below 1, or a frame that is not (H, W, 3) uint8.
    """
    check_video_options(every=every, batch_size=batch_size)
    limit = max(batch_size, MAX_HELD_FRAMES)
    held: list[np.ndarray] = []
    start = to_explain = 0
    last: _Explained | None = None
    for index, frame in enumerate(frames):
        _check_frame(frame, index)
        held.append(frame)
        to_explain += index % every == 0
        if to_explain == batch_size or len(held) == limit:
            last = yield from _flush(held, start, model, explainer, every, last)
            start, held, to_explain = index + 1, [], 0
    if held:
        yield from _flush(held, start, model, explainer, every, last)


def _check_frame(frame: object, index: int) -> None:
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        what = f"{frame.dtype} array of shape {frame.shape}" if isinstance(frame, np.ndarray) else type(frame).__name__
        raise XaibenchError(f"frame {index} must be an (H, W, 3) uint8 RGB array, got a {what}")


def _flush(
    held: list[np.ndarray], start: int, model: Model, explainer: Explainer, every: int, last: _Explained | None
) -> Iterator[FrameExplanation]:
    """Explain the held frames due for it, then yield every held frame; returns the last explained."""
    chosen = [k for k in range(len(held)) if (start + k) % every == 0]
    results = iter(_explain_batch([held[k] for k in chosen], model, explainer) if chosen else [])
    for k, frame in enumerate(held):
        explained = (start + k) % every == 0
        if explained:
            last = next(results)
        assert last is not None  # frame 0 is always explained
        yield FrameExplanation(
            index=start + k,
            image=frame,
            saliency=last.saliency(frame.shape[:2]),
            label=last.label,
            class_name=model.class_names[last.label],
            probability=last.probability,
            explained=explained,
        )
    return last


def _explain_batch(frames: list[np.ndarray], model: Model, explainer: Explainer) -> list[_Explained]:
    """Classify and explain a batch; frames of one size are converted, resized and their maps upsampled
    in one call each (per-frame tensor calls cost more than the small network on a busy CPU)."""
    same_size = len({frame.shape for frame in frames}) == 1
    groups = [frames] if same_size else [[frame] for frame in frames]
    images = torch.cat([_to_inputs(group, model.input_size, model.device) for group in groups])
    with eval_mode(model.network), torch.no_grad():
        probabilities = torch.softmax(model(images).float(), dim=1)
    probability, labels = probabilities.max(1)
    explanation = explainer.explain(images, labels)
    bad = (~explanation.finite) | explanation.constant
    if bad.any():
        logger.warning(
            "%s gave %d of %d frames a non-finite or constant map; they are shown without a heatmap",
            explainer.name or type(explainer).__name__, int(bad.sum()), len(frames),
        )
    maps = explanation.maps.detach().float().cpu()
    size = frames[0].shape[:2]
    full = _upsample(maps, size) if same_size else None
    return [
        _Explained(maps[j], int(labels[j]), float(probability[j]), {size: full[j]} if full is not None else {})
        for j in range(len(frames))
    ]


def _to_inputs(frames: list[np.ndarray], size: tuple[int, int], device: torch.device) -> torch.Tensor:
    """(H, W, 3) uint8 frames of one size -> (N, 3, h, w) float in [0, 1] at the model's input size."""
    array = np.stack(frames).astype(np.float32)
    array *= 1.0 / 255.0
    images = torch.from_numpy(array).permute(0, 3, 1, 2).to(device)
    if tuple(images.shape[-2:]) == tuple(size):
        return images.contiguous()
    return F.interpolate(images, size=tuple(size), mode="bilinear", align_corners=False, antialias=True).contiguous()


def _upsample(maps: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """(N, h, w) or (h, w) maps -> the same at (H, W), float32 numpy (bilinear, ``align_corners=False``),
    kept in [0, 1]."""
    single = maps.dim() == 2
    batch = maps[None] if single else maps
    if tuple(batch.shape[-2:]) != tuple(size):
        batch = F.interpolate(batch[:, None], size=tuple(size), mode="bilinear", align_corners=False)[:, 0]
    out = np.clip(batch.numpy().astype(np.float32, copy=False), 0.0, 1.0)
    return out[0] if single else out


# ------------------------------------------------------------------------------------------ drawing


def label_text(class_name: str, probability: float) -> str:
    """The label drawn on a frame: ``"cross 97.3%"``."""
    return f"{class_name} {100.0 * probability:.1f}%"


@lru_cache(maxsize=16)
def _font(size: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: one bitmap font, of one size
        return ImageFont.load_default()


def _fitting_font(draw: Any, text: str, height: int, width: int) -> tuple[Any, tuple[int, int, int, int], int]:
    """The largest font up to 1/24 of the frame height (at least 8 px) whose text fits the frame's width."""
    size = max(8, round(height / 24))
    while True:
        font = _font(size)
        pad = max(2, size // 4)
        box = draw.textbbox((pad, pad), text, font=font)
        if box[2] + pad <= width or size <= 6:
            return font, box, pad
        size -= 1


def annotate_frame(
    frame: np.ndarray, saliency: np.ndarray, label: str, *, cmap: str = DEFAULT_CMAP, alpha: float = DEFAULT_ALPHA
) -> np.ndarray:
    """The frame with the map blended over it and ``label`` written in its top-left corner.

    The label is white text on a dark box (the pixels under it darkened to a third), its font scaled
    with the frame's height (about 1/24 of it, at least 8 px) and shrunk until the text fits the width.

    Args:
        frame: (H, W, 3) uint8 RGB.
        saliency: (H, W) map in [0, 1] (values outside are clipped).
        label: The text, e.g. :func:`label_text`'s.
        cmap: A matplotlib colour map name.
        alpha: The map's opacity in [0, 1].

    Returns:
        A new (H, W, 3) uint8 RGB array.

    Raises:
        ValueError: the frame is not (H, W, 3) uint8, or the map's size differs from the frame's.
    """
    from PIL import Image, ImageDraw

    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"frame must be an (H, W, 3) uint8 array, got {frame.dtype} {frame.shape}")
    if saliency.shape != frame.shape[:2]:
        raise ValueError(f"the map is {saliency.shape}, the frame {frame.shape[:2]}: upsample the map first")
    blended = heatmap_overlay(frame.astype(np.float32) / 255.0, saliency, cmap=cmap, alpha=alpha)
    out = np.clip(np.rint(blended * 255.0), 0, 255).astype(np.uint8)
    if label:
        height, width = out.shape[:2]
        image = Image.fromarray(out)
        draw = ImageDraw.Draw(image)
        font, (_, _, right, bottom), pad = _fitting_font(draw, label, height, width)
        x1, y1 = min(width, right + pad), min(height, bottom + pad)
        out[:y1, :x1] //= 3  # the dark box
        image = Image.fromarray(out)
        ImageDraw.Draw(image).text((pad, pad), label, font=font, fill=(255, 255, 255))
        out = np.asarray(image).copy()
    return out


# -------------------------------------------------------------------------------------------- video


@dataclass(frozen=True)
class VideoStats:
    """What :func:`explain_video` did.

    Attributes:
        frames: Frames written (as many as were decoded).
        explained: Frames that went through the model: ``ceil(frames / every)``.
        seconds: Wall-clock time of the whole job.
        frames_per_second: ``frames / seconds``.
        width, height: Frame size, the same in and out.
        rate: Average frame rate, the same in and out.
        audio_streams: Audio streams copied unchanged into the output.
    """

    frames: int
    explained: int
    seconds: float
    frames_per_second: float
    width: int
    height: int
    rate: Fraction
    audio_streams: int


def explain_video(
    source: str | os.PathLike,
    destination: str | os.PathLike,
    model: Model,
    explainer: Explainer,
    *,
    every: int = 1,
    batch_size: int = DEFAULT_BATCH_SIZE,
    cmap: str = DEFAULT_CMAP,
    alpha: float = DEFAULT_ALPHA,
    crf: int = DEFAULT_CRF,
    progress: bool = False,
    on_frame: Callable[[FrameExplanation], None] | None = None,
) -> VideoStats:
    """Write a copy of a video with each frame's explanation drawn over it.

    Every frame of the first video stream shows the map of the model's top-1 class blended over it,
    and the class name with its softmax probability in the top-left corner (:func:`annotate_frame`).
    The output has the input's frame count, size, average frame rate and frame timestamps; it is
    H.264 (libx264, yuv420p, constant rate factor ``crf``); every audio stream is copied unchanged.
    Other streams (subtitles, data) are left out. Frames are streamed: decoded, explained a batch at
    a time (:func:`explain_frames`), encoded and dropped.

    Args:
        source: The video file.
        destination: The file to write (replaced if it exists); its extension picks the container
            (.mp4, .mkv, .mov, ...). Written to a temporary file beside it, renamed when complete.
        model: The classifier.
        explainer: A method built for ``model``.
        every: Explain every ``every``-th frame; the others reuse the last map, class and probability.
        batch_size: Explained frames per pass through the model.
        cmap: Matplotlib colour map of the heatmap.
        alpha: Opacity of the heatmap in [0, 1].
        crf: libx264's constant rate factor (0 lossless, 18 visually lossless, 51 worst).
        progress: Show a progress bar (tqdm) with frames per second, when standard error is a terminal.
        on_frame: Called with each frame's :class:`FrameExplanation` before it is drawn and encoded.

    Returns:
        The :class:`VideoStats` of the job.

    Raises:
        XaibenchError: PyAV is missing; a bad option; the source is missing, undecodable, has no
            video stream or an odd size; the destination cannot be written; decoding or encoding
            fails part-way (the destination is then left as it was).
    """
    av = _import_av()
    check_video_options(every=every, batch_size=batch_size, cmap=cmap, alpha=alpha, crf=crf)
    if _CODEC not in av.codecs_available:
        raise XaibenchError(f"this PyAV build has no {_CODEC} encoder; install PyAV's wheel from PyPI: pip install av")
    started = time.perf_counter()
    source = Path(source)
    with _open_input(av, source) as container:
        info = _describe(source, container)
        destination = check_destination(destination, source)
        # what a job killed while writing this destination left beside it; a job at work holds its own
        remove_stale_temporaries(destination.parent, lambda name: name == destination.name)
        with hold_temporary() as hold, atomic_path(destination, keep_extension=True) as temporary:
            hold(temporary)
            written, explained, audio = _transcode(
                av, container, info, source, temporary, destination, model, explainer,
                every=every, batch_size=batch_size, cmap=cmap, alpha=alpha, crf=crf, progress=progress,
                on_frame=on_frame,
            )
    seconds = time.perf_counter() - started
    logger.debug("wrote %s: %d frames in %.1f s", destination, written, seconds)
    return VideoStats(
        frames=written,
        explained=explained,
        seconds=seconds,
        frames_per_second=written / seconds if seconds > 0 else math.inf,
        width=info.width,
        height=info.height,
        rate=info.rate,
        audio_streams=audio,
    )


def _transcode(
    av: Any, container: Any, info: VideoInfo, source: Path, temporary: Path, destination: Path,
    model: Model, explainer: Explainer, *, every: int, batch_size: int, cmap: str, alpha: float, crf: int,
    progress: bool, on_frame: Callable[[FrameExplanation], None] | None,
) -> tuple[int, int, int]:
    """Decode, explain, draw and encode every frame into ``temporary``; (frames, explained, audio streams)."""
    from tqdm.auto import tqdm

    video_in = container.streams.video[0]
    video_in.thread_type = "AUTO"
    audio_in = list(container.streams.audio)
    time_base = video_in.time_base or Fraction(1, 90000)
    step = max(1, round(1 / (info.rate * time_base)))  # one frame's duration, for frames without a timestamp
    timestamps: collections.deque[int] = collections.deque()

    def cannot_write(error: Exception) -> XaibenchError:
        return XaibenchError(f"cannot write {destination}: {_reason(error)}")

    try:
        output = av.open(str(temporary), "w")
    except (av.error.FFmpegError, ValueError) as error:
        raise cannot_write(error) from None
    complete = False
    try:
        try:
            video_out = output.add_stream(_CODEC, rate=info.rate)
            video_out.width, video_out.height, video_out.pix_fmt = info.width, info.height, _PIX_FMT
            video_out.time_base = time_base
            video_out.codec_context.time_base = time_base
            video_out.options = {"crf": str(crf)}
            audio_out = {stream.index: _copy_stream(output, stream) for stream in audio_in}
        except (av.error.FFmpegError, ValueError) as error:
            raise cannot_write(error) from None

        def decoded() -> Iterator[np.ndarray]:
            """The video's frames as RGB arrays, muxing the audio packets met on the way."""
            last_pts: int | None = None
            try:
                for packet in container.demux(video_in, *audio_in):
                    if packet.stream.type == "audio":
                        if packet.dts is None:  # the demuxer's flush packets
                            continue
                        packet.stream = audio_out[packet.stream.index]
                        _write(output.mux, packet, cannot_write)
                        continue
                    for frame in packet.decode():
                        pts = frame.pts
                        if pts is None or (last_pts is not None and pts <= last_pts):
                            pts = 0 if last_pts is None else last_pts + step
                        timestamps.append(pts)
                        last_pts = pts
                        yield frame.to_ndarray(format="rgb24", width=info.width, height=info.height)
            except av.error.FFmpegError as error:
                raise XaibenchError(
                    f"cannot decode {source} after frame {len(timestamps)} ({_reason(error)}); is the file complete?"
                ) from None

        written = explained = 0
        with tqdm(total=info.frames, unit="frame", desc="explaining", disable=None if progress else True) as bar:
            for result in explain_frames(decoded(), model, explainer, every=every, batch_size=batch_size):
                if on_frame is not None:
                    on_frame(result)
                image = annotate_frame(
                    result.image, result.saliency, label_text(result.class_name, result.probability),
                    cmap=cmap, alpha=alpha,
                )
                frame = av.VideoFrame.from_ndarray(image, format="rgb24")
                frame.pts, frame.time_base = timestamps.popleft(), time_base
                _write(lambda f: output.mux(video_out.encode(f)), frame, cannot_write)
                written += 1
                explained += result.explained
                bar.update(1)
        if not written:
            raise XaibenchError(f"{source} has a video stream but no frame could be decoded from it; is the file complete?")
        if info.frames and written < info.frames - 1:  # a cut file decodes what it holds without an error (- 1: a
            # count from the duration may round up)
            logger.warning(
                "%s declares %d frames but only %d could be decoded; the file may be truncated, and the output "
                "ends where the frames do", source, info.frames, written,
            )
        _write(lambda f: output.mux(video_out.encode(f)), None, cannot_write)  # flush the encoder
        complete = True
    finally:
        try:
            output.close()  # writes the trailer (the index of an .mp4)
        except (av.error.FFmpegError, OSError) as error:
            if complete:  # else the error that stopped the job is the one to report
                raise cannot_write(error) from None
    return written, explained, len(audio_out)


def _copy_stream(output: Any, stream: Any) -> Any:
    """An output stream that takes ``stream``'s packets unchanged."""
    if hasattr(output, "add_stream_from_template"):  # PyAV >= 14
        return output.add_stream_from_template(stream)
    return output.add_stream(template=stream)  # pragma: no cover - PyAV < 14


def _write(write: Callable[[Any], object], item: Any, wrap: Callable[[Exception], XaibenchError]) -> None:
    import av

    try:
        write(item)
    except (av.error.FFmpegError, OSError) as error:
        raise wrap(error) from None


def _reason(error: BaseException) -> str:
    """An FFmpeg error's message without its errno and file name."""
    text = getattr(error, "strerror", None) or str(error)
    return " ".join(str(text).split())
