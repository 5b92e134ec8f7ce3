"""Errors a user can act on. The CLI prints their message as one line; the library never prints."""


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
