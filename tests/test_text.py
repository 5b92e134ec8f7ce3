"""Text from outside the program (paths, file names, ids, class names, model and method names) where
xaibench puts it (xaibench/text.py): figures draw it as written, never as mathtext; names whose bytes
are not UTF-8 are written and read back; CSV cells a spreadsheet would run as formulas are escaped
and decoded back."""

from __future__ import annotations

import dataclasses
import io
import os
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

from xaibench import models
from xaibench.cli import main
from xaibench.text import displayable, literal

from conftest import tiny_model

#: Names that matplotlib would read as mathtext: a ValueError when drawn, or a formula.
DOLLARS = ["a$b", "$\\frac{$", "$x^2$", "\\$y", "$"]


def _svg_text(fig: Figure) -> str:
    """The figure as SVG with its text kept as text (not glyph paths), to read what was drawn."""
    buffer = io.BytesIO()
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        fig.savefig(buffer, format="svg")
    return buffer.getvalue().decode("utf-8")


def test_literal_text_is_drawn_as_written() -> None:
    fig = Figure()
    ax = fig.subplots()
    ax.set_title(literal(" ".join(DOLLARS)))
    ax.set_xticks(range(len(DOLLARS)))
    ax.set_xticklabels([literal(t) for t in DOLLARS])
    for t in DOLLARS:
        ax.plot([0, 1], [0, 1], label=literal(t))
    ax.legend()
    svg = _svg_text(fig)
    for t in DOLLARS:
        assert f">{t}<" in svg  # a tick label and a legend entry, each exactly the text
    assert " ".join(DOLLARS) in svg


def test_displayable_shows_undecodable_bytes_and_keeps_other_text() -> None:
    assert displayable(os.fsdecode(b"caf\xe9/\xff.png")) == "caf\\xe9/\\xff.png"
    assert displayable("café ☃ $x$") == "café ☃ $x$"
    assert displayable("\ud800") == "\\ud800"  # a lone surrogate that is no escaped byte
    assert literal(os.fsdecode(b"a$\xe9")) == "a\\$\\xe9"


def _photos(folder: Path, names: list[str], csv_name: str = "boxes.csv") -> Path:
    """Small random photos named ``names`` in ``folder``, and a CSV data set of them (index labels)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows = ["image,label,x0,y0,x1,y1"]
    for k, name in enumerate(names):
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(folder / name, format="PNG")
        rows.append(f'"{name}",{k % 3},2,2,30,30')
    (folder / csv_name).write_text("\n".join(rows) + "\n", encoding="utf-8")
    return folder / csv_name


@pytest.fixture
def dollar_model(monkeypatch):
    """The built-in network named ``built$\\frac{$``, its classes named ``<name> $\\frac{$``."""
    load = models.load_model

    def renamed(*args, **kwargs):
        model = load(*args, **kwargs)
        return dataclasses.replace(model, class_names=[f"{n} $\\frac{{$" for n in model.class_names], name="built$\\frac{$")

    monkeypatch.setattr(models, "load_model", renamed)


def test_a_run_a_report_and_explain_with_dollars_in_every_name(tmp_path, capsys, dollar_model) -> None:
    """Ids, the data set's folder and file, class names and the model's name with '$': run, report,
    summarize and explain finish and write their figures."""
    folder = tmp_path / "d$\\frac{$"
    csv = _photos(folder, ["a$b.png", "$\\frac{$.png", "c.png", "$x$.png"], csv_name="$\\frac{$.csv")
    out, report = tmp_path / "run$", tmp_path / "report$"
    assert main(["run", "--dataset", f"csv:{csv}", "--methods", "cam,center", "--out", str(out)]) == 0
    assert (out / "overlays.png").stat().st_size > 0 and (out / "report.html").stat().st_size > 0
    assert main(["report", "--no-vectors", str(out), "--out", str(report), "--class-gallery", "cam"]) == 0
    assert any(report.glob("class_gallery-*.jpg")) and any(report.glob("gallery*.jpg"))
    assert main(["summarize", str(out)]) == 0
    figure = tmp_path / "explained.svg"
    assert main(["explain", str(folder / "$\\frac{$.png"), "--model", "builtin", "--method", "cam", "--topk", "2",
                 "--out", str(figure)]) == 0
    assert "Traceback" not in capsys.readouterr().err


def test_explain_draws_the_file_and_class_names_as_written(tmp_path) -> None:
    from xaibench.figures import explain_figure

    _photos(tmp_path, ["$\\frac{$.png"])
    photo = tmp_path / "$\\frac{$.png"
    model = tiny_model(class_names=[f"c{k}$" for k in range(4)] + ["$\\frac{$"])
    svg = _svg_text(explain_figure(photo, model, "cam,center", topk=5))
    assert ">$\\frac{$.png<" in svg and ">$\\frac{$ (" in svg and ">c0$ (" in svg
    assert "$\\frac{$" in _svg_text(explain_figure(photo, model, "cam", class_name=4, title="$\\frac{$"))


# ----------------------------------------------------------------- paths whose bytes are not UTF-8

#: A name as Linux hands it to Python when its bytes are Latin-1, not UTF-8: 'caf\udce9'.
NOT_UTF8 = os.fsdecode(b"caf\xe9")


@pytest.fixture
def not_utf8(tmp_path) -> Path:
    """A folder named with a byte that is not UTF-8 (skipped where the file system refuses such names)."""
    folder = tmp_path / NOT_UTF8
    try:
        folder.mkdir()
    except (OSError, UnicodeError):
        pytest.skip("this file system takes only UTF-8 file names")
    return folder


def _voc(root: Path, stems: list[str]) -> Path:
    """A Pascal VOC folder: one image per stem, each with one 'disk' (ids come from the file names)."""
    rng = np.random.default_rng(0)
    for sub in ("JPEGImages", "Annotations"):
        (root / sub).mkdir(parents=True)
    for stem in stems:
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(root / "JPEGImages" / f"{stem}.jpg", format="JPEG")
        (root / "Annotations" / f"{stem}.xml").write_text(
            "<annotation><size><width>40</width><height>40</height><depth>3</depth></size><object><name>disk</name>"
            "<difficult>0</difficult><bndbox><xmin>3</xmin><ymin>3</ymin><xmax>30</xmax><ymax>30</ymax></bndbox></object>"
            "</annotation>"
        )
    return root


def test_a_run_whose_paths_and_ids_are_not_utf8_completes_and_reads_back(not_utf8, capsys) -> None:
    """The data set's folder, the image files (so the ids) and --out named with Latin-1 bytes: the run
    finishes, every text file is UTF-8 (the byte shown as \\xe9), and the folder is read back by
    summarize, --resume and report; explain takes such a path too."""
    import json

    import pandas as pd

    root = _voc(not_utf8 / "voc", [NOT_UTF8, "plain"])
    out = not_utf8 / "run"
    argv = ["run", "--dataset", f"voc:{root}", "--methods", "cam,center", "--out", str(out)]
    assert main(argv) == 0
    assert f"wrote {displayable(str(out))}" in capsys.readouterr().out.replace("\\udce9", "\\xe9")
    assert main(["export", str(out)]) == 0
    texts = {name: (out / name).read_bytes().decode("utf-8") for name in
             ("per_image_table.csv", "summary.csv", "summary.md", "report.html")}
    assert "caf\\xe9/disk" in texts["per_image_table.csv"]
    from xaibench.harness import read_per_image, read_thumbnails

    assert any("caf\\xe9" in i for i in read_thumbnails(out)[0].image_id)  # UTF-8 in the store too
    assert f"voc:{displayable(str(root))}" in texts["summary.md"] and "caf\\xe9" in texts["report.html"]
    assert json.loads((out / "config.json").read_text())["dataset"] == f"voc:{root}"  # the path itself, exactly
    rows = read_per_image(out)
    assert main(["summarize", str(out)]) == 0
    assert main([*argv, "--resume", "--no-report"]) == 0  # nothing left to compute: the same rows
    pd.testing.assert_frame_equal(read_per_image(out), rows)
    assert main(["report", "--no-vectors", str(out), "--out", str(not_utf8 / "report")]) == 0
    assert "caf\\xe9" in (not_utf8 / "report" / "summary.md").read_text(encoding="utf-8")
    assert main(["explain", str(root / "JPEGImages" / f"{NOT_UTF8}.jpg"), "--model", "builtin", "--topk", "2",
                 "--out", str(not_utf8 / "explained.png")]) == 0
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and "error" not in captured.err


def test_sanity_with_a_dollar_model_on_paths_that_are_not_utf8(not_utf8, capsys, dollar_model) -> None:
    """The sanity checks' figures (the model's name in a title) and files (the data set's path)."""
    csv = _photos(not_utf8 / "d$ata", ["a$b.png", "$\\frac{$.png"], csv_name=f"{NOT_UTF8}.csv")
    out = not_utf8 / "sanity"
    assert main(["sanity", "--methods", "cam", "--dataset", f"csv:{csv}", "--n", "2", "--show", "1", "--out", str(out)]) == 0
    assert (out / "sanity_maps.png").is_file() and (out / "sanity.png").is_file()
    assert "caf\\xe9" in (out / "sanity.md").read_text(encoding="utf-8")
    assert "Traceback" not in capsys.readouterr().err


# ------------------------------------------------------------------------------ CSV formula cells

#: Ids that a spreadsheet would run as formulas, one that starts with the escape itself, and one
#: that reads as a number (kept as it is).
FORMULAS = ["=1+1", "-x", "'quoted", "@a", "+1x", "=HYPERLINK(\"http://x\",\"y\")", "-0.5"]


def test_csv_text_escapes_formula_cells_reversibly_and_keeps_numbers() -> None:
    import pandas as pd

    from xaibench.text import csv_text, unescape_columns

    frame = pd.DataFrame({"id": [*FORMULAS, "\tt", "plain", None], "value": [-0.5, 1.0, -2.0, 3.0, -1e-3, 0.0, 7.0, 8.0, 9.0, 10.0]})
    text = csv_text(frame)
    assert text.splitlines() == [
        "id,value", "'=1+1,-0.5", "'-x,1.0", "''quoted,-2.0", "'@a,3.0", "'+1x,-0.001",
        "\"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\",0.0", "-0.5,7.0", "'\tt,8.0", "plain,9.0", ",10.0",
    ]
    back = unescape_columns(pd.read_csv(io.StringIO(text), dtype={"id": str}), ["id"])
    pd.testing.assert_frame_equal(back, frame)


def _cells(path: Path) -> list[str]:
    import csv

    with open(path, newline="", encoding="utf-8") as file:
        return [cell for row in csv.reader(file) for cell in row]


@pytest.fixture
def formula_model(monkeypatch):
    """The built-in network named ``@builtin``, its classes named ``=<name>``."""
    load = models.load_model

    def renamed(*args, **kwargs):
        model = load(*args, **kwargs)
        return dataclasses.replace(model, class_names=[f"={n}" for n in model.class_names], name="@builtin")

    monkeypatch.setattr(models, "load_model", renamed)


def test_formula_ids_and_names_are_escaped_in_every_csv_and_read_back(tmp_path, formula_model) -> None:
    """A run whose ids, class names and model name start with =, -, +, @ or ': no cell of any CSV of
    the run or its report would run as a formula, and summarize, --resume and report see the names
    as they were."""
    import pandas as pd

    from xaibench.harness import read_per_image, read_thumbnails

    names = ["=1+1.png", "-x.png", "'quoted.png", "@a.png", "+1x.png", "=SUM(A1;A2).png", "-0.5"]
    csv = _photos(tmp_path / "data", names)
    out, report = tmp_path / "run", tmp_path / "report"
    argv = ["run", "--dataset", f"csv:{csv}", "--methods", "cam,center", "--no-report", "--out", str(out)]
    assert main(argv) == 0
    assert main(["report", str(out), "--out", str(report)]) == 0
    assert main(["export", str(out)]) == 0
    for path in [*out.glob("*.csv"), *report.glob("*.csv")]:
        for cell in _cells(path):
            number = cell.lstrip("+-").replace(".", "", 1).replace("e-", "").replace("e+", "").isdigit()
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")) or number, (path.name, cell)
    assert "'=1+1.png" in _cells(out / "per_image_table.csv") and "-0.5" in _cells(out / "per_image_table.csv")
    rows = read_per_image(out)
    assert sorted(set(rows.image_id)) == sorted(names) and set(rows.model) == {"@builtin"}
    images, _ = read_thumbnails(out)
    assert set(images.class_name) <= {"=disk", "=square", "=triangle", "=cross", "=ring", "=star"}
    before = sorted((out / "per_image").iterdir())
    assert main([*argv, "--resume"]) == 0  # every (image, method) is found done: nothing appended
    assert sorted((out / "per_image").iterdir()) == before
    assert main(["summarize", str(out)]) == 0
    summary = pd.read_csv(out / "summary.csv")
    assert set(summary.model) == {"'@builtin"}  # as a spreadsheet shows it: @builtin, as text
