"""The command line: listing, one-line errors, and a whole run on the built-in benchmark."""

from __future__ import annotations

import errno
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

import xaibench
from xaibench.cli import main

from conftest import SHARED_IMAGENET


def test_list_shows_every_method_and_its_origin(capsys) -> None:
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("cam", "gradcam", "saliency"):
        assert f"\n{name} " in "\n" + out
    assert "from xaibench_plugins.cam:CAM (xaibench" in out


def test_version(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.strip() == f"xaibench {xaibench.__version__}"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["run", "--methods", "cam,nope"], "unknown method 'nope'"),
        (["run", "--methods", "gradcma"], "did you mean 'gradcam'?"),
        (["run", "--methods", ""], "--methods names no method"),
        (["run", "--methods", " , "], "--methods names no method"),
        (["run", "--methods", "cam,gradcam,cam"], "--methods names cam more than once"),
        (["run", "--model", "builtin,builtin"], "--model names builtin more than once; name each model once"),
        (["run", "--model", "builtin,shapes_net"], "--model names the model builtin more than once (by another name)"),
        (["sanity", "--max-image-pixels", "0"], "--max-image-pixels must be at least 1, got 0"),
        (["run", "--methods", "scorecam(batch_size=4, batch_size=8)"],
         "'scorecam(batch_size=4, batch_size=8)' gives the option batch_size more than once"),
        (["run", "--n", "0"], "--n must be at least 1, got 0"),
        (["run", "--n", "-5"], "--n must be at least 1, got -5"),
        (["run", "--batch-size", "0"], "--batch-size must be at least 1"),
        (["run", "--image-size", "3"], "--image-size must lie in [16, 4096] pixels, got 3"),
        (["run", "--image-size", "100000"], "--image-size must lie in [16, 4096]"),
        (["run", "--device", "cuda:0"] if not torch.cuda.is_available() else ["run", "--device", "cuda:99"],
         "--device cuda"),
        (["run", "--device", "gpu"], "--device 'gpu' is not a torch device"),
        (["run", "--weights", "/no/such.pth"], "--weights /no/such.pth: no such file"),
        (["run", "--weights", "{tmp}"], "is a folder; pass the state-dict file in it (one saved with "
                                        "torch.save(model.state_dict(), PATH)), 'default' or 'none'"),
        (["run", "--resume"], "--resume needs --out DIR"),
        (["run", "--methods", "cam", "--model", "nope"], "unknown model 'nope'"),
        (["run", "--methods", "cam", "--model", "efficientnet_lite0", "--dataset", "nope:x"], "unknown data set kind 'nope'"),
        (["run", "--methods", "cam", "--model", "resnet18", "--weights", "none", "--target-layer", "layer9"], "no layer 'layer9'"),
        (["run", "--methods", "cam", "--model", "vgg11", "--weights", "none", "--n", "2", "--out", "{tmp}"],
         "CAM needs global average pooling"),
        (["run", "--dataset", "csv:{tmp}/none.csv"], "none.csv"),
        (["summarize", "{tmp}"], "holds no xaibench run"),
        (["run", "--methods", "cam,center(width=3)"], "method 'center' has no option 'width'; its options: sigma=0.25"),
        (["run", "--methods", "cam,center(sigma=0.3"], "a '(' without its ')'"),
        (["run", "--methods", "all(seed=1)"], "--methods all takes no options"),
        (["run", "--model", " , "], "--model names no model"),
        (["run", "--seed", "-1"], "--seed must lie in [0, 2**32 - 1], got -1"),
        (["run", "--seed", "99999999999999999999999"], "--seed must lie in"),
        (["train-builtin", "--seed", "-1"], "--seed must lie in"),
        (["run", "--device", "meta"], "--device meta holds no data"),
        (["run", "--device", "vulkan"], "--device vulkan cannot be used on this machine"),
        (["run", "--target-layer", ""], "--target-layer is empty"),
        (["run", "--methods", "cam", "--model", "efficientnet_lite0", "--image-size", "32"],
         "target layer 'head_act' outputs shape (1, 1280, 1, 1) for a (32, 32) input"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys, tmp_path) -> None:
    assert main([a.format(tmp=tmp_path) for a in argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err, err
    assert not (tmp_path / "per_image").exists()


def test_bad_weights_files_are_one_line_errors(tmp_path, capsys) -> None:
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a torch file at all")
    other = tmp_path / "other.pt"
    torch.save({"conv.weight": torch.zeros(3)}, other)
    for path, message in ((corrupt, "corrupt.pt"), (other, "other.pt")):
        assert main(["run", "--weights", str(path), "--n", "2", "--out", str(tmp_path / "run")]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1 and "Traceback" not in err, err
    assert not (tmp_path / "run").exists()  # refused before the run's folder was made


def test_an_unreadable_weights_file_gives_the_systems_reason(tmp_path, capsys, monkeypatch) -> None:
    weights = tmp_path / "model.pt"
    torch.save({}, weights)
    real_open = os.open

    def failing_open(path, flags, *args, **kwargs):
        if Path(path) == weights:
            raise OSError(errno.EIO, os.strerror(errno.EIO), str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", failing_open)
    assert main(["run", "--weights", str(weights), "--n", "2", "--out", str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err == f"xaibench: error: --weights {weights}: the file cannot be read (input/output error)\n"


def test_n_beyond_the_data_set_is_said_in_one_line(tmp_path, capsys) -> None:
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.png"):
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(tmp_path / name)
    (tmp_path / "boxes.csv").write_text("image,label,x0,y0,x1,y1\na.png,disk,4,4,40,30\nb.png,cross,2,2,50,50\n")
    out = tmp_path / "run"
    assert main(["run", "--dataset", f"csv:{tmp_path / 'boxes.csv'}", "--methods", "cam", "--n", "300", "--no-report", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "xaibench: --n 300: the data set has only 2 images; the run scores those 2\n" in err
    assert "error" not in err and json.loads((out / "config.json").read_text())["n"] == 2


def test_an_unwritable_out_is_one_line(tmp_path, capsys) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    if subprocess.run(["chattr", "+i", str(locked)], capture_output=True).returncode != 0:
        locked.chmod(0o555)
    try:
        if os.access(locked, os.W_OK) and subprocess.run(["lsattr", "-d", str(locked)], capture_output=True, text=True).stdout[4:5] != "i":
            pytest.skip("cannot make a folder unwritable here")
        assert main(["run", "--n", "2", "--out", str(locked / "run")]) == 2
        err = capsys.readouterr().err
        assert "cannot write to" in err or "not permitted" in err or "denied" in err, err
        assert err.count("\n") == 1
    finally:
        subprocess.run(["chattr", "-i", str(locked)], capture_output=True)
        locked.chmod(0o755)


def test_run_on_the_builtin_benchmark_writes_every_file(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    assert main(["run", "--methods", "cam,gradcam,saliency", "--n", "40", "--batch-size", "16", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| cam |" in printed and f"wrote {out}" in printed and "s/img" in printed
    per_image = pd.read_parquet(out / "per_image")
    assert len(per_image) == 120 and set(per_image.method) == {"cam", "gradcam", "saliency"}
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary.columns) == ["model", "method", "metric", "value", "ci_low", "ci_high", "n"]
    assert (summary.n == 40).all()
    config = json.loads((out / "config.json").read_text())
    assert [m["name"] for m in config["models"]] == ["builtin"] and config["n"] == 40 and config["methods"] == ["cam", "gradcam", "saliency"]
    assert (out / "summary.md").read_text().startswith("# xaibench: builtin on builtin")
    assert (out / "overlays.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert pd.read_parquet(out / "timings").groupby("method").images.sum().tolist() == [40, 40, 40]
    # The trained network looks at its objects: CAM's maximum lands on (or within 15 px of) the object.
    cam = summary[(summary.method == "cam") & (summary.metric == "pointing")].value.item()
    assert cam >= 90
    # The folder holds a run now: running into it again is refused, --overwrite replaces it.
    assert main(["run", "--methods", "cam", "--n", "4", "--out", str(out)]) == 2
    assert "holds the results of another run" in capsys.readouterr().err
    assert main(["run", "--methods", "cam", "--n", "4", "--no-report", "--out", str(out), "--overwrite"]) == 0
    assert len(pd.read_parquet(out / "per_image")) == 4 and not (out / "box_accuracy_curves.csv").stat().st_size == 0
    assert json.loads((out / "config.json").read_text())["methods"] == ["cam"]


def test_default_folders_are_unique(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    for _ in range(2):
        assert main(["run", "--methods", "center", "--n", "2", "--no-report"]) == 0
    runs = sorted(p.name for p in (tmp_path / "reports").iterdir())
    assert len(runs) == 2 and all((tmp_path / "reports" / r / "summary.csv").is_file() for r in runs)


def test_weights_none_gives_a_random_builtin_network(tmp_path) -> None:
    assert main(["run", "--methods", "cam", "--n", "24", "--weights", "none", "--no-report", "--out", str(tmp_path)]) == 0
    summary = pd.read_csv(tmp_path / "summary.csv").set_index(["method", "metric"]).value
    assert summary["cam", "top1_cls"] < 50  # six classes, untrained: near chance (the trained one: ~99)


def test_unreadable_images_are_skipped_and_named_and_the_run_completes(tmp_path, capsys) -> None:
    """A data set with a good photo, a corrupt file, a truncated JPEG, an oversized image and a FIFO."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for name in ("good.png", "good2.png"):
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(tmp_path / name)
    (tmp_path / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
    Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(tmp_path / "full.jpg")
    (tmp_path / "truncated.jpg").write_bytes((tmp_path / "full.jpg").read_bytes()[:300])
    Image.new("RGB", (200, 200)).save(tmp_path / "huge.png")
    os.mkfifo(tmp_path / "fifo.jpg")
    rows = ["image,label,x0,y0,x1,y1"] + [
        f"{name},disk,4,4,40,30" for name in ("good.png", "corrupt.jpg", "truncated.jpg", "huge.png", "fifo.jpg", "good2.png")
    ]
    (tmp_path / "boxes.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "run"
    argv = ["run", "--methods", "cam", "--dataset", f"csv:{tmp_path / 'boxes.csv'}", "--max-image-pixels", "20000",
            "--out", str(out)]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "skipped 4 unreadable images" in captured.out
    skipped = pd.read_parquet(out / "skipped")
    assert skipped["index"].tolist() == [1, 2, 3, 4]
    for name, reason in zip(("corrupt.jpg", "truncated.jpg", "huge.png", "fifo.jpg"), skipped.reason):
        assert name in reason
    assert pd.read_parquet(out / "per_image").image_id.tolist() == ["good.png", "good2.png"]
    assert "2 images scored, 4 unreadable images skipped" in (out / "summary.md").read_text()


def test_the_pixel_limit_is_restored_after_a_run(tmp_path) -> None:
    from PIL import Image

    before = Image.MAX_IMAGE_PIXELS
    assert main(["run", "--methods", "center", "--n", "2", "--max-image-pixels", "100", "--no-report", "--out", str(tmp_path)]) == 0
    assert Image.MAX_IMAGE_PIXELS == before


def test_method_options_and_the_run_seed_are_recorded(tmp_path) -> None:
    argv = ["run", "--methods", "center(sigma=0.5),random", "--n", "4", "--seed", "3", "--no-report", "--out", str(tmp_path)]
    assert main(argv) == 0
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["methods"] == ["center", "random"]
    assert config["method_options"] == {"center": {"sigma": 0.5}, "random": {"seed": 3, "grid": 7}}


@pytest.mark.skipif(not SHARED_IMAGENET.is_dir(), reason="needs ../shared/data/imagenet-val-300")
def test_several_models_in_one_run(tmp_path, capsys) -> None:
    argv = ["run", "--model", "efficientnet_lite0,efficientnet_lite1", "--dataset", f"imagenet:{SHARED_IMAGENET}",
            "--methods", "cam,gradcam", "--n", "3", "--out", str(tmp_path)]
    assert main(argv) == 0
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert list(dict.fromkeys(zip(summary.model, summary.method))) == [
        ("efficientnet_lite0", "cam"), ("efficientnet_lite0", "gradcam"),
        ("efficientnet_lite1", "cam"), ("efficientnet_lite1", "gradcam"),
    ]
    config = json.loads((tmp_path / "config.json").read_text())
    assert [(m["name"], m["image_size"]) for m in config["models"]] == [
        ("efficientnet_lite0", [224, 224]), ("efficientnet_lite1", [240, 240])]
    assert (tmp_path / "overlays-efficientnet_lite0.png").is_file() and (tmp_path / "overlays-efficientnet_lite1.png").is_file()
    assert "| cam | efficientnet_lite1 |" in capsys.readouterr().out
    assert "partial" not in (tmp_path / "summary.md").read_text()


def test_an_out_that_is_a_file(tmp_path, capsys) -> None:
    (tmp_path / "file").write_text("")
    assert main(["run", "--n", "2", "--out", str(tmp_path / "file")]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err


def test_resume_refuses_a_data_set_that_changed_on_disk(tmp_path, capsys) -> None:
    from PIL import Image

    for name in ("a.png", "b.png", "c.png"):
        Image.new("RGB", (40, 40), "white").save(tmp_path / name)
    csv = tmp_path / "boxes.csv"
    csv.write_text("image,label,x0,y0,x1,y1\nb.png,disk,1,1,20,20\nc.png,ring,1,1,20,20\n")
    argv = ["run", "--methods", "center", "--dataset", f"csv:{csv}", "--no-report", "--out", str(tmp_path / "run")]
    assert main(argv) == 0
    csv.write_text("image,label,x0,y0,x1,y1\na.png,disk,1,1,20,20\nb.png,disk,1,1,20,20\n")
    assert main([*argv, "--resume"]) == 2
    assert "the data set's images are not the ones the run started with" in capsys.readouterr().err


def test_the_run_s_overlay_figure_runs_no_method_again(tmp_path, monkeypatch) -> None:
    """overlays.png is drawn from the maps the run journaled: each method explains each batch once."""
    calls = []
    explain = xaibench.Explainer.explain

    def counted(self, images, targets, **given):
        calls.append((self.name, len(images)))
        return explain(self, images, targets, **given)

    monkeypatch.setattr(xaibench.Explainer, "explain", counted)
    assert main(["run", "--methods", "cam,saliency", "--n", "8", "--batch-size", "8", "--out", str(tmp_path / "r")]) == 0
    assert calls == [("cam", 8), ("saliency", 8)] and (tmp_path / "r" / "overlays.png").stat().st_size > 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "--seed", "1.5"], "argument --seed: invalid int value: '1.5'; see xaibench run --help"),
        (["run", "--target", "foo"], "argument --target: invalid choice: 'foo'"),
        ([], "the following arguments are required: command; see xaibench --help"),
        (["explain", "--dpi", "x"], "argument --dpi: invalid float value: 'x'; see xaibench explain --help"),
    ],
)
def test_argument_errors_are_one_line(capsys, argv, message) -> None:
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("xaibench: error: ") and message in err and err.count("\n") == 1, err


def test_a_run_whose_every_image_is_unreadable_is_an_error_that_keeps_the_list(tmp_path, capsys) -> None:
    """Not a 'wrote' with an empty summary: exit 2, the reasons kept in the skipped table; report says the same."""
    (tmp_path / "a.png").write_bytes(b"x")
    (tmp_path / "b.csv").write_text("image,label,x0,y0,x1,y1\na.png,disk,1,1,5,5\n")
    out = tmp_path / "run"
    assert main(["run", "--dataset", f"csv:{tmp_path / 'b.csv'}", "--methods", "cam", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "xaibench: error: none of the 1 images could be read" in err and f"{out / 'skipped'}/" in err
    assert len(pd.read_parquet(out / "skipped")) == 1 and not (out / "overlays.png").exists()
    assert main(["report", str(out), "--out", str(tmp_path / "report")]) == 2
    assert "whose 1 image(s) could not be read (see its skipped/ table); nothing to report" in capsys.readouterr().err
