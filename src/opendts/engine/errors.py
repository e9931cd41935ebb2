"""How a run fails: transient errors are retried, terminal ones fail the date at once.

Connectors raise these classes; anything else is classified by its type in ``classify``.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass


class RunError(Exception):
    """Base of the errors a run raises on purpose. ``str(error)`` is shown to users."""


class TransientRunError(RunError):
    """Worth retrying: a timeout, a 5xx, a rate limit, a locked file.

    ``retry_after`` (seconds) overrides the back-off, as a source's ``Retry-After`` header does.
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TerminalRunError(RunError):
    """Retrying cannot help: bad credentials, a missing table, a type conflict."""


#: Exceptions from the standard library and drivers that usually pass on their own.
TRANSIENT_TYPES: tuple[type[BaseException], ...] = (
    TimeoutError,
    ConnectionError,
    socket.gaierror,
    InterruptedError,
)


@dataclass(frozen=True, slots=True)
class Classified:
    """What the engine does with an exception."""

    transient: bool
    message: str
    retry_after: float | None = None


def classify(exc: BaseException) -> Classified:
    """Transient or terminal, by class, with a message a user can act on."""
    if isinstance(exc, TransientRunError):
        return Classified(True, str(exc) or type(exc).__name__, exc.retry_after)
    if isinstance(exc, TerminalRunError):
        return Classified(False, str(exc) or type(exc).__name__)
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if isinstance(exc, TRANSIENT_TYPES):
        return Classified(True, text)
    # An unexpected exception is a bug or bad configuration: retrying would repeat it.
    return Classified(False, f"Unexpected error: {text}")
