"""The GPU path, checked in one command: every method's maps and a run's summary on a device against the CPU's.

On ``--photos`` shared ImageNet photos with EfficientNet-Lite0 (its real weights), every method (or
``--methods``) explains the photos' labels on the CPU and on ``--device``; the table gives, per method,
the smallest Pearson r between the two maps of a photo (goal >= 0.999), images per second on the device (timed around the call, the device
synchronised), the copies a pass of the network runs on by default on the device (the method's
``batch_size``: on a GPU, what :data:`xaibench.pass_rows.GPU_MEMORY_SHARE` of its free memory holds) and the
device's peak memory in the call (CUDA only). Then a run of ``--run-photos``
photos with ``--run-methods`` on each device, and the largest difference between their summaries' values
(goal: within 0.5 point). Then mixed precision on the device (``--precision bf16``, or ``--half``): each
method's maps against fp32's (a method that refuses bf16 says why), and a run of ``--run-photos`` photos
with ``--half-run-methods`` in bf16 against fp32 (goal: within 0.5 point). The exit status is 1 when a goal
is missed: a method's maps, the device's summary, or (at the GPU size, not the CPU's few photos, where
one photo is 25 points) the bf16 summary.

One call, about 8 minutes at most on one GPU with the defaults; ``--device cpu`` runs the same code on
the CPU at a small size (1 photo at 96 x 96 for the maps, 4 for the run, a few cheap methods: seconds;
the test suite runs it, so the script keeps working where there is no GPU).

    python3 benchmarks/gpu_check.py [--device cuda] [--data ../shared/data/imagenet-val-300] [--out gpu_check.md]
    python3 benchmarks/gpu_check.py --device cpu
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import xaibench
from xaibench.precision import FULL, PRECISIONS, autocast

HERE = Path(__file__).resolve()
DEFAULT_DATA = HERE.parents[2] / "shared" / "data" / "imagenet-val-300"
RUN_METHODS = "cam,gradcam,saliency,center,random"
#: The run in reduced precision: saliency refuses it (a gradient with respect to the pixels).
HALF_RUN_METHODS = "cam,gradcam,gradcampp,center,random"
#: The goals: maps that agree, summaries within half a point.
MIN_PEARSON, MAX_SUMMARY_DIFFERENCE = 0.999, 0.5
#: The defaults on a GPU and, on the CPU, what it checks quickly (cheap methods, few and small photos).
SIZES = {
    "gpu": {"photos": 8, "run_photos": 300, "image_size": None, "methods": "all"},
    "cpu": {"photos": 1, "run_photos": 4, "image_size": 96, "methods": "cam,gradcam,gradcampp,saliency,center,random"},
}


#: The options in which a method keeps how many copies a pass of the network runs on.
BATCH_OPTIONS = ("batch_size", "internal_batch_size")


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA runs asynchronously): a clock read after it is true."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 1.0 if np.array_equal(a, b) else float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def check_maps(args: argparse.Namespace, device: torch.device) -> list[dict]:
    """Per method: the maps on the CPU and on ``device``, compared photo by photo, and the device's speed."""
    cpu_model = xaibench.load_model(args.model)
    here_model = xaibench.load_model(args.model, device=str(device))
    size = args.image_size or cpu_model.input_size[0]
    data = xaibench.load_dataset(f"imagenet:{args.data}", image_size=(size, size), class_names=cpu_model.class_names)
    samples = [data[i] for i in range(args.photos)]
    images = torch.stack([s.image for s in samples])
    targets = torch.tensor([s.label for s in samples])
    names = xaibench.available_explainers() if args.methods == "all" else args.methods.split(",")
    rows = []
    for name in names:
        row: dict = {"method": name}
        try:
            on_cpu = xaibench.create_explainer(name, cpu_model)(images, targets).numpy()
            explainer = xaibench.create_explainer(name, here_model)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            synchronize(device)
            start = time.perf_counter()
            on_device = explainer(images.to(device), targets.to(device))
            synchronize(device)
            seconds = time.perf_counter() - start
            on_device = on_device.float().cpu().numpy()
        except xaibench.XaibenchError as error:  # a method this model cannot serve
            row["note"] = " ".join(str(error).split())[:120]
            rows.append(row)
            continue
        row["batch"] = next((getattr(explainer, k) for k in BATCH_OPTIONS if hasattr(explainer, k)), None)
        row["pearson_min"] = min(pearson(a, b) for a, b in zip(on_cpu, on_device))
        row["images_per_s"] = len(images) / seconds
        if device.type == "cuda":
            row["peak_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
        if not row["pearson_min"] >= MIN_PEARSON:
            row["note"] = "differs"
        rows.append(row)
        print(f"{name}: r >= {row['pearson_min']:.6f}, {row['images_per_s']:.2f} img/s", flush=True)
    return rows


def check_half_maps(args: argparse.Namespace, device: torch.device) -> list[dict]:
    """Per method: its maps on ``device`` in ``args.half`` (autocast) against fp32's, photo by photo."""
    model = xaibench.load_model(args.model, device=str(device))
    size = args.image_size or model.input_size[0]
    data = xaibench.load_dataset(f"imagenet:{args.data}", image_size=(size, size), class_names=model.class_names)
    images = torch.stack([data[i].image for i in range(args.photos)]).to(device)
    targets = torch.tensor([data[i].label for i in range(args.photos)]).to(device)
    names = xaibench.available_explainers() if args.methods == "all" else args.methods.split(",")
    rows = []
    for name in names:
        row: dict = {"method": name}
        try:
            explainer = xaibench.create_explainer(name, model)
            if explainer.full_precision_only:
                row["note"] = f"refuses {args.half}: {explainer.full_precision_only}"
                rows.append(row)
                continue
            full = explainer(images, targets).cpu().numpy()
            synchronize(device)
            start = time.perf_counter()
            with autocast(device, args.half):
                half = explainer(images, targets)
            synchronize(device)
            seconds = time.perf_counter() - start
        except xaibench.XaibenchError as error:  # a method this model cannot serve
            row["note"] = " ".join(str(error).split())[:120]
            rows.append(row)
            continue
        row["pearson_min"] = min(pearson(a, b) for a, b in zip(full, half.cpu().numpy()))
        row["images_per_s"] = len(images) / seconds
        rows.append(row)
        print(f"{name} in {args.half}: r >= {row['pearson_min']:.6f}, {row['images_per_s']:.2f} img/s", flush=True)
    return rows


def summary_difference(args: argparse.Namespace, methods: str, runs: list[dict]) -> float:
    """The largest |difference| between the values of the summaries of two runs of ``methods`` on
    ``args.run_photos`` photos, with the :class:`~xaibench.RunSpec` fields of ``runs`` (device, precision)."""
    summaries = []
    with tempfile.TemporaryDirectory() as tmp:
        for k, fields in enumerate(runs):
            spec = xaibench.RunSpec(
                models=args.model, dataset=f"imagenet:{args.data}", methods=methods, n=args.run_photos,
                image_size=args.image_size, out=Path(tmp) / f"run-{k}", report=False, progress=False, **fields,
            )
            summaries.append(xaibench.run(spec).summary.set_index(["model", "method", "metric"])["value"])
    first, second = summaries
    return float((first - second.reindex(first.index)).abs().max())


def _ok(difference: float) -> bool:
    return not math.isnan(difference) and difference <= MAX_SUMMARY_DIFFERENCE


def _within(difference: float) -> str:
    return f"{difference:.4f} points ({'within' if _ok(difference) else 'NOT within'} {MAX_SUMMARY_DIFFERENCE})"


def _rows(rows: list[dict]) -> list[str]:
    lines = ["| method | Pearson r, min over photos | images / s | copies a pass | peak memory (MiB) | note |",
             "|---|---|---|---|---|---|"]
    for row in rows:
        r = row.get("pearson_min")
        lines.append(
            f"| {row['method']} | {'' if r is None else f'{r:.6f}'} | "
            f"{'' if 'images_per_s' not in row else format(row['images_per_s'], '.2f')} | "
            f"{'' if row.get('batch') is None else row['batch']} | "
            f"{'' if 'peak_mib' not in row else format(row['peak_mib'], '.0f')} | {row.get('note', '')} |"
        )
    return lines


def table(rows: list[dict], run_difference: float, half_rows: list[dict], half_difference: float,
          args: argparse.Namespace, device: torch.device) -> str:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    photos = f"{args.photos} photo{'s' if args.photos != 1 else ''}"
    lines = [f"### {args.model} on {name}: {photos} for the maps, {args.run_photos} for the run", "", *_rows(rows)]
    lines += ["", f"Summary of `{args.run_methods}` on {args.run_photos} photos: largest difference from the CPU's "
              f"{_within(run_difference)}.",
              "", f"#### {args.half} against fp32 on {name}", "", *_rows(half_rows),
              "", f"Summary of `{args.half_run_methods}` on {args.run_photos} photos in {args.half}: largest difference "
              f"from fp32's {_within(half_difference)}."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--methods", default=None, help="methods whose maps are compared (default: all; on the CPU, a few)")
    parser.add_argument("--run-methods", default=RUN_METHODS)
    parser.add_argument("--half", default="bf16", choices=[p for p in PRECISIONS if p != FULL],
                        help="the reduced precision checked (default: bf16)")
    parser.add_argument("--half-run-methods", default=HALF_RUN_METHODS)
    parser.add_argument("--photos", type=int, default=None, help="photos for the maps (default: 8; on the CPU, 1)")
    parser.add_argument("--run-photos", type=int, default=None, help="photos for the run (default: 300; on the CPU, 4)")
    parser.add_argument("--image-size", type=int, default=None, help="side of the photos (default: the model's; on the CPU, 96)")
    parser.add_argument("--out", type=Path, default=None, help="also write the table (Markdown) here")
    args = parser.parse_args(argv)
    defaults = SIZES["cpu" if torch.device(args.device).type == "cpu" else "gpu"]
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    torch.manual_seed(0)
    device = torch.device(args.device)
    rows = check_maps(args, device)
    run_difference = summary_difference(args, args.run_methods, [{"device": "cpu"}, {"device": str(device)}])
    half_rows = check_half_maps(args, device)
    half_difference = summary_difference(args, args.half_run_methods, [
        {"device": str(device)}, {"device": str(device), "precision": args.half}])
    text = table(rows, run_difference, half_rows, half_difference, args, device)
    print("\n" + text)
    if args.out is not None:
        args.out.write_text(text + "\n")
    failed = [r["method"] for r in rows if r.get("note") == "differs"]
    return 1 if failed or not _ok(run_difference) or (device.type != "cpu" and not _ok(half_difference)) else 0


if __name__ == "__main__":
    raise SystemExit(main())
