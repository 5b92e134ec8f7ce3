"""Files in the folders xaibench writes: opened only when they are its own regular files.

A run folder, a report folder or a sanity folder may hold things xaibench did not put there: a
symbolic link planted where a journal or the lock should be (``per_image.csv -> ~/.bashrc``), a hard
link to a file elsewhere, a FIFO that blocks whoever opens it, a device that never ends. Opening such
a path for appending would write through it to a file outside the folder; opening it for reading
would block, or read without end. So every file xaibench opens in place (to append, to lock, or to
read back) goes through :func:`open_own`, which opens without following a link
(``O_NOFOLLOW``), without blocking (``O_NONBLOCK``), and refuses with one line anything that is not
a regular file with a single link. Files written whole are not opened in place: they are written to a
new temporary file and renamed over the path (:func:`xaibench.run_folder.atomic_write`), which
replaces a planted link itself and never follows it.

Example:
    >>> import os, tempfile
    >>> folder = tempfile.mkdtemp()
    >>> os.symlink("/etc/hostname", os.path.join(folder, "per_image.csv"))
    >>> open_own(os.path.join(folder, "per_image.csv"), os.O_RDONLY)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    xaibench.errors.XaibenchError: ...per_image.csv is a symbolic link, not a file xaibench wrote; ...
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import stat
from pathlib import Path

from xaibench.errors import XaibenchError

#: What every refusal tells the user to do.
REMEDY = "remove it (xaibench writes only its own regular files there) or choose another folder"


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def check_own(path: str | os.PathLike, *, linked_ok: bool = False) -> bool:
    """Whether ``path`` exists as xaibench's own file: True for a regular file with one link (or with
    several, where ``linked_ok``: to be read, a hard-linked copy of a folder reads the same), False
    when nothing is there.

    Raises:
        XaibenchError: something else is there (a symbolic link, a folder, a FIFO, a device, a regular
            file with other hard links); one line naming it and what to do.
    """
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return False
    except OSError as error:
        raise XaibenchError(f"cannot access {os.fsdecode(path)} ({error.strerror or error}); {REMEDY}") from None
    _refuse_unless_own(path, info, linked_ok)
    return True


def _refuse_unless_own(path: str | os.PathLike, info: os.stat_result, linked_ok: bool = False) -> None:
    if not stat.S_ISREG(info.st_mode):
        raise XaibenchError(f"{os.fsdecode(path)} is {_kind(info.st_mode)}, not a file xaibench wrote; {REMEDY}")
    if info.st_nlink > 1 and not linked_ok:
        raise XaibenchError(
            f"{os.fsdecode(path)} has {info.st_nlink - 1} other hard link(s), so writing it would change a file "
            f"elsewhere; {REMEDY}"
        )


def open_own(path: str | os.PathLike, flags: int, mode: int = 0o666, *, linked_ok: bool = False) -> int:
    """``os.open`` for a file in one of xaibench's folders, refusing anything but its own regular file.

    The path's last component is never followed if it is a link, a FIFO or a device never blocks the
    call, and the opened file is checked (``fstat``) to be a regular file with one link, so nothing
    outside the folder is read or written through it. ``O_CREAT`` creates a missing file as usual.

    Args:
        path: The file.
        flags: ``os.O_*`` flags (``O_NOFOLLOW``, ``O_NONBLOCK`` and ``O_CLOEXEC`` are added).
        mode: Permissions of a file that ``O_CREAT`` creates (before the umask).
        linked_ok: Accept a file with other hard links (to read it: writing it in place would change
            the other names' file too).

    Returns:
        The open descriptor (blocking mode restored).

    Raises:
        XaibenchError: a link, a folder, a FIFO, a socket, a device, a file with other hard links, or
            a file that cannot be opened; one line naming it and what to do.
    """
    extra = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        descriptor = os.open(path, flags | extra, mode)
    except OSError as error:
        if error.errno in (errno.ELOOP, errno.EMLINK, errno.ENXIO, errno.EISDIR, errno.EWOULDBLOCK):
            check_own(path, linked_ok=linked_ok)  # names what is there
        raise XaibenchError(f"cannot open {os.fsdecode(path)} ({error.strerror or error}); {REMEDY}") from None
    try:
        _refuse_unless_own(path, os.fstat(descriptor), linked_ok)
        if hasattr(os, "set_blocking"):
            os.set_blocking(descriptor, True)
    except BaseException:
        os.close(descriptor)
        raise
    return descriptor


def read_own_bytes(path: str | os.PathLike, *, linked_ok: bool = False) -> bytes | None:
    """The bytes of one of xaibench's own files, or None when there is none (see :func:`open_own`).

    Raises:
        XaibenchError: something other than xaibench's own regular file is there.
    """
    if not check_own(path, linked_ok=linked_ok):
        return None
    descriptor = open_own(path, os.O_RDONLY, linked_ok=linked_ok)
    with os.fdopen(descriptor, "rb") as file:
        return file.read()


def check_own_folder(path: str | os.PathLike) -> bool:
    """Whether ``path`` exists as a folder of xaibench's (a real folder, not a link to one elsewhere);
    False when nothing is there.

    Raises:
        XaibenchError: something else is there (a symbolic link, a file, a FIFO, a device).
    """
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return False
    except OSError as error:
        raise XaibenchError(f"cannot access {os.fsdecode(path)} ({error.strerror or error}); {REMEDY}") from None
    if not stat.S_ISDIR(info.st_mode):
        kind = "a file" if stat.S_ISREG(info.st_mode) else _kind(info.st_mode)
        raise XaibenchError(f"{os.fsdecode(path)} is {kind}, where xaibench keeps a folder of its own; {REMEDY}")
    return True


def remove_own(path: str | os.PathLike) -> None:
    """Remove one of xaibench's own files (a link there is removed as a link, never followed); nothing
    there is fine.

    Raises:
        XaibenchError: a folder or another thing that is not a file is in the way.
    """
    path = Path(path)
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(info.st_mode):
        raise XaibenchError(f"{os.fsdecode(path)} is a folder, where xaibench writes a file; {REMEDY}")
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as error:
        raise XaibenchError(f"cannot remove {os.fsdecode(path)} ({error.strerror or error}); {REMEDY}") from None


def remove_own_folder(path: str | os.PathLike, files: re.Pattern[str]) -> None:
    """Remove one of xaibench's folders: the files in it whose names match ``files``, the temporary
    files and folders a killed writer left (``.*.partial``), then the folder; nothing there is fine.

    Raises:
        XaibenchError: a link or a file where the folder should be, or anything else in it (named: it is
            not xaibench's to delete).
    """
    path = Path(path)
    if not check_own_folder(path):
        return
    entries = list(os.scandir(path))
    others = [e.name for e in entries if not files.fullmatch(e.name) and not e.name.endswith(".partial")]
    if others:
        raise XaibenchError(
            f"{os.fsdecode(path)} holds {', '.join(sorted(others)[:3])}, which xaibench did not write there; "
            "move it elsewhere, then try again"
        )
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path)
        else:
            os.unlink(entry.path)
    try:
        path.rmdir()
    except OSError as error:
        raise XaibenchError(f"cannot remove {os.fsdecode(path)} ({error.strerror or error}); {REMEDY}") from None
