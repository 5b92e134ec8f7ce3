"""The ``xaibench`` command: parses and checks arguments, then calls the library; it holds no logic of its own.

Every argument is checked before any heavy work, and every error a user can fix is printed as one
line (``xaibench: error: ...``) with exit status 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pandas as pd
import torch

from xaibench import __version__, allocator, data, explainer, harness, metric, models, report, viz
from xaibench.errors import XaibenchError, os_reason
from xaibench.method_spec import MethodSpec, check_options, effective_options, method_options, parse_methods, repeated
from xaibench.output_folder import OutputFolder
from xaibench.run_folder import (
    DEFINITIONS, DEFINITIONS_FIELD, IDS_FIELD, PER_IMAGE, PER_IMAGE_CSV, REPORT_HTML, SKIPPED, RunFolder, overlays_file, read_config, unique_folder,
    writable_folder,
)
from xaibench.seeding import MAX_SEED
from xaibench.text import displayable, tolerant_output

DEFAULT_METHODS = "cam,gradcam,saliency"
DEFAULT_SANITY_METHODS = "cam,gradcam,saliency,guided_backprop"
DEFAULT_SANITY_IMAGES = 20
MAX_IMAGE_PIXELS_HELP = ("skip (run, sanity) or refuse (explain) image files with more pixels than this (default: "
                         "Pillow's limit, about 89 million)")
#: The model for your own photos and videos: a real ImageNet classifier that needs no download.
DEFAULT_PHOTO_MODEL = "efficientnet_lite0"
#: The formats ``xaibench explain --format`` writes.
FIGURE_FORMATS = ("png", "pdf", "svg", "jpg")
#: Image suffixes it does not write: ``explain --out cat.gif`` is refused, not taken for a folder.
OTHER_IMAGE_SUFFIXES = frozenset({"gif", "bmp", "tif", "tiff", "webp", "ico", "ppm", "pgm", "tga", "heic", "avif", "jp2", "eps"})
#: Sides the images may be resized to: smaller leaves no room for a feature map, larger no memory.
IMAGE_SIZE_RANGE = (16, 4096)


class _Parser(argparse.ArgumentParser):
    """argparse with the command line's one-line errors: ``xaibench: error: ...; see ... --help``
    (argparse prints the whole usage block first)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"xaibench: error: {message}; see {self.prog} --help\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="xaibench", description="Benchmark how well explanation methods localize objects.")
    parser.add_argument("--version", action="version", version=f"xaibench {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="explain and score a data set with several methods")
    run.add_argument("--methods", default=DEFAULT_METHODS,
                     help=f"comma-separated names with options, e.g. cam,scorecam(batch_size=64), or all (default: {DEFAULT_METHODS})")
    run.add_argument("--metrics", default="default",
                     help="comma-separated metric names with options, e.g. deletion_auc(steps=100); default (the "
                          "localization set), all, or default plus names: default,deletion_auc (see xaibench list --metrics)")
    run.add_argument("--model", default="builtin",
                     help="builtin, efficientnet_lite0/1/2, or a torchvision name; several separated by commas (default: builtin)")
    run.add_argument("--weights", default="default", help="a state-dict file for the model, or none for random weights (default: its trained weights)")
    run.add_argument("--target-layer", default=None, help="dotted name of the feature layer (default: found automatically)")
    run.add_argument("--dataset", default="builtin", help="KIND or KIND:PATH, e.g. builtin, builtin:distractor (default: builtin)")
    run.add_argument("--image-size", type=int, default=None, help="side the images are resized to, no crop (default: the model's, 224 for ImageNet models)")
    run.add_argument("--n", type=int, default=None, help="number of images (default: all; 500 for builtin)")
    run.add_argument("--batch-size", type=int, default=32, help="images per batch (default: 32)")
    run.add_argument("--target", choices=harness.TARGETS, default="label", help="class to explain (default: label)")
    run.add_argument("--out", default=None, help="output folder (default: a new reports/<time>-<model>-<dataset>)")
    existing = run.add_mutually_exclusive_group()
    existing.add_argument("--resume", action="store_true", help="continue the run in --out where it stopped")
    existing.add_argument("--overwrite", action="store_true", help="replace the run in --out")
    run.add_argument("--seed", type=int, default=0, help="seed for generated data and bootstrap (default: 0)")
    run.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    run.add_argument("--max-image-pixels", type=int, default=None, help=MAX_IMAGE_PIXELS_HELP)

    sanity = commands.add_parser(
        "sanity", help="sanity checks (Adebayo et al. 2018): how alike the maps stay as the model is randomized"
    )
    sanity.add_argument("--methods", default=DEFAULT_SANITY_METHODS,
                        help=f"comma-separated names with options, or all (default: {DEFAULT_SANITY_METHODS})")
    sanity.add_argument("--model", default="builtin", help="one model: builtin, efficientnet_lite0/1/2, or a torchvision name")
    sanity.add_argument("--weights", default="default", help="a state-dict file for the model (default: its trained weights)")
    sanity.add_argument("--target-layer", default=None, help="dotted name of the feature layer (default: found automatically)")
    sanity.add_argument("--dataset", default="builtin", help="KIND or KIND:PATH, e.g. imagenet:DIR (default: builtin)")
    sanity.add_argument("--image-size", type=int, default=None, help="side the images are resized to (default: the model's)")
    sanity.add_argument("--n", type=int, default=None, help=f"number of images (default: {DEFAULT_SANITY_IMAGES})")
    sanity.add_argument("--batch-size", type=int, default=16, help="images per explanation call (default: 16)")
    sanity.add_argument("--target", choices=harness.TARGETS, default="label", help="class to explain at every depth (default: label)")
    sanity.add_argument("--show", type=int, default=3, help="images whose maps sanity_maps.png shows (default: 3)")
    sanity.add_argument("--max-image-pixels", type=int, default=None, help=MAX_IMAGE_PIXELS_HELP)
    sanity.add_argument("--out", default=None, help="output folder (default: a new reports/sanity-<time>-<model>-<dataset>)")
    sanity.add_argument("--overwrite", action="store_true",
                        help="replace the sanity check in --out (its own files only; other files there are kept)")
    sanity.add_argument("--seed", type=int, default=0, help="seed of the random weights, data and bootstrap (default: 0)")
    sanity.add_argument("--device", default="cpu", help="torch device (default: cpu)")

    summarize = commands.add_parser("summarize", help="(re)write the summary of a run's folder, finished or not")
    summarize.add_argument("folder", help="the run's output folder")

    export = commands.add_parser("export", help="write a run's per-image table as CSV, for spreadsheets")
    export.add_argument("folder", help="the run's output folder")
    export.add_argument("--out", default=None, help=f"the CSV file (default: {PER_IMAGE_CSV} in the run's folder)")

    train = commands.add_parser("train-builtin", help="train the built-in benchmark's network from its seed")
    train.add_argument("--seed", type=int, default=0, help="seed of the data and the training (default: 0)")
    train.add_argument("--out", default=None, help="folder for the weights file (default: the cache, ~/.cache/xaibench)")
    train.add_argument("--permuted-labels", action="store_true",
                       help="train on randomly permuted labels (the sanity checks' data randomization test)")

    explain = commands.add_parser(
        "explain",
        help="explain your own photos: the image and the maps of its top-k classes (CAM paper, Fig. 4)",
        description="Per image, a figure in the style of the CAM paper's Figure 4: the image (turned upright by "
                    "its EXIF orientation, resized to the model's input size without crop), then each method's "
                    "map of the image's top-k classes (or of --class), titled with the class name and its "
                    "probability; several methods give one row each. Images that cannot be read are reported "
                    "and skipped (exit status 1).",
    )
    explain.add_argument("images", nargs="*", metavar="IMAGE", help="image files (JPEG, PNG, WebP, ...)")
    explain.add_argument("--model", default=DEFAULT_PHOTO_MODEL,
                         help=f"builtin, efficientnet_lite0/1/2, or a torchvision name (default: {DEFAULT_PHOTO_MODEL})")
    explain.add_argument("--method", "--methods", dest="methods", default="cam",
                         help="comma-separated names with options, one row each, e.g. cam,gradcam or "
                              "cam,scorecam(batch_size=64) (default: cam)")
    which = explain.add_mutually_exclusive_group()
    which.add_argument("--topk", type=int, default=None, help="explain the k most probable classes (default: 5)")
    which.add_argument("--class", dest="class_name", default=None, metavar="NAME",
                       help="explain this class only: a class name (any case) or index; see --list-classes")
    explain.add_argument("--list-classes", action="store_true", help="print the model's class names (index, name) and exit")
    explain.add_argument("--out", default=".",
                         help="folder for the figures, named <image stem>-<method>[+<method>...][-<class>].<format> "
                              "(a figure explain wrote there before is replaced, another file of that name is refused), "
                              "or, for one image, the file to write, replaced if it exists (e.g. cat.png; its suffix "
                              "gives the format) (default: the current folder)")
    explain.add_argument("--format", choices=FIGURE_FORMATS, default=None,
                         help="file format (default: the suffix of --out FILE, else png)")
    explain.add_argument("--cmap", default=viz.DEFAULT_CMAP, help=f"matplotlib colour map of the maps (default: {viz.DEFAULT_CMAP})")
    explain.add_argument("--alpha", type=float, default=viz.DEFAULT_ALPHA,
                         help=f"opacity of the maps over the image, 0 to 1 (default: {viz.DEFAULT_ALPHA})")
    explain.add_argument("--figsize", default=None, metavar="W,H",
                         help="figure size in inches (default: about 2.4 per panel)")
    explain.add_argument("--dpi", type=float, default=100, help="dots per inch of png and jpg figures (default: 100)")
    explain.add_argument("--weights", default="default", help="a state-dict file for the model, or none for random weights (default: its trained weights)")
    explain.add_argument("--target-layer", default=None, help="dotted name of the feature layer (default: found automatically)")
    explain.add_argument("--seed", type=int, default=0, help="seed of the methods that draw random numbers (default: 0)")
    explain.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    explain.add_argument("--max-image-pixels", type=int, default=None, help=MAX_IMAGE_PIXELS_HELP)
    explain.set_defaults(n=None, batch_size=1, image_size=None)  # for _check_common

    clip = commands.add_parser(
        "video",
        help="explain a video: each frame with the heatmap of its top-1 class, its name and probability",
        description="Writes a copy of the video (same frame count, size, frame rate, timestamps; H.264) in which every "
                    "frame shows the method's map of the model's top-1 class over it, and the class name with its "
                    "probability in the top-left corner; the audio is copied unchanged. Needs PyAV: "
                    "pip install 'xaibench[video]'.",
    )
    clip.add_argument("input", help="the video file")
    clip.add_argument("--out", required=True, help="the video to write, e.g. explained.mp4 (.mp4, .mkv or .mov; replaced if it exists)")
    clip.add_argument("--model", default=DEFAULT_PHOTO_MODEL,
                      help=f"builtin, efficientnet_lite0/1/2, or a torchvision name (default: {DEFAULT_PHOTO_MODEL})")
    clip.add_argument("--weights", default="default", help="a state-dict file for the model, or none for random weights (default: its trained weights)")
    clip.add_argument("--target-layer", default=None, help="dotted name of the feature layer (default: found automatically)")
    clip.add_argument("--method", default="cam", help="one method with its options, e.g. cam or scorecam(batch_size=64) (default: cam)")
    clip.add_argument("--every", type=int, default=1,
                      help="explain every K-th frame and reuse its map, class and probability in between (default: 1)")
    clip.add_argument("--batch-size", type=int, default=16, help="frames per pass through the model (default: 16)")
    clip.add_argument("--cmap", default=viz.DEFAULT_CMAP, help=f"matplotlib colour map of the heatmap (default: {viz.DEFAULT_CMAP})")
    clip.add_argument("--alpha", type=float, default=viz.DEFAULT_ALPHA,
                      help=f"opacity of the heatmap over the frame, 0 to 1 (default: {viz.DEFAULT_ALPHA})")
    clip.add_argument("--seed", type=int, default=0, help="seed of the methods that draw random numbers (default: 0)")
    clip.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    clip.set_defaults(n=None, image_size=None)  # for _check_common

    combined = commands.add_parser(
        "report", help="compare one or more runs: tables with intervals, paired tests, plots, galleries, one HTML page",
        description="Combines runs (other methods, models or data sets; runs whose protocols differ are refused, "
                    "naming the field) and writes report.html (self-contained), summary.csv/.md, pairwise.csv, "
                    "per_class.csv, box_accuracy_curves.csv, the plots (PNG) and the galleries (JPEG).",
    )
    combined.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run folders (as xaibench run writes them)")
    combined.add_argument("--out", default=None,
                          help="output folder, not a run's; only files an earlier report wrote there are replaced "
                               "(default: a new reports/<time>-report)")
    combined.add_argument("--class-gallery", default=None, metavar="METHODS",
                          help="comma-separated methods whose class gallery (the CAM paper's Fig. 3) is drawn "
                               "(default: cam where a model has it, else its first method)")
    combined.add_argument("--cmap", default=viz.DEFAULT_CMAP, help=f"matplotlib colour map of the maps (default: {viz.DEFAULT_CMAP})")
    combined.add_argument("--alpha", type=float, default=viz.DEFAULT_ALPHA,
                          help=f"opacity of the maps over the images, 0 to 1 (default: {viz.DEFAULT_ALPHA})")

    listing = commands.add_parser("list", help="list the registered explanation methods (or metrics)")
    listing.add_argument("--metrics", action="store_true", help="list the registered metrics instead")
    return parser


def console() -> int:
    """The ``xaibench`` command: :func:`main` in a process of its own, which keeps freed memory for reuse
    (:func:`xaibench.allocator.keep_freed_memory`: no fresh pages for every pass) and takes SIGTERM as
    it takes Ctrl-C (SIGTERM is how schedulers and ``kill`` stop a job, and the one a background job
    can get: it ignores SIGINT): a run stopped so says where its rows are and how to continue it."""
    allocator.keep_freed_memory()
    signal.signal(signal.SIGTERM, _raise_terminated)
    return main()


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised wherever the command is, as Ctrl-C raises KeyboardInterrupt."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise _Terminated


def _stop_status(stop: KeyboardInterrupt) -> int:
    """The exit status of a command stopped by a signal, as shells give it: 128 + the signal's number
    (130 for Ctrl-C, 143 for SIGTERM)."""
    return 128 + (signal.SIGTERM if isinstance(stop, _Terminated) else signal.SIGINT)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    commands = {
        "list": _list, "run": _run, "sanity": _sanity, "summarize": _summarize, "export": _export,
        "train-builtin": _train_builtin,
        "explain": _explain,
        "video": _video,
        "report": _report,
    }
    try:
        with tolerant_output(), _pixel_limit(getattr(args, "max_image_pixels", None)):  # the commands that read image files
            return commands[args.command](args)
    except KeyboardInterrupt as stop:
        print("xaibench: interrupted", file=sys.stderr)
        return _stop_status(stop)
    except (XaibenchError, OSError) as error:
        message = str(error) if isinstance(error, XaibenchError) or not error.strerror else _os_message(error)
        print(f"xaibench: error: {' '.join(message.split())}", file=sys.stderr)
        return 2


def _os_message(error: OSError) -> str:
    where = f" ({error.filename})" if error.filename else ""
    return f"{error.strerror}{where}"


def _list(args: argparse.Namespace) -> int:
    infos = metric.describe_metrics() if args.metrics else explainer.describe_explainers()
    width = max((len(i.name) for i in infos), default=4)
    for info in infos:
        print(f"{info.name:<{width}}  {info.summary}\n{'':<{width}}  from {info.origin}")
    return 0


def _check_arguments(args: argparse.Namespace) -> tuple[list[MethodSpec], list[metric.Metric]]:
    """Check every argument that can be checked without loading anything; the methods, parsed, and the
    metrics, built."""
    specs = _check_methods(args.methods)
    _check_common(args)
    if args.resume and args.out is None:
        raise XaibenchError("--resume needs --out DIR, the folder of the run to continue")
    if args.out and not (args.resume or args.overwrite) and RunFolder(args.out).holds_a_run():
        raise XaibenchError(
            f"{args.out} holds the results of another run; pass --resume to continue it, --overwrite to "
            "replace it, or choose another --out"
        )
    return specs, _metrics(args.metrics, args.seed)


def _check_methods(text: str) -> list[MethodSpec]:
    """``--methods``, parsed, ``all`` expanded, each name and option checked."""
    specs = parse_methods(text)
    if not specs:
        raise XaibenchError(f"--methods names no method; name at least one, e.g. --methods {DEFAULT_METHODS}")
    if [s.name for s in specs] == ["all"]:
        specs = _every_method(specs[0].options)
    twice = repeated([s.name for s in specs])
    if twice:
        raise XaibenchError(f"--methods names {', '.join(twice)} more than once; name each method once")
    for spec in specs:  # a typo or a wrong option fails here, before anything heavy is loaded
        check_options(spec.name, explainer.get_explainer(spec.name), spec.options)
    return specs


def _check_common(args: argparse.Namespace) -> None:
    """The arguments ``run`` and ``sanity`` share: model, images, seed, batch, device, weights, layer."""
    if not _model_names(args.model):
        raise XaibenchError("--model names no model; e.g. --model efficientnet_lite0")
    if args.n is not None and args.n < 1:
        raise XaibenchError(f"--n must be at least 1, got {args.n}")
    _check_seed(args.seed)
    if args.batch_size < 1:
        raise XaibenchError(f"--batch-size must be at least 1, got {args.batch_size}")
    low, high = IMAGE_SIZE_RANGE
    if args.image_size is not None and not low <= args.image_size <= high:
        raise XaibenchError(f"--image-size must lie in [{low}, {high}] pixels, got {args.image_size}")
    _check_device(args.device)
    if args.weights not in ("default", "none"):
        _check_weights_file(Path(args.weights))
        if len(_model_names(args.model)) > 1:
            raise XaibenchError("--weights PATH needs a single --model; several models use their own weights")
    if args.target_layer is not None and not args.target_layer.strip():
        raise XaibenchError("--target-layer is empty; name a layer (e.g. layer4) or leave the option out")


def _check_weights_file(weights: Path) -> None:
    """``--weights PATH``: a regular file that can be opened for reading (the OS's reason if not)."""
    if weights.is_dir():
        raise XaibenchError(
            f"--weights {weights} is a folder; pass the state-dict file in it (one saved with "
            "torch.save(model.state_dict(), PATH)), 'default' or 'none'"
        )
    if not weights.exists():
        raise XaibenchError(f"--weights {weights}: no such file; pass a state-dict file, 'default' or 'none'")
    if not weights.is_file():
        raise XaibenchError(f"--weights {weights} is not a regular file; pass a state-dict file, 'default' or 'none'")
    try:
        os.close(os.open(weights, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)))
    except OSError as error:
        raise XaibenchError(f"--weights {weights}: the file cannot be read ({os_reason(error)})") from None


def _metrics(text: str, seed: int) -> list[metric.Metric]:
    """``--metrics``: ``default`` (the localization set), ``all``, or names with options, ``default``
    and ``all`` allowed among them; the metrics they require are added. A metric that takes a
    ``seed`` and was given none gets the run's."""
    specs = parse_methods(text)
    if not specs:
        raise XaibenchError("--metrics names no metric; e.g. --metrics default,deletion_auc, or leave it out")
    twice = repeated([s.name for s in specs])
    if twice:
        raise XaibenchError(f"--metrics names {', '.join(map(repr, twice))} more than once; name each metric once, with all its options")
    expanded: list[MethodSpec] = []
    for spec in specs:
        if spec.name in ("default", "all"):
            if spec.options:
                raise XaibenchError(f"--metrics {spec.name} takes no options; name the metrics to give them options")
            names = list(metric.DEFAULT_METRICS)
            if spec.name == "all":
                names += [n for n in metric.available_metrics() if n not in names]
            expanded += [MethodSpec(n) for n in names if n not in {s.name for s in expanded}]
        elif spec.name in {s.name for s in expanded}:
            if spec.options:  # the same metric with options replaces its default
                expanded = [spec if s.name == spec.name else s for s in expanded]
        else:
            expanded.append(spec)
    built = []
    for spec in expanded:
        spec = _with_seed(spec, seed, metric.get_metric)
        built.append(metric.create_metric(spec.name, **spec.options))
    return harness.build_metrics(built)


def _every_method(options: dict) -> list[MethodSpec]:
    """``--methods all``: every installed method that can be loaded (the others are reported)."""
    if options:
        raise XaibenchError("--methods all takes no options; name the methods to give them options")
    specs = []
    for name in explainer.available_explainers():
        try:
            explainer.get_explainer(name)
        except XaibenchError as error:
            logging.getLogger(__name__).warning("--methods all: left out %s (%s)", name, error)
            continue
        specs.append(MethodSpec(name))
    return specs


def _model_names(text: str) -> list[str]:
    names = [m.strip() for m in text.split(",") if m.strip()]
    twice = repeated(names)
    if twice:
        raise XaibenchError(f"--model names {', '.join(twice)} more than once; name each model once")
    return names


def _check_seed(seed: int) -> None:
    if not 0 <= seed <= MAX_SEED:
        raise XaibenchError(f"--seed must lie in [0, 2**32 - 1], got {seed}")


def _check_device(name: str) -> None:
    try:
        device = torch.device(name)
    except RuntimeError:
        raise XaibenchError(f"--device '{name}' is not a torch device; use cpu, cuda, cuda:1, mps, ...") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise XaibenchError(f"--device {name}: this machine has no CUDA GPU that torch can use; use --device cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise XaibenchError(f"--device {name}: there are only {torch.cuda.device_count()} CUDA devices")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise XaibenchError(f"--device {name}: MPS is not available on this machine; use --device cpu")
    if device.type == "meta":
        raise XaibenchError("--device meta holds no data; use cpu, cuda or mps")
    try:
        torch.zeros(1, device=device) + 1
    except Exception as error:
        cause = " ".join(str(error).split())[:200]
        raise XaibenchError(f"--device {name} cannot be used on this machine ({cause}); use --device cpu") from None


def _run(args: argparse.Namespace) -> int:
    specs, metrics = _check_arguments(args)
    return _run_checked(args, specs, metrics)


@contextmanager
def _pixel_limit(limit: int | None) -> Iterator[None]:
    """Pillow's pixel limit (``PIL.Image.MAX_IMAGE_PIXELS``, read by the image loaders) set to
    ``--max-image-pixels`` for one command, then restored; None leaves it as it is."""
    from PIL import Image

    if limit is not None and limit < 1:
        raise XaibenchError(f"--max-image-pixels must be at least 1, got {limit}")
    before = Image.MAX_IMAGE_PIXELS
    if limit is not None:
        Image.MAX_IMAGE_PIXELS = limit
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = before


@dataclass
class _Setup:
    """One model of the run with its explainers and its data set (resized to its input size)."""

    model: models.Model
    explainers: list[explainer.Explainer]
    dataset: Sequence
    image_size: tuple[int, int]


def _run_checked(args: argparse.Namespace, specs: list[MethodSpec], metrics: list[metric.Metric]) -> int:
    torch.manual_seed(args.seed)
    weights = None if args.weights == "none" else args.weights
    every = args.methods.strip() == "all"
    loaded = [
        models.load_model(name, weights=weights, target_layer=args.target_layer, device=args.device)
        for name in _model_names(args.model)
    ]
    twice = repeated([model.name for model in loaded])
    if twice:  # two names of one model (builtin, shapes_net): its rows are told apart by model.name alone
        raise XaibenchError(f"--model names the model {', '.join(twice)} more than once (by another name); name it once")
    specs, built = _explainers_for(loaded, specs, seed=args.seed, leave_out_misfits=every)
    setups = []
    for model, explainers in zip(loaded, built):
        image_size = (args.image_size, args.image_size) if args.image_size else model.input_size
        if image_size != tuple(model.input_size):  # the target layer must still give a spatial map there
            models.check_target_layer(
                model.network, model.target_layer_name, torch.zeros(1, 3, *image_size, device=model.device)
            )
        dataset = data.load_dataset(
            args.dataset, image_size=image_size, size=args.n, seed=args.seed, class_names=model.class_names
        )
        setups.append(_Setup(model, explainers, dataset, image_size))
    n = min(args.n, len(setups[0].dataset)) if args.n is not None else len(setups[0].dataset)
    _note_fewer_images(args.n, len(setups[0].dataset), "the run scores")
    config = {
        "models": [
            {
                "name": s.model.name,
                "weights": args.weights,
                "weights_sha256": models.weights_digest(s.model.network),
                "target_layer": s.model.target_layer_name,
                "classifier": s.model.classifier_name,
                "image_size": list(s.image_size),
            }
            for s in setups
        ],
        "dataset": args.dataset,
        IDS_FIELD: data.sample_ids_digest(setups[0].dataset, n),
        DEFINITIONS_FIELD: DEFINITIONS,
        "n": n,
        "image_resize": "bilinear to image_size, no crop; boxes scaled and truncated to int (wsolevaluation)",
        "map_postprocessing": "bilinear upsampling to image_size (align_corners=False), per-map min-max to [0, 1]",
        "constant_map_rtol": explainer.CONSTANT_RTOL,
        "maxboxacc_thresholds": "0.00:0.99:0.01",
        "methods": [spec.name for spec in specs],
        "method_options": {
            spec.name: effective_options(explainer.get_explainer(spec.name), _with_seed(spec, args.seed).options)
            for spec in specs
        },
        "metrics": [m.name for m in metrics],
        "metric_options": {m.name: m.options for m in metrics},
        "batch_size": args.batch_size,
        "target": args.target,
        "seed": args.seed,
        "max_image_pixels": _max_image_pixels(),
        "device": args.device,
        "torch": torch.__version__,
        "xaibench": __version__,
    }
    mode = "resume" if args.resume else "overwrite" if args.overwrite else "new"
    out = Path(args.out) if args.out else unique_folder("reports", _default_name(args.model, args.dataset))
    names = ", ".join(s.model.name for s in setups)
    with RunFolder(out, mode=mode) as folder:
        folder.start(config)
        print(f"xaibench: {', '.join(config['methods'])} on {n} images of {args.dataset} with {names} -> {out}")
        try:
            summary = _fill_run(args, setups, metrics, n, out, names)
        except KeyboardInterrupt as stop:  # Ctrl-C or SIGTERM, at any stage: nothing computed is lost
            print(f"xaibench: interrupted; the rows computed so far are in {out / PER_IMAGE}/; "
                  f"continue with --resume --out {out}", file=sys.stderr)
            return _stop_status(stop)
    skipped = list(dict.fromkeys(harness.read_skipped(out)["index"]))
    if summary.empty and skipped:
        raise XaibenchError(
            f"none of the {len(skipped)} images could be read (each is listed, with why, in {out / SKIPPED}/); "
            "nothing was scored: fix the images or --dataset, then run again with --overwrite"
        )
    _print_summary(summary, out)
    if skipped:
        print(f"xaibench: skipped {len(skipped)} unreadable images (listed in {out / SKIPPED}/)")
    print(f"xaibench: wrote {out}")
    return 0


def _fill_run(
    args: argparse.Namespace, setups: list[_Setup], metrics: list[metric.Metric], n: int, out: Path, names: str
) -> pd.DataFrame:
    """Evaluate every model of the run into ``out``, then write its summary, overlay figures and page;
    the summary."""
    for setup in setups:
        try:
            harness.evaluate(
                setup.model, setup.dataset, setup.explainers, metrics=metrics, batch_size=args.batch_size,
                n=n, target=args.target, out=out, progress=True,
            )
        except (XaibenchError, OSError) as error:
            message = str(error) if isinstance(error, XaibenchError) else f"{error.strerror or error}"
            raise XaibenchError(
                f"{message} (the rows computed so far are in {out / PER_IMAGE}/; fix the cause, then continue "
                f"with --resume --out {out})"
            ) from error
    summary = report.write_summary(out)
    for setup in setups:
        samples, maps = harness.figure_maps(out, setup.model.name, setup.dataset, [e.name for e in setup.explainers])
        if not samples:  # no image could be read: nothing to draw
            continue
        figure = overlays_file(setup.model.name if len(setups) > 1 else None)
        viz.overlay_grid(samples, maps, out / figure, class_names=setup.model.class_names)
    if not summary.empty:  # no image could be read: nothing to show
        from xaibench import comparison, comparison_report

        run_report = comparison_report.build_report(comparison.combine([comparison.load_run(out)]))
        comparison_report.write_html(run_report, out / REPORT_HTML, title=f"xaibench: {names} on {args.dataset}")
    return summary


def _note_fewer_images(requested: int | None, available: int, what: str) -> None:
    """One line on standard error when ``--n`` asks for more images than the data set holds."""
    if requested is not None and requested > available:
        images, those = ("1 image", "that one") if available == 1 else (f"{available} images", f"those {available}")
        print(f"xaibench: --n {requested}: the data set has only {images}; {what} {those}", file=sys.stderr)


def _with_seed(spec: MethodSpec, seed: int, lookup: Callable[[str], type] = explainer.get_explainer) -> MethodSpec:
    """The run's seed for a method (or, with ``lookup=metric.get_metric``, a metric) that takes one and
    was not given one."""
    options = method_options(lookup(spec.name)) or {}
    if "seed" in options and "seed" not in spec.options:
        return MethodSpec(spec.name, {**spec.options, "seed": seed})
    return spec


def _create(spec: MethodSpec, model: models.Model, seed: int) -> explainer.Explainer:
    spec = _with_seed(spec, seed)
    return explainer.create_explainer(spec.name, model, **spec.options)


def _explainers_for(
    loaded: list[models.Model], specs: list[MethodSpec], *, seed: int, leave_out_misfits: bool
) -> tuple[list[MethodSpec], list[list[explainer.Explainer]]]:
    """The methods every model can serve, and each model's explainers for them, each built once.

    A method a model cannot serve is an error, except with ``--methods all``, which leaves it out for
    every model, with a note.
    """
    kept, built = [], []
    for spec in specs:
        try:
            per_model = [_create(spec, model, seed) for model in loaded]
        except XaibenchError as error:
            if not leave_out_misfits:
                raise
            print(f"xaibench: --methods all: left out {spec.name}: {' '.join(str(error).split())}", file=sys.stderr)
            continue
        kept.append(spec)
        built.append(per_model)
    return kept, [list(explainers) for explainers in zip(*built)] if built else [[] for _ in loaded]


def _max_image_pixels() -> int | None:
    from PIL import Image

    return Image.MAX_IMAGE_PIXELS


def _sanity(args: argparse.Namespace) -> int:
    from xaibench import sanity

    specs = _check_methods(args.methods)
    _check_common(args)
    if len(_model_names(args.model)) != 1:
        raise XaibenchError("xaibench sanity checks one model at a time; pass a single --model")
    if args.show < 0:
        raise XaibenchError(f"--show must be at least 0, got {args.show}")
    out = Path(args.out) if args.out else unique_folder("reports", "sanity-" + _default_name(args.model, args.dataset))
    with sanity.sanity_folder(out) as folder:  # locked, and checked before the work, not after it
        if folder.check(sanity.OUTPUTS) and not args.overwrite:
            raise XaibenchError(f"{out} holds another sanity check; pass --overwrite to replace it, or choose another --out")
        return _sanity_into(folder, args, specs)


def _sanity_into(folder: OutputFolder, args: argparse.Namespace, specs: list[MethodSpec]) -> int:
    """The sanity check, written into ``folder`` (an open :class:`xaibench.output_folder.OutputFolder`)."""
    from xaibench import sanity
    from xaibench.data.sample import collate

    out = folder.path
    requested = args.n
    n = DEFAULT_SANITY_IMAGES if requested is None else requested
    torch.manual_seed(args.seed)
    name = _model_names(args.model)[0]
    model = models.load_model(
        name, weights=None if args.weights == "none" else args.weights, target_layer=args.target_layer, device=args.device
    )
    image_size = (args.image_size, args.image_size) if args.image_size else tuple(model.input_size)
    if image_size != tuple(model.input_size):
        models.check_target_layer(model.network, model.target_layer_name, torch.zeros(1, 3, *image_size, device=model.device))
    dataset = data.load_dataset(args.dataset, image_size=image_size, size=n, seed=args.seed, class_names=model.class_names)
    _note_fewer_images(requested, len(dataset), "the sanity check uses")
    unreadable: list[tuple[int, str]] = []
    samples = harness.first_samples(dataset, n, unreadable)
    for index, reason in unreadable:
        print(f"xaibench: skipped unreadable image {index}: {reason}", file=sys.stderr)
    if not samples:
        raise XaibenchError(f"no image of --dataset {args.dataset} could be read; nothing to check")
    batch = collate(samples)
    images = batch.images.to(model.device)
    _, targets = harness.predictions_and_targets(model, images, batch.labels, args.target)
    specs = [_with_seed(spec, args.seed) for spec in specs]
    random_labels = _random_labels_model(model, args)
    config = {
        "model": model.name,
        "weights": args.weights,
        "weights_sha256": models.weights_digest(model.network),
        "target_layer": model.target_layer_name,
        "image_size": list(image_size),
        "dataset": args.dataset,
        "image_ids": [s.id for s in samples],
        "skipped": [{"index": index, "reason": reason} for index, reason in unreadable],
        "n": len(samples),
        "methods": [spec.name for spec in specs],
        "method_options": {
            spec.name: effective_options(explainer.get_explainer(spec.name), spec.options) for spec in specs
        },
        "target": args.target,
        "randomization": "cascading, blocks from the top, reset_parameters() seeded per block (xaibench.randomization)",
        "data_randomization": _random_labels_description(args) if random_labels is not None else None,
        "seed": args.seed,
        "device": args.device,
        "torch": torch.__version__,
        "xaibench": __version__,
        DEFINITIONS_FIELD: DEFINITIONS,
    }
    print(f"xaibench: sanity checks of {', '.join(config['methods'])} on {len(samples)} images of {args.dataset} "
          f"with {model.name} -> {out}")
    frames, shown, complete = [], sanity.SanityMaps(), False
    data_rows = None
    try:
        reference = sanity.reference_maps(model, specs, images, targets, args.batch_size)
        for frame in sanity.model_randomization(
            model, images, targets, specs, seed=args.seed, batch_size=args.batch_size, keep=args.show,
            shown=shown, reference=reference, progress=True,
        ):
            frames.append(frame)
        if random_labels is not None:
            data_rows = sanity.data_randomization(
                model, random_labels, images, targets, specs, batch_size=args.batch_size, reference=reference
            )
        complete = True
    except KeyboardInterrupt:
        print("xaibench: interrupted; writing the depths computed so far", file=sys.stderr)
    finally:
        if frames:
            per_image = pd.concat(frames, ignore_index=True)
            summary = sanity.write_sanity(
                folder, config, per_image, shown, images[: args.show].cpu(), data_per_image=data_rows, complete=complete
            )
    if not complete:
        return 130
    print(f"every block randomized:\n{sanity.deepest_table(summary)}")
    print(f"xaibench: wrote {out}")
    return 0


def _random_labels_description(args: argparse.Namespace) -> dict:
    from xaibench.shapes_net import PERMUTED_LABELS_CONFIG, shapes_net_accuracy

    return {
        "network": "the built-in network trained on permuted labels (xaibench.shapes_net.PERMUTED_LABELS_CONFIG)",
        "training_images": PERMUTED_LABELS_CONFIG.n_train,
        "fit_to_permuted_labels": shapes_net_accuracy(0, permuted_labels=True),
    }


def _random_labels_model(model: models.Model, args: argparse.Namespace) -> models.Model | None:
    """The built-in network trained on permuted labels, for the data randomization test (only the
    built-in benchmark has one: other networks would need retraining)."""
    if args.model not in ("builtin", "shapes_net") or args.weights != "default":
        return None
    from xaibench.randomization import with_network
    from xaibench.shapes_net import load_shapes_net

    network = load_shapes_net(0, permuted_labels=True).to(model.device)
    return with_network(model, network, name=f"{model.name} (permuted labels)")


def _print_summary(summary: pd.DataFrame, folder: Path) -> None:
    """The summary's tables, one per metric family, on standard output."""
    seconds = report.seconds_per_image(harness.read_timings(folder))
    for family, _, table in report.family_tables(summary, seconds):
        print(f"{family}:\n{report.to_markdown(table)}")


def _summarize(args: argparse.Namespace) -> int:
    folder = Path(args.folder)
    summary = report.write_summary(folder)
    config = read_config(folder)
    per_image = harness.read_per_image(folder, report.run_metrics(config))
    _print_summary(summary, folder)
    state = "complete" if report.run_is_complete(config, per_image) else "partial"
    skipped = per_image.attrs.get("skipped", [])
    if state == "complete" and skipped:
        state += f" (but for {len(skipped)} unreadable image(s), listed in {SKIPPED}/: --resume reads them again)"
    print(f"xaibench: summarised the {state} run in {folder} ({len(per_image)} rows)")
    return 0


def _export(args: argparse.Namespace) -> int:
    path = report.export_per_image(args.folder, args.out)
    print(f"xaibench: wrote {displayable(str(path))}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from xaibench import comparison, comparison_report

    viz.check_style(args.cmap, args.alpha)
    with ExitStack() as stack:
        # --out is locked from here on, and a file there that a report would replace but did not write is
        # refused before the work
        folder = stack.enter_context(comparison_report.report_folder(args.out)) if args.out else None
        if folder is not None:
            folder.check(comparison_report.REPORT_FILES)
        runs = [comparison.load_run(run) for run in args.runs]
        combined = comparison.combine(runs)
        methods = [m.strip() for m in args.class_gallery.split(",")] if args.class_gallery else None
        known = set(combined.summary.method)
        unknown = [m for m in methods or [] if m not in known]
        if unknown:
            raise XaibenchError(f"--class-gallery names {', '.join(unknown)}, not in these runs; they hold {', '.join(sorted(known))}")
        built = comparison_report.build_report(combined, cmap=args.cmap, alpha=args.alpha, class_gallery_methods=methods)
        if folder is None:
            out = unique_folder("reports", f"{time.strftime('%Y%m%d-%H%M%S')}-report")
            folder = stack.enter_context(comparison_report.report_folder(out))
        page = comparison_report.write_report(built, folder)
    print(f"xaibench: wrote {page} (and the tables and figures beside it)")
    return 0


def _train_builtin(args: argparse.Namespace) -> int:
    from xaibench.shapes_net import train_builtin

    _check_seed(args.seed)
    if args.out:
        writable_folder(args.out)  # before the minute or two of training
    labels = " on permuted labels" if args.permuted_labels else ""
    print(f"xaibench: training the built-in network{labels} with seed {args.seed} (a minute or two on two cores)")
    path, accuracy = train_builtin(args.seed, args.out, permuted_labels=args.permuted_labels)
    fit = "fit to the permuted training labels" if args.permuted_labels else "test accuracy"
    print(f"xaibench: {fit} {100 * accuracy:.1f}%; wrote {path}")
    return 0


def _explain(args: argparse.Namespace) -> int:
    """``xaibench explain``: one figure per image; an unreadable image is reported and skipped (exit 1)."""
    from xaibench import figures

    _check_common(args)
    if len(_model_names(args.model)) != 1:
        raise XaibenchError("xaibench explain uses one model; pass a single --model")
    if args.list_classes:
        model = models.load_model(_model_names(args.model)[0], weights=None if args.weights == "none" else args.weights,
                                  target_layer=args.target_layer, device=args.device)
        for index, name in enumerate(model.class_names):
            print(f"{index}\t{name}")
        return 0
    specs = _check_methods(args.methods)
    if not args.images:
        raise XaibenchError("name at least one image file: xaibench explain IMAGE [IMAGE ...]")
    topk = 5 if args.topk is None else args.topk
    if topk < 1:
        raise XaibenchError(f"--topk must be at least 1, got {topk}")
    viz.check_style(args.cmap, args.alpha)
    figsize = _figsize(args.figsize)
    out, out_file, fmt = _explain_output(args)
    figures.check_dpi(args.dpi)
    if figsize is not None and fmt in ("png", "jpg"):  # (a default size is checked when the figure is drawn)
        figures.check_raster_size(*figsize, args.dpi)
    writable_folder(out)
    if out_file is not None:  # the file the user named: replaced if it exists
        return _explain_images(args, specs, topk, figsize, fmt, out_file=out_file)
    # a folder, maybe the user's own (the default is the current one): only figures that explain wrote
    # there before, unchanged since, are replaced
    with OutputFolder(out, "explain") as folder:
        return _explain_images(args, specs, topk, figsize, fmt, folder=folder)


def _explain_images(
    args: argparse.Namespace, specs: list[MethodSpec], topk: int, figsize: tuple[float, float] | None, fmt: str, *,
    out_file: Path | None = None, folder: OutputFolder | None = None,
) -> int:
    """``xaibench explain`` once its arguments are checked: one figure per image, into ``out_file`` (one
    image) or ``folder``."""
    from xaibench import figures

    failed: list[str] = []
    images = []
    for image in args.images:  # missing files fail here, before the model is loaded
        try:
            figures.check_image_file(image)
            images.append(image)
        except XaibenchError as error:
            failed.append(str(error))
    if not images:
        more = f" (and {len(failed) - 1} more image{'s' if len(failed) > 2 else ''})" if len(failed) > 1 else ""
        raise XaibenchError(f"{failed[0]}{more}")
    for message in failed:
        print(f"xaibench: skipped {' '.join(message.split())}", file=sys.stderr)
    torch.manual_seed(args.seed)
    model = models.load_model(_model_names(args.model)[0], weights=None if args.weights == "none" else args.weights,
                              target_layer=args.target_layer, device=args.device)
    if args.class_name is None:
        figures.check_topk(model, topk)
        class_label = None
    else:
        class_label = model.class_names[figures.resolve_class(model, args.class_name)]
    explainers = [_create(spec, model, args.seed) for spec in specs]
    methods = [e.name for e in explainers]
    names: list[str] = []
    for image in images:  # two images with one stem in one call: keep both figures
        name = figures.figure_file_name(image, methods, fmt, class_label)
        for k in range(2, 10_000):
            if name not in names:
                break
            name = figures.figure_file_name(f"{Path(image).stem}-{k}", methods, fmt, class_label)
        names.append(name)
    if folder is not None:
        folder.check(names)  # a figure of these names that explain did not write is refused before any work
    written = 0
    for image, name in zip(images, names):
        try:
            tensor, _ = figures.load_photo(image, tuple(model.input_size))
        except XaibenchError as error:
            if len(args.images) == 1:  # nothing else to explain: a plain error
                raise
            failed.append(str(error))
            print(f"xaibench: skipped {' '.join(str(error).split())}", file=sys.stderr)
            continue
        fig = figures.explain_figure(
            tensor, model, explainers, topk=topk, class_name=args.class_name, cmap=args.cmap, alpha=args.alpha,
            figsize=figsize, title=Path(image).name,
        )
        if folder is None:
            path = figures.save_figure(fig, out_file, dpi=args.dpi)
        else:
            path = folder.write_bytes(name, figures.figure_bytes(fig, fmt, dpi=args.dpi))
        written += 1
        print(f"xaibench: wrote {path}")
    if not written:
        raise XaibenchError(f"none of the {len(args.images)} images could be read; nothing explained")
    return 1 if failed else 0


def _explain_output(args: argparse.Namespace) -> tuple[Path, Path | None, str]:
    """``explain --out`` and ``--format``: (folder, the one file to write or None, format)."""
    from xaibench.figures import FORMATS

    out = Path(args.out)
    suffix = out.suffix.lower().lstrip(".")
    if suffix in FORMATS and not out.is_dir():
        if args.format is not None and args.format != FORMATS[suffix]:
            raise XaibenchError(f"--out {out} names a .{suffix} file but --format is {args.format}; give one of them")
        if len(args.images) != 1:
            raise XaibenchError(f"--out {out} names one file but {len(args.images)} images are given; pass a folder")
        return out.parent, out, FORMATS[suffix]
    written = ", ".join(f".{f}" for f in FIGURE_FORMATS[:-1]) + f" or .{FIGURE_FORMATS[-1]}"
    if out.exists() and not out.is_dir():
        raise XaibenchError(f"--out {out} is a file, not a folder; name a folder, or a {written} file")
    if not out.exists() and suffix in OTHER_IMAGE_SUFFIXES:  # e.g. cat.gif: a file meant, not a folder
        raise XaibenchError(f"--out {out}: figures are not written as .{suffix}; name a {written} file, or a folder")
    return out, None, args.format or "png"


def _figsize(text: str | None) -> tuple[float, float] | None:
    if text is None:
        return None
    try:
        width, height = (float(v) for v in text.split(","))
    except ValueError:
        raise XaibenchError(f"--figsize must be W,H in inches, e.g. 12,2.6; got '{text}'") from None
    if not (0 < width < 1000 and 0 < height < 1000):
        raise XaibenchError(f"--figsize must be two positive numbers of inches below 1000, got '{text}'")
    return width, height


def _video(args: argparse.Namespace) -> int:
    """``xaibench video``: every argument and both files checked before the model is loaded."""
    from xaibench import video

    _check_common(args)
    if len(_model_names(args.model)) != 1:
        raise XaibenchError("xaibench video uses one model; pass a single --model")
    if not parse_methods(args.method):
        raise XaibenchError("--method names no method; e.g. --method cam or --method 'scorecam(batch_size=64)'")
    specs = _check_methods(args.method)
    if len(specs) != 1:
        raise XaibenchError(
            f"--method takes one method, got {len(specs)}; e.g. --method cam or --method 'scorecam(batch_size=64)'"
        )
    video.check_video_options(every=args.every, batch_size=args.batch_size, cmap=args.cmap, alpha=args.alpha)
    video.probe_video(args.input)
    video.check_destination(args.out, args.input)
    torch.manual_seed(args.seed)
    model = models.load_model(_model_names(args.model)[0], weights=None if args.weights == "none" else args.weights,
                              target_layer=args.target_layer, device=args.device)
    method = _create(specs[0], model, args.seed)
    stats = video.explain_video(
        args.input, args.out, model, method, every=args.every, batch_size=args.batch_size, cmap=args.cmap,
        alpha=args.alpha, progress=True,
    )
    print(f"xaibench: wrote {args.out} ({stats.frames} frames, {stats.frames_per_second:.1f} frames/s)")
    return 0


def _default_name(model: str, dataset: str) -> str:
    kind = dataset.split(":")[0]
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{model}-{kind}"


if __name__ == "__main__":
    raise SystemExit(main())
