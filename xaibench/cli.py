"""The ``xaibench`` command: parses the arguments into a spec and calls the library; it holds no logic of its own.

Each command fills the spec of its library call (:class:`xaibench.runner.RunSpec` for ``run``,
:class:`xaibench.sanity_run.SanitySpec`, :class:`xaibench.explain_run.ExplainSpec`,
:class:`xaibench.video_run.VideoSpec`) and prints what the call reports. The options the commands
share are declared once, in parent parsers. The library checks every field before any heavy work,
and every error a user can fix is printed as one line (``xaibench: error: ...``) with exit status 2.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import NoReturn

import pandas as pd

from xaibench import __version__, allocator, explainer, harness, metric, report, runner
from xaibench.common_options import DEFAULT_METHODS, DEFAULT_PHOTO_MODEL, check_seed
from xaibench.data.selection import Selection, parse_classes, parse_ids
from xaibench.distributed import ReportedByRankZero, current_share
from xaibench.errors import XaibenchError
from xaibench.run_folder import PER_IMAGE, PER_IMAGE_CSV, SKIPPED, read_config, unique_folder, writable_folder
from xaibench.runner import RunSpec, RunStart
from xaibench.style import DEFAULT_ALPHA, DEFAULT_CMAP
from xaibench.text import displayable, tolerant_output
from xaibench.precision import FULL, PRECISIONS

MAX_IMAGE_PIXELS_HELP = ("skip (run, sanity) or refuse (explain) image files with more pixels than this (default: "
                         "Pillow's limit, about 89 million)")
WEIGHTS_HELP = "a state-dict file for the model, or none for random weights (default: its trained weights)"
TARGET_LAYER_HELP = "dotted name of the feature layer (default: found automatically)"
#: ``--format`` of ``explain`` (the formats it writes).
FIGURE_FORMATS = ("png", "pdf", "svg", "jpg")


class _Parser(argparse.ArgumentParser):
    """argparse with the command line's one-line errors: ``xaibench: error: ...; see ... --help``
    (argparse prints the whole usage block first)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"xaibench: error: {message}; see {self.prog} --help\n")


# The options several commands share, declared once each. A parent parser's actions are shared by every
# command that takes it, so each command gets parents of its own (its defaults and help may differ).


def _model_options(default: str, models_help: str) -> argparse.ArgumentParser:
    """--model, --weights, --target-layer (run, sanity, explain, video)."""
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument("--model", default=default, help=models_help)
    options.add_argument("--weights", default="default", help=WEIGHTS_HELP)
    options.add_argument("--target-layer", default=None, help=TARGET_LAYER_HELP)
    own = "for a network of your own (--model FILE.py:FACTORY)"
    options.add_argument("--mean", default=None, help=f"{own}: its input's per-channel mean, e.g. 0.485,0.456,0.406")
    options.add_argument("--std", default=None, help=f"{own}: its input's per-channel std, e.g. 0.229,0.224,0.225")
    options.add_argument("--class-names", default=None, metavar="FILE", help=f"{own}: its class names, one per line")
    return options


def _seed_and_device(seed_help: str) -> argparse.ArgumentParser:
    """--seed, --device (run, sanity, explain, video)."""
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument("--seed", type=int, default=0, help=f"{seed_help} (default: 0)")
    options.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    return options


def _data_options(n_help: str, batch_size: int, batch_help: str, target_help: str) -> argparse.ArgumentParser:
    """--dataset, --image-size, --n, --batch-size, --target, --max-image-pixels (run, sanity)."""
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument("--dataset", default="builtin", help="KIND or KIND:PATH, e.g. builtin, builtin:distractor, imagenet:DIR (default: builtin)")
    options.add_argument("--image-size", type=int, default=None, help="side the images are resized to, no crop (default: the model's, 224 for ImageNet models)")
    # --num-images: the spelling that passes through torchrun, whose own parser takes --n for an
    # abbreviation of --nnodes or --nproc-per-node and refuses it.
    options.add_argument("--n", "--num-images", dest="n", type=int, default=None, help=n_help)
    options.add_argument("--batch-size", type=int, default=batch_size, help=f"{batch_help} (default: {batch_size})")
    options.add_argument("--target", choices=harness.TARGETS, default="label", help=f"{target_help} (default: label)")
    options.add_argument("--max-image-pixels", type=int, default=None, help=MAX_IMAGE_PIXELS_HELP)
    return options


def _style_options(what: str, over: str) -> argparse.ArgumentParser:
    """--cmap, --alpha (explain, video, report)."""
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument("--cmap", default=DEFAULT_CMAP, help=f"matplotlib colour map of {what} (default: {DEFAULT_CMAP})")
    options.add_argument("--alpha", type=float, default=DEFAULT_ALPHA,
                         help=f"opacity of {what} over {over}, 0 to 1 (default: {DEFAULT_ALPHA})")
    return options


def build_parser() -> argparse.ArgumentParser:
    from xaibench.sanity_run import DEFAULT_SANITY_IMAGES, DEFAULT_SANITY_METHODS

    parser = _Parser(prog="xaibench", description="Benchmark how well explanation methods localize objects.")
    parser.add_argument("--version", action="version", version=f"xaibench {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    several = "builtin, efficientnet_lite0/1/2, or a torchvision name; several separated by commas (default: builtin)"
    one = f"builtin, efficientnet_lite0/1/2, or a torchvision name (default: {DEFAULT_PHOTO_MODEL})"

    run = commands.add_parser(
        "run", help="explain and score a data set with several methods", parents=[
            _model_options("builtin", several), _seed_and_device("seed for generated data, random methods, --sample and bootstrap"),
            _data_options("number of images (default: all; 500 for builtin); with --classes, --ids or --sample, the "
                          "first images they choose among", 32, "images per batch", "class to explain"),
        ],
    )
    run.add_argument("--methods", default=DEFAULT_METHODS,
                     help=f"comma-separated names with options, e.g. cam,scorecam(batch_size=64), or all (default: {DEFAULT_METHODS})")
    run.add_argument("--metrics", default="default",
                     help="comma-separated metric names with options, e.g. deletion_auc(steps=100); default (the "
                          "localization set), all, or default plus names: default,deletion_auc (see xaibench list --metrics)")
    run.add_argument("--classes", default=None, metavar="NAMES",
                     help="score only the images of these classes: comma-separated names (any case) or indices")
    run.add_argument("--ids", default=None, metavar="FILE|IDS",
                     help="score only these images: a file of ids, one a line, or comma-separated ids (one id: end it "
                          "with a comma); ids as per_image.csv's image_id names them")
    run.add_argument("--sample", type=int, default=None, metavar="K",
                     help="score K images drawn at random (seeded by --seed) from the images chosen (default: all of them)")
    run.add_argument("--out", default=None, help="output folder (default: a new reports/<time>-<model>-<dataset>)")
    existing = run.add_mutually_exclusive_group()
    existing.add_argument("--resume", action="store_true", help="continue the run in --out where it stopped")
    existing.add_argument("--overwrite", action="store_true", help="replace the run in --out")
    run.add_argument("--no-report", action="store_true", help="write the summary but not the overlay figures and report.html")
    run.add_argument("--keep-maps", default=None, metavar="SIDE[:DTYPE]",
                     help="keep every scored map in the run's kept_maps/ table, its longer side SIDE pixels (or full) "
                          "as float16 (default), float32 or uint8, e.g. 224 or 56:uint8 (default: only the reports' thumbnails)")
    run.add_argument("--precision", default=FULL, choices=list(PRECISIONS),
                     help="the network's precision: fp32 (default), or bf16 / fp16 mixed precision (torch.autocast; "
                          "for GPUs; methods whose maps it would change in meaning refuse it)")
    run.add_argument("--workers", type=int, default=None, metavar="N",
                     help="processes reading the next images while the network runs, with threads scoring the "
                          "localization metrics meanwhile (default: one per core but one, at most 4; 0: none); "
                          "the results are the same")

    sanity = commands.add_parser(
        "sanity", help="sanity checks (Adebayo et al. 2018): how alike the maps stay as the model is randomized",
        parents=[
            _model_options("builtin", "one model: builtin, efficientnet_lite0/1/2, or a torchvision name (default: builtin)"),
            _seed_and_device("seed of the random weights, data and bootstrap"),
            _data_options(f"number of images (default: {DEFAULT_SANITY_IMAGES})", 16, "images per explanation call",
                          "class to explain at every depth"),
        ],
    )
    sanity.add_argument("--methods", default=DEFAULT_SANITY_METHODS,
                        help=f"comma-separated names with options, or all (default: {DEFAULT_SANITY_METHODS})")
    sanity.add_argument("--show", type=int, default=3, help="images whose maps sanity_maps.png shows (default: 3)")
    sanity.add_argument("--out", default=None, help="output folder (default: a new reports/sanity-<time>-<model>-<dataset>)")
    sanity.add_argument("--overwrite", action="store_true",
                        help="replace the sanity check in --out (its own files only; other files there are kept)")

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
        parents=[_model_options(DEFAULT_PHOTO_MODEL, one), _seed_and_device("seed of the methods that draw random numbers"),
                 _style_options("the maps", "the image")],
    )
    explain.add_argument("images", nargs="*", metavar="IMAGE", help="image files (JPEG, PNG, WebP, ...)")
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
    explain.add_argument("--figsize", default=None, metavar="W,H",
                         help="figure size in inches (default: about 2.4 per panel)")
    explain.add_argument("--dpi", type=float, default=100, help="dots per inch of png and jpg figures (default: 100)")
    explain.add_argument("--max-image-pixels", type=int, default=None, help=MAX_IMAGE_PIXELS_HELP)

    clip = commands.add_parser(
        "video",
        help="explain a video: each frame with the heatmap of its top-1 class, its name and probability",
        description="Writes a copy of the video (same frame count, size, frame rate, timestamps; H.264) in which every "
                    "frame shows the method's map of the model's top-1 class over it, and the class name with its "
                    "probability in the top-left corner; the audio is copied unchanged. Needs PyAV: "
                    "pip install 'xaibench[video]'.",
        parents=[_model_options(DEFAULT_PHOTO_MODEL, one), _seed_and_device("seed of the methods that draw random numbers"),
                 _style_options("the heatmap", "the frame")],
    )
    clip.add_argument("input", help="the video file")
    clip.add_argument("--out", required=True, help="the video to write, e.g. explained.mp4 (.mp4, .mkv or .mov; replaced if it exists)")
    clip.add_argument("--method", default="cam", help="one method with its options, e.g. cam or scorecam(batch_size=64) (default: cam)")
    clip.add_argument("--every", type=int, default=1,
                      help="explain every K-th frame and reuse its map, class and probability in between (default: 1)")
    clip.add_argument("--batch-size", type=int, default=16, help="frames per pass through the model (default: 16)")

    combined = commands.add_parser(
        "report", help="compare one or more runs: tables with intervals, paired tests, plots, galleries, one HTML page",
        description="Combines runs (other methods, models or data sets; runs whose protocols differ are refused, "
                    "naming the field) and writes report.html (self-contained), summary.csv/.md, pairwise.csv, "
                    "per_class.csv, box_accuracy_curves.csv, tables.tex (LaTeX, booktabs), the plots (PNG) and the "
                    "galleries (JPEG), and every figure as PDF and SVG.",
        parents=[_style_options("the maps", "the images")],
    )
    combined.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run folders (as xaibench run writes them)")
    combined.add_argument("--out", default=None,
                          help="output folder, not a run's; only files an earlier report wrote there are replaced "
                               "(default: a new reports/<time>-report)")
    combined.add_argument("--class-gallery", default=None, metavar="METHODS",
                          help="comma-separated methods whose class gallery (the CAM paper's Fig. 3) is drawn "
                               "(default: cam where a model has it, else its first method)")
    only = combined.add_mutually_exclusive_group()
    only.add_argument("--tables-only", action="store_true",
                      help="write the tables alone (CSV, Markdown, LaTeX): no figures, no page; fast on many images")
    only.add_argument("--figures-only", action="store_true", help="write the figures alone (PNG/JPEG, PDF, SVG)")
    combined.add_argument("--no-vectors", dest="vectors", action="store_false",
                          help="no PDF and SVG of the figures (about half the figures' time)")

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
    share = None
    try:
        share = current_share()
        if share is not None and args.command not in ("run", "list"):
            refusal = ReportedByRankZero if share.rank != 0 else XaibenchError  # every rank finds it: rank 0 says it
            raise refusal(f"xaibench {args.command} runs in one process: start it without torchrun "
                          "(xaibench run is the command that splits over processes)")
        with tolerant_output():
            return commands[args.command](args)
    except KeyboardInterrupt as stop:
        if share is None or share.rank == 0:  # torchrun stops every rank: one says so
            print("xaibench: interrupted", file=sys.stderr)
        return _stop_status(stop)
    except ReportedByRankZero:
        return 2
    except (XaibenchError, OSError) as error:
        message = str(error) if isinstance(error, XaibenchError) or not error.strerror else _os_message(error)
        where = f"{share}: " if share is not None else ""  # which of torchrun's processes failed
        print(f"xaibench: error: {where}{' '.join(message.split())}", file=sys.stderr)
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


def _note(line: str) -> None:
    """A note of the library's on standard error."""
    print(f"xaibench: {line}", file=sys.stderr)


def _run_spec(args: argparse.Namespace) -> RunSpec:
    """``xaibench run``'s arguments as the library's :class:`~xaibench.runner.RunSpec`."""
    selection = None
    if args.classes is not None or args.ids is not None or args.sample is not None:
        selection = Selection(
            classes=None if args.classes is None else parse_classes(args.classes),
            ids=None if args.ids is None else parse_ids(args.ids),
            sample=args.sample,
        )
    return RunSpec(
        models=args.model, dataset=args.dataset, methods=args.methods, metrics=args.metrics, n=args.n,
        selection=selection, batch_size=args.batch_size, target=args.target, seed=args.seed, device=args.device,
        weights=args.weights, target_layer=args.target_layer, mean=args.mean, std=args.std, class_names=args.class_names, image_size=args.image_size, out=args.out,
        mode="resume" if args.resume else "overwrite" if args.overwrite else "new", report=not args.no_report,
        max_image_pixels=args.max_image_pixels, progress=True, keep_maps=args.keep_maps,
        workers=args.workers, precision=args.precision,
    )


def _run(args: argparse.Namespace) -> int:
    spec = _run_spec(args)
    started: list[RunStart] = []

    def on_start(start: RunStart) -> None:
        started.append(start)
        for line in start.notes:
            _note(line)
        config = start.config
        names = ", ".join(m["name"] for m in config["models"])
        print(f"xaibench: {', '.join(config['methods'])} on {config['n']} images of {spec.dataset} with {names} -> {start.folder}")

    try:
        result = runner.run(spec, on_start=on_start)
    except KeyboardInterrupt as stop:  # Ctrl-C or SIGTERM, at any stage: nothing computed is lost
        if not started:  # (under torchrun, only rank 0 starts the run and says this)
            raise
        out = started[0].folder
        print(f"xaibench: interrupted; the rows computed so far are in {out / PER_IMAGE}/; "
              f"continue with --resume --out {out}", file=sys.stderr)
        return _stop_status(stop)
    if result.share is not None and result.share.rank != 0:  # rank 0 tells what the run wrote
        return 0
    _print_summary(result.summary, result.folder)
    if result.skipped:
        print(f"xaibench: skipped {len(result.skipped)} unreadable images (listed in {result.folder / SKIPPED}/)")
    print(f"xaibench: wrote {result.folder}")
    return 0


def _sanity(args: argparse.Namespace) -> int:
    from xaibench import sanity
    from xaibench.sanity_run import SanitySpec, SanityStart, run_sanity

    spec = SanitySpec(
        models=args.model, methods=args.methods, dataset=args.dataset, n=args.n, batch_size=args.batch_size,
        target=args.target, show=args.show, seed=args.seed, device=args.device, weights=args.weights,
        target_layer=args.target_layer, mean=args.mean, std=args.std, class_names=args.class_names, image_size=args.image_size, out=args.out, overwrite=args.overwrite,
        max_image_pixels=args.max_image_pixels, progress=True,
    )
    started: list[SanityStart] = []

    def on_start(start: SanityStart) -> None:
        started.append(start)
        for line in start.notes:
            _note(line)
        config = start.config
        print(f"xaibench: sanity checks of {', '.join(config['methods'])} on {config['n']} images of {spec.dataset} "
              f"with {config['model']} -> {start.folder}")

    try:
        result = run_sanity(spec, on_start=on_start)
    except KeyboardInterrupt as stop:  # the depths computed so far are written, marked partial
        if not started:
            raise
        print(f"xaibench: interrupted; the depths computed so far are in {started[0].folder}", file=sys.stderr)
        return _stop_status(stop)
    print(f"every block randomized:\n{sanity.deepest_table(result.summary)}")
    print(f"xaibench: wrote {result.folder}")
    return 0


def _print_summary(summary: pd.DataFrame, folder: Path) -> None:
    """The summary's tables, one per metric family, on standard output."""
    seconds = report.seconds_per_image(harness.read_timings(folder))
    for family, _, table in report.family_tables(summary, seconds):
        print(f"{family}:\n{report.to_markdown(table)}")


def _summarize(args: argparse.Namespace) -> int:
    folder = Path(args.folder)
    summary = report.write_summary(folder)
    config = read_config(folder)
    per_image = harness.read_per_image_keys(folder)
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
    from xaibench import comparison, comparison_report, viz  # matplotlib, for the commands that draw

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
        built = comparison_report.build_report(combined, cmap=args.cmap, alpha=args.alpha, class_gallery_methods=methods,
                                               figures=not args.tables_only, vectors=args.vectors)
        if folder is None:
            out = unique_folder("reports", f"{time.strftime('%Y%m%d-%H%M%S')}-report")
            folder = stack.enter_context(comparison_report.report_folder(out))
        written = comparison_report.write_report(built, folder, tables=not args.figures_only, figures=not args.tables_only)
    what = "its tables" if args.tables_only else "its figures" if args.figures_only else "the tables and figures beside it"
    print(f"xaibench: wrote {written} ({what})")
    return 0


def _train_builtin(args: argparse.Namespace) -> int:
    from xaibench.shapes_net import train_builtin

    check_seed(args.seed)
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
    from xaibench.explain_run import ExplainSpec, explain_images, model_classes

    spec = ExplainSpec(
        images=tuple(args.images), models=args.model, methods=args.methods, topk=args.topk, class_name=args.class_name,
        out=args.out, format=args.format, cmap=args.cmap, alpha=args.alpha, figsize=_figsize(args.figsize),
        dpi=args.dpi, weights=args.weights, target_layer=args.target_layer, mean=args.mean, std=args.std, class_names=args.class_names, seed=args.seed, device=args.device,
        max_image_pixels=args.max_image_pixels,
    )
    if args.list_classes:
        for index, name in enumerate(model_classes(spec)):
            print(f"{index}\t{name}")
        return 0
    done = explain_images(
        spec, on_figure=lambda path: print(f"xaibench: wrote {path}"), on_skip=lambda reason: _note(f"skipped {reason}"),
    )
    return 1 if done.skipped else 0


def _figsize(text: str | None) -> tuple[float, float] | None:
    """``--figsize W,H`` as two numbers (the library checks their range)."""
    if text is None:
        return None
    try:
        width, height = (float(v) for v in text.split(","))
    except ValueError:
        raise XaibenchError(f"--figsize must be W,H in inches, e.g. 12,2.6; got '{text}'") from None
    return width, height


def _video(args: argparse.Namespace) -> int:
    """``xaibench video``: every argument and both files checked before the model is loaded."""
    from xaibench.video_run import VideoSpec, explain_video_file

    stats = explain_video_file(VideoSpec(
        input=args.input, out=args.out, models=args.model, method=args.method, every=args.every,
        batch_size=args.batch_size, cmap=args.cmap, alpha=args.alpha, weights=args.weights,
        target_layer=args.target_layer, mean=args.mean, std=args.std, class_names=args.class_names, seed=args.seed, device=args.device, progress=True,
    ))
    print(f"xaibench: wrote {args.out} ({stats.frames} frames, {stats.frames_per_second:.1f} frames/s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
