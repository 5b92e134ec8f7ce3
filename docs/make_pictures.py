"""Make every picture of the README again from the current code, by the README's own commands:

- ``docs/report.png``: the top of the report page of the two built-in runs (``xaibench run`` twice,
  ``xaibench report``, then :mod:`screenshot` in headless Chromium);
- ``docs/class-gallery.jpg``: that report's class gallery of CAM (the CAM paper's Figure 3);
- ``docs/explain-top5.png``: ``xaibench explain docs/chelsea.jpg`` with CAM and Score-CAM (Figure 4);
- ``docs/video-frames.png``: four frames of the demo video explained by ``xaibench video``
  (:mod:`make_demo_video`, then :mod:`video_frames`; needs PyAV, the ``video`` extra).

The runs, the report and the videos go to a temporary folder (``--work DIR`` keeps them); only the
pictures are written into ``docs/``. Several minutes on two CPU cores (Score-CAM's top five classes
at 224 x 224 take most of it)::

    python3 docs/make_pictures.py
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

DOCS = Path(__file__).resolve().parent


def run(*argv: str | Path) -> None:
    """One command of the README, as a user types it (``xaibench`` is the installed script)."""
    command = [str(a) for a in argv]
    print("$", " ".join(command), flush=True)
    subprocess.run(command, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, help="keep the runs, the report and the videos in this folder")
    args = parser.parse_args()
    xaibench = shutil.which("xaibench") or sys.exit("install xaibench first: python3 -m pip install -e '.[test,video]'")
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        reports = work / "reports"
        shutil.rmtree(reports, ignore_errors=True)
        run(xaibench, "run", "--methods", "cam,gradcam,saliency", "--out", reports / "builtin-a")
        run(xaibench, "run", "--methods", "gradcampp,layercam,center,random", "--out", reports / "builtin-b")
        run(xaibench, "report", reports / "builtin-a", reports / "builtin-b", "--out", reports / "builtin-report",
            "--class-gallery", "cam")
        run(sys.executable, DOCS / "screenshot.py", reports / "builtin-report" / "report.html", DOCS / "report.png",
            "--width", "1000", "--height", "1250")
        shutil.copyfile(reports / "builtin-report" / "class_gallery-1-cam.jpg", DOCS / "class-gallery.jpg")
        run(xaibench, "explain", DOCS / "chelsea.jpg", "--model", "efficientnet_lite0", "--method", "cam,scorecam",
            "--topk", "5", "--out", DOCS / "explain-top5.png")
        run(sys.executable, DOCS / "make_demo_video.py", reports / "demo.mp4")
        run(xaibench, "video", reports / "demo.mp4", "--out", reports / "demo-cam.mp4", "--model", "efficientnet_lite0",
            "--method", "cam")
        run(sys.executable, DOCS / "video_frames.py", reports / "demo-cam.mp4", DOCS / "video-frames.png")


if __name__ == "__main__":
    main()
