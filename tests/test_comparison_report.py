"""``xaibench report``: comparable runs combined, incomparable ones refused by field, the tables' numbers,
the paired tests, the galleries from the runs' thumbnails, and the HTML page in a real browser."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import tempfile
import xml.etree.ElementTree as ElementTree
from math import comb
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import xaibench

from browser import fits_phone_width, open_page
from xaibench import comparison, comparison_report, significance
from xaibench.cli import main
from xaibench.metric import available_metrics, get_metric
from xaibench.report import DECIMALS, format_value
from xaibench.thumbnails import THUMBNAIL_SIDE, decode_jpeg

N = 40


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, Path]:
    """Two runs of the built-in benchmark on the same images, with other methods."""
    root = tmp_path_factory.mktemp("runs")
    assert main(["run", "--methods", "cam,gradcam", "--n", str(N), "--out", str(root / "a")]) == 0
    assert main(["run", "--methods", "saliency,random", "--n", str(N), "--no-report", "--out", str(root / "b")]) == 0  # no test looks at b's page
    return root / "a", root / "b"


@pytest.fixture(scope="module")
def report_folder(runs, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report") / "report"
    assert main(["report", str(runs[0]), str(runs[1]), "--out", str(out)]) == 0
    return out


def test_the_runs_keep_thumbnails_of_every_image_and_map(runs):
    run = comparison.load_run(runs[0])
    assert len(run.images) == N and sorted(run.images["index"]) == list(range(N))
    assert len(run.maps) == 2 * N
    assert "jpeg" not in run.images and "map" not in run.maps  # the report reads the pictures it shows
    both = comparison.combine([run])
    keys = pd.DataFrame({"index": range(N)})
    pictures = comparison.thumbnails_of(both, run.dataset, "builtin", "images", keys)
    image = decode_jpeg(pictures.jpeg.iloc[0])
    assert image.shape == (64, 64, 3) and 64 <= THUMBNAIL_SIDE  # the built-in images are small: kept at size
    assert set(run.images.class_name) <= set(__import__("xaibench.shapes_net", fromlist=["x"]).SHAPE_CLASSES)
    maps = comparison.thumbnails_of(both, run.dataset, "builtin", "maps", run.maps[["index", "method"]])
    assert len(maps) == 2 * N and all(m.shape == (64, 64) and m.dtype == np.uint8 for m in maps["map"])
    chosen = comparison.thumbnails_of(both, run.dataset, "builtin", "maps", pd.DataFrame({"index": [3], "method": ["cam"]}))
    assert chosen[["index", "method"]].values.tolist() == [[3, "cam"]]


def test_the_report_folder_holds_every_file(report_folder):
    names = {p.name for p in report_folder.iterdir()}
    assert {"report.html", "summary.csv", "summary.md", "pairwise.csv", "per_class.csv", "box_accuracy_curves.csv",
            "metric_bars.png", "box_accuracy_vs_threshold.png", "accuracy_at_iou.png", "iou_distribution.png",
            "gallery-1.jpg", "class_gallery-1-cam.jpg"} <= names


def test_the_combined_summary_is_each_runs_summary_with_ranks(runs, report_folder):
    combined = pd.read_csv(report_folder / "summary.csv")
    for run in runs:
        own = pd.read_csv(run / "summary.csv")
        merged = own.merge(combined, on=["model", "method", "metric"], suffixes=("", "_report"))
        assert len(merged) == len(own)
        for column in ("value", "ci_low", "ci_high", "n"):
            np.testing.assert_array_equal(merged[column], merged[f"{column}_report"])
    # a rank is 1 + the number of methods significantly better (pairwise.csv, by the metric's direction);
    # the best value ranks 1; only the metrics the paired tests cover are ranked
    pairs = pd.read_csv(report_folder / "pairwise.csv")
    ranked = combined.dropna(subset=["rank"])
    assert set(ranked.metric) == set(pairs.metric) - {"top1_cls"} and "pxap" not in set(ranked.metric)
    for row in ranked.itertuples():
        higher = get_metric(row.metric).higher_is_better
        won = pairs[(pairs.metric == row.metric) & pairs.significant]
        better = ((won.method_b == row.method) & ((won.difference > 0) == higher)).sum() + (
            (won.method_a == row.method) & ((won.difference < 0) == higher)).sum()
        assert row.rank == 1 + better, (row.metric, row.method)
    for metric, rows in ranked.groupby("metric"):
        best = rows.value.max() if get_metric(metric).higher_is_better else rows.value.min()
        assert set(rows[rows.value == best]["rank"]) == {1}
    assert comparison_report.RANKING_CAPTION in (report_folder / "summary.md").read_text()
    assert html.escape(comparison_report.RANKING_CAPTION) in (report_folder / "report.html").read_text()


def test_pairwise_tests_pair_the_same_images_and_are_holm_corrected(runs, report_folder):
    pairs = pd.read_csv(report_folder / "pairwise.csv")
    methods = 4
    assert set(pairs.groupby("metric").size()) == {comb(methods, 2)}
    assert "pxap" not in set(pairs.metric) and "top1_cls" not in set(pairs.metric)  # pooled; same for all
    both = pd.concat([pd.read_parquet(r / "per_image") for r in runs])
    hits = both.pivot(index="index", columns="method", values="gt_known_loc")
    row = pairs[(pairs.metric == "gt_known_loc") & (pairs.method_a == "cam") & (pairs.method_b == "saliency")].iloc[0]
    assert row.test == "exact McNemar" and row.n == N
    assert row.difference == pytest.approx(100 * (hits.cam - hits.saliency).mean())
    assert row.p_value == pytest.approx(significance.exact_mcnemar(hits.cam.to_numpy(), hits.saliency.to_numpy()))
    iou = pairs[pairs.metric == "mean_iou"]
    assert set(iou.test) == {"sign-flip permutation"}
    np.testing.assert_allclose(iou.p_holm, significance.holm(iou.p_value.to_numpy()))
    assert (pairs.significant == (pairs.p_holm < comparison.ALPHA)).all()


def test_per_class_breakdown_names_the_classes(report_folder):
    classes = pd.read_csv(report_folder / "per_class.csv")
    rows = classes[(classes.method == "cam") & (classes.metric == "pointing")]
    assert rows.n.sum() == N
    assert not rows.class_name.str.fullmatch(r"\d+").any()  # names, not label indices


def _copy(run: Path, to: Path, edit) -> Path:
    shutil.copytree(run, to)
    config = json.loads((to / "config.json").read_text())
    edit(config)
    (to / "config.json").write_text(json.dumps(config))
    return to


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda c: c.update(maxboxacc_thresholds="0.00:0.95:0.05"), "maxboxacc_thresholds"),
        (lambda c: c["models"][0].update(image_size=[96, 96]), "image_size"),
        (lambda c: c.update(n=30), "'n'"),
        (lambda c: c.update(seed=1), "'seed'"),
        (lambda c: (c.pop("definitions"), c.update(xaibench="0.1.0")),  # a run of xaibench 0.1
         f"different definitions of the metrics and methods (3 and 1, xaibench {xaibench.__version__} and 0.1.0); run the "
         "older again"),
    ],
)
def test_runs_with_another_protocol_are_refused_naming_the_field(runs, tmp_path, capsys, edit, field):
    other = _copy(runs[1], tmp_path / "other", edit)
    assert main(["report", str(runs[0]), str(other), "--out", str(tmp_path / "r")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("xaibench: error: cannot compare") and field in error and "\n" not in error


def test_a_method_in_two_runs_alike_is_kept_once_and_the_page_says_which(runs, tmp_path):
    """CAM as the reference in every run of a study: the copies are one result, shown once."""
    twin = _copy(runs[0], tmp_path / "twin", lambda c: None)
    combined = comparison.combine([comparison.load_run(r) for r in (runs[0], twin, runs[1])])
    alone = comparison.combine([comparison.load_run(r) for r in runs])
    pd.testing.assert_frame_equal(combined.summary, alone.summary)
    assert len(combined.per_image) == len(alone.per_image) and len(combined.maps) == len(alone.maps)
    assert {(c.method, c.kept.name, tuple(f.name for f in c.left_out), c.difference) for c in combined.shared} == {
        ("cam", "a", ("twin",), 0.0), ("gradcam", "a", ("twin",), 0.0)}
    assert combined.holder("builtin", "builtin", "cam").folder == runs[0]
    text = comparison_report.summary_markdown(comparison_report.build_report(combined, figures=False))
    assert ("cam (builtin on builtin) is in a and twin with the same configuration and images (the same numbers); "
            "the report shows a's copy") in text
    assert "The methods come from 2 runs (a, b; column run)" in text  # twin's copies are left out


@pytest.mark.parametrize(("edit", "how"), [
    (lambda c: c["method_options"].update(cam={"relu": True}), 'the method\'s options ({} vs {"relu": true})'),
    (lambda c: c.update(precision="bf16"), "the precision (fp32 vs bf16)"),
    (lambda c: c.update(metrics=c["metrics"][:-1]), "the metrics (only in the first: constant_maps; only in the second: none)"),
])
def test_a_method_in_two_runs_computed_otherwise_is_refused_saying_how(runs, tmp_path, capsys, edit, how):
    twin = _copy(runs[0], tmp_path / "twin", edit)
    assert main(["report", str(runs[0]), str(twin), "--out", str(tmp_path / "r")]) == 2
    error = _one_line_error(capsys)
    assert f"both hold cam (builtin) on builtin, computed differently: {how}; report one of them" in error
    assert not [f for f in (tmp_path / "r").glob("*") if comparison_report.is_report_file(f.name)]  # nothing written


def test_seconds_of_methods_from_different_runs_are_marked_not_comparable(runs):
    combined = comparison.combine([comparison.load_run(r) for r in runs])
    (_, _, tables, note), = comparison_report._group_tables(comparison_report.build_report(combined, figures=False))
    first = tables[0][2]
    assert first.loc[["cam", "gradcam", "saliency", "random"], "run"].tolist() == ["a", "a", "b", "b"]
    assert note.startswith("The methods come from 2 runs (a, b; column run)") and "not comparable" in note


def test_a_run_written_before_several_models_per_run_is_checked_too(runs, tmp_path, capsys):
    """An old config.json names its one model as "model": the duplicate check holds for it too."""
    def old_style(config):  # one model: its name and fields at the top level
        model = config.pop("models")[0]
        config.update(model=model["name"], **{k: model.get(k) for k in ("weights", "weights_sha256", "target_layer", "image_size")})

    twin = _copy(runs[0], tmp_path / "twin", lambda c: (old_style(c), c.update(precision="fp16")))
    assert main(["report", str(runs[0]), str(twin), "--out", str(tmp_path / "r")]) == 2
    assert "both hold cam (builtin) on builtin, computed differently: the precision" in capsys.readouterr().err
    twin = _copy(runs[0], tmp_path / "old", old_style)
    assert len(comparison.combine([comparison.load_run(r) for r in (runs[0], twin)]).shared) == 2


def test_a_folder_that_holds_no_run_is_a_one_line_error(tmp_path, capsys):
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "r")]) == 2
    assert "holds no xaibench run" in capsys.readouterr().err


def test_runs_on_other_data_sets_stand_side_by_side(runs, tmp_path):
    other = _copy(runs[1], tmp_path / "other", lambda c: c.update(dataset="builtin:distractor", n=30))
    combined = comparison.combine([comparison.load_run(runs[0]), comparison.load_run(other)])
    assert combined.groups == [("builtin", "builtin"), ("builtin:distractor", "builtin")]
    pairs = comparison.pairwise(combined)
    assert set(zip(pairs.dataset, pairs.method_a, pairs.method_b)) >= {("builtin", "cam", "gradcam"),
                                                                       ("builtin:distractor", "saliency", "random")}
    assert not ((pairs.dataset == "builtin") & (pairs.method_b == "saliency")).any()  # never across data sets


def _cells(page) -> set[str]:
    return {cell for table in page.tables for row in table for cell in row}


def test_the_page_loads_offline_with_every_image_decoded_and_the_summary_numbers(browser, runs, report_folder):
    page = open_page(browser, report_folder / "report.html")
    assert page.console_errors == []
    assert page.requests == []  # nothing leaves the file
    assert page.broken_images == []
    pictures = {p.name for p in [*report_folder.glob("*.png"), *report_folder.glob("*.jpg")]}
    assert len(page.images) == len(pictures) and all(i.src_kind == "data" for i in page.images)
    cells = _cells(page)
    for run in runs:
        summary = pd.read_csv(run / "summary.csv")
        for row in summary.itertuples():
            unit = get_metric(row.metric).unit
            assert format_value(row.value, unit, row.ci_low, row.ci_high) in cells, (row.method, row.metric)
    assert fits_phone_width(browser, report_folder / "report.html")


def test_xaibench_run_writes_its_own_page(browser, runs):
    page = open_page(browser, runs[0] / "report.html")
    assert page.console_errors == [] and page.requests == [] and page.broken_images == []
    assert len(page.images) >= 5  # bars, curves, IoU, gallery, class gallery
    summary = pd.read_csv(runs[0] / "summary.csv")
    cells = _cells(page)
    assert all(format_value(r.value, get_metric(r.metric).unit, r.ci_low, r.ci_high) in cells for r in summary.itertuples())


def test_build_report_is_a_python_api(runs):
    combined = comparison.combine([comparison.load_run(r) for r in runs])
    report = comparison_report.build_report(combined, cmap="viridis", alpha=0.3, class_gallery_methods=["gradcam"], vectors=False)
    names = [f.name for f in report.figures]
    assert "class_gallery-1-gradcam.jpg" in names and "class_gallery-1-cam.jpg" not in names
    assert all(f.data.startswith(b"\x89PNG" if f.name.endswith(".png") else b"\xff\xd8\xff") for f in report.figures)


def test_many_methods_are_shown_in_several_galleries_and_figure_3_defaults_to_cam(runs, monkeypatch, tmp_path):
    from xaibench import comparison_plots

    assert [len(g) for g in comparison_plots.gallery_groups([str(i) for i in range(33)], 8)] == [7, 6, 7, 6, 7]
    assert comparison_plots.gallery_groups(list("abc"), 8) == [list("abc")] and comparison_plots.gallery_groups([], 8) == []
    monkeypatch.setattr(comparison_plots, "GALLERY_METHODS", 3)
    combined = comparison.combine([comparison.load_run(r) for r in reversed(runs)])  # saliency, random, cam, gradcam
    report = comparison_report.build_report(combined, vectors=False)
    galleries = {f.name: f.caption for f in report.figures if f.name.startswith("gallery-")}
    assert list(galleries) == ["gallery-1-1.jpg", "gallery-1-2.jpg"]
    assert "methods saliency to random, part 1 of 2" in galleries["gallery-1-1.jpg"]
    assert [f.name for f in report.figures if f.name.startswith("class_gallery")] == ["class_gallery-1-cam.jpg"]
    page = comparison_report.write_html(report, tmp_path / "report.html").read_text()
    shown = [page.find(f"<figcaption>{html.escape(caption)}</figcaption>") for caption in galleries.values()]
    assert all(at > 0 for at in shown) and shown == sorted(shown), "every gallery on the page, in order"


def test_a_folder_holding_a_run_is_not_a_report_folder(runs, tmp_path, capsys):
    before = (runs[0] / "summary.csv").read_text()
    assert main(["report", str(runs[0]), "--out", str(runs[0])]) == 2
    assert "holds a run (config.json); write the report to a folder of its own" in capsys.readouterr().err
    assert (runs[0] / "summary.csv").read_text() == before


def test_a_method_without_a_curve_gets_none_not_zeros(runs, tmp_path):
    """A run scored without MaxBoxAccV2 beside one scored with it: its V2 curves are NaN, not 0%."""
    assert main(["run", "--methods", "center", "--n", str(N), "--metrics", "maxboxacc,mean_iou",
                 "--no-report", "--out", str(tmp_path / "v1")]) == 0
    combined = comparison.combine([comparison.load_run(runs[0]), comparison.load_run(tmp_path / "v1")])
    report = comparison_report.build_report(combined, vectors=False)
    curves = report.box_curves.set_index("method")
    assert curves.loc["center", "maxboxacc_v2@0.5"].isna().all()
    assert curves.loc["cam", "maxboxacc_v2@0.5"].notna().all()
    assert (curves.loc["center", "maxboxacc@0.5"] > 0).any()


def test_metric_bars_draw_an_interval_that_misses_its_value():
    """A bootstrap interval need not contain the value (MaxBoxAcc re-picks its threshold per resample)."""
    from xaibench.comparison_plots import metric_bars

    summary = pd.DataFrame({"dataset": "builtin", "model": "m", "method": ["a", "b"], "metric": "maxboxacc",
                            "value": [50.0, 66.66666666666667], "ci_low": [52.0, 60.0],
                            "ci_high": [58.0, 66.66666666666666], "n": 20})
    assert metric_bars(summary, {"maxboxacc": get_metric("maxboxacc")()}) is not None


# ---------------------------------------------------------------------- the report folder and its files


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("xaibench: error: ") and err.count("\n") == 1, err
    return err


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def test_a_report_leaves_other_peoples_files_alone(runs, tmp_path, capsys):
    """Files that match the galleries' names but that no report wrote are kept, and so are temporary files
    of other names, while those a killed report left are removed; a summary.md of someone else's is
    refused, in one line, before anything is written."""
    out = tmp_path / "shared"
    out.mkdir()
    theirs = {"gallery-7.jpg": b"a photo", "class_gallery-x.png": b"a plot", "gallery-2.png": b"another", "notes.md": b"mine",
              # temporary files of the same pattern as a report's, but of other names
              ".notes.txt.abcd1234.partial": b"someone else's", ".summary.md.partial": b"x", "summary.partial": b"y"}
    for name, data in theirs.items():
        (out / name).write_bytes(data)
    # what a report killed while writing leaves: .<name>.<8 characters>.partial (run_folder.atomic_path)
    stale = [tempfile.mkstemp(dir=out, prefix=f".{name}.", suffix=".partial")[1]
             for name in ("summary.md", "gallery-4.jpg", ".xaibench-outputs.json")]
    assert main(["report", "--no-vectors", str(runs[0]), "--out", str(out)]) == 0
    assert all((out / name).read_bytes() == data for name, data in theirs.items())
    assert not any(Path(path).exists() for path in stale)
    (out / "elsewhere").mkdir()
    (out / "elsewhere" / "summary.md").write_text("# my summary\n")
    assert main(["report", str(runs[0]), "--out", str(out / "elsewhere")]) == 2
    err = _one_line_error(capsys)
    assert f"{out / 'elsewhere' / 'summary.md'} was not written by xaibench report" in err
    assert "remove or rename it, or choose another --out" in err
    assert _snapshot(out / "elsewhere") == {"summary.md": b"# my summary\n"}  # nothing written, nothing replaced


def test_a_report_replaces_its_own_files_and_removes_the_ones_it_no_longer_has(runs, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["report", "--no-vectors", str(runs[0]), "--out", str(out), "--class-gallery", "cam,gradcam"]) == 0
    assert (out / "class_gallery-1-gradcam.jpg").exists()
    (out / "class_gallery-1-saliency.jpg").write_bytes(b"the user's")
    before = (out / "summary.csv").stat().st_mtime_ns
    assert main(["report", "--no-vectors", str(runs[0]), "--out", str(out)]) == 0  # cam's class gallery only, now
    assert (out / "summary.csv").stat().st_mtime_ns != before  # replaced
    assert not (out / "class_gallery-1-gradcam.jpg").exists() and (out / "class_gallery-1-cam.jpg").exists()
    assert (out / "class_gallery-1-saliency.jpg").read_bytes() == b"the user's"
    manifest = json.loads((out / ".xaibench-outputs.json").read_text())
    assert set(manifest["files"]) == {p.name for p in out.iterdir()} - {".xaibench-outputs.json", "class_gallery-1-saliency.jpg"}
    # a file the report wrote and someone changed since is not replaced
    with open(out / "summary.md", "a") as file:
        file.write("my notes\n")
    before = _snapshot(out)
    assert main(["report", str(runs[0]), "--out", str(out)]) == 2
    assert f"{out / 'summary.md'} changed since xaibench report wrote it, so it is not replaced" in _one_line_error(capsys)
    assert _snapshot(out) == before


def test_a_second_report_into_one_folder_is_refused_while_the_first_writes(runs, tmp_path, capsys):
    from xaibench.run_folder import FolderLock

    out = tmp_path / "report"
    with FolderLock(out.mkdir() or out, "report"):
        assert main(["report", str(runs[0]), "--out", str(out)]) == 2
    err = _one_line_error(capsys)
    assert "another xaibench report (pid " in err and f"is writing to {out}; wait for it or choose another --out" in err
    assert list(out.iterdir()) == []


@pytest.mark.parametrize(
    ("manifest", "problem"),
    [
        ("{not json", "JSONDecodeError"),
        ("[]", "it holds a JSON list, not an object"),
        ('{"xaibench_outputs": 1, "files": {"../summary.md": {"command": "report", "sha256": "' + "0" * 64 + '"}}}',
         "'files' lists '../summary.md', which is not the name of a file in the folder"),
        ('{"xaibench_outputs": 1, "files": {"summary.md": {"command": "report", "sha256": "abc"}}}',
         "not a command and a SHA-256 (64 hex digits)"),
        ('{"files": {}}', "its 'xaibench_outputs' is None, not 1"),
        ('{"xaibench_outputs": 1' + "0" * 5000 + "}", "ValueError: Exceeds the limit (4300 digits)"),
    ],
)
def test_a_damaged_manifest_is_a_one_line_error(runs, tmp_path, capsys, manifest, problem):
    out = tmp_path / "report"
    out.mkdir()
    (out / ".xaibench-outputs.json").write_text(manifest)
    (out / "summary.md").write_text("kept")
    assert main(["report", str(runs[0]), "--out", str(out)]) == 2
    err = _one_line_error(capsys)
    assert f"{out / '.xaibench-outputs.json'} is damaged (" in err and problem in err
    assert (out / "summary.md").read_text() == "kept" and not (out / "report.html").exists()


def test_every_file_a_report_writes_has_a_report_files_name(report_folder):
    names = [p.name for p in report_folder.iterdir() if not p.name.startswith(".")]
    assert set(comparison_report.REPORT_FILES) <= set(names) and any(n.startswith("gallery-") for n in names)
    assert all(comparison_report.is_report_file(name) for name in names)
    assert not any(comparison_report.is_report_file(n) for n in ("notes.md", "gallery-x.png", "plot.png", "gallery-1.png"))


def test_a_run_named_as_dot_is_called_by_its_folders_name(runs, tmp_path, monkeypatch):
    monkeypatch.chdir(runs[0])
    assert main(["report", "--no-vectors", ".", "--out", str(tmp_path / "r")]) == 0
    assert "Runs: a (builtin on builtin, 40 images)." in (tmp_path / "r" / "summary.md").read_text()
    assert "<p>Runs: a (builtin on builtin" in (tmp_path / "r" / "report.html").read_text()


def test_run_name_is_the_resolved_folders_name(tmp_path, monkeypatch):
    from types import SimpleNamespace

    (tmp_path / "runs" / "mine" / "inner").mkdir(parents=True)
    (tmp_path / "latest").symlink_to(tmp_path / "runs" / "mine")
    monkeypatch.chdir(tmp_path / "runs" / "mine" / "inner")
    for spelling in ("..", "../", ".././", str(tmp_path / "runs" / "mine") + "/", str(tmp_path / "latest")):
        assert comparison_report.run_name(SimpleNamespace(folder=Path(spelling))) == "mine", spelling


# --------------------------------------------------------------------------- output for a paper

LATEX = shutil.which("pdflatex")
_CELL = re.compile(r"^\$(?:\\mathbf\{(?P<bold>[-\d.]+)\}|(?P<plain>[-\d.]+))"
                   r"(?: \\pm (?P<pm>[\d.]+)|\^\{\+(?P<up>[\d.]+)\}_\{-(?P<down>[\d.]+)\})?\$$")


def _tables(tex: str) -> list[tuple[str, list[str], list[list[str]]]]:
    """Each table's label, its tabular's header (the first row's cells) and body rows (cells), from ``tables.tex``."""
    found = []
    for label, block in re.findall(r"\\label\{(.*?)\}.*?\\toprule\n(.*?)\\bottomrule", tex, re.DOTALL):
        head, body = block.split("\\midrule\n")
        rows = [[c.strip() for c in line.removesuffix(r" \\").split(" & ")] for line in body.strip().splitlines()]
        found.append((label, [c.strip() for c in head.splitlines()[0].removesuffix(r" \\").split(" & ")], rows))
    return found


def assert_latex_says_summary(folder: Path) -> int:
    """Every value cell of every metric table of ``folder/tables.tex``: the value and its distances to
    the interval as the folder's summary.csv gives them for the table's (data set, model) (its label
    ``tab:<group>-<family>``, the groups in summary.csv's order), rounded as the metric's unit is; bold
    exactly where the rounded value is the column's best by the metric's direction. Returns the cells
    checked."""
    summary = pd.read_csv(folder / "summary.csv", keep_default_na=False, na_values=[""])
    groups = list(dict.fromkeys(zip(summary.dataset, summary.model)))
    tex = (folder / "tables.tex").read_text()
    by_title = {get_metric(name).title: name for name in available_metrics()}
    checked = 0
    for label, header, rows in _tables(tex):
        if header[1] != "$n$":  # the ranks
            continue
        dataset, model = groups[int(label.split(":")[1].split("-")[0]) - 1]
        group = summary[(summary.dataset == dataset) & (summary.model == model)]
        for k, title in enumerate(header[2:], start=2):
            metric = get_metric(by_title[title])
            decimals = DECIMALS.get(metric.unit, 3)
            expected = group[group.metric == metric.name].set_index("method")
            shown = {}
            for row in rows:
                method = row[0].replace(r"\_", "_")
                truth = expected.loc[method]
                assert int(row[1]) == truth["n"]
                cell = _CELL.match(row[k])
                assert cell is not None, row[k]
                value = float(cell["bold"] or cell["plain"])
                assert value == pytest.approx(truth["value"], abs=0.51 * 10**-decimals), (metric.name, method)
                if metric.unit != "count":
                    up, down = (cell["pm"], cell["pm"]) if cell["pm"] else (cell["up"], cell["down"])
                    assert float(up) == pytest.approx(truth["ci_high"] - truth["value"], abs=0.51 * 10**-decimals)
                    assert float(down) == pytest.approx(truth["value"] - truth["ci_low"], abs=0.51 * 10**-decimals)
                shown[method] = (value, cell["bold"] is not None)
                checked += 1
            best = (max if metric.higher_is_better else min)(v for v, _ in shown.values())
            assert {m for m, (v, bold) in shown.items() if bold} == {m for m, (v, _) in shown.items() if v == best}
    return checked


def test_the_latex_tables_say_what_summary_csv_says(report_folder) -> None:
    assert assert_latex_says_summary(report_folder) >= 4 * 10  # four methods, every localization metric at least


def compile_latex(folder: Path, tmp_path: Path) -> str:
    """``folder/tables.tex`` input into a document and compiled by pdflatex: its output."""
    document = tmp_path / "paper.tex"
    document.write_text("\\documentclass{article}\n\\usepackage[margin=1cm,landscape]{geometry}\n"
                        "\\usepackage{booktabs}\n\\begin{document}\n\\input{tables}\n\\end{document}\n")
    shutil.copy(folder / "tables.tex", tmp_path / "tables.tex")
    done = subprocess.run([LATEX, "-interaction=nonstopmode", "-halt-on-error", "paper.tex"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:]
    assert (tmp_path / "paper.pdf").read_bytes().startswith(b"%PDF")
    return done.stdout


@pytest.mark.skipif(LATEX is None, reason="pdflatex is not installed (Debian: texlive-latex-base, texlive-latex-recommended)")
def test_the_latex_tables_compile(report_folder, tmp_path) -> None:
    assert "Output written on paper.pdf" in compile_latex(report_folder, tmp_path)


def test_every_figure_is_also_a_pdf_and_an_svg_with_its_fonts_embedded(report_folder) -> None:
    rasters = sorted(p for p in report_folder.iterdir() if p.suffix in (".png", ".jpg"))
    assert {"metric_bars.png", "gallery-1.jpg", "class_gallery-1-cam.jpg"} <= {p.name for p in rasters}
    for raster in rasters:
        pdf, svg = raster.with_suffix(".pdf").read_bytes(), raster.with_suffix(".svg").read_bytes()
        assert pdf.startswith(b"%PDF") and b"/FontFile2" in pdf and b"/Type3" not in pdf, raster.name
        assert b"/CreationDate" not in pdf
        root = ElementTree.fromstring(svg)
        assert root.tag == "{http://www.w3.org/2000/svg}svg" and list(root.iter("{http://www.w3.org/2000/svg}path"))
        assert not list(root.iter("{http://www.w3.org/2000/svg}text")), raster.name  # text drawn as paths: no font needed


def test_tables_only_and_figures_only(runs, report_folder, tmp_path, capsys) -> None:
    runs = [str(r) for r in runs]
    out = tmp_path / "r"
    assert main(["report", *runs, "--out", str(out), "--tables-only"]) == 0
    names = {p.name for p in out.iterdir()} - {".xaibench-outputs.json"}
    assert names == {"summary.csv", "summary.md", "pairwise.csv", "per_class.csv", "box_accuracy_curves.csv", "tables.tex",
                     "map_agreement.csv"}
    assert (out / "tables.tex").read_text() == (report_folder / "tables.tex").read_text()
    assert f"wrote {out} (its tables)" in capsys.readouterr().out
    assert main(["report", *runs, "--out", str(out), "--figures-only", "--no-vectors"]) == 0
    names = {p.name for p in out.iterdir()} - {".xaibench-outputs.json"}
    assert names and all(Path(n).suffix in (".png", ".jpg") for n in names)  # the tables it wrote before: removed
    with pytest.raises(SystemExit) as refused:
        main(["report", *runs, "--out", str(out), "--figures-only", "--tables-only"])
    assert refused.value.code == 2 and "not allowed with argument" in capsys.readouterr().err


def test_the_map_agreement_finds_the_cams_that_a_gap_linear_head_makes_equal(tmp_path):
    """On the built-in network (GAP -> linear) Grad-CAM, XGrad-CAM and HiResCAM are all ReLU(CAM), and
    LayerCAM is element-wise Grad-CAM: their maps correlate at 1; random maps at about 0. Each mean
    is checked against numpy's corrcoef of the kept thumbnails, image by image."""
    methods = ["gradcam", "xgradcam", "hirescam", "layercam", "gradcam_elementwise", "random"]
    assert main(["run", "--methods", ",".join(methods), "--n", "12", "--no-report", "--out", str(tmp_path / "run")]) == 0
    combined = comparison.combine([comparison.load_run(tmp_path / "run")])
    agreement = comparison.map_agreement(combined).set_index(["method_a", "method_b"])
    assert len(agreement) == comb(len(methods), 2) and set(agreement.n) == {12}
    for a, b in [("gradcam", "xgradcam"), ("gradcam", "hirescam"), ("layercam", "gradcam_elementwise")]:
        assert agreement.loc[(a, b), "pearson"] > 0.999, (a, b)
    assert abs(agreement.loc[("gradcam", "random"), "pearson"]) < 0.2
    maps = comparison.thumbnails_of(combined, "builtin", "builtin", "maps", combined.maps[["index", "method"]])
    maps = maps.set_index(["index", "method"])["map"]
    for (a, b), row in agreement.iterrows():
        rs = [np.corrcoef(maps[i, a].ravel().astype(float), maps[i, b].ravel().astype(float))[0, 1] for i in range(12)]
        assert row.pearson == pytest.approx(np.nanmean(rs), abs=1e-5)
    matrix, n, note = comparison_report.agreement_matrix(
        comparison_report.build_report(combined, figures=False), "builtin", "builtin")
    assert n == 12 and matrix.loc["gradcam", "hirescam"] == matrix.loc["hirescam", "gradcam"] == "1.00"
    assert note.startswith("Maps that coincide (mean r >= 0.99): gradcam and xgradcam (r = ")
    assert "layercam and gradcam_elementwise" in note and "random" not in note
    assert "Such methods reduce to the same computation" in note  # no CAM in the run: the head is not known here


def test_the_pairwise_matrix_is_the_pairwise_table_read_both_ways(runs, report_folder):
    combined = comparison.combine([comparison.load_run(r) for r in runs])
    report = comparison_report.build_report(combined, figures=False)
    matrices = {name: (cells, verdicts) for name, cells, verdicts in
                comparison_report.pairwise_matrices(report, "builtin", "builtin")}
    pairs = pd.read_csv(report_folder / "pairwise.csv")
    assert set(matrices) == set(pairs.metric)
    for row in pairs.itertuples():
        cells, verdicts = matrices[row.metric]
        unit = get_metric(row.metric).unit
        mark = "*" if row.significant else ""
        assert cells.loc[row.method_a, row.method_b] == format_value(row.difference + 0.0, unit) + mark
        assert cells.loc[row.method_b, row.method_a] == format_value(-row.difference + 0.0, unit) + mark
        higher = get_metric(row.metric).higher_is_better
        if row.significant and row.difference != 0 and higher is not None:
            a_better = (row.difference > 0) == higher
            assert verdicts.loc[row.method_a, row.method_b] == ("better" if a_better else "worse")
            assert verdicts.loc[row.method_b, row.method_a] == ("worse" if a_better else "better")
        else:
            assert verdicts.loc[row.method_a, row.method_b] == verdicts.loc[row.method_b, row.method_a] == ""
    page = (report_folder / "report.html").read_text()
    assert "<h3>Paired differences</h3>" in page and "<h3>Map agreement</h3>" in page


def test_the_page_fits_1400_and_400_pixels_and_its_image_browser_sorts_filters_and_shows_every_map(
        browser, runs, report_folder):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    from browser import overflowing

    for window in ((1400, 900), (400, 844)):
        page = open_page(browser, report_folder / "report.html", window=window)
        assert page.console_errors == [] and page.requests == [] and page.broken_images == []
        assert overflowing(browser) == [], window
    combined = comparison.combine([comparison.load_run(r) for r in runs])
    iou = comparison.score_table(combined, "builtin", "builtin", combined.metrics["mean_iou"])
    section = browser.find_element(By.CSS_SELECTOR, "section.browser")

    def rows() -> list[list[str]]:
        return [[td.text for td in tr.find_elements(By.TAG_NAME, "td")]
                for tr in section.find_elements(By.CSS_SELECTOR, "tbody tr")]

    methods = ["cam", "gradcam", "saliency", "random"]
    assert [h.text for h in section.find_elements(By.CSS_SELECTOR, "thead th")] == [
        "index", "id", "class", *methods, "range", "pictures"]
    assert [int(r[0]) for r in rows()] == list(range(N))  # every image, by index (N is under a page's 50 rows)
    Select(section.find_element(By.CSS_SELECTOR, "[data-role=metric]")).select_by_visible_text(
        f"{combined.metrics['mean_iou'].title} (mean_iou)")
    Select(section.find_element(By.CSS_SELECTOR, "[data-role=sort]")).select_by_visible_text("gradcam: best first")
    shown = rows()
    expected = iou["gradcam"].sort_values(ascending=False, kind="stable")
    decimals = DECIMALS[combined.metrics["mean_iou"].unit]
    assert [r[4] for r in shown] == [f"{v:.{decimals}f}" for v in expected]
    assert [r[7] for r in shown] == [f"{v:.{decimals}f}" for v in (iou.max(axis=1) - iou.min(axis=1))[expected.index]]
    Select(section.find_element(By.CSS_SELECTOR, "[data-role=sort]")).select_by_visible_text(
        "disagreement: largest range over the methods first")
    ranges = [float(r[7]) for r in rows()]
    assert ranges == sorted(ranges, reverse=True)
    classes = Select(section.find_element(By.CSS_SELECTOR, "[data-role=class]"))
    name = classes.options[1].text
    classes.select_by_visible_text(name)
    images = combined.images[combined.images.class_name == name]
    assert sorted(int(r[0]) for r in rows()) == sorted(images["index"]) and {r[2] for r in rows()} == {name}
    section.find_elements(By.CSS_SELECTOR, "tbody tr")[0].click()
    figures = section.find_elements(By.CSS_SELECTOR, "[data-role=detail] figure")
    assert [f.find_element(By.TAG_NAME, "figcaption").text.split(":")[0] for f in figures] == [
        "photo, ground truth", *methods]
    browser.execute_script("return new Promise(r => setTimeout(r, 100))")
    assert all(browser.execute_script("return arguments[0].naturalWidth", f.find_element(By.TAG_NAME, "img")) == 64
               for f in figures)  # the built-in images' thumbnails at their size
    assert section.find_element(By.CSS_SELECTOR, "[data-role=detail] .colourbar").is_displayed()
    browser.set_window_size(400, 844)
    assert overflowing(browser) == []


def test_the_gallerys_best_and_worst_images_leave_room_to_fail(runs):
    """An image whose box is the whole frame is never a method's best (a map lighting up everything
    scores there); where every box is that large, the pick says so."""
    from xaibench import comparison_plots as plots

    combined = comparison.combine([comparison.load_run(runs[0])])
    frame = np.array([[0, 0, 63, 63]], np.float32)
    fractions = plots.box_fractions(pd.DataFrame({"boxes": [frame, np.array([[0, 0, 31, 15]], np.float32),
                                                            np.zeros((0, 4), np.float32)],
                                                  "height": [64] * 3, "width": [64] * 3}))
    assert fractions.tolist() == [1.0, 32 * 16 / 64**2, 1.0]
    cam = combined.per_image[combined.per_image.method == "cam"].set_index("index").mean_iou
    before = plots.gallery_picks(combined, "builtin", "builtin", ["cam"])
    best = next(i for i, why in before.items() if "best: cam" in why)
    assert cam[best] == cam.max()
    images = combined.images.copy()
    images["boxes"] = [frame if i == best else b for i, b in zip(images["index"], images.boxes)]
    combined.images = images
    after = plots.gallery_picks(combined, "builtin", "builtin", ["cam"])
    assert best not in after and cam[next(i for i, why in after.items() if "best: cam" in why)] == cam.drop(best).max()
    combined.images = images.assign(boxes=[frame] * len(images))
    assert all("(box >= 50% of the image)" in w for why in plots.gallery_picks(combined, "builtin", "builtin", ["cam"]).values()
               for w in why)
