"""A run's folder: the names of the files in it, who writes each, atomic writes, the lock, and resuming.

Every output file has one owner, and its name is defined here once:

==========================  ===========================================================  ================
file or folder              what it holds                                                written by
==========================  ===========================================================  ================
``config.json``             everything that determines the run's numbers                 :class:`RunFolder`
``per_image/``              one row per (image, method), a Parquet part per batch        :mod:`~xaibench.harness`
``skipped/``                the images that could not be read, and why                   :mod:`~xaibench.harness`
``timings/``                seconds per (batch, method): the method's and its metrics'   :mod:`~xaibench.harness`
``images/``                 thumbnails of the images, with their boxes and class names   :mod:`~xaibench.harness`
``maps/``                   thumbnails of every map (the first images' at full size)     :mod:`~xaibench.harness`
``kept_maps/``              every scored map at a stated size and dtype (``--keep-maps``) :mod:`~xaibench.harness`
``summary.csv`` / ``.md``   per-method values with bootstrap intervals                   :mod:`~xaibench.report`
``box_accuracy_curves.csv`` box accuracy against the map threshold                        :mod:`~xaibench.report`
``per_image_table.csv``     the per-image table for spreadsheets (``xaibench export``)    :mod:`~xaibench.report`
``overlays.png``            maps over the first images (``overlays-<model>.png`` each)   :mod:`~xaibench.viz`
``report.html``             the run's report page: tables, plots, galleries              :mod:`~xaibench.comparison_report`
==========================  ===========================================================  ================

Files written whole are written atomically (:func:`atomic_write`: a temporary file in the same folder,
then a rename), so a run killed at any moment leaves each of them either as it was or complete. The
tables are folders of part files (:mod:`xaibench.results_store`), each part written whole in the same
way and never rewritten. Runs of xaibench 0.3 and earlier kept the tables as CSV journals
(``per_image.csv``, ...; :mod:`xaibench.journal`): they are read as they are, and converted once when
such a run is resumed.

A folder holds one run. :class:`RunFolder` refuses a folder that holds another run unless told to
``overwrite`` it (the old outputs are removed first) or to ``resume`` it (the configuration must be
the same, field by field), and holds an exclusive lock while the run writes, so two runs can never
share a folder.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from xaibench.errors import XaibenchError
from xaibench.own_files import check_own, open_own, read_own_bytes, remove_own, remove_own_folder
from xaibench.text import encode
from xaibench.precision import FULL

logger = logging.getLogger(__name__)

CONFIG = "config.json"
#: The run's tables: folders of Parquet part files (:mod:`xaibench.results_store`).
PER_IMAGE = "per_image"
SKIPPED = "skipped"
TIMINGS = "timings"
IMAGES = "images"
MAPS = "maps"
TABLES = (PER_IMAGE, SKIPPED, TIMINGS, IMAGES, MAPS)
#: The CSV journals that held the tables up to xaibench 0.3 (read, and converted when such a run is resumed).
LEGACY_JOURNALS = {table: f"{table}.csv" for table in TABLES}
#: The table of every scored map, written only by a run told to keep them (``--keep-maps``).
KEPT_MAPS = "kept_maps"
#: The name of a table's part file: its number, in the order the parts were written.
PART_FILE = re.compile(r"part-(\d{8})\.parquet")
#: The per-image table exported for spreadsheets (``xaibench export``).
PER_IMAGE_CSV = "per_image_table.csv"
SUMMARY_CSV = "summary.csv"
SUMMARY_MD = "summary.md"
BOX_ACCURACY_CURVES = "box_accuracy_curves.csv"
OVERLAYS = "overlays.png"
CURVES_CSV = "curves.csv"
CURVES_PNG = "curves.png"
REPORT_HTML = "report.html"
#: Every file a run writes; ``--overwrite`` removes exactly these (and :func:`overlays_file` s).
OUTPUTS = (CONFIG, *TABLES, KEPT_MAPS, *LEGACY_JOURNALS.values(), SUMMARY_CSV, SUMMARY_MD, BOX_ACCURACY_CURVES, CURVES_CSV,
           CURVES_PNG, PER_IMAGE_CSV, OVERLAYS, REPORT_HTML)
LOCK = ".xaibench.lock"
_TEMPORARY_SUFFIX = ".partial"

#: Fields of config.json that are recorded for the reader but do not change any number, so a run may
#: be resumed with other values (another xaibench or torch build is checked by the numbers' fields).
INFORMATIONAL_FIELDS = frozenset({"torch", "xaibench", "started", "device"})
#: config.json fields added since a run folder's first version, with the value every run had before
#: them: a folder without one is resumed as having that value.
LATER_FIELDS = {"precision": FULL}
#: The config.json field identifying the data set's images (a digest of their ids).
IDS_FIELD = "dataset_ids_sha256"
#: The config.json field recording which definitions of the metrics and methods computed a run's rows
#: (:data:`DEFINITIONS`), and its value today. Raised whenever a definition changes, so that no run is
#: resumed or compared across definitions. 1: xaibench 0.1 (the field is absent). 2: ROAD imputes the
#: [0, 1] image and breaks ties with the authors' noise; RISE masks the normalised input; the pointing
#: game is played in the photo's pixels, and an empty object region is a miss; COCO crowds are scored.
#: 3: a box reaching past the image is clipped to its last pixel (``x1 <= width - 1``), not to the width.
DEFINITIONS_FIELD = "definitions"
DEFINITIONS = 3


def definitions(config: Mapping[str, Any]) -> int:
    """The definitions a run's configuration was computed with (1 for a run that does not say)."""
    return int(config.get(DEFINITIONS_FIELD, 1))


MODES = ("new", "overwrite", "resume")


def overlays_file(model: str | None = None) -> str:
    """The overlay figure's name: ``overlays.png``, or ``overlays-<model>.png`` in a run of several models."""
    return OVERLAYS if model is None else f"overlays-{model}.png"


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> Path:
    """Write a file so that it is, at every moment, either absent, as it was, or complete.

    ``write`` receives a binary file object on a temporary file in the same folder; when it returns,
    the data is flushed to disk and the temporary file renamed over ``path`` (``os.replace``, atomic
    on POSIX and Windows). If ``write`` raises, the temporary file is removed and ``path`` untouched.
    A process killed mid-write leaves a ``.<name>.*.partial`` file, which :class:`RunFolder` removes.
    """
    path = Path(path)
    with atomic_path(path) as temporary, open(temporary, "wb") as file:
        write(file)
    return path


@contextmanager
def atomic_path(path: str | os.PathLike, *, keep_extension: bool = False) -> Iterator[Path]:
    """A temporary file beside ``path`` for a writer that needs a file name (e.g. a video encoder):
    when the block ends normally it is synced to disk, given the usual permissions and renamed over
    ``path``; when the block raises it is removed and ``path`` untouched. ``keep_extension`` ends the
    temporary name with ``path``'s extension too (``.<stem>.*.partial.mp4``), for writers that choose
    the format by it.

    Raises:
        XaibenchError: the folder cannot be written.
    """
    path = Path(path)
    with _temporary_beside(path, keep_extension) as temporary:
        yield temporary
        _seal(temporary)
        try:
            os.replace(temporary, path)  # a link at ``path`` is replaced, never followed
        except OSError as error:  # a folder in the way, a read-only or full file system, ...
            raise XaibenchError(
                f"cannot write {os.fsdecode(path)} ({error.strerror or error}); remove what is in the way or "
                "choose another folder"
            ) from None


def atomic_write_new(paths: Iterable[Path], write: Callable[[IO[bytes]], None]) -> Path:
    """:func:`atomic_write` under the first of ``paths`` that no file takes yet, for several processes
    writing into one folder at once (the processes of a run split by torchrun): the complete, synced
    file is hard-linked to each name in turn (``os.link`` never replaces a file, nor follows a link),
    so no two writers take one name and no reader sees a part-written file. Returns the name taken.

    Raises:
        XaibenchError: the folder cannot be written, or its file system has no hard links.
    """
    paths = iter(paths)
    first = next(paths)
    with _temporary_beside(first) as temporary:
        with open(temporary, "wb") as file:
            write(file)
        _seal(temporary)
        for path in itertools.chain([first], paths):
            try:
                os.link(temporary, path)
            except FileExistsError:  # another writer took it
                continue
            except OSError as error:
                raise XaibenchError(
                    f"cannot write {os.fsdecode(path)} ({error.strerror or error}); a run split over processes needs "
                    "its folder on a file system with hard links (a local disk, NFS): choose another --out"
                ) from None
            return path
        raise XaibenchError(f"no name left for a file in {first.parent}")


@contextmanager
def _temporary_beside(path: Path, keep_extension: bool = False) -> Iterator[Path]:
    """A new empty ``.<name>.*.partial`` file in ``path``'s folder, removed when the block ends unless it
    was renamed away (a process killed meanwhile leaves it for :class:`RunFolder` to remove)."""
    suffix = _TEMPORARY_SUFFIX + (path.suffix if keep_extension else "")
    try:
        descriptor, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    except OSError as error:
        raise XaibenchError(f"cannot write in {path.parent} ({error.strerror or error})") from None
    os.close(descriptor)
    temporary = Path(name)
    try:
        yield temporary
    finally:
        temporary.unlink(missing_ok=True)


def _seal(temporary: Path) -> None:
    """Sync a written temporary file to disk and give it the usual permissions (mkstemp makes 0600 files)."""
    descriptor = os.open(temporary, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    os.chmod(temporary, 0o666 & ~_umask())


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """:func:`atomic_write` of a UTF-8 text (a path's undecodable bytes in it written ``\\xNN``,
    :func:`xaibench.text.encode`)."""
    return atomic_write(path, lambda file: file.write(encode(text)))


def writable_folder(path: str | os.PathLike, option: str = "--out") -> Path:
    """Create the folder ``path`` (and its parents) if needed and check that files can be written in it,
    before any work whose results would go there.

    Raises:
        XaibenchError: one line naming what is in the way (a file where a folder is needed, a folder
            that cannot be written) and saying to choose another ``option``.
    """
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except (NotADirectoryError, FileExistsError):
        blocker = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), path)
        raise XaibenchError(f"{blocker} is a file, not a folder; choose another {option}") from None
    except OSError as error:  # permission denied, read-only file system, no space left, ...
        raise XaibenchError(f"cannot write to {path} ({error.strerror or error}); choose another {option}") from None
    return path


class RunFolder:
    """The folder of one run, locked while the run writes to it.

    Use as a context manager: ``with RunFolder(path, mode="new") as folder: ...``. Entering creates
    the folder if needed, takes the lock, and applies ``mode``:

    - ``"new"``: the folder must not hold another run's outputs;
    - ``"overwrite"``: another run's outputs are removed first;
    - ``"resume"``: the outputs are kept; :meth:`start` then checks that the configuration is the same.

    Raises:
        XaibenchError: the folder cannot be written, is locked by another run, or holds another run
            (mode ``"new"``); every message says what to do.
    """

    def __init__(self, path: str | os.PathLike, mode: str = "new") -> None:
        if mode not in MODES:
            raise XaibenchError(f"mode must be one of {', '.join(MODES)}, got '{mode}'")
        self.path = Path(path)
        self.mode = mode
        self._lock: FolderLock | None = None

    def __enter__(self) -> RunFolder:
        writable_folder(self.path)
        self._lock = FolderLock(self.path, "run").acquire()
        try:
            self._prepare()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the lock (and remove its file: a finished run leaves no lock behind)."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def file(self, name: str) -> Path:
        """The path of one of the run's files (a name from :data:`OUTPUTS`)."""
        return self.path / name

    def holds_a_run(self) -> bool:
        """Whether any output of a run is present."""
        return any(os.path.lexists(self.file(name)) for name in OUTPUTS)

    def _found(self) -> list[str]:
        """The outputs' names that are present."""
        return [name for name in OUTPUTS if os.path.lexists(self.file(name))]

    def _prepare(self) -> None:
        remove_partial_files(self.path)
        if self.mode == "overwrite" and self.holds_a_run() and not check_own(self.file(CONFIG), linked_ok=True):
            raise XaibenchError(
                f"{self.path} holds {', '.join(self._found())} but no run ({CONFIG}): --overwrite replaces only a "
                "run's files; remove them or choose another --out"
            )
        if self.mode == "overwrite":
            for name in OUTPUTS:
                if name in (*TABLES, KEPT_MAPS):
                    remove_own_folder(self.file(name), PART_FILE)
                else:
                    remove_own(self.file(name))
            for figure in self.path.glob(overlays_file("*")):
                remove_own(figure)
        elif self.mode == "new" and self.holds_a_run():
            raise XaibenchError(
                f"{self.path} holds the results of another run; pass --resume to continue it, "
                "--overwrite to replace it, or choose another --out"
            )
        elif self.mode == "resume" and not check_own(self.file(CONFIG), linked_ok=True):
            if self.holds_a_run():
                raise XaibenchError(
                    f"{self.path} holds {', '.join(self._found())} but no {CONFIG}, so there is no run to resume; "
                    "remove them or choose another --out"
                )
            logger.warning("nothing to resume in %s: starting a new run there", self.path)

    def start(self, config: Mapping[str, Any]) -> None:
        """Record the configuration of a new run, or check it against the one being resumed.

        Raises:
            XaibenchError: resuming with a configuration that differs in a field that can change the
                numbers; the message names the field and both values.
        """
        path = self.file(CONFIG)
        if self.mode == "resume" and check_own(path, linked_ok=True):
            previous = read_config(self.path)
            current = json.loads(json.dumps(config, default=str))  # compare as it would be written
            if definitions(previous) != definitions(current):
                raise XaibenchError(
                    f"cannot resume the run in {self.path}: xaibench {previous.get('xaibench', '0.1')} computed its rows "
                    f"with other definitions of the metrics and methods ({definitions(previous)}, now "
                    f"{definitions(current)}); start it again with --overwrite, or continue it with that version"
                )
            # The data set's ids last: a different --n or --dataset changes them too, and is the cause to name.
            previous, current = {**LATER_FIELDS, **previous}, {**LATER_FIELDS, **current}
            keys = sorted((set(previous) | set(current)) - INFORMATIONAL_FIELDS, key=lambda k: (k == IDS_FIELD, k))
            for key in keys:
                if previous.get(key) == current.get(key):
                    continue
                if key == IDS_FIELD:
                    raise XaibenchError(
                        f"cannot resume the run in {self.path}: the data set's images are not the ones the run "
                        "started with (files added, removed or renamed); pass --overwrite to start again"
                    )
                field, before, now = _first_difference(key, previous.get(key), current.get(key))
                raise XaibenchError(
                    f"cannot resume the run in {self.path}: '{field}' was {before!r}, now {now!r}; run with the "
                    "same settings, or pass --overwrite to start again"
                )
            return
        atomic_write_text(path, json.dumps(config, indent=2, default=str) + "\n")


def _first_difference(field: str, before: Any, now: Any) -> tuple[str, Any, Any]:
    """The innermost field where two configuration values differ, e.g. ``models[0].weights_sha256``."""
    if isinstance(before, dict) and isinstance(now, dict):
        for key in sorted(set(before) | set(now), key=str):
            if before.get(key) != now.get(key):
                return _first_difference(f"{field}.{key}", before.get(key), now.get(key))
    if isinstance(before, list) and isinstance(now, list) and len(before) == len(now):
        for k, (a, b) in enumerate(zip(before, now)):
            if a != b:
                return _first_difference(f"{field}[{k}]", a, b)
    return field, before, now


def read_config(folder: str | Path) -> dict:
    """The ``config.json`` of the run in ``folder``, checked against :data:`CONFIG_SCHEMA`.

    Raises:
        XaibenchError: the folder holds no run, or its ``config.json`` is damaged: not UTF-8 JSON, not an
            object, nested too deep, or a field of the wrong type (the message names the field).
    """
    path = Path(folder) / CONFIG
    data = read_own_bytes(path, linked_ok=True) if Path(folder).is_dir() else None
    if data is None:
        raise XaibenchError(f"{folder} holds no xaibench run (no {CONFIG}); name a run's output folder")
    try:
        config = json.loads(data.decode("utf-8"))
        problem = None if isinstance(config, dict) else f"it holds a JSON {type(config).__name__}, not an object"
    except ValueError as error:  # not UTF-8, not JSON, or a number of over 4,300 digits
        problem = f"{type(error).__name__}: {' '.join(str(error).split())[:200]}"
    except RecursionError:  # thousands of nested brackets
        problem = "its values nest too deeply to be read"
    if problem is None:
        problem = config_problem(config)
    if problem is not None:
        raise XaibenchError(
            f"{path} is damaged ({problem}); restore it, or start the run again with --overwrite"
        )
    return config


def _text(value: Any) -> bool:
    return isinstance(value, str)


def _optional_text(value: Any) -> bool:
    return value is None or isinstance(value, str)


def _integer(low: int | None = None) -> Callable[[Any], bool]:
    return lambda value: isinstance(value, int) and not isinstance(value, bool) and (low is None or value >= low)


def _optional(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: value is None or check(value)


def _list_of(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: isinstance(value, list) and all(check(v) for v in value)


def _options(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(v, dict) or v is None for v in value.values())


def _model(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and _text(value.get("name"))
        and all(_optional_text(value.get(key)) for key in ("weights", "weights_sha256", "target_layer", "classifier"))
        and _optional(lambda size: isinstance(size, list) and len(size) == 2 and all(_integer(1)(v) for v in size))(
            value.get("image_size"))
    )


def _selection(value: Any) -> bool:
    """``selection`` (:func:`xaibench.data.selection.describe`): null (the first n images), or the classes,
    ids and sample size asked for and the sorted indices chosen."""
    if value is None:
        return True
    return (
        isinstance(value, dict)
        and _optional(_list_of(lambda c: _text(c) or _integer(0)(c)))(value.get("classes"))
        and _optional(_list_of(_text))(value.get("ids"))
        and _optional(_integer(1))(value.get("sample"))
        and _list_of(_integer(0))(value.get("indices"))
    )


def _keep_maps(value: Any) -> bool:
    """``keep_maps`` (:meth:`xaibench.kept_maps.KeepMaps.describe`): null, or the side and dtype."""
    return value is None or (
        isinstance(value, dict) and (value.get("side") == "full" or _integer(1)(value.get("side"))) and _text(value.get("dtype"))
    )


#: What each field of ``config.json`` that xaibench reads back must be (absent is allowed: a run of an
#: earlier version may lack it). A field of another type makes the file damaged.
CONFIG_SCHEMA: dict[str, tuple[Callable[[Any], bool], str]] = {
    "models": (_list_of(_model), "a list of models (name, weights, weights_sha256, target_layer, image_size)"),
    "model": (_text, "a text"),
    "dataset": (_text, "a text"),
    IDS_FIELD: (_optional_text, "a text or null"),
    DEFINITIONS_FIELD: (_integer(1), "an integer"),
    "n": (_optional(_integer(1)), "a positive integer or null"),
    "selection": (_selection, "null or an object of classes, ids, sample and indices (a list of integers)"),
    "keep_maps": (_keep_maps, "null or an object of side (pixels or \"full\") and dtype"),
    "image_resize": (_text, "a text"),
    "map_postprocessing": (_text, "a text"),
    "constant_map_rtol": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool), "a number"),
    "maxboxacc_thresholds": (_text, "a text"),
    "methods": (_list_of(_text), "a list of names"),
    "method_options": (_options, "an object of option objects"),
    "metrics": (_list_of(_text), "a list of names"),
    "metric_options": (_options, "an object of option objects"),
    "batch_size": (_integer(1), "a positive integer"),
    "target": (_text, "a text"),
    "seed": (_integer(), "an integer"),
    "max_image_pixels": (_optional(_integer(1)), "a positive integer or null"),
    "device": (_optional_text, "a text"),
    "precision": (_optional_text, "a text"),
    "torch": (_optional_text, "a text"),
    "xaibench": (_optional_text, "a text"),
}


def config_problem(config: Mapping[str, Any]) -> str | None:
    """What is wrong with a run's configuration read back (None: nothing): the first field of
    :data:`CONFIG_SCHEMA` whose value has the wrong type or range."""
    for key, (check, expected) in CONFIG_SCHEMA.items():
        if key in config and not check(config[key]):
            return f"its {key} is {_shown(config[key])}, not {expected}"
    return None


def _shown(value: Any) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def remove_partial_files(folder: str | os.PathLike) -> None:
    """Remove the temporary files that a process killed mid-write left in ``folder``
    (``.<name>.*.partial``, see :func:`atomic_path`), and the folders a conversion of a table left
    (``.<table>.*.partial``, holding part files only; a folder of that name holding anything else is
    left alone)."""
    for stale in Path(folder).glob(f".*{_TEMPORARY_SUFFIX}*"):
        if not stale.is_dir() or stale.is_symlink():
            stale.unlink(missing_ok=True)
        elif all(PART_FILE.fullmatch(e.name) or e.name.endswith(_TEMPORARY_SUFFIX) for e in os.scandir(stale)):
            shutil.rmtree(stale)


class FolderLock:
    """An exclusive lock on a folder that xaibench writes, held from :meth:`acquire` to :meth:`release`.

    The lock is ``fcntl.flock`` on the folder's ``.xaibench.lock``, xaibench's own regular file
    (:func:`~xaibench.own_files.open_own`: a link planted there is refused, never followed). The
    operating system releases it when the process ends, however it ends, so a killed command never
    leaves a stale lock; :meth:`release` also removes the file, so a finished folder keeps none. (A
    process that opened the file before it was removed finds, once it holds the lock, that the name
    now points elsewhere, and takes the lock again on the file that is there.)

    Args:
        folder: The folder.
        what: What writes there, for the message that names the holder (``"run"``, ``"report"``).
    """

    def __init__(self, folder: str | os.PathLike, what: str = "run") -> None:
        self.path = Path(folder) / LOCK
        self.what = what
        self._descriptor: int | None = None

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    def acquire(self) -> FolderLock:
        """Take the lock.

        Raises:
            XaibenchError: another xaibench command holds it (the message names it), or the lock file
                cannot be made (a link or another thing in its place, a read-only folder).
        """
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks; the folder checks still apply
            return self
        for _ in range(100):
            descriptor = open_own(self.path, os.O_RDWR | os.O_CREAT)
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = " ".join(os.pread(descriptor, 200, 0).decode("utf-8", "replace").split()) or "unknown"
                os.close(descriptor)
                what, _, rest = owner.partition(": ")  # the holder's "<what>: pid ..., since ..."
                what, owner = (what, rest) if rest.startswith("pid ") and what.isidentifier() else (self.what, owner)
                raise XaibenchError(
                    f"another xaibench {what} ({owner}) is writing to {self.path.parent}; wait for it or choose "
                    "another --out"
                ) from None
            try:
                same = os.stat(self.path, follow_symlinks=False).st_ino == os.fstat(descriptor).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(descriptor)  # released and removed by its holder in between: lock the file there now
        else:  # pragma: no cover - a lock file replaced a hundred times in a row
            raise XaibenchError(f"cannot lock {self.path.parent}: its lock file keeps changing; try again")
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{self.what}: pid {os.getpid()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode(), 0)
        self._descriptor = descriptor
        return self

    def release(self) -> None:
        """Remove the lock file and release the lock (nothing if not held)."""
        if self._descriptor is None:
            return
        try:
            if os.stat(self.path, follow_symlinks=False).st_ino == os.fstat(self._descriptor).st_ino:
                self.path.unlink()
        except OSError:  # gone already, or a read-only folder: the lock is released all the same
            pass
        os.close(self._descriptor)  # closing the descriptor releases the flock
        self._descriptor = None


def unique_folder(parent: str | os.PathLike, name: str) -> Path:
    """A new, empty folder ``parent/name``, or ``parent/name-2``, ``-3``, ... if that one exists."""
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    for k in range(1, 10_000):
        candidate = parent / (name if k == 1 else f"{name}-{k}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
    raise XaibenchError(f"no free folder name for {parent / name}; clean up {parent}")
