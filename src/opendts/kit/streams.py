"""Places for long-lived responses (live-event streams), counted per API key in this process.

A stream holds a connection and polls the database four times a second for as long as it is
open, so one key must not open them without bound. The count lives in the process that serves
the streams, because that is where their cost is: with several API processes, each enforces the
cap for the streams it serves.
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class StreamSlots:
    """At most ``per_key`` open streams per key; ``acquire`` hands out a release function."""

    def __init__(self, per_key: int) -> None:
        self.per_key = per_key
        self._open: dict[str, int] = {}
        self._lock = threading.Lock()

    def acquire(self, key: str) -> Callable[[], None] | None:
        """A place for one more stream of ``key`` (call the result, once or more, to free it),
        or ``None`` when the key already holds ``per_key``."""
        with self._lock:
            held = self._open.get(key, 0)
            if held >= self.per_key:
                return None
            self._open[key] = held + 1
        released = False

        def release() -> None:
            nonlocal released
            with self._lock:
                if released:
                    return
                released = True
                left = self._open[key] - 1
                if left:
                    self._open[key] = left
                else:
                    del self._open[key]

        return release

    def open_count(self, key: str) -> int:
        """How many streams ``key`` holds now."""
        with self._lock:
            return self._open.get(key, 0)
