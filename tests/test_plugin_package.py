"""The README's plugin example, installed as a real package: listed, contract-checked and run by the CLI.

The package's files and its test are read out of the README's "Writing a plugin" section (each code
block there starts with a comment naming its file), so the documented example is the tested one.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import xaibench

ROOT = Path(__file__).resolve().parents[1]


def readme_files(section_title: str = "Writing a plugin") -> dict[str, str]:
    """The code blocks of a README section, by the file named in their first line."""
    text = (ROOT / "README.md").read_text()
    section = text.split(f"## {section_title}\n", 1)[1].split("\n## ", 1)[0]
    files = {}
    for block in re.findall(r"```\w+\n(.*?)```", section, flags=re.DOTALL):
        first = block.splitlines()[0]
        if first.startswith("# "):
            files[first[2:].strip()] = block
    return files


def install_and_run(tmp_path: Path, name: str, files: dict[str, str], names: list[str], script: str) -> None:
    """Install the package ``name`` made of ``files[names]`` into a folder of its own, then run
    ``script`` in a fresh interpreter that sees it and this worktree's xaibench (not another copy)."""
    package = tmp_path / name
    package.mkdir()
    for file in names:
        (package / file).write_text(files[file])
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
         "--disable-pip-version-check", "--target", str(site), str(package)],
        check=True, capture_output=True,
    )
    path = tmp_path / "check.py"
    path.write_text(script)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)])}
    result = subprocess.run([sys.executable, str(path)], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


# Run in a fresh interpreter that sees the installed package: (a) `xaibench list`, (b) the contract
# on a tiny network and, through the README's own test, on the built-in network, (c) `xaibench run`.
SCRIPT = """
import contextlib, io, re, sys
import torch
from torch import nn
import xaibench
from xaibench import cli
from xaibench.testing import check_explainer

listing = io.StringIO()
with contextlib.redirect_stdout(listing):
    assert cli.main(["list"]) == 0
listing = listing.getvalue()
assert re.search(r"^gradxact +Gradient x activation at the target layer", listing, re.M), listing
assert "from xaibench_gradxact:GradXAct (xaibench-gradxact 0.1.0)" in listing, listing

torch.manual_seed(0)
tiny = nn.Sequential(
    nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 6, 3, padding=1, stride=2), nn.ReLU(),
    nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 5),
)
model = xaibench.wrap_model(tiny, input_size=16)
images = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(1))
with torch.no_grad():
    targets = model(images).argmax(1)
explanation = check_explainer(xaibench.create_explainer("gradxact", model), images, targets)
assert not explanation.constant.all(), explanation.constant

README_TEST = {readme_test!r}
namespace = {{}}
exec(compile(README_TEST, "README.md: tests/test_gradxact.py", "exec"), namespace)
namespace["test_gradxact_keeps_the_contract"]()  # the built-in network; allow_constant=False

assert cli.main(["run", "--methods", "gradxact", "--n", "8", "--batch-size", "4", "--no-report", "--out", {out!r}]) == 0
"""


def test_the_readme_plugin_installs_lists_keeps_the_contract_and_runs(tmp_path) -> None:
    files = readme_files()
    assert {"xaibench_gradxact.py", "pyproject.toml", "tests/test_gradxact.py"} <= set(files), sorted(files)
    out = tmp_path / "run"
    script = textwrap.dedent(SCRIPT).format(readme_test=files["tests/test_gradxact.py"], out=str(out))
    install_and_run(tmp_path, "xaibench-gradxact", files, ["pyproject.toml", "xaibench_gradxact.py"], script)
    rows = pd.read_parquet(out / "per_image")
    assert len(rows) == 8 and set(rows["method"]) == {"gradxact"}


METRIC_SCRIPT = """
import contextlib, io, re
from xaibench import cli

listing = io.StringIO()
with contextlib.redirect_stdout(listing):
    assert cli.main(["list", "--metrics"]) == 0
listing = listing.getvalue()
assert re.search(r"^peak_in_box +Peak in box: the map's maximum lies inside a ground-truth box", listing, re.M), listing
assert "from xaibench_peakbox:PeakInBox (xaibench-peakbox 0.1.0)" in listing, listing
assert cli.main(["run", "--methods", "cam,center", "--metrics", "default,peak_in_box", "--n", "8",
                 "--batch-size", "4", "--no-report", "--out", {out!r}]) == 0
"""


def test_the_readme_metric_installs_lists_and_runs(tmp_path) -> None:
    files = readme_files("Writing a metric")
    assert {"xaibench_peakbox.py", "pyproject.toml"} <= set(files), sorted(files)
    out = tmp_path / "run"
    script = textwrap.dedent(METRIC_SCRIPT).format(out=str(out))
    install_and_run(tmp_path, "xaibench-peakbox", files, ["pyproject.toml", "xaibench_peakbox.py"], script)
    summary = pd.read_csv(out / "summary.csv").set_index(["method", "metric"])
    rows = pd.read_parquet(out / "per_image")
    # Known answer, computed here from the same maps without the plugin: is each map's first maximum
    # inside one of its image's boxes (inclusive corners)?
    model = xaibench.load_model("builtin")
    samples = xaibench.harness.first_samples(xaibench.load_dataset("builtin", image_size=model.input_size, size=8, seed=0), 8)
    maps = xaibench.harness.explain_samples(model, samples, ["cam", "center"])
    for method in ("cam", "center"):
        expected = []
        for saliency, sample in zip(maps[method], samples):
            y, x = np.unravel_index(np.argmax(saliency), saliency.shape)
            expected.append(any(x0 <= x <= x1 and y0 <= y <= y1 for x0, y0, x1, y1 in sample.boxes.tolist()))
        hits = rows[rows.method == method].sort_values("index").peak_in_box
        assert hits.tolist() == [float(e) for e in expected]
        assert summary.loc[(method, "peak_in_box"), "value"] == pytest.approx(100 * np.mean(expected))
    assert summary.loc[("cam", "top1_cls"), "n"] == 8
