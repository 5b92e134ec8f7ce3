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
