"""A video explained as one library call: :class:`VideoSpec` in, an explained copy of the video out.

:func:`explain_video_file` does what ``xaibench video`` does: it checks every field and both files,
loads the model and the method, and writes a copy of the video in which every frame shows the map of
the model's top-1 class, its name and probability (:func:`xaibench.video.explain_video`).

    >>> from xaibench.video_run import VideoSpec, explain_video_file
    >>> stats = explain_video_file(VideoSpec("street.mp4", "explained.mp4", method="gradcam", every=2))
    >>> stats.frames
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from xaibench import video, viz
from xaibench.common_options import DEFAULT_PHOTO_MODEL, check_common, check_methods, create, load, one_model
from xaibench.errors import XaibenchError
from xaibench.method_spec import MethodSpec, parse_methods

#: How ``--method`` is given: one method with its options.
_ONE_METHOD = "e.g. --method cam or --method 'scorecam(batch_size=64)'"


@dataclass(frozen=True)
class VideoSpec:
    """Everything ``xaibench video`` is told; each field is the option of its name.

    Attributes:
        input: The video file.
        out: The video to write (.mp4, .mkv or .mov; replaced if it exists).
        models: One model (default: :data:`~xaibench.common_options.DEFAULT_PHOTO_MODEL`).
        method: One method with its options, as text or a :class:`~xaibench.method_spec.MethodSpec`.
        every: Explain every k-th frame and reuse its map, class and probability in between.
        batch_size: Frames per pass through the model.
        cmap: Matplotlib colour map of the heatmap.
        alpha: Opacity of the heatmap over the frame, 0 to 1.
        weights: ``"default"``, ``"none"`` or a state-dict file.
        target_layer: Dotted name of the feature layer (None: found automatically).
        seed: Seed of the methods that draw random numbers.
        device: A torch device.
        progress: Show a progress bar.
    """

    input: str | os.PathLike
    out: str | os.PathLike
    models: str | Sequence[str] = DEFAULT_PHOTO_MODEL
    method: str | MethodSpec = "cam"
    every: int = 1
    batch_size: int = video.DEFAULT_BATCH_SIZE
    cmap: str = viz.DEFAULT_CMAP
    alpha: float = viz.DEFAULT_ALPHA
    weights: str = "default"
    target_layer: str | None = None
    #: A network of your own (``--model FILE.py:FACTORY``): its input normalisation (three numbers each,
    #: or a text such as ``"0.485,0.456,0.406"``) and a file of its class names, one per line.
    mean: str | Sequence[float] | None = None
    std: str | Sequence[float] | None = None
    class_names: str | None = None
    seed: int = 0
    device: str = "cpu"
    progress: bool = False

    # What check_common reads of the options this command does not have.
    n = None
    image_size = None


def check_video_spec(spec: VideoSpec) -> MethodSpec:
    """Check every field and both files before the model is loaded; the method, parsed.

    Raises:
        XaibenchError: the first field that is wrong; an input that is not a video PyAV can read, or
            an output that cannot be written.
    """
    check_common(spec)
    one_model(spec, "video")
    specs = [spec.method] if isinstance(spec.method, MethodSpec) else parse_methods(spec.method)
    if not specs:
        raise XaibenchError(f"--method names no method; {_ONE_METHOD}")
    specs = check_methods(specs)
    if len(specs) != 1:
        raise XaibenchError(f"--method takes one method, got {len(specs)}; {_ONE_METHOD}")
    video.check_video_options(every=spec.every, batch_size=spec.batch_size, cmap=spec.cmap, alpha=spec.alpha)
    video.probe_video(spec.input)
    video.check_destination(spec.out, spec.input)
    return specs[0]


def explain_video_file(spec: VideoSpec) -> video.VideoStats:
    """Write the explained copy of ``spec.input`` to ``spec.out``, as ``xaibench video`` does.

    Raises:
        XaibenchError: a field or a file is wrong (before the model is loaded), or the video cannot be
            decoded or encoded (nothing is left at ``out`` then).
    """
    method = check_video_spec(spec)
    torch.manual_seed(spec.seed)
    model = load(one_model(spec, "video"), spec)
    return video.explain_video(
        spec.input, spec.out, model, create(method, model, spec.seed), every=spec.every, batch_size=spec.batch_size,
        cmap=spec.cmap, alpha=spec.alpha, progress=spec.progress,
    )
