"""Does ``xaibench video`` stream? Peak memory of :func:`xaibench.video.explain_video` on a short video
and on one ten times longer, of the same frame size.

Generates two videos (a moving shape over a noisy background, H.264) and explains each in a fresh
subprocess with the built-in network and CAM, as ``xaibench video`` runs (freed memory kept:
:mod:`xaibench.allocator`). Each child reports its peak resident set size
(``VmHWM`` from ``/proc/self/status``; ``ru_maxrss`` where there is no ``/proc``) just before
``explain_video`` runs (the imports and the model) and after it. A job that held every frame would
grow by about ``frames x width x height x 3`` bytes (printed as "all frames"); a streaming one grows
by the same amount for both videos, so the ratio of the peaks stays near 1.

    python benchmarks/bench_video_memory.py [--frames 60] [--factor 10] [--size 320x240] [--fps 25]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path


def peak_rss_mib() -> float:
    """This process's peak resident set size so far, in MiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, kB elsewhere


def make_video(path: Path, frames: int, width: int, height: int, fps: int) -> None:
    import av
    import numpy as np

    rng = np.random.default_rng(0)
    background = rng.integers(40, 200, (height, width, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:height, 0:width]
    radius = min(width, height) / 6
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "20", "preset": "veryfast"}
        for i in range(frames):
            image = background.copy()
            cx = radius + (width - 2 * radius) * (0.5 + 0.5 * math.sin(i / 15))
            cy = height / 2 + height / 4 * math.cos(i / 11)
            image[(xx - cx) ** 2 + (yy - cy) ** 2 <= radius**2] = (240, 240, 30)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode(None))


def child(source: str, destination: str, batch_size: int) -> None:
    """Explain one video, with freed memory kept as the ``xaibench`` command keeps it; print a JSON line
    with the peak RSS before and after, and the stats."""
    from xaibench.allocator import keep_freed_memory
    from xaibench.explainer import create_explainer
    from xaibench.models import load_model
    from xaibench.video import explain_video

    keep_freed_memory()
    model = load_model("builtin")
    method = create_explainer("cam", model)
    before = peak_rss_mib()
    stats = explain_video(source, destination, model, method, batch_size=batch_size)
    print(json.dumps({
        "before_mib": before, "peak_mib": peak_rss_mib(), "frames": stats.frames,
        "frames_per_second": stats.frames_per_second,
    }))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=60, help="frames of the short video (default: 60)")
    parser.add_argument("--factor", type=int, default=10, help="how many times longer the long video is (default: 10)")
    parser.add_argument("--size", default="320x240", help="frame size WxH (default: 320x240)")
    parser.add_argument("--fps", type=int, default=25)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--child", nargs=2, metavar=("SOURCE", "DESTINATION"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child, args.batch_size)
        return
    width, height = (int(v) for v in args.size.lower().split("x"))
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for frames in (args.frames, args.frames * args.factor):
            source = Path(folder) / f"in-{frames}.mp4"
            make_video(source, frames, width, height, args.fps)
            done = subprocess.run(
                [sys.executable, __file__, "--batch-size", str(args.batch_size), "--child", str(source),
                 str(Path(folder) / f"out-{frames}.mp4")],
                capture_output=True, text=True, check=True, env={**os.environ, "PYTHONWARNINGS": "ignore"},
            )
            result = json.loads(done.stdout.strip().splitlines()[-1])
            rows.append((frames, result))
    all_frames = [frames * width * height * 3 / 2**20 for frames, _ in rows]
    print(f"explain_video, builtin + CAM, {width}x{height}, batch size {args.batch_size}, peak RSS in MiB")
    print(f"| {'frames':>6} | {'before':>7} | {'peak':>7} | {'growth':>7} | {'all frames':>10} | {'frames/s':>8} |")
    print(f"|{'-' * 8}|{'-' * 9}|{'-' * 9}|{'-' * 9}|{'-' * 12}|{'-' * 10}|")
    for (frames, r), held in zip(rows, all_frames):
        print(f"| {frames:>6} | {r['before_mib']:>7.1f} | {r['peak_mib']:>7.1f} | {r['peak_mib'] - r['before_mib']:>7.1f} "
              f"| {held:>10.1f} | {r['frames_per_second']:>8.1f} |")
    (_, short), (_, long) = rows
    growth_short = short["peak_mib"] - short["before_mib"]
    growth_long = long["peak_mib"] - long["before_mib"]
    print(f"peak ratio long/short: {long['peak_mib'] / short['peak_mib']:.3f}; "
          f"growth ratio: {growth_long / growth_short if growth_short > 0 else float('nan'):.2f} "
          f"(video {args.factor}x longer)")


if __name__ == "__main__":
    main()
