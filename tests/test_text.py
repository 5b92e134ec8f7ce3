"""Text from outside the program (paths, file names, ids, class names, method names) where xaibench
puts it: figures draw it as written, never as mathtext."""

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


def _photos(folder: Path, names: list[str], csv_name: str = "boxes.csv", labels=None) -> Path:
    """Small random photos named ``names`` in ``folder``, and a CSV data set of them (index labels)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows = ["image,label,x0,y0,x1,y1"]
    for k, name in enumerate(names):
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(folder / name, format="PNG")
        label = k % 3 if labels is None else labels[k]
        rows.append(f'"{name}",{label},2,2,30,30')
    (folder / csv_name).write_text("\n".join(rows) + "\n", encoding="utf-8")
    return folder / csv_name


@pytest.fixture
def dollar_model(monkeypatch):
    """The built-in network named ``built$in``, its classes named ``<name> $\\frac{$``."""
    load = models.load_model

    def renamed(*args, **kwargs):
        model = load(*args, **kwargs)
        return dataclasses.replace(model, class_names=[f"{n} $\\frac{{$" for n in model.class_names], name="built$in")

    monkeypatch.setattr(models, "load_model", renamed)


def test_a_run_a_report_and_explain_with_dollars_in_every_name(tmp_path, capsys, dollar_model) -> None:
    """Ids, the data set's folder and file, class names and the model's name with '$': every command
    finishes and writes its figures."""
    folder = tmp_path / "d$\\frac{$"
    csv = _photos(folder, ["a$b.png", "$\\frac{$.png", "c.png", "$x$.png"], csv_name="$\\frac{$.csv")
    out, report = tmp_path / "run$", tmp_path / "report$"
    assert main(["run", "--dataset", f"csv:{csv}", "--methods", "cam,center", "--out", str(out)]) == 0
    assert (out / "overlays.png").stat().st_size > 0 and (out / "report.html").stat().st_size > 0
    assert main(["report", str(out), "--out", str(report), "--class-gallery", "cam"]) == 0
    assert any(report.glob("class_gallery-*.jpg")) and any(report.glob("gallery*.jpg"))
    assert main(["summarize", str(out)]) == 0
    figure = tmp_path / "explained.svg"
    assert main(["explain", str(folder / "$\\frac{$.png"), "--model", "builtin", "--method", "cam", "--topk", "2",
                 "--out", str(figure)]) == 0
    assert main(["sanity", "--methods", "cam", "--dataset", f"csv:{csv}", "--n", "2", "--show", "1",
                 "--out", str(tmp_path / "sanity$")]) == 0
    assert (tmp_path / "sanity$" / "sanity_maps.png").is_file()
    assert "Traceback" not in capsys.readouterr().err


def test_explain_draws_the_file_and_class_names_as_written(tmp_path) -> None:
    from xaibench.figures import explain_figure

    _photos(tmp_path, ["$\\frac{$.png"])
    photo = tmp_path / "$\\frac{$.png"
    model = tiny_model(class_names=[f"c{k}$" for k in range(4)] + ["$\\frac{$"])
    svg = _svg_text(explain_figure(photo, model, "cam,center", topk=5))
    assert ">$\\frac{$.png<" in svg and ">$\\frac{$ (" in svg and ">c0$ (" in svg
    assert "$\\frac{$" in _svg_text(explain_figure(photo, model, "cam", class_name=4, title="$\\frac{$"))
