"""A strip of evenly spaced frames of a video, for the README: ``python3 docs/video_frames.py IN.mp4 OUT.png [--count 4]``."""

from __future__ import annotations

import argparse

import av
import numpy as np
from matplotlib.figure import Figure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("video")
    parser.add_argument("out")
    parser.add_argument("--count", type=int, default=4)
    args = parser.parse_args()
    with av.open(args.video) as container:
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    picks = np.linspace(0, len(frames) - 1, args.count).round().astype(int)
    fig = Figure(figsize=(2.6 * args.count, 2.9), layout="constrained")
    for ax, k in zip(fig.subplots(1, args.count), picks):
        ax.imshow(frames[k])
        ax.set_title(f"frame {k + 1} of {len(frames)}", fontsize=9)
        ax.set_axis_off()
    fig.savefig(args.out, dpi=100)


if __name__ == "__main__":
    main()
