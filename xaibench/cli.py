"""The ``xaibench`` command: parses arguments and calls the library; it holds no logic of its own."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from xaibench import data, explainer, harness, models, report, viz
from xaibench.errors import XaibenchError

DEFAULT_METHODS = "cam,gradcam,saliency"
FIGURE_ROWS = 6


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xaibench", description="Benchmark how well explanation methods localize objects."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="explain and score a data set with several methods")
    run.add_argument("--methods", default=DEFAULT_METHODS, help=f"comma-separated names (default: {DEFAULT_METHODS})")
    run.add_argument("--model", default="builtin", help="builtin, efficientnet_lite0, or a torchvision name (default: builtin)")
    run.add_argument("--weights", default="default", help="a state-dict file for the model (default: its pretrained weights)")
    run.add_argument("--target-layer", default=None, help="dotted name of the feature layer (default: found automatically)")
    run.add_argument("--dataset", default="builtin", help="KIND or KIND:PATH, e.g. builtin, builtin:distractor (default: builtin)")
    run.add_argument("--image-size", type=int, default=None, help="side the images are resized to, no crop (default: the model's, 224 for ImageNet models)")
    run.add_argument("--n", type=int, default=None, help="number of images (default: all; 500 for builtin)")
    run.add_argument("--batch-size", type=int, default=32, help="images per batch (default: 32)")
    run.add_argument("--target", choices=harness.TARGETS, default="label", help="class to explain (default: label)")
    run.add_argument("--out", default=None, help="output folder (default: reports/<time>-<model>-<dataset>)")
    run.add_argument("--seed", type=int, default=0, help="seed for generated data and bootstrap (default: 0)")
    run.add_argument("--device", default="cpu", help="torch device (default: cpu)")

    commands.add_parser("list", help="list the registered explanation methods")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        return _list() if args.command == "list" else _run(args)
    except (XaibenchError, FileNotFoundError, NotADirectoryError) as error:
        print(f"xaibench: error: {error}", file=sys.stderr)
        return 2


def _list() -> int:
    infos = explainer.describe_explainers()
    width = max((len(i.name) for i in infos), default=4)
    for info in infos:
        print(f"{info.name:<{width}}  {info.summary}\n{'':<{width}}  from {info.origin}")
    return 0


def _run(args: argparse.Namespace) -> int:
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    for name in methods:  # fail on a typo before loading anything heavy
        explainer.get_explainer(name)
    torch.manual_seed(args.seed)
    weights = None if args.weights == "none" else args.weights
    model = models.load_model(args.model, weights=weights, target_layer=args.target_layer, device=args.device)
    explainers = [explainer.create_explainer(name, model) for name in methods]  # a method the model cannot serve fails here
    image_size = (args.image_size, args.image_size) if args.image_size else model.input_size
    dataset = data.load_dataset(
        args.dataset, image_size=image_size, size=args.n, seed=args.seed, class_names=model.class_names
    )
    out = Path(args.out) if args.out else _default_out(args.model, args.dataset)
    config = {
        "model": model.name,
        "weights": args.weights,
        "target_layer": model.target_layer_name,
        "classifier": model.classifier_name,
        "dataset": args.dataset,
        "n": min(args.n, len(dataset)) if args.n is not None else len(dataset),
        "image_size": list(image_size),
        "image_resize": "bilinear to image_size, no crop; boxes scaled and truncated to int (wsolevaluation)",
        "map_postprocessing": "bilinear upsampling to image_size (align_corners=False), per-map min-max to [0, 1]",
        "maxboxacc_thresholds": "0.00:0.99:0.01",
        "methods": methods,
        "batch_size": args.batch_size,
        "target": args.target,
        "tau": harness.CAM_TAU,
        "tolerance": harness.POINTING_TOLERANCE,
        "seed": args.seed,
        "device": args.device,
        "torch": torch.__version__,
    }
    print(f"xaibench: {', '.join(methods)} on {len(dataset)} images of {args.dataset} with {model.name} -> {out}")
    try:
        per_image = harness.evaluate(
            model, dataset, explainers, batch_size=args.batch_size, n=args.n, target=args.target,
            out=out, progress=True,
        )
    except KeyboardInterrupt:
        print(f"xaibench: interrupted; the rows computed so far are in {out / 'per_image.csv'}", file=sys.stderr)
        return 130
    config["skipped"] = per_image.attrs.get("skipped", [])
    summary = report.summarize(per_image, seed=args.seed)
    report.write_summary(out, summary, config)
    report.per_image_table(per_image).to_csv(out / "per_image.csv", index=False)
    report.box_accuracy_curves(per_image).to_csv(out / "box_accuracy_curves.csv", index=False)
    samples = harness.first_samples(dataset, FIGURE_ROWS)
    maps = harness.explain_samples(model, samples, explainers, target=args.target)
    viz.overlay_grid(samples, maps, out / "overlays.png", class_names=model.class_names)
    print(report.to_markdown(report.summary_table(summary)))
    if config["skipped"]:
        print(f"xaibench: skipped {len(config['skipped'])} unreadable images (listed in config.json)")
    print(f"xaibench: wrote {out}")
    return 0


def _default_out(model: str, dataset: str) -> Path:
    kind = dataset.split(":")[0]
    return Path("reports") / f"{time.strftime('%Y%m%d-%H%M%S')}-{model}-{kind}"


if __name__ == "__main__":
    raise SystemExit(main())
