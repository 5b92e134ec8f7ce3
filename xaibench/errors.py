"""Errors a user can act on. The CLI prints their message as one line; the library never prints."""

from __future__ import annotations

import errno
import os


class XaibenchError(Exception):
    """Base class: something about the user's input that they can fix; the message says how."""


class LayerError(XaibenchError):
    """A layer the method needs is missing, ambiguous, or of the wrong kind."""


class UnknownNameError(XaibenchError, KeyError):
    """A method, model or data set name that is not available; the message lists what is."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class WeightsUnavailableError(XaibenchError):
    """Pretrained weights could not be found offline; the message says where to put them."""


class WeightsError(XaibenchError):
    """A weights file that cannot be read, or that does not fit the network."""


class UnreadableImageError(XaibenchError):
    """One image file cannot be read: missing, not a regular file, undecodable, truncated or too large.

    The only error a run skips (reporting the file); any other error in a data set stops the run.
    """


class NonFiniteMapError(XaibenchError):
    """An explanation method returned NaN or infinite values; the message names the method."""


class DatasetError(XaibenchError):
    """A malformed annotation or data set; the message names the file and the record."""


class OptionError(XaibenchError):
    """A method's option has a value the method cannot use; the message names the option and the
    values it accepts (:mod:`xaibench.options`)."""


def os_reason(error: OSError) -> str:
    """Why the operating system refused, in words for a one-line message: ``read-only file system``,
    ``permission denied``, ``no space left on device``, ... (the OS's own reason, lower-cased)."""
    if error.errno == errno.EROFS:
        return "read-only file system"
    reason = error.strerror or (os.strerror(error.errno) if error.errno else str(error))
    return reason[:1].lower() + reason[1:]


def unwritable_reason(folder: str | os.PathLike) -> str:
    """Why files cannot be made in ``folder``, which ``os.access(folder, os.W_OK)`` refused:
    ``read-only file system`` when it is on one (``os.statvfs``), else ``permission denied``."""
    try:
        if os.statvfs(folder).f_flag & getattr(os, "ST_RDONLY", 1):
            return "read-only file system"
    except (OSError, AttributeError):  # no statvfs (Windows), or the folder cannot be examined
        pass
    return "permission denied"
