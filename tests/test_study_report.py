"""A study as people run it, reported for a paper: two runs of the built-in benchmark and one on the
shared ImageNet photos, CAM in every run as the reference. ``xaibench report`` on the three writes the
page, the LaTeX and Markdown tables, every figure as PDF and SVG; the LaTeX compiles, and its numbers,
the Markdown's and the page's are summary.csv's, which are the runs' own (CAM once per data set)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from browser import open_page, overflowing
from conftest import SHARED_IMAGENET
from test_comparison_report import LATEX, assert_latex_says_summary, compile_latex
from xaibench.cli import main
from xaibench.metric import get_metric
from xaibench.report import format_value

pytestmark = pytest.mark.skipif(not SHARED_IMAGENET.is_dir(), reason=f"needs the shared photos in {SHARED_IMAGENET}")


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> tuple[list[Path], Path]:
    root = tmp_path_factory.mktemp("study")
    runs = [root / "shapes-a", root / "shapes-b", root / "photos"]
    assert main(["run", "--methods", "cam,gradcam", "--n", "24", "--no-report", "--out", str(runs[0])]) == 0
    assert main(["run", "--methods", "cam,saliency,random", "--n", "24", "--no-report", "--out", str(runs[1])]) == 0
    assert main(["run", "--model", "efficientnet_lite0", "--dataset", f"imagenet:{SHARED_IMAGENET}", "--methods",
                 "cam,saliency", "--n", "6", "--no-report", "--out", str(runs[2])]) == 0
    out = root / "report"
    assert main(["report", *map(str, runs), "--out", str(out)]) == 0
    return runs, out


def test_the_report_writes_the_page_latex_markdown_and_every_figure_as_pdf_and_svg(study) -> None:
    _, out = study
    names = {p.name for p in out.iterdir()}
    assert {"report.html", "tables.tex", "summary.md", "summary.csv", "pairwise.csv", "map_agreement.csv"} <= names
    rasters = [n for n in names if n.endswith((".png", ".jpg"))]
    assert {"metric_bars.png", "critical_difference-1.png", "gallery-1.jpg", "gallery-2.jpg"} <= set(rasters)
    for name in rasters:
        stem = name.rsplit(".", 1)[0]
        assert {f"{stem}.pdf", f"{stem}.svg"} <= names, name


def test_cam_is_reported_once_per_data_set_with_its_first_runs_numbers(study) -> None:
    runs, out = study
    summary = pd.read_csv(out / "summary.csv")
    assert list(dict.fromkeys(zip(summary.dataset, summary.model))) == [
        ("builtin", "builtin"), (f"imagenet:{SHARED_IMAGENET}", "efficientnet_lite0")]
    shapes = summary[summary.dataset == "builtin"]
    assert list(dict.fromkeys(shapes.method)) == ["cam", "gradcam", "saliency", "random"]
    for run, methods in ((runs[0], ["cam", "gradcam"]), (runs[1], ["cam", "saliency", "random"]), (runs[2], ["cam", "saliency"])):
        own = pd.read_csv(run / "summary.csv")
        for row in own[own.method.isin(methods)].itertuples():
            kept = summary[(summary.model == row.model) & (summary.method == row.method) & (summary.metric == row.metric)]
            assert len(kept) == 1 and kept.value.iloc[0] == pytest.approx(row.value, abs=1e-9, nan_ok=True), (run.name, row)
    page = (out / "report.html").read_text()
    assert "cam (builtin on builtin) is in shapes-a and shapes-b with the same configuration and images (the same " \
           "numbers); the report shows shapes-a&#x27;s copy" in page
    assert "The methods come from 2 runs (shapes-a, shapes-b; column run)" in page


def test_the_latex_and_markdown_tables_say_what_summary_csv_says(study) -> None:
    _, out = study
    assert assert_latex_says_summary(out) >= (4 + 2) * 10  # every localization metric of each group's methods at least
    markdown = (out / "summary.md").read_text()
    for row in pd.read_csv(out / "summary.csv").itertuples():
        assert format_value(row.value, get_metric(row.metric).unit, row.ci_low, row.ci_high) in markdown, row


@pytest.mark.skipif(LATEX is None, reason="pdflatex is not installed (Debian: texlive-latex-base, texlive-latex-recommended)")
def test_the_latex_tables_compile(study, tmp_path) -> None:
    assert "Output written on paper.pdf" in compile_latex(study[1], tmp_path)


def test_the_page_of_the_study_fits_and_loads_nothing(browser, study) -> None:
    for window in ((1400, 900), (400, 844)):
        page = open_page(browser, study[1] / "report.html", window=window)
        assert page.console_errors == [] and page.requests == [] and page.broken_images == []
        assert overflowing(browser) == [], window
    assert len(page.tables) and len(browser.execute_script("return document.querySelectorAll('section.browser')")) == 2
