"""A short demo video for ``xaibench video``: a camera panning from a coffee cup to a cat.

The two photos are scikit-image's ``coffee`` and ``chelsea`` (both CC0, shipped with scikit-image),
set side by side at the same height; a square window slides from the left edge to the right one, so
the network's top-1 class changes from the cup to the cat half-way through. H.264 through PyAV.

    python3 docs/make_demo_video.py demo.mp4 [--frames 96] [--side 288] [--fps 24]
"""

from __future__ import annotations

import argparse

import av
import numpy as np
from PIL import Image
from skimage import data


def canvas(height: int) -> np.ndarray:
    """coffee | chelsea, each resized to ``height`` rows (aspect kept), as (height, W, 3) uint8."""
    parts = []
    for photo in (data.coffee(), data.chelsea()):
        width = round(photo.shape[1] * height / photo.shape[0])
        parts.append(np.asarray(Image.fromarray(photo).resize((width, height), Image.BILINEAR)))
    return np.concatenate(parts, axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="the video to write, e.g. demo.mp4")
    parser.add_argument("--frames", type=int, default=96)
    parser.add_argument("--side", type=int, default=288, help="frame width and height in pixels (even)")
    parser.add_argument("--fps", type=int, default=24)
    args = parser.parse_args()
    wide = canvas(args.side)
    last = wide.shape[1] - args.side
    with av.open(args.out, "w") as container:
        stream = container.add_stream("libx264", rate=args.fps)
        stream.width = stream.height = args.side
        stream.pix_fmt = "yuv420p"
        for k in range(args.frames):
            x = round(last * k / (args.frames - 1))
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(wide[:, x : x + args.side]), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


if __name__ == "__main__":
    main()
