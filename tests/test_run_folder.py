"""A run's folder: atomic writes (also under SIGKILL), refusing another run, overwrite, resume checks, the lock."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from xaibench.errors import XaibenchError
from xaibench.run_folder import (
    CONFIG, OUTPUTS, PER_IMAGE, SUMMARY_CSV, RunFolder, atomic_write, atomic_write_text, read_config, unique_folder,
    DEFINITIONS, DEFINITIONS_FIELD, writable_folder,
)


def test_atomic_write_leaves_the_old_file_when_the_writer_fails(tmp_path) -> None:
    path = tmp_path / "summary.csv"
    atomic_write_text(path, "old\n")

    def fails(file):
        file.write(b"half of the new")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(path, fails)
    assert path.read_text() == "old\n" and sorted(p.name for p in tmp_path.iterdir()) == ["summary.csv"]


def test_atomic_write_killed_mid_write_leaves_the_old_file(tmp_path) -> None:
    """SIGKILL while the new content is half written: the file is still exactly the old one."""
    path = tmp_path / "summary.csv"
    atomic_write_text(path, "old\n")
    started = tmp_path / "started"
    script = (
        "import pathlib, sys, time\n"
        "from xaibench.run_folder import atomic_write\n"
        "def slow(file):\n"
        "    file.write(b'new, first half'); file.flush()\n"
        f"    pathlib.Path({str(started)!r}).touch()\n"
        "    time.sleep(60)\n"
        f"atomic_write({str(path)!r}, slow)\n"
    )
    process = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 30
        while not started.exists():
            assert time.monotonic() < deadline and process.poll() is None, "the writer did not start"
            time.sleep(0.01)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)
    finally:
        if process.poll() is None:
            process.kill()
    assert path.read_text() == "old\n"
    leftovers = [p for p in tmp_path.iterdir() if p.name not in ("summary.csv", "started")]
    assert len(leftovers) == 1 and leftovers[0].name.startswith(".summary.csv.")
    atomic_write_text(tmp_path / CONFIG, "{}")
    with RunFolder(tmp_path, mode="resume"):  # a run opening the folder removes what the killed one left
        pass
    assert not leftovers[0].exists() and path.read_text() == "old\n"


def test_a_folder_holding_another_run_is_refused_unless_told(tmp_path) -> None:
    with RunFolder(tmp_path / "run") as folder:
        folder.start({"model": "a", "n": 10})
        folder.file(PER_IMAGE).mkdir()
        (folder.file(PER_IMAGE) / "part-00000001.parquet").write_text("rows\n")
    with pytest.raises(XaibenchError, match="holds the results of another run; pass --resume .* --overwrite"):
        with RunFolder(tmp_path / "run", mode="new"):
            pass
    (tmp_path / "run" / "notes.txt").write_text("mine")
    with RunFolder(tmp_path / "run", mode="overwrite"):
        pass
    assert not any((tmp_path / "run" / name).exists() for name in OUTPUTS)
    assert (tmp_path / "run" / "notes.txt").read_text() == "mine"  # only the run's own files are removed


def test_resume_refuses_another_configuration_naming_the_field(tmp_path) -> None:
    config = {"model": "builtin", "n": 40, "methods": ["cam"], "torch": "2.1", "seed": 0}
    with RunFolder(tmp_path, mode="new") as folder:
        folder.start(config)
    with RunFolder(tmp_path, mode="resume") as folder:
        folder.start({**config, "torch": "2.9"})  # informational fields may differ
    with pytest.raises(XaibenchError, match=r"'methods' was \['cam'\], now \['cam', 'gradcam'\]"):
        with RunFolder(tmp_path, mode="resume") as folder:
            folder.start({**config, "methods": ["cam", "gradcam"]})
    assert json.loads((tmp_path / CONFIG).read_text())["methods"] == ["cam"]


def test_a_run_of_other_definitions_is_never_resumed(tmp_path) -> None:
    """A run started by xaibench 0.1 (no 'definitions' field: ROAD, RISE and the pointing game were
    computed otherwise) is refused first, whatever else differs, saying what to do."""
    old = {"n": 40, "seed": 0, "xaibench": "0.1.0", "metric_options": {"pointing": {"tolerance": 15}}}
    with RunFolder(tmp_path, mode="new") as folder:
        folder.start(old)
    new = {**old, "xaibench": "0.3.0", DEFINITIONS_FIELD: DEFINITIONS,
           "metric_options": {"pointing": {"tolerance": 15, "resolution": "file"}}}
    with pytest.raises(XaibenchError, match=r"xaibench 0.1.0 computed its rows with other definitions of the metrics "
                       r"and methods \(1, now 3\); start it again with --overwrite"):
        with RunFolder(tmp_path, mode="resume") as folder:
            folder.start(new)


def test_resume_names_the_innermost_field_and_the_cause_before_the_image_ids(tmp_path) -> None:
    config = {"models": [{"name": "builtin", "weights": "w.pt", "weights_sha256": "aaa"}], "n": 40,
              "dataset_ids_sha256": "111", "seed": 0}
    with RunFolder(tmp_path, mode="new") as folder:
        folder.start(config)
    changed = {**config, "models": [{**config["models"][0], "weights_sha256": "bbb"}]}
    with pytest.raises(XaibenchError, match=r"'models\[0\].weights_sha256' was 'aaa', now 'bbb'"):
        with RunFolder(tmp_path, mode="resume") as folder:
            folder.start(changed)
    with pytest.raises(XaibenchError, match=r"'n' was 40, now 20"):  # not "the data set's images are not ..."
        with RunFolder(tmp_path, mode="resume") as folder:
            folder.start({**config, "n": 20, "dataset_ids_sha256": "222"})
    with pytest.raises(XaibenchError, match=r"the data set's images are not the ones the run started with"):
        with RunFolder(tmp_path, mode="resume") as folder:
            folder.start({**config, "dataset_ids_sha256": "222"})


@pytest.mark.parametrize(
    ("text", "problem"),
    [("{", "JSONDecodeError: Expecting property name"), ("[]", "it holds a JSON list, not an object"),
     ('{"seed": "x"}', "its seed is 'x', not an integer"),
     ('{"seed": 0, "definitions": "2"}', "its definitions is '2', not an integer")],
)
def test_a_damaged_config_is_one_error(tmp_path, text, problem) -> None:
    (tmp_path / CONFIG).write_text(text)
    with pytest.raises(XaibenchError, match=rf"config.json is damaged \({problem}.*\); restore it, or start the run again with --overwrite"):
        read_config(tmp_path)
    with pytest.raises(XaibenchError, match="config.json is damaged"):
        with RunFolder(tmp_path, "resume") as folder:
            folder.start({"seed": 0})


def test_resume_of_a_folder_without_config_but_with_rows_is_refused(tmp_path) -> None:
    (tmp_path / SUMMARY_CSV).write_text("x\n")
    with pytest.raises(XaibenchError, match="holds summary.csv but no config.json, so there is no run to resume; "
                                            "remove them or choose another --out"):
        with RunFolder(tmp_path, mode="resume"):
            pass


def test_two_runs_cannot_share_a_folder_and_a_killed_run_leaves_no_stale_lock(tmp_path) -> None:
    with RunFolder(tmp_path / "run"):
        with pytest.raises(XaibenchError, match=r"another xaibench run \(pid \d+"):
            with RunFolder(tmp_path / "run", mode="resume"):
                pass
    holder = subprocess.Popen(
        [sys.executable, "-c",
         f"from xaibench.run_folder import RunFolder\nf = RunFolder({str(tmp_path / 'run')!r}).__enter__()\n"
         "print('locked', flush=True)\nimport time\ntime.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(XaibenchError, match="another xaibench run"):
            with RunFolder(tmp_path / "run", mode="resume"):
                pass
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
    finally:
        if holder.poll() is None:
            holder.kill()
    with RunFolder(tmp_path / "run", mode="resume"):  # the operating system released the lock
        pass


def test_unwritable_folders_are_one_clear_error(tmp_path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(XaibenchError, match=rf"^{re.escape(str(blocker))} is a file, not a folder; choose another --out$"):
        with RunFolder(blocker / "run"):  # the file in the way is named, not the folder under it
            pass
    with pytest.raises(XaibenchError, match=r"a-file is a file, not a folder; choose another --out"):
        writable_folder(blocker / "deeper" / "still")


def test_commands_check_their_output_folder_before_working(tmp_path, capsys, monkeypatch) -> None:
    """sanity, report, explain and train-builtin refuse an --out they cannot write at once (sanity
    used to compute everything first, then lose it): the first step of their work is never reached."""
    from xaibench import cli, comparison, models, shapes_net

    def work_started(*args, **kwargs):
        raise AssertionError("the command started its work before checking --out")

    for module, name in ((models, "load_model"), (comparison, "load_run"), (shapes_net, "train_builtin")):
        monkeypatch.setattr(module, name, work_started)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    out = str(blocker / "sub")
    for argv in (["sanity", "--n", "2", "--out", out], ["train-builtin", "--out", out],
                 ["explain", str(blocker), "--out", out + "/x.png"], ["report", str(tmp_path), "--out", out]):
        assert cli.main(argv) == 2, argv
        captured = capsys.readouterr()
        assert f"{blocker} is a file, not a folder; choose another --out" in captured.err, (argv, captured.err)


def test_unique_folder(tmp_path) -> None:
    first, second = unique_folder(tmp_path, "run"), unique_folder(tmp_path, "run")
    assert (first.name, second.name) == ("run", "run-2") and first.is_dir() and second.is_dir()


@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000, '{"seed": ' + '{"a": ' * 50_000 + "1" + "}" * 50_001],
                         ids=["lists", "objects"])
def test_a_config_nested_too_deep_is_the_damaged_error(tmp_path, text) -> None:
    (tmp_path / CONFIG).write_text(text)
    with pytest.raises(XaibenchError, match=r"config.json is damaged \(its values nest too deeply to be read\); restore "
                                            r"it, or start the run again with --overwrite"):
        read_config(tmp_path)
    with pytest.raises(XaibenchError, match="config.json is damaged"):
        with RunFolder(tmp_path, "resume") as folder:
            folder.start({"seed": 0})
