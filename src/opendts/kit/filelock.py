"""A lock that the threads and processes of one machine take in turn, through a lock file.

SQLite lets one connection write at a time, and a writer that finds the database locked sleeps
and tries again (after 1, 2, 5, 10, … ms). Between the threads of one process a plain lock
queues writers instead; between processes (``opendts serve --workers N``) this lock does the
same with the kernel's ``flock``: the next writer wakes the moment the lock is released, rather
than up to tens of milliseconds later. SQLite's own locking still decides correctness; this only
decides who goes next, and how soon.
"""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path
from types import TracebackType


class MachineLock:
    """Reentrant within a thread; exclusive between threads and between processes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # flock belongs to the open file, which every thread of the process shares: threads
        # queue on this lock first, and only the outermost holder takes the file lock.
        self._threads = threading.RLock()
        self._depth = 0
        self._fd: int | None = None
        self._pid = 0

    def __enter__(self) -> MachineLock:
        self._threads.acquire()
        try:
            if self._depth == 0:
                fcntl.flock(self._file(), fcntl.LOCK_EX)
            self._depth += 1
        except BaseException:
            self._threads.release()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            self._depth -= 1
            if self._depth == 0 and self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._threads.release()

    def _file(self) -> int:
        # One descriptor per process: a child must not share its parent's open file.
        if self._fd is None or self._pid != os.getpid():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            self._pid = os.getpid()
        return self._fd
