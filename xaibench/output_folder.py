"""A folder that a command shares with the user's files: it replaces and removes only what it wrote.

``xaibench report --out DIR``, ``xaibench sanity --out DIR`` and ``xaibench explain --out DIR`` write
files of fixed names (``summary.md``, ``gallery-1.jpg``, ``sanity.csv``, ``cat-cam.png``) into a
folder that may hold files of the same names that xaibench never wrote: the user's notes, another
tool's figures. A command must not replace or remove those. So every file such a command writes is
listed, with the SHA-256 of its bytes, in the folder's manifest, ``.xaibench-outputs.json``; a later
command replaces or removes a file only when the manifest lists it as that command's and its bytes
still have the listed digest. A file of one of its names that it did not write, that another command
wrote, or that was changed since is refused before anything is written, with one line naming the
file and what to do.

The manifest::

    {"xaibench_outputs": 1,
     "about": "...",
     "files": {"summary.md": {"command": "report", "sha256": "4f1c..."}, ...},
     "writing": {}}

``writing`` lists a file between the moment its new bytes are complete (in a temporary file) and the
moment they are renamed over its name: a process killed in between leaves a file whose bytes are
either the old ones (``files``) or the new ones (``writing``), and both are recognised as its own.
The manifest is itself written atomically (:func:`xaibench.run_folder.atomic_write`) and read back as
input: anything but the format above (another format, a name with a path in it, a digest that is not
64 hex digits) is a one-line error.

While a command writes, it holds the folder's lock (:class:`xaibench.run_folder.FolderLock`), so two
commands never write into one folder at once, and it removes the temporary files that a killed
command left behind for its own names (:func:`remove_stale_temporaries`), never other files.

Example:
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> with OutputFolder(folder, "report") as out:
    ...     path = out.write_text("summary.md", "# results\\n")
    >>> with OutputFolder(folder, "report") as out:  # its own, unchanged file: replaced
    ...     path = out.write_text("summary.md", "# new results\\n")
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from xaibench.errors import XaibenchError, os_reason
from xaibench.own_files import check_own, open_own, read_own_bytes, remove_own
from xaibench.run_folder import LOCK, FolderLock, atomic_path, atomic_write_text, writable_folder
from xaibench.text import encode

logger = logging.getLogger(__name__)

MANIFEST = ".xaibench-outputs.json"
#: The manifest's format, recorded in it as ``xaibench_outputs``.
FORMAT = 1
#: A manifest larger than this is not one xaibench wrote (a thousand files take about 150 kB).
MAX_MANIFEST_BYTES = 16 * 2**20
_ABOUT = ("The files xaibench wrote in this folder, with the SHA-256 of their bytes. A later xaibench command "
          "replaces or removes only the files listed here as its own, and only while their bytes are unchanged. "
          "Keep this file; without it xaibench replaces none of them.")
_SHA256 = re.compile(r"[0-9a-f]{64}")
#: A temporary file of :func:`xaibench.run_folder.atomic_path` for ``name``: ``.<name>.<8 random
#: characters of tempfile's alphabet>.partial``, and for a writer that keeps the extension
#: ``.partial<name's extension>``.
_TEMPORARY = re.compile(r"\.(?P<name>.+)\.[a-z0-9_]{8}\.partial(?P<extension>(\.[^.]*)?)", re.DOTALL)


@dataclass(frozen=True)
class Entry:
    """One file of the manifest: the command that wrote it and the SHA-256 of the bytes it wrote."""

    command: str
    sha256: str


def plain_name(name: str) -> bool:
    """Whether ``name`` is the name of a file directly in the folder (no path, not the manifest or the lock)."""
    return (bool(name) and name not in (".", "..", MANIFEST, LOCK) and "/" not in name and "\\" not in name
            and "\0" not in name)


def read_manifest(folder: str | os.PathLike) -> tuple[dict[str, Entry], dict[str, Entry]]:
    """The manifest of ``folder``: (files, writing), both empty when there is none.

    Raises:
        XaibenchError: the manifest is damaged, of another format, or not xaibench's own regular file;
            one line naming it and what to do.
    """
    path = Path(folder) / MANIFEST
    if not check_own(path):
        return {}, {}
    if os.lstat(path).st_size > MAX_MANIFEST_BYTES:
        raise _damaged(path, f"it is larger than {MAX_MANIFEST_BYTES // 2**20} MiB")
    data = read_own_bytes(path) or b""
    try:
        manifest = json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError) as error:  # not UTF-8, not JSON, a number of over 4,300 digits, too deep
        raise _damaged(path, f"{type(error).__name__}: {' '.join(str(error).split())}") from None
    if not isinstance(manifest, dict):
        raise _damaged(path, f"it holds a JSON {type(manifest).__name__}, not an object")
    version = manifest.get("xaibench_outputs")
    if type(version) is not int or version != FORMAT:  # (True == 1, but is no format)
        if type(version) is int and version > FORMAT:
            raise XaibenchError(
                f"{path} was written by a newer xaibench (format {version}; this one reads {FORMAT}); use that "
                "version, or choose another --out"
            )
        raise _damaged(path, f"its 'xaibench_outputs' is {version!r}, not {FORMAT}")
    tables = []
    for key in ("files", "writing"):
        table = manifest.get(key, {})
        if not isinstance(table, dict):
            raise _damaged(path, f"its '{key}' is a JSON {type(table).__name__}, not an object")
        entries = {}
        for name, entry in table.items():
            if not plain_name(name):
                raise _damaged(path, f"'{key}' lists {name!r}, which is not the name of a file in the folder")
            if (not isinstance(entry, dict) or set(entry) != {"command", "sha256"} or not isinstance(entry["command"], str)
                    or not entry["command"] or not isinstance(entry["sha256"], str)
                    or not _SHA256.fullmatch(entry["sha256"])):
                raise _damaged(path, f"its entry of {name!r} is {json.dumps(entry)[:80]}, not a command and a "
                                     "SHA-256 (64 hex digits)")
            entries[name] = Entry(entry["command"], entry["sha256"])
        tables.append(entries)
    return tables[0], tables[1]


def _damaged(path: Path, problem: str) -> XaibenchError:
    return XaibenchError(
        f"{path} is damaged ({problem}); it lists the files xaibench wrote in {path.parent}: restore it, or "
        "remove it (xaibench then replaces none of the files there) or choose another --out"
    )


def file_digest(path: str | os.PathLike) -> str | None:
    """The SHA-256 (hex) of xaibench's own regular file at ``path``, None when nothing is there.

    Raises:
        XaibenchError: something other than a regular file with one link is there
            (:func:`xaibench.own_files.open_own`).
    """
    if not check_own(path):
        return None
    digest = hashlib.sha256()
    with os.fdopen(open_own(path, os.O_RDONLY), "rb") as file:
        for block in iter(lambda: file.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


def remove_stale_temporaries(folder: str | os.PathLike, owns: Callable[[str], bool]) -> list[Path]:
    """Remove the temporary files that a killed writer left in ``folder`` for the names ``owns`` accepts.

    Only ``.<name>.<8 characters>.partial`` files (with ``name``'s extension after ``.partial`` for
    writers that keep it, see :func:`xaibench.run_folder.atomic_path`) whose ``name`` ``owns`` accepts
    are removed, and only regular files that no process holds locked (a writer that is still at work
    may lock its temporary file: see :func:`hold_temporary`). Every other file is left as it is.

    Returns:
        The files removed.
    """
    removed = []
    for path in Path(folder).glob(".*.partial*"):
        match = _TEMPORARY.fullmatch(path.name)
        if match is None or not owns(match["name"]):
            continue
        if match["extension"] not in ("", Path(match["name"]).suffix):
            continue
        try:
            if not stat.S_ISREG(os.lstat(path).st_mode) or _held(path):
                continue
            path.unlink()
        except OSError:  # gone in between, or cannot be removed: not ours to insist on
            continue
        removed.append(path)
    return removed


def _held(path: Path) -> bool:
    """Whether another open file holds an exclusive lock on ``path`` (a writer at work)."""
    try:
        import fcntl
    except ImportError:  # Windows: a file being written cannot be removed anyway
        return False
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    descriptor = os.open(path, flags)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(descriptor)
    return False


class hold_temporary:  # noqa: N801 - used as a context manager, like contextlib's
    """Lock the temporary files a writer is at work on, so that :func:`remove_stale_temporaries` in
    another process leaves them alone; released (and closed) when the block ends.

    Example: ``with hold_temporary() as hold, atomic_path(path) as temporary: hold(temporary); ...``
    (the lock outlives the rename that ends ``atomic_path``'s block).
    """

    def __init__(self) -> None:
        self._descriptors: list[int] = []

    def __enter__(self) -> hold_temporary:
        return self

    def __call__(self, path: str | os.PathLike) -> None:
        try:
            import fcntl
        except ImportError:
            return
        descriptor = open_own(path, os.O_RDONLY)
        self._descriptors.append(descriptor)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # a new file of mkstemp's: nobody else can hold it
            pass

    def __exit__(self, *exc: object) -> None:
        while self._descriptors:
            os.close(self._descriptors.pop())


class OutputFolder:
    """A folder that ``command`` writes files into, beside files that may be the user's.

    Use as a context manager: entering creates the folder if needed, takes its lock, reads its
    manifest and removes the command's stale temporary files; leaving releases the lock.

    Args:
        path: The folder.
        command: The command that writes (``"report"``, ``"sanity"``, ``"explain"``): it replaces and
            removes only the files the manifest lists as its own.
        names: Which names the command writes, so that its stale temporary files are found (those of
            the names the manifest lists as its own are found anyway).
        option: The option that named the folder, for the messages.

    Raises:
        XaibenchError: the folder cannot be written, another xaibench command is writing to it, or its
            manifest is damaged; one line each.
    """

    def __init__(self, path: str | os.PathLike, command: str, *, names: Callable[[str], bool] | None = None,
                 option: str = "--out") -> None:
        self.path = Path(path)
        self.command = command
        self.option = option
        self._names = names or (lambda name: False)
        self._lock: FolderLock | None = None
        self._files: dict[str, Entry] = {}
        self._writing: dict[str, Entry] = {}
        self._written: set[str] = set()

    def __enter__(self) -> OutputFolder:
        writable_folder(self.path, self.option)
        self._lock = FolderLock(self.path, self.command).acquire()
        try:
            self._files, self._writing = read_manifest(self.path)
            self._settle()
            remove_stale_temporaries(self.path, lambda name: name == MANIFEST or self._names(name) or (
                name in self._files and self._files[name].command == self.command))
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the folder's lock."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def file(self, name: str) -> Path:
        """The path of ``name`` in the folder."""
        return self.path / name

    @property
    def written(self) -> list[str]:
        """The names written since the folder was opened, in order."""
        return sorted(self._written)

    def owned(self) -> list[str]:
        """The names the manifest lists as this command's (present or not)."""
        return [name for name, entry in self._files.items() if entry.command == self.command]

    def check(self, names: Iterable[str]) -> list[str]:
        """Check, before anything is written, that every one of ``names`` may be written.

        Returns:
            Those of ``names`` that exist: this command's own files, unchanged.

        Raises:
            XaibenchError: one of them exists but the command did not write it, another command wrote
                it, or it changed since; or it is a link, a folder or another thing that is not a file.
        """
        return [name for name in names if self._own(name)]

    def write(self, name: str, write: Callable[[IO[bytes]], None]) -> Path:
        """Write the file ``name`` atomically (``write`` receives a binary file object) and list it in
        the manifest as this command's; an existing file of that name must be the command's own,
        unchanged (:meth:`check`).

        Returns:
            The file's path.
        """
        if not plain_name(name):
            raise XaibenchError(f"cannot write '{name}' in {self.path}: not the name of a file in the folder")
        self._own(name)
        path = self.file(name)
        try:
            with atomic_path(path) as temporary:
                with open(temporary, "wb") as file:
                    write(file)
                self._writing[name] = Entry(self.command, _digest_of(temporary))
                self._save()
        except BaseException:
            self._writing.pop(name, None)
            raise
        self._files[name] = self._writing.pop(name)
        self._written.add(name)
        self._save()
        return path

    def write_bytes(self, name: str, data: bytes) -> Path:
        """:meth:`write` of ``data``."""
        return self.write(name, lambda file: file.write(data))

    def write_text(self, name: str, text: str) -> Path:
        """:meth:`write` of a UTF-8 text."""
        return self.write_bytes(name, encode(text))

    def remove_rest(self) -> list[str]:
        """Remove the files this command wrote in the folder before and did not write again since it was
        opened (e.g. a gallery of a group the new report does not have), so that the folder holds only
        the command's new outputs. A file changed since it was written is left, and no longer listed.

        Returns:
            The names removed.
        """
        removed = []
        for name in self.owned():
            if name in self._written:
                continue
            path = self.file(name)
            try:
                unchanged = file_digest(path) == self._files[name].sha256
            except XaibenchError:  # a link or another thing put there since: not ours
                unchanged = False
            if unchanged:
                remove_own(path)
                removed.append(name)
            elif os.path.lexists(path):
                logger.warning("left %s: it changed since xaibench %s wrote it", path, self.command)
            del self._files[name]
        self._save()
        return removed

    def _own(self, name: str) -> bool:
        """Whether ``name`` exists as this command's own unchanged file (False when absent).

        Raises:
            XaibenchError: it exists and is not.
        """
        path = self.file(name)
        digest = file_digest(path)
        if digest is None:
            return False
        entries = [e for e in (self._files.get(name), self._writing.get(name)) if e is not None]
        if any(e.command == self.command and e.sha256 == digest for e in entries):
            return True
        remedy = f"remove or rename it, or choose another {self.option}"
        if not entries:
            raise XaibenchError(f"{path} was not written by xaibench {self.command} (it is not in {MANIFEST}), so it "
                                f"is not replaced; {remedy}")
        if all(e.command != self.command for e in entries):
            raise XaibenchError(f"{path} was written by xaibench {entries[0].command}, not by xaibench {self.command}, "
                                f"so it is not replaced; {remedy}")
        raise XaibenchError(f"{path} changed since xaibench {self.command} wrote it, so it is not replaced; {remedy}")

    def _settle(self) -> None:
        """Resolve what a command killed while renaming left in ``writing``, and forget absent files."""
        if not self._writing:
            return
        for name, entry in list(self._writing.items()):
            try:
                if file_digest(self.file(name)) == entry.sha256:
                    self._files[name] = entry
            except XaibenchError:
                pass
        self._writing.clear()
        self._save()

    def _save(self) -> None:
        """Write the manifest (absent files left out); with nothing to list, remove it."""
        for name in [n for n in self._files if not os.path.lexists(self.file(n))]:
            del self._files[name]
        if not self._files and not self._writing:
            remove_own(self.file(MANIFEST))
            return
        def table(entries: dict[str, Entry]) -> str:  # one line per file
            lines = [f"  {json.dumps(n)}: {json.dumps({'command': e.command, 'sha256': e.sha256})}"
                     for n, e in sorted(entries.items())]
            return "{\n" + ",\n".join(lines) + "\n }" if lines else "{}"

        text = (f'{{"xaibench_outputs": {FORMAT},\n "about": {json.dumps(_ABOUT)},\n "files": {table(self._files)},\n'
                f' "writing": {table(self._writing)}}}\n')
        try:
            atomic_write_text(self.file(MANIFEST), text)
        except OSError as error:
            raise XaibenchError(f"cannot write {self.file(MANIFEST)} ({os_reason(error)}); choose another "
                                f"{self.option}") from None


def _digest_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


__all__ = [
    "MANIFEST",
    "Entry",
    "OutputFolder",
    "file_digest",
    "hold_temporary",
    "plain_name",
    "read_manifest",
    "remove_stale_temporaries",
]
