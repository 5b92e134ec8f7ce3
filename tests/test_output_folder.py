"""``xaibench.output_folder``: a command replaces and removes only the files it wrote, read back from a
manifest that is checked as input; its lock, and the temporary files a killed writer leaves."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import pytest

from xaibench.errors import XaibenchError
from xaibench.output_folder import MANIFEST, OutputFolder, hold_temporary, read_manifest, remove_stale_temporaries


def _write(folder: Path, command: str, files: dict[str, str]) -> None:
    with OutputFolder(folder, command) as out:
        for name, text in files.items():
            out.write_text(name, text)


def _manifest(folder: Path) -> dict:
    return json.loads((folder / MANIFEST).read_text())


def test_the_manifest_lists_each_file_with_its_command_and_digest(tmp_path):
    _write(tmp_path, "report", {"summary.md": "# one\n", "gallery-1.jpg": "jpeg"})
    files = _manifest(tmp_path)["files"]
    assert files == {name: {"command": "report", "sha256": hashlib.sha256(text.encode()).hexdigest()}
                     for name, text in {"summary.md": "# one\n", "gallery-1.jpg": "jpeg"}.items()}
    assert _manifest(tmp_path)["writing"] == {}
    assert not (tmp_path / ".xaibench.lock").exists()  # the lock is gone once the command is done


def test_own_unchanged_files_are_replaced_and_the_rest_removed_others_kept(tmp_path):
    _write(tmp_path, "report", {"summary.md": "# one\n", "gallery-2.jpg": "old"})
    (tmp_path / "gallery-3.jpg").write_text("the user's")
    with OutputFolder(tmp_path, "report") as out:
        assert out.check(["summary.md", "gallery-1.jpg"]) == ["summary.md"]  # the ones there, its own
        out.write_text("summary.md", "# two\n")
        assert out.remove_rest() == ["gallery-2.jpg"]
    assert (tmp_path / "summary.md").read_text() == "# two\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [MANIFEST, "gallery-3.jpg", "summary.md"]
    assert set(_manifest(tmp_path)["files"]) == {"summary.md"}


@pytest.mark.parametrize(
    ("prepare", "message"),
    [
        (lambda f: (f / "summary.md").write_text("mine"), "summary.md was not written by xaibench report (it is not in"),
        (lambda f: (_write(f, "report", {"summary.md": "x"}), (f / "summary.md").write_text("edited")),
         "summary.md changed since xaibench report wrote it, so it is not replaced"),
        (lambda f: _write(f, "sanity", {"summary.md": "x"}),
         "summary.md was written by xaibench sanity, not by xaibench report"),
        (lambda f: (f / "summary.md").symlink_to(f.parent / "target.txt"), "summary.md is a symbolic link"),
        (lambda f: os.link(f.parent / "target.txt", f / "summary.md"), "summary.md has 1 other hard link(s)"),
        (lambda f: (f / "summary.md").mkdir(), "summary.md is a folder"),
    ],
)
def test_a_file_the_command_did_not_write_is_refused_and_left_as_it_is(tmp_path, prepare, message):
    (tmp_path / "target.txt").write_text("elsewhere")
    folder = tmp_path / "out"
    folder.mkdir()
    prepare(folder)
    before = {p.name: (p.is_dir() or p.read_bytes()) for p in folder.iterdir()}
    with OutputFolder(folder, "report") as out, pytest.raises(XaibenchError, match="^.*$") as error:
        out.write_text("summary.md", "the report's")
    assert message in str(error.value) and "\n" not in str(error.value)
    assert {p.name: (p.is_dir() or p.read_bytes()) for p in folder.iterdir()} == before
    assert (tmp_path / "target.txt").read_text() == "elsewhere"


def test_a_kill_between_writing_and_renaming_leaves_a_file_that_is_still_its_own(tmp_path, monkeypatch):
    """The manifest lists the new bytes before they are renamed into place, so whichever bytes a kill
    leaves, old or new, they are recognised."""
    _write(tmp_path, "report", {"summary.md": "old"})
    seen = []
    real_replace = os.replace

    def replace(source, destination):
        if Path(destination).name == "summary.md":
            seen.append(_manifest(tmp_path))
        return real_replace(source, destination)

    monkeypatch.setattr(os, "replace", replace)
    _write(tmp_path, "report", {"summary.md": "new"})
    (at_rename,) = seen
    assert at_rename["files"]["summary.md"]["sha256"] == hashlib.sha256(b"old").hexdigest()
    assert at_rename["writing"]["summary.md"]["sha256"] == hashlib.sha256(b"new").hexdigest()
    for left in ("old", "new"):  # the kill came before, or after, the rename
        (tmp_path / MANIFEST).write_text(json.dumps(at_rename))
        (tmp_path / "summary.md").write_text(left)
        with OutputFolder(tmp_path, "report") as out:
            assert out.check(["summary.md"]) == ["summary.md"]
        assert _manifest(tmp_path)["writing"] == {}
        assert _manifest(tmp_path)["files"]["summary.md"]["sha256"] == hashlib.sha256(left.encode()).hexdigest()


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (b"\xff\xfe", "UnicodeDecodeError"),
        (b"{", "JSONDecodeError"),
        (b'"files"', "it holds a JSON str, not an object"),
        (b'{"xaibench_outputs": true}', "its 'xaibench_outputs' is True, not 1"),
        (b'{"xaibench_outputs": 1, "files": []}', "its 'files' is a JSON list, not an object"),
        (b'{"xaibench_outputs": 1, "writing": {"a/b": {"command": "x", "sha256": "' + b"a" * 64 + b'"}}}',
         "'writing' lists 'a/b', which is not the name of a file"),
        (b'{"xaibench_outputs": 1, "files": {".xaibench.lock": {"command": "x", "sha256": "' + b"a" * 64 + b'"}}}',
         "'files' lists '.xaibench.lock'"),
        (b'{"xaibench_outputs": 1, "files": {"a": {"command": "", "sha256": "' + b"a" * 64 + b'"}}}',
         "its entry of 'a' is"),
        (b'{"xaibench_outputs": 1, "files": {"a": {"command": "report", "sha256": "' + b"A" * 64 + b'"}}}',
         "not a command and a SHA-256 (64 hex digits)"),
        (b"[" * 100_000, "RecursionError"),
    ],
)
def test_a_damaged_manifest_is_one_line_naming_it(tmp_path, text, problem):
    (tmp_path / MANIFEST).write_bytes(text)
    with pytest.raises(XaibenchError) as error:
        read_manifest(tmp_path)
    message = str(error.value)
    assert message.startswith(f"{tmp_path / MANIFEST} is damaged (") and problem in message and "\n" not in message
    assert "remove it (xaibench then replaces none of the files there) or choose another --out" in message


def test_a_newer_manifest_and_a_linked_one_are_refused(tmp_path):
    (tmp_path / MANIFEST).write_text('{"xaibench_outputs": 2}')
    with pytest.raises(XaibenchError, match="was written by a newer xaibench .format 2; this one reads 1."):
        read_manifest(tmp_path)
    (tmp_path / MANIFEST).unlink()
    (tmp_path / "elsewhere.json").write_text('{"xaibench_outputs": 1}')
    (tmp_path / MANIFEST).symlink_to(tmp_path / "elsewhere.json")
    with pytest.raises(XaibenchError, match="is a symbolic link, not a file xaibench wrote"):
        OutputFolder(tmp_path, "report").__enter__()
    assert not (tmp_path / ".xaibench.lock").exists()  # released on the way out


def test_nothing_written_leaves_no_manifest_and_removing_everything_removes_it(tmp_path):
    with OutputFolder(tmp_path, "explain") as out:
        out.check(["cat-cam.png"])
    assert list(tmp_path.iterdir()) == []
    _write(tmp_path, "sanity", {"sanity.csv": "x"})
    with OutputFolder(tmp_path, "sanity") as out:
        assert out.remove_rest() == ["sanity.csv"]
    assert list(tmp_path.iterdir()) == []


def test_a_changed_file_is_left_by_remove_rest_and_forgotten(tmp_path):
    _write(tmp_path, "sanity", {"data_randomization.csv": "x", "sanity.csv": "y"})
    (tmp_path / "data_randomization.csv").write_text("edited by hand")
    with OutputFolder(tmp_path, "sanity") as out:
        out.write_text("sanity.csv", "z")
        assert out.remove_rest() == []
    assert (tmp_path / "data_randomization.csv").read_text() == "edited by hand"
    assert set(_manifest(tmp_path)["files"]) == {"sanity.csv"}


def test_two_commands_cannot_write_into_one_folder_at_once(tmp_path):
    with OutputFolder(tmp_path, "report"):
        with pytest.raises(XaibenchError, match=f"another xaibench report \\(pid {os.getpid()}, since .*\\) is writing to "):
            OutputFolder(tmp_path, "sanity").__enter__()


def test_only_the_stale_temporaries_of_its_own_names_are_removed(tmp_path):
    def temporary(name: str, extension: str = "") -> Path:
        return Path(tempfile.mkstemp(dir=tmp_path, prefix=f".{name}.", suffix=".partial" + extension)[1])

    ours = [temporary("summary.md"), temporary("out.mp4", ".mp4"), temporary("cat-cam.png")]
    others = [temporary("notes.txt"), temporary("out.mp4", ".mkv"), tmp_path / ".summary.md.partial",
              tmp_path / ".summary.md.abcdefgh.partial~", tmp_path / "summary.md.abcdefgh.partial"]
    for path in others[2:]:
        path.write_text("")
    (tmp_path / ".summary.md.folder123.partial").mkdir()
    held = temporary("summary.md")
    with hold_temporary() as hold:
        hold(held)  # a writer at work on it
        removed = remove_stale_temporaries(tmp_path, {"summary.md", "out.mp4", "cat-cam.png"}.__contains__)
    assert sorted(removed) == sorted(ours)
    assert all(p.exists() for p in [*others, held, tmp_path / ".summary.md.folder123.partial"])


def test_opening_the_folder_removes_its_commands_stale_temporaries(tmp_path):
    _write(tmp_path, "explain", {"cat-cam.png": "figure"})
    stale = [tempfile.mkstemp(dir=tmp_path, prefix=f".{name}.", suffix=".partial")[1]
             for name in ("cat-cam.png", MANIFEST, "sanity.csv", "dog-cam.png")]
    with OutputFolder(tmp_path, "explain", names={"sanity.csv"}.__contains__):
        pass
    assert [os.path.exists(p) for p in stale] == [False, False, False, True]  # dog-cam.png: not a name it knows
