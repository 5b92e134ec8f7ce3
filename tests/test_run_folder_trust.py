"""What a run folder guarantees when it is read back: it is what it claims to be, and nothing hostile
in it or around it does harm.

- Links: nothing outside the folder is read or written through a link, a hard link, a FIFO or a device
  planted in place of one of its files (or of its lock).
- Identity: a row stands for the bytes and annotations it scored; ``--resume`` scores again the images
  that changed (and refuses those it cannot read), ``report`` pairs only the same images.
- Damage: every damaged, crafted or re-saved file gives one line and exit status 2, never a traceback,
  and no reader allocates more than the file's schema allows.
- Leftovers: a skipped image is read again on ``--resume``; a finished folder holds no lock.

The tests hold for any storage of the results: the faults that depend on how they are stored today are
planted by :mod:`run_folder_faults`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from PIL import Image

import run_folder_faults as faults
import xaibench
from xaibench import cli, comparison, harness
from xaibench.errors import XaibenchError
from xaibench.run_folder import CONFIG, CONFIG_SCHEMA, IMAGES, LOCK, MAPS, PER_IMAGE, SUMMARY_CSV, RunFolder

RUN = ["run", "--methods", "cam,center", "--n", "4", "--batch-size", "2"]


def _main(argv: list[str], capsys) -> tuple[int, str]:
    """Run a command in this process: its exit status and its standard error (which must hold no
    traceback, and only one line when it fails)."""
    status = cli.main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    if status != 0:
        lines = [line for line in err.splitlines() if line.startswith("xaibench: error:")]
        assert status == 2 and len(lines) == 1, err
    return status, err


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished built-in run (2 methods, 4 images, 2 batches), copied by each test that changes it."""
    out = tmp_path_factory.mktemp("finished") / "run"
    assert cli.main([*RUN, "--out", str(out)]) == 0
    return out


def _copy(run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    return copy


def _victim(tmp_path: Path) -> tuple[Path, bytes, int]:
    victim = tmp_path / "outside" / "victim.txt"
    victim.parent.mkdir()
    victim.write_bytes(b"a file outside the run folder\n")
    return victim, victim.read_bytes(), victim.stat().st_mtime_ns


# Links ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["symlink", "hardlink"])
def test_no_file_outside_the_folder_is_written_through_a_planted_link(finished, tmp_path, capsys, kind) -> None:
    """A link in place of every file of the run (and of its lock): each command either refuses, naming
    the link, or replaces the link itself; the refused link is then taken away and the command run again,
    until it succeeds. The file outside is never changed."""
    for argv in (["summarize", "{run}"], [*RUN, "--out", "{run}", "--resume"]):
        run = _copy(finished, tmp_path / argv[0])
        victim, before, mtime = _victim(tmp_path / argv[0])
        names = faults.files(run) + [LOCK]
        for name in names:
            (run / name).unlink(missing_ok=True)
            (run / name).symlink_to(victim) if kind == "symlink" else os.link(victim, run / name)
        refused = []
        for _ in names:
            status, err = _main([a.format(run=run) for a in argv], capsys)
            assert victim.read_bytes() == before and victim.stat().st_mtime_ns == mtime, (argv, err)
            if status == 0:
                break
            name = next(n for n in names if f"{run / n} " in err)
            # a hard-linked file may be read (here it holds the victim's text: damage), never written in place
            assert kind == "hardlink" or "is a symbolic link" in err
            refused.append(name)
            (run / name).unlink()
            if (finished / name).exists():
                shutil.copy(finished / name, run / name)
        # summarize reads a hard-linked file (harmless) and replaces what it writes: nothing to refuse there
        assert status == 0 and (refused or (kind == "hardlink" and argv[0] == "summarize")), (argv, refused)


def test_a_hard_linked_copy_of_a_run_is_read_and_continued_without_changing_the_original(
    finished, tmp_path, capsys
) -> None:
    """A backup made with hard links (``cp -al``, ``rsync --link-dest``) shares its files with the run:
    reading it changes nothing, and continuing it writes new files only, so the original stays as it was."""
    copy = tmp_path / "backup"
    for name in faults.files(finished):
        (copy / name).parent.mkdir(parents=True, exist_ok=True)
        os.link(finished / name, copy / name)
    before = {name: (finished / name).read_bytes() for name in faults.files(finished)}
    assert _main(["summarize", copy], capsys)[0] == 0
    assert _main(["report", "--no-vectors", copy, "--out", tmp_path / "report"], capsys)[0] == 0
    assert _main([*RUN, "--out", copy, "--resume"], capsys)[0] == 0
    assert {name: (finished / name).read_bytes() for name in faults.files(finished)} == before


def test_a_fifo_or_a_device_in_place_of_a_file_is_refused_at_once(finished, tmp_path, capsys) -> None:
    def blocked(signum, frame):
        raise TimeoutError("a command blocked on a FIFO")

    previous = signal.signal(signal.SIGALRM, blocked)
    try:
        part = str(faults.first_part(finished).relative_to(finished))
        for name, plant in [(LOCK, "fifo"), (CONFIG, "fifo"), (part, "fifo"), (part, "device")]:
            run = _copy(finished, tmp_path / f"{name.replace('/', '-')}-{plant}")
            (run / name).unlink(missing_ok=True)
            if plant == "fifo":
                os.mkfifo(run / name)
            else:
                try:
                    os.mknod(run / name, 0o666 | stat.S_IFCHR, os.makedev(1, 5))  # as /dev/zero
                except PermissionError:
                    continue
            for argv in ([*RUN, "--out", run, "--resume"], ["summarize", run])[: 1 if name == LOCK else 2]:
                signal.alarm(60)
                status, err = _main(argv, capsys)
                signal.alarm(0)
                assert status == 2 and f"{run / name} is a " in err, (name, plant, err)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_overwrite_replaces_a_run_never_files_of_the_same_names_without_one(tmp_path, capsys) -> None:
    folder = tmp_path / "documents"
    folder.mkdir()
    (folder / "summary.md").write_text("my notes\n")
    status, err = _main([*RUN, "--out", folder, "--overwrite"], capsys)
    assert status == 2 and "holds summary.md but no run" in err
    assert (folder / "summary.md").read_text() == "my notes\n"


def test_a_finished_run_keeps_no_lock_and_a_planted_lock_link_is_refused(finished, tmp_path, capsys) -> None:
    assert not (finished / LOCK).exists()
    run = _copy(finished, tmp_path)
    victim, before, _ = _victim(tmp_path)
    (run / LOCK).symlink_to(victim)
    status, err = _main(["summarize", run], capsys)  # summarize takes no lock
    assert status == 0
    status, err = _main([*RUN, "--out", run, "--resume"], capsys)
    assert status == 2 and "is a symbolic link" in err and victim.read_bytes() == before


# Identity ---------------------------------------------------------------------------------------------


def _photos(folder: Path, shades: list[int], missing: int | None = None) -> Path:
    """A csv: data set of flat-coloured photos with one box each, in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = ["image,label,x0,y0,x1,y1"]
    for k, shade in enumerate(shades):
        pixels = np.full((40, 50, 3), shade, dtype=np.uint8)
        pixels[10:30, 10 + k:30 + k] = 255 - shade
        if k != missing:
            Image.fromarray(pixels).save(folder / f"p{k}.png")
        rows.append(f"p{k}.png,{k % 3},{10 + k},10,{29 + k},29")
    (folder / "boxes.csv").write_text("\n".join(rows) + "\n")
    return folder / "boxes.csv"


def _evaluate(csv: Path, out: Path | None = None, methods=("cam", "saliency")) -> pd.DataFrame:
    """The library's run of ``methods`` on the photos (the built-in network, batches of 2)."""
    model = xaibench.load_model("builtin")
    dataset = xaibench.load_dataset(f"csv:{csv}", image_size=model.input_size, class_names=model.class_names)
    return xaibench.evaluate(model, dataset, list(methods), batch_size=2, out=out)


def _sorted(rows: pd.DataFrame) -> pd.DataFrame:
    return rows.sort_values(["model", "index", "method"]).reset_index(drop=True)


def test_resume_scores_again_the_images_that_changed_and_says_which(tmp_path, caplog) -> None:
    csv = _photos(tmp_path / "photos", [20, 60, 100, 140, 180])
    before = _evaluate(csv, tmp_path / "run")
    _photos(tmp_path / "photos", [20, 60, 230, 140, 180])  # image 2: other pixels, same name
    with caplog.at_level("WARNING"):
        after = _evaluate(csv, tmp_path / "run")
    assert "1 image(s) changed since the run scored them" in caplog.text and "p2.png (index 2)" in caplog.text
    fresh = _evaluate(csv, tmp_path / "fresh")
    pd.testing.assert_frame_equal(_sorted(after), _sorted(fresh))  # as a run on the changed data from the start
    assert harness.read_per_image(tmp_path / "run").equals(after)
    changed = before["index"] == 2
    assert (before[changed].image_sha256.to_numpy() != _sorted(after)[_sorted(before)["index"] == 2].image_sha256.to_numpy()).all()
    kept = _sorted(after)[_sorted(after)["index"] != 2].reset_index(drop=True)
    pd.testing.assert_frame_equal(kept, _sorted(before)[_sorted(before)["index"] != 2].reset_index(drop=True))
    assert xaibench.summarize(after).equals(xaibench.summarize(fresh))


def test_resume_refuses_an_image_it_scored_that_cannot_be_read_now(tmp_path) -> None:
    csv = _photos(tmp_path / "photos", [20, 60, 100, 140])
    _evaluate(csv, tmp_path / "run")
    (tmp_path / "photos" / "p1.png").unlink()
    with pytest.raises(XaibenchError, match=r"1 image\(s\) scored earlier in .* cannot be read now, e.g. 1 \(.*p1.png"):
        _evaluate(csv, tmp_path / "run")


def test_annotations_are_part_of_an_image_s_identity(tmp_path, caplog) -> None:
    csv = _photos(tmp_path / "photos", [20, 60, 100])
    _evaluate(csv, tmp_path / "run", methods=["center"])
    csv.write_text(csv.read_text().replace("p1.png,1,11,10,30,29", "p1.png,1,11,10,35,29"))  # a wider box
    with caplog.at_level("WARNING"):
        _evaluate(csv, tmp_path / "run", methods=["center"])
    assert "1 image(s) changed" in caplog.text and "p1.png (index 1)" in caplog.text


def _library_run(folder: Path, out: Path, method: str, monkeypatch) -> comparison.Run:
    """A run folder made through the library, its data set named 'csv:boxes.csv' in ``folder``."""
    monkeypatch.chdir(folder)
    with RunFolder(out) as run:
        run.start({"dataset": "csv:boxes.csv", "seed": 0, "n": 4, "methods": [method], "metrics": ["pointing"]})
        model = xaibench.load_model("builtin")
        dataset = xaibench.load_dataset("csv:boxes.csv", image_size=model.input_size, class_names=model.class_names)
        xaibench.evaluate(model, dataset, [method], metrics=["pointing"], out=out)
    return comparison.load_run(out, n_boot=10)


def test_report_refuses_two_data_sets_named_alike_and_pairs_copies(tmp_path, monkeypatch) -> None:
    _photos(tmp_path / "a", [20, 60, 100, 140])
    _photos(tmp_path / "b", [200, 160, 120, 80])  # other photos under the same names
    shutil.copytree(tmp_path / "a", tmp_path / "c")  # the same photos elsewhere
    a = _library_run(tmp_path / "a", tmp_path / "run-a", "cam", monkeypatch)
    b = _library_run(tmp_path / "b", tmp_path / "run-b", "saliency", monkeypatch)
    c = _library_run(tmp_path / "c", tmp_path / "run-c", "saliency", monkeypatch)
    with pytest.raises(XaibenchError, match=r"both name the data set 'csv:boxes.csv', but 4 of the 4 images .* "
                                            r"differ in their bytes or annotations \(e.g. image 'p0.png'\)"):
        comparison.combine([a, b])
    pairs = comparison.pairwise(comparison.combine([a, c]), n_boot=10)
    assert set(zip(pairs.method_a, pairs.method_b)) == {("cam", "saliency")} and (pairs.n == 4).all()


def test_a_run_of_0_2_is_read_but_not_resumed(finished, tmp_path, capsys) -> None:
    run = _copy(finished, tmp_path)
    faults.as_written_by_0_2(run)
    assert _main(["summarize", run], capsys)[0] == 0
    assert pd.read_csv(run / SUMMARY_CSV).equals(pd.read_csv(finished / SUMMARY_CSV))
    kept = {name: (run / name).read_bytes() for name in faults.files(run)}
    status, err = _main([*RUN, "--out", run, "--resume"], capsys)
    assert status == 2 and "written by an earlier version of xaibench" in err
    assert {name: (run / name).read_bytes() for name in faults.files(run)} == kept  # not converted


def test_a_run_of_0_3_is_read_and_converted_once_when_resumed(finished, tmp_path, capsys, caplog) -> None:
    """The CSV journals of xaibench 0.3 are read as they are; --resume converts them to the results store,
    once and with a message, and continues to the same rows and summary as the run that was never
    converted."""
    run = _copy(finished, tmp_path)
    faults.as_written_by(run, "0.3")
    assert not (run / PER_IMAGE).exists()
    assert _main(["summarize", run], capsys)[0] == 0
    assert pd.read_csv(run / SUMMARY_CSV).equals(pd.read_csv(finished / SUMMARY_CSV))
    assert _main([*RUN, "--out", run, "--resume", "--no-report"], capsys)[0] == 0
    assert "converted" in caplog.text and (run / PER_IMAGE).is_dir() and not list(run.glob("*.csv.partial"))
    assert not [p for p in run.iterdir() if p.name in {"per_image.csv", "maps.csv", "images.csv"}]
    assert (run / SUMMARY_CSV).read_bytes() == (finished / SUMMARY_CSV).read_bytes()
    pd.testing.assert_frame_equal(harness.read_per_image(run), harness.read_per_image(finished))


# Damage -----------------------------------------------------------------------------------------------


def _damaged(data: bytes, how: str) -> bytes:
    middle = len(data) // 2
    if how == "truncated":
        return data[:middle]
    if how == "flipped":
        rng = np.random.default_rng(len(data))
        damaged = bytearray(data)
        for k in rng.integers(0, len(data), size=8):
            damaged[k] ^= 0xFF
        return bytes(damaged)
    if how == "binary":
        return bytes(np.random.default_rng(1).integers(0, 256, size=4096, dtype=np.uint8))
    if how == "empty":
        return b""
    raise AssertionError(how)


KINDS_OF_DAMAGE = ["truncated", "flipped", "binary", "empty"]


def test_every_damaged_file_is_one_line_or_read(finished, tmp_path, capsys) -> None:
    for k, name in enumerate(faults.files(finished)):
        for how in ("truncated", KINDS_OF_DAMAGE[1 + k % 3]):
            run = _copy(finished, tmp_path / f"{name.replace('/', '-')}-{how}")
            (run / name).write_bytes(_damaged((finished / name).read_bytes(), how))
            _main(["summarize", run], capsys)  # exit 0, or 2 with one line; never a traceback


@pytest.mark.parametrize("table", [IMAGES, MAPS, PER_IMAGE])
def test_damaged_files_the_report_and_resume_read_are_one_line(finished, tmp_path, capsys, table) -> None:
    run = _copy(finished, tmp_path)
    name = faults.first_part(run, table)
    for how in KINDS_OF_DAMAGE:
        name.write_bytes(_damaged(faults.first_part(finished, table).read_bytes(), how))
        argv = [*RUN, "--out", run, "--resume"] if table == PER_IMAGE else ["report", run, "--out", tmp_path / "report"]
        status, err = _main(argv, capsys)
        assert status == 2 and f"{name} is damaged" in err, (how, err)


def test_files_a_spreadsheet_saved_again_read_the_same(finished, tmp_path, capsys) -> None:
    run = _copy(finished, tmp_path)
    for path in faults.text_files(run):  # a byte-order mark and CRLF line ends, as Excel saves
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes().replace(b"\n", b"\r\n"))
    assert _main(["summarize", run], capsys)[0] == 0
    assert pd.read_csv(run / SUMMARY_CSV).equals(pd.read_csv(finished / SUMMARY_CSV))
    status, err = _main([*RUN, "--out", run, "--resume", "--no-report"], capsys)
    assert status == 0 and "--overwrite" not in err
    assert pd.read_csv(run / SUMMARY_CSV).equals(pd.read_csv(finished / SUMMARY_CSV))


def test_a_decompression_bomb_is_refused_within_bounded_memory(finished, tmp_path, capsys) -> None:
    run = _copy(finished, tmp_path)
    size = faults.plant_decompression_bomb(run, inflated_bytes=1 << 28)
    assert size < 1 << 20  # 256 MiB in less than a MB
    pool = pa.default_memory_pool()
    before = pool.max_memory()
    tracemalloc.start()
    try:
        status, err = _main(["summarize", run], capsys)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert status == 2 and f"{faults.first_part(run)} is damaged (its {faults.CURVE} declares" in err
    assert peak < 32 << 20, peak
    assert pool.max_memory() - before < 32 << 20  # Arrow's own allocations, which tracemalloc does not see


@pytest.mark.parametrize("plant", [
    faults.plant_huge_declared_array,
    lambda run: faults.plant_array_of_dtype(run, "object"),
    lambda run: faults.plant_array_of_dtype(run, "text"),
    lambda run: faults.plant_array_of_dtype(run, "struct"),
    lambda run: faults.plant_array_of_dtype(run, "bytes"),
    lambda run: faults.plant_array_of_shape(run, (7,)),
    lambda run: faults.plant_array_of_shape(run, (3, 100)),
    lambda run: faults.plant_bad_index(run, "-3"),
    lambda run: faults.plant_bad_index(run, "1.5"),
    lambda run: faults.plant_bad_index(run, "1" + "0" * 23),
])
def test_crafted_cells_are_damage_naming_file_row_and_column(finished, tmp_path, capsys, plant) -> None:
    run = _copy(finished, tmp_path)
    plant(run)
    for argv in (["summarize", run], ["report", "--no-vectors", run, "--out", tmp_path / "report"]):
        status, err = _main(argv, capsys)
        assert status == 2 and f"{faults.first_part(run)} is damaged (" in err
        assert "index" in err or faults.CURVE in err, err


def _wrong_value(check) -> object:
    """A JSON value that ``check`` refuses."""
    return next(v for v in ("text", -7, 1.5, None, [1, [2]], {"a": 1}, [{"name": 3}], True) if not check(v))


@pytest.mark.parametrize("field", sorted(CONFIG_SCHEMA))
def test_every_config_field_of_the_wrong_type_is_damage_naming_it(finished, tmp_path, capsys, field) -> None:
    run = _copy(finished, tmp_path)
    config = json.loads((run / CONFIG).read_text())
    config[field] = _wrong_value(CONFIG_SCHEMA[field][0])
    (run / CONFIG).write_text(json.dumps(config))
    status, err = _main(["summarize", run], capsys)
    assert status == 2 and f"config.json is damaged (its {field} is " in err


@pytest.mark.parametrize("text", ["[" * 100_000, '{"a":' * 50_000 + "1" + "}" * 50_000, '{"seed": 1e999}',
                                  '{"seed": 1' + "0" * 5000 + "}"],
                         ids=["lists", "objects", "infinite-seed", "seed-of-5001-digits"])
def test_a_config_nested_without_end_is_damage(finished, tmp_path, capsys, text) -> None:
    run = _copy(finished, tmp_path)
    (run / CONFIG).write_text(text)
    for argv in (["summarize", run], ["report", "--no-vectors", run, "--out", tmp_path / "report"], [*RUN, "--out", run, "--resume"]):
        status, err = _main(argv, capsys)
        assert status == 2 and "config.json is damaged" in err


# Leftovers --------------------------------------------------------------------------------------------


def test_a_skipped_image_that_is_restored_is_scored_on_resume(tmp_path) -> None:
    csv = _photos(tmp_path / "photos", [20, 60, 100, 140], missing=2)
    first = _evaluate(csv, tmp_path / "run")
    assert first.attrs["skipped"] == ["2"] and harness.read_skipped(tmp_path / "run")["index"].tolist() == [2]
    _photos(tmp_path / "photos", [20, 60, 100, 140])  # restored
    rows = _evaluate(csv, tmp_path / "run")
    assert sorted(set(rows["index"])) == [0, 1, 2, 3] and rows.attrs["skipped"] == []
    assert harness.read_skipped(tmp_path / "run").empty
    fresh = _evaluate(csv, tmp_path / "fresh")
    # Image 3 shared its batch with no readable image in the first run, with image 2 in the fresh one:
    # the same maps up to float32 rounding.
    pd.testing.assert_frame_equal(_sorted(rows), _sorted(fresh), rtol=1e-6)
    pd.testing.assert_frame_equal(xaibench.summarize(harness.read_per_image(tmp_path / "run")),
                                  xaibench.summarize(fresh), rtol=1e-6)


def test_summarize_says_a_run_with_skipped_images_is_not_simply_complete(tmp_path, capsys) -> None:
    csv = _photos(tmp_path / "photos", [20, 60, 100], missing=1)
    out = tmp_path / "run"
    argv = ["run", "--methods", "center", "--dataset", f"csv:{csv}", "--out", out]
    assert _main(argv, capsys)[0] == 0
    assert cli.main(["summarize", str(out)]) == 0
    said = capsys.readouterr().out
    assert "complete (but for 1 unreadable image(s), listed in skipped/: --resume reads them again)" in said
    assert "--resume reads them again" in (out / "summary.md").read_text()
