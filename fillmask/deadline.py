"""The current request's deadline: a request that runs past ``REQUEST_TIMEOUT`` gets a JSON 504.

``app.py`` starts the clock when a request arrives. Code that waits for the model (the
micro-batcher's ``submit``) waits at most ``remaining()``; code that runs the model more than
once (whole-word decoding, candidates) calls ``check()`` between runs. A context variable rather
than an argument: the deadline belongs to the request, like Flask's ``g``, and the layers in
between (joint, choices) need not pass it along. Outside a request there is no deadline.
"""

import contextvars
import time

from .errors import FillMaskError

_deadline = contextvars.ContextVar("fillmask_deadline", default=None)


class DeadlineExceeded(FillMaskError):
    """The request ran past its deadline: 504 (its code's status), so a client or proxy can
    retry elsewhere."""

    def __init__(self, seconds):
        super().__init__(
            f"the request was not done within the server's REQUEST_TIMEOUT of {seconds:g} s "
            "(the server is busy or the request is too large); try again later",
            code="timeout",
        )


def start(seconds):
    """Give the current request ``seconds`` from now (None or <= 0: no deadline)."""
    _deadline.set((time.monotonic() + seconds, seconds) if seconds and seconds > 0 else None)


def clear():
    """End the current request's deadline."""
    _deadline.set(None)


def remaining():
    """Seconds left for the current request, or None when it has no deadline."""
    value = _deadline.get()
    return None if value is None else value[0] - time.monotonic()


def at():
    """The current request's deadline as a ``time.monotonic()`` value, or None."""
    value = _deadline.get()
    return None if value is None else value[0]


def check():
    """Raise the 504 ``DeadlineExceeded`` when the current request is out of time."""
    value = _deadline.get()
    if value is not None and time.monotonic() >= value[0]:
        raise DeadlineExceeded(value[1])


def seconds():
    """The current request's time limit in seconds, or None."""
    value = _deadline.get()
    return None if value is None else value[1]
