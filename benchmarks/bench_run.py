"""Cost of a whole benchmark run against the network work it cannot avoid.

The run: ``xaibench run --methods cam,gradcam,saliency,center,random --no-report`` with the default
(localization) metrics, called as the command calls it (``xaibench.run(RunSpec(...))``): loading the
model, recording the configuration, reading and decoding the images, the classification pass, every
method, every metric, the thumbnails, the results store's parts (fsynced batch by batch) and the summary
with its bootstrap. The overlay figures and report.html are left out: they cost the same whatever the
methods' speed. Two setups, batch 32:

- ``imagenet``: ``efficientnet_lite0`` on the 300 shared ImageNet photos (``--data``), 224 x 224;
- ``builtin``: the built-in network on ``--builtin-n`` images of the built-in data set.

The floor, on the same batches, is the network work no implementation can avoid: one classification
pass per batch (which also holds CAM's feature maps: CAM needs nothing else), Grad-CAM's forward pass
and its backward pass to the target layer, saliency's forward pass and its backward pass to the pixels;
the baselines (center, random) run no network. ``run / floor`` is what the run costs beyond that
(targets: 1.3 on ``imagenet``, 1.5 on ``builtin``).

Each repetition runs in a fresh process (``torch.set_num_threads(--threads)``); the script prints the
medians of the run, the floor and the per-repetition ratios, and the run's CPU seconds (its process and
the DataLoader workers it started), a figure that other jobs on a shared machine disturb far less than
wall-clock seconds. With ``--baseline TREE`` (the source folder of another version, e.g. ``git worktree
add ../base v0.4.0``), each repetition runs both versions, in alternating order, and the script reports
the median of ``baseline run / this run``.

    python benchmarks/bench_run.py [--setups imagenet,builtin] [--repeats 3] [--baseline ../base]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
DEFAULT_DATA = HERE.parents[2] / "shared" / "data" / "imagenet-val-300"
METHODS = ["cam", "gradcam", "saliency", "center", "random"]
TARGETS = {"imagenet": 1.3, "builtin": 1.5}


def _floor_seconds(model, batches) -> dict[str, float]:
    """Seconds of the network work the run cannot avoid on ``batches`` (see the module's docstring)."""
    import torch

    from xaibench.hooks import capture
    from xaibench.models import eval_mode

    def classification(images, targets):
        with torch.no_grad(), capture(model.target_layer, model.target_layer_name):
            model(images)

    def gradcam(images, targets):  # nothing before the target layer records a graph
        with torch.no_grad(), capture(model.target_layer, model.target_layer_name, graph=True) as features:
            logits = model(images)
        torch.autograd.grad(logits.gather(1, targets[:, None]).sum(), features.output)

    def saliency(images, targets):
        pixels = images.detach().requires_grad_(True)
        logits = model(pixels)
        torch.autograd.grad(logits.gather(1, targets[:, None]).sum(), pixels)

    floors = {"classification": classification, "gradcam": gradcam, "saliency": saliency}
    seconds = dict.fromkeys(floors, 0.0)
    with eval_mode(model.network):
        for images, targets in batches:
            for name, floor in floors.items():
                start = time.perf_counter()
                floor(images, targets)
                seconds[name] += time.perf_counter() - start
    return seconds


def _cpu_seconds() -> float:
    """CPU seconds of this process and of its finished children (the DataLoader workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def child(setup: str, n: int, data: str, out: str, batch_size: int) -> dict:
    """One repetition: the run, then its floor on the same batches."""
    import torch

    import xaibench
    from xaibench.allocator import keep_freed_memory
    from xaibench.data import collate
    from xaibench.harness import read_timings

    keep_freed_memory()  # as the xaibench command runs: the run and its floor alike
    dataset_name = "builtin" if setup == "builtin" else f"imagenet:{data}"
    model_name = "builtin" if setup == "builtin" else "efficientnet_lite0"
    spec = xaibench.RunSpec(models=model_name, dataset=dataset_name, methods=METHODS, n=n, batch_size=batch_size,
                            out=out, report=False)
    start, cpu = time.perf_counter(), _cpu_seconds()
    xaibench.run(spec)
    run_s, cpu_s = time.perf_counter() - start, _cpu_seconds() - cpu
    timings = read_timings(out)

    model = xaibench.load_model(model_name)
    dataset = xaibench.load_dataset(dataset_name, image_size=model.input_size, class_names=model.class_names,
                                    **({"size": n} if setup == "builtin" else {}))
    n = min(n, len(dataset))
    batches = []
    for lo in range(0, n, batch_size):
        batch = collate([dataset[i] for i in range(lo, min(lo + batch_size, n))])
        batches.append((batch.images, batch.labels))
    return {"run_s": run_s, "cpu_s": cpu_s, "floor": _floor_seconds(model, batches), "n": n,
            "methods_s": float(timings.seconds.sum()), "metrics_s": float(timings["metric_seconds"].sum()) if "metric_seconds" in timings else float("nan"),
            "threads": torch.get_num_threads()}


def _run_child(tree: Path | None, setup: str, args: argparse.Namespace, out: Path) -> dict:
    env = dict(os.environ)
    if tree is not None:  # the other version's packages first on the path (xaibench_plugins: its plugins/)
        links = out.parent / f"{out.name}-packages"
        links.mkdir()
        (links / "xaibench").symlink_to(tree / "xaibench")
        (links / "xaibench_plugins").symlink_to(tree / "plugins")
        env["PYTHONPATH"] = os.pathsep.join([str(links), env.get("PYTHONPATH", "")])
    n = args.builtin_n if setup == "builtin" else 300
    command = [sys.executable, str(HERE), "--child", setup, "--n", str(n), "--data", args.data, "--out", str(out),
               "--threads", str(args.threads), "--batch-size", str(args.batch_size)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=tempfile.gettempdir())
    if done.returncode:
        sys.exit(f"the run of {setup} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setups", default="imagenet,builtin")
    parser.add_argument("--builtin-n", type=int, default=500, help="images of the built-in set (default: 500, all)")
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--baseline", type=Path, default=None, help="source folder of the version to compare with")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        import torch

        torch.set_num_threads(args.threads)
        print(json.dumps(child(args.child, args.n, args.data, args.out, args.batch_size)))
        return

    trees = {"this": None} if args.baseline is None else {"baseline": args.baseline.resolve(), "this": None}
    for setup in args.setups.split(","):
        results: dict[str, list[dict]] = {name: [] for name in trees}
        for repeat in range(args.repeats):
            order = list(trees) if repeat % 2 == 0 else list(reversed(trees))
            with tempfile.TemporaryDirectory() as scratch:
                for name in order:
                    results[name].append(_run_child(trees[name], setup, args, Path(scratch) / name))
        first = results["this"][0]
        print(f"\n{setup}: {first['n']} images, batch {args.batch_size}, methods {','.join(METHODS)}, default metrics, "
              f"{first['threads']} threads, median of {args.repeats}")
        for name, runs in results.items():
            def median(key, runs=runs):
                return statistics.median(key(r) for r in runs)

            floors = ", ".join(f"{k} {median(lambda r, k=k: r['floor'][k]):.1f}" for k in runs[0]["floor"])
            print(f"  {name}: run {median(lambda r: r['run_s']):.1f} s (CPU {median(lambda r: r['cpu_s']):.1f} s; "
                  f"in the methods {median(lambda r: r['methods_s']):.1f} s, in the metrics "
                  f"{median(lambda r: r['metrics_s']):.1f} s)")
            print(f"  {name}: floor {median(lambda r: sum(r['floor'].values())):.1f} s ({floors})")
            ratios = [r["run_s"] / sum(r["floor"].values()) for r in runs]
            print(f"  {name}: run / floor {statistics.median(ratios):.2f} (target <= {TARGETS[setup]}; "
                  f"per repetition: {', '.join(f'{ratio:.2f}' for ratio in ratios)})")
        if len(trees) == 2:
            ratios = [b["run_s"] / t["run_s"] for b, t in zip(results["baseline"], results["this"])]
            print(f"  baseline / this, wall seconds: {statistics.median(ratios):.2f} "
                  f"(per repetition: {', '.join(f'{r:.2f}' for r in ratios)})")


if __name__ == "__main__":
    main()
