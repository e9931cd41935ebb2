"""A ``limits`` storage in one SQLite file, so the API processes of one machine share budgets.

``opendts serve --workers N`` runs N API processes: with in-process counters a key would get N
times its budget. Redis shares budgets between machines, but an installation on one machine
should not need a Redis server for that, so the default storage is this file in the data folder
(``sqlite:///<data dir>/ratelimits.db``). Each spend is one ``INSERT … ON CONFLICT … RETURNING``
statement in autocommit mode: atomic across processes, about 20 µs, and never waiting on the
metadata database's writer. Processes take turns through a lock file (``kit.filelock``), so a
spend waits for the one before it, not for SQLite's busy handler to wake up. The file is in WAL
mode with ``synchronous=NORMAL``: a spend never waits for the disk (a power cut may lose the
last few increments, which costs nothing) and the file cannot be corrupted by a crash.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from limits.storage import Storage

from opendts.kit.filelock import MachineLock

SCHEME = "sqlite"
#: How often a process deletes windows that ended (they are reset in place when hit again).
PURGE_SECONDS = 600.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS budgets (
    key TEXT PRIMARY KEY,
    spent INTEGER NOT NULL,
    resets_at REAL NOT NULL
) WITHOUT ROWID
"""

# The window starts at its first hit and lasts ``expiry`` seconds (``limits``' fixed window).
# In SET, column names are the row's values before the update.
_SPEND = """
INSERT INTO budgets (key, spent, resets_at) VALUES (?1, ?2, ?3 + ?4)
ON CONFLICT (key) DO UPDATE SET
    spent = CASE WHEN resets_at <= ?3 THEN excluded.spent ELSE spent + excluded.spent END,
    resets_at = CASE WHEN resets_at <= ?3 THEN excluded.resets_at ELSE resets_at END
RETURNING spent, resets_at
"""


def path_of(uri: str) -> Path:
    """The file of a ``sqlite:///relative`` or ``sqlite:////absolute`` URI."""
    prefix = f"{SCHEME}:///"
    if not uri.startswith(prefix) or len(uri) == len(prefix):
        raise ValueError(f"expected {prefix}<path to a file>, got {uri!r}")
    return Path(uri[len(prefix) :])


class SQLiteStorage(Storage):
    """Fixed-window counters in a SQLite file, shared by every process that opens it."""

    STORAGE_SCHEME = [SCHEME]  # noqa: RUF012 (read once by limits' registry)

    def __init__(self, uri: str, wrap_exceptions: bool = False, **_: Any) -> None:
        super().__init__(uri, wrap_exceptions=wrap_exceptions)
        self.path = path_of(uri)
        self._lock = threading.Lock()
        self._writers = MachineLock(self.path.with_name(self.path.name + ".lock"))
        self._connection: sqlite3.Connection | None = None
        self._pid = 0
        self._purge_after = 0.0

    @property
    def base_exceptions(self) -> type[Exception]:
        return sqlite3.Error

    def _connect(self) -> sqlite3.Connection:
        # One connection per process (a forked child must not share its parent's).
        if self._connection is None or self._pid != os.getpid():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(
                self.path, timeout=10.0, isolation_level=None, check_same_thread=False
            )
            connection.execute("PRAGMA busy_timeout=10000")
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.execute(_SCHEMA)
            self._connection, self._pid = connection, os.getpid()
        return self._connection

    def spend(self, key: str, expiry: float, amount: int = 1) -> tuple[int, float]:
        """Add ``amount`` to ``key``'s window; return what the window has spent and when it
        resets (epoch seconds), in one atomic statement."""
        with self._lock, self._writers:
            connection = self._connect()
            now = time.time()
            spent, resets_at = connection.execute(_SPEND, (key, amount, now, expiry)).fetchone()
            if now >= self._purge_after:
                self._purge_after = now + PURGE_SECONDS
                connection.execute("DELETE FROM budgets WHERE resets_at <= ?", (now,))
        return int(spent), float(resets_at)

    def incr(self, key: str, expiry: float, amount: int = 1) -> int:
        return self.spend(key, expiry, amount)[0]

    def _current(self, key: str) -> tuple[int, float] | None:
        with self._lock:
            row = (
                self._connect()
                .execute(
                    "SELECT spent, resets_at FROM budgets WHERE key = ? AND resets_at > ?",
                    (key, time.time()),
                )
                .fetchone()
            )
        return (int(row[0]), float(row[1])) if row else None

    def get(self, key: str) -> int:
        current = self._current(key)
        return current[0] if current else 0

    def get_expiry(self, key: str) -> float:
        current = self._current(key)
        return current[1] if current else time.time()

    def check(self) -> bool:
        try:
            with self._lock:
                self._connect().execute("SELECT 1").fetchone()
        except sqlite3.Error:
            return False
        return True

    def reset(self) -> int | None:
        with self._lock, self._writers:
            return self._connect().execute("DELETE FROM budgets").rowcount

    def clear(self, key: str) -> None:
        with self._lock, self._writers:
            self._connect().execute("DELETE FROM budgets WHERE key = ?", (key,))
