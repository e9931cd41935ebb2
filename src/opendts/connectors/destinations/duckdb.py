"""``duckdb``: a DuckDB database file (``warehouse.duckdb`` in the team's folder by default).

Rows stay in Arrow end to end: the day's ``RecordBatchReader`` is registered with DuckDB as
an Arrow stream and inserted with one ``INSERT INTO t (columns) SELECT columns FROM incoming``
(columns matched by name), which reads it batch by batch, inside the one transaction that
also deletes the date's old rows. (Registering a batch at a time inside the transaction
would not do: DuckDB keeps every registered batch alive until the commit.)

DuckDB lets one process at a time open a file for writing. Inside this process every run
writing to a file shares one connection, and writes to a file are serialised by a lock
(DuckDB would abort concurrent transactions that touch the same table). Between the processes
of the machine (engines, run processes), a process holds an exclusive ``flock`` on
``<file>.lock`` beside the warehouse for as long as its connection is open: the others wait
for it (at most ``OPENDTS_DUCKDB_LOCK_WAIT_SECONDS``, then the run is retried with a
``TransientRunError`` saying the warehouse is busy), touching the lock file while they wait.
The holder sees that and closes its connection to let the next process in: once it has
held the file for ``TURN_SECONDS`` (back-to-back writes keep it that long, as reopening costs
ten times a small write), or as soon as it has been idle for ``WATCH_SECONDS``. Nobody
waiting, it keeps the connection for its next write and closes it once the file has been
idle for ``IDLE_CLOSE_SECONDS``, so other tools can open the warehouse between loads.
Another tool holding the file is a ``TransientRunError`` too.

The file lives in the team's folder (``connectors.paths``), checked again right before every
open. DuckDB runs with extension downloads and autoloading off and without external access:
it reads and writes its own file only (rows arrive as registered Arrow tables), so nothing a
team types can make it read another file. The file and its WAL are made 0600.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import duckdb
import pyarrow as pa
from pydantic import ValidationInfo, field_validator

from opendts.connectors import paths
from opendts.connectors.base import (
    ConnectorSettings,
    RefreshMode,
    WriteRequest,
    as_reader,
    check_identifier,
    quote,
    settings_boundary,
    write_names,
)
from opendts.connectors.boundary import Boundary
from opendts.connectors.schema import Family, family_of_sql, plan_columns, sql_type
from opendts.engine.errors import TerminalRunError, TransientRunError

#: DuckDB settings of every connection: no downloads, no autoloading, no other files, and a
#: bounded buffer pool (by default DuckDB may take 80 % of the machine's memory, and keeps a
#: big day's blocks cached: a 3-million-row day left +300 MB; with the limit, DuckDB writes
#: them out and the process stays about 150 MB above its baseline whatever the day's size).
CONFIG: dict[str, str | bool | int | float | list[str]] = {
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "enable_external_access": False,
    "memory_limit": "256MB",
}

#: Seconds without a write after which the shared connection to a file is closed.
IDLE_CLOSE_SECONDS = 2.0
#: While a connection is idle, how often the holder looks for another process waiting.
WATCH_SECONDS = 0.02
#: How long a process may keep writing a file while another process waits for it.
TURN_SECONDS = 0.25
#: How long a connection test waits for other processes writing the file.
TEST_WAIT_SECONDS = 5.0

_INCOMING = "__opendts_incoming"


class DuckDBSettings(ConnectorSettings):
    """Where the DuckDB file is, and the schema tables go in."""

    #: The database file, relative to the team's folder.
    path: str = "warehouse.duckdb"
    schema_name: str = "main"

    @field_validator("path")
    @classmethod
    def _path(cls, value: str, info: ValidationInfo) -> str:
        if not value.strip():
            raise ValueError("must name a file, e.g. warehouse.duckdb")
        return paths.check_team_path(value, settings_boundary(info), example="warehouse.duckdb")

    @field_validator("schema_name")
    @classmethod
    def _schema(cls, value: str) -> str:
        return check_identifier(value, "schema")


@dataclass(eq=False)
class _File:
    """The shared connection to one database file, and what is known about its tables."""

    path: Path
    #: The path as the team knows it (relative to its folder), for messages.
    shown: str
    lock: threading.Lock = field(default_factory=threading.Lock)
    conn: duckdb.DuckDBPyConnection | None = None
    #: (schema, lower-case table) → {column name: declared type}; valid while ``conn`` is.
    columns: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    last_used: float = 0.0
    timer: threading.Timer | None = None
    #: The lock file, held (``flock``) while ``conn`` is open, and its mtime when taken.
    lock_fd: int | None = None
    lock_seen: int = 0
    held_since: float = 0.0


_files: dict[Path, _File] = {}
_files_lock = threading.Lock()
_pid = os.getpid()


def _file(path: Path, shown: str) -> _File:
    global _pid
    with _files_lock:
        if _pid != os.getpid():
            # A forked child: the parent's connections are not ours, and an inherited lock
            # file descriptor would keep the parent's hold alive (ours too) until we exit.
            for inherited in _files.values():
                if inherited.lock_fd is not None:
                    with contextlib.suppress(OSError):
                        os.close(inherited.lock_fd)
            _files.clear()
            _pid = os.getpid()
        entry = _files.get(path)
        if entry is None:
            entry = _files[path] = _File(path, shown)
        return entry


def _close(entry: _File) -> None:
    """Close ``entry``'s connection, then let other processes in (caller holds ``entry.lock``)."""
    conn, entry.conn = entry.conn, None
    entry.columns.clear()
    if conn is not None:
        with contextlib.suppress(duckdb.Error):
            conn.close()
    _unhold(entry)


def lock_wait_seconds() -> float:
    """How long a write waits for another process's hold on the warehouse file."""
    from opendts.settings import get_settings

    return get_settings().duckdb_lock_wait_seconds


def _busy_message(shown: str, waited: float) -> str:
    return (
        f"The DuckDB warehouse {shown} is busy: other runs have been writing to it for "
        f"{waited:g} s (DuckDB allows one process at a time to write a file); the run will be "
        "retried."
    )


def _hold(entry: _File, deadline: float, waited: float) -> None:
    """Take the machine-wide lock on ``entry``'s file (caller holds ``entry.lock``)."""
    _make_folder(entry)
    lock_path = entry.path.with_name(entry.path.name + ".lock")
    flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
    try:
        fd = os.open(lock_path, flags, 0o600)
    except OSError as exc:
        raise TerminalRunError(
            f"Cannot open the lock file of the DuckDB file {entry.shown} ({exc.strerror})."
        ) from None
    try:
        paths.make_private(lock_path)
        delay = 0.001
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                os.utime(fd)  # the holder sees the change and lets us in after its write
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TransientRunError(
                        _busy_message(entry.shown, waited), retry_after=5.0
                    ) from None
                time.sleep(min(delay, remaining))
                delay = min(delay * 2, WATCH_SECONDS)
        entry.lock_seen = os.fstat(fd).st_mtime_ns
        entry.held_since = time.monotonic()
    except BaseException:
        os.close(fd)
        raise
    entry.lock_fd = fd


def _unhold(entry: _File) -> None:
    fd, entry.lock_fd = entry.lock_fd, None
    if fd is not None:
        os.close(fd)  # releases the flock


def _awaited(entry: _File) -> bool:
    """Whether another process touched the lock file since we took it: it waits for us."""
    if entry.lock_fd is None:
        return False
    try:
        return os.fstat(entry.lock_fd).st_mtime_ns != entry.lock_seen
    except OSError:
        return True


def _idle_check(entry: _File) -> None:
    with entry.lock:
        entry.timer = None
        if entry.conn is None:
            return
        idle = time.monotonic() - entry.last_used
        if idle >= IDLE_CLOSE_SECONDS * 0.95 or (idle >= WATCH_SECONDS / 2 and _awaited(entry)):
            _close(entry)
        else:
            _schedule_close(entry, IDLE_CLOSE_SECONDS - idle)


def _schedule_close(entry: _File, delay: float) -> None:
    """Check for idleness after ``delay`` seconds (caller holds ``entry.lock``)."""
    if entry.timer is not None:
        return  # the pending check re-arms itself if the file was used since
    timer = threading.Timer(min(delay, WATCH_SECONDS), _idle_check, (entry,))
    timer.daemon = True
    timer.name = f"duckdb-idle-{entry.path.name}"
    entry.timer = timer
    timer.start()


def close_all() -> None:
    """Close every shared connection (at exit, and in tests)."""
    with _files_lock:
        entries = list(_files.values())
    for entry in entries:
        with entry.lock:
            if entry.timer is not None:
                entry.timer.cancel()
                entry.timer = None
            _close(entry)


atexit.register(close_all)


def is_open(path: Path) -> bool:
    """Whether this process currently holds a connection to the file at ``path``."""
    with _files_lock:
        entry = _files.get(path.resolve())
    return entry is not None and entry.conn is not None


def _locked_message(shown: str) -> str:
    return (
        f"Another process holds the DuckDB warehouse file {shown} open (DuckDB allows one "
        "process at a time to write a file); the run will be retried. If this keeps "
        "happening, close the other tool or worker that has the file open."
    )


def _is_lock_error(exc: duckdb.Error) -> bool:
    text = str(exc).lower()
    return isinstance(exc, duckdb.IOException) and (
        "could not set lock" in text or "conflicting lock" in text
    )


def _make_folder(entry: _File) -> None:
    try:
        paths.make_folders(entry.path.parent)
    except OSError as exc:
        raise TerminalRunError(
            f"Cannot create the folder for the DuckDB file {entry.shown} ({exc.strerror}): "
            "fix the destination's path or the folder's permissions."
        ) from None


def _open(entry: _File) -> duckdb.DuckDBPyConnection:
    path, shown = entry.path, entry.shown
    _make_folder(entry)
    try:
        conn = duckdb.connect(str(path), config=CONFIG)
    except duckdb.IOException as exc:
        text = str(exc).replace(str(path), shown)
        if _is_lock_error(exc):
            raise TransientRunError(_locked_message(shown), retry_after=5.0) from None
        if "not a valid DuckDB database" in text:
            raise TerminalRunError(
                f"{shown} exists but is not a DuckDB database file: point the destination at "
                "another path."
            ) from None
        raise TerminalRunError(f"Cannot open the DuckDB file {shown}: {text}") from None
    except duckdb.Error as exc:
        text = str(exc).replace(str(path), shown)
        raise TerminalRunError(f"Cannot open the DuckDB file {shown}: {text}") from None
    paths.make_private(path)
    return conn


@contextlib.contextmanager
def _connection(
    path: Path, shown: str, *, wait: float | None = None
) -> Iterator[tuple[_File, duckdb.DuckDBPyConnection]]:
    """The file's shared connection, used by one thread at a time, and by one process; waits
    at most ``wait`` seconds (default ``lock_wait_seconds()``) for other processes."""
    waited = lock_wait_seconds() if wait is None else wait
    deadline = time.monotonic() + waited
    entry = _file(path, shown)
    if not entry.lock.acquire(timeout=waited):
        raise TransientRunError(_busy_message(shown, waited), retry_after=5.0)
    try:
        if entry.conn is None:
            _hold(entry, deadline, waited)
            try:
                entry.conn = _open(entry)
            except BaseException:
                _unhold(entry)
                raise
            entry.columns.clear()
        try:
            yield entry, entry.conn
        finally:
            entry.last_used = time.monotonic()
            if entry.conn is not None:
                turn_over = entry.last_used - entry.held_since >= TURN_SECONDS
                if turn_over and _awaited(entry):
                    _close(entry)  # another process waits: its turn now
                else:
                    _schedule_close(entry, IDLE_CLOSE_SECONDS)
    finally:
        entry.lock.release()


def _columns(
    entry: _File, conn: duckdb.DuckDBPyConnection, schema: str, table: str
) -> dict[str, str]:
    """The table's columns and their types; empty if it does not exist. Cached."""
    key = (schema.lower(), table.lower())
    cached = entry.columns.get(key)
    if cached is not None:
        return cached
    rows = conn.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_catalog = current_database() AND lower(table_schema) = ? "
        "AND lower(table_name) = ? ORDER BY ordinal_position",
        [key[0], key[1]],
    ).fetchall()
    found = {str(name): str(declared) for name, declared in rows}
    if found:
        entry.columns[key] = found
    return found


def _translate(exc: duckdb.Error, entry: _File, table: str) -> Exception:
    """A DuckDB error raised while writing, as a run error a user can act on."""
    path = entry.shown
    text = str(exc).replace(str(entry.path), path)
    if _is_lock_error(exc):
        return TransientRunError(_locked_message(path), retry_after=5.0)
    if isinstance(exc, (duckdb.FatalException, duckdb.InternalException)):
        return TransientRunError(
            f"DuckDB closed the warehouse file {path} after an internal error ({text}); the "
            "run will be retried with a new connection."
        )
    if isinstance(exc, (duckdb.IOException, duckdb.OutOfMemoryException)):
        return TransientRunError(
            f"DuckDB could not write table {table!r} to {path} ({text}); the run will be "
            "retried. Check the free disk space and memory."
        )
    if isinstance(exc, duckdb.TransactionException):
        return TransientRunError(f"DuckDB aborted the write to table {table!r} ({text}).")
    return TerminalRunError(f"DuckDB rejected the rows for table {table!r} in {path}: {text}")


class DuckDBDestination:
    """Writes each date into a table of a DuckDB file, in one transaction."""

    name: ClassVar[str] = "duckdb"
    title: ClassVar[str] = "DuckDB"
    Settings: ClassVar[type[ConnectorSettings]] = DuckDBSettings

    def write(
        self, settings: Any, request: WriteRequest, data: pa.RecordBatchReader | pa.Table
    ) -> int:
        config: DuckDBSettings = settings
        reader = as_reader(data)
        table, _ = write_names(request, reader.schema)
        paths.ensure_team_dir(request.boundary)
        path = paths.team_path(config.path, request.boundary)
        if request.cancelled.is_set():
            raise TransientRunError("The run was interrupted before writing to DuckDB.")
        with _connection(path, paths.shown(path, request.boundary)) as (entry, conn):
            try:
                return self._transaction(entry, conn, config.schema_name, table, request, reader)
            except duckdb.Error as exc:
                if isinstance(exc, (duckdb.FatalException, duckdb.InternalException)):
                    _close(entry)  # the database is invalidated: reopen on the next write
                raise _translate(exc, entry, table) from exc
            finally:
                paths.make_private(path.with_name(path.name + ".wal"))

    def _transaction(
        self,
        entry: _File,
        conn: duckdb.DuckDBPyConnection,
        schema: str,
        table: str,
        request: WriteRequest,
        data: pa.RecordBatchReader,
    ) -> int:
        rows = 0
        #: What the reader raised (DuckDB reports it as its own error, without the type).
        failure: list[BaseException] = []

        def batches() -> Iterator[pa.RecordBatch]:
            nonlocal rows
            try:
                for batch in data:
                    if request.cancelled.is_set():
                        raise TransientRunError("The run was interrupted while writing to DuckDB.")
                    rows += batch.num_rows
                    yield batch
            except BaseException as exc:
                failure.append(exc)
                raise

        # Registered outside the transaction (an abort cannot undo it); DuckDB reads the
        # stream once, batch by batch, as the INSERT runs.
        conn.register(_INCOMING, pa.RecordBatchReader.from_batches(data.schema, batches()))
        try:
            self._statements(entry, conn, schema, table, request, data.schema, failure)
        finally:
            with contextlib.suppress(duckdb.Error):
                conn.unregister(_INCOMING)
        return rows

    def _statements(
        self,
        entry: _File,
        conn: duckdb.DuckDBPyConnection,
        schema: str,
        table: str,
        request: WriteRequest,
        incoming: pa.Schema,
        failure: list[BaseException],
    ) -> None:
        target = f"{quote(schema)}.{quote(table)}"
        key = (schema.lower(), table.lower())
        conn.begin()
        try:
            existing = _columns(entry, conn, schema, table)
            if not existing:
                if schema.lower() != "main":
                    conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(schema)}")
                columns = [(f.name, sql_type(f.type, "duckdb")) for f in incoming]
                body = ", ".join(f"{quote(name)} {declared}" for name, declared in columns)
                conn.execute(f"CREATE TABLE {target} ({body})")
                entry.columns[key] = existing = dict(columns)
            else:
                added = plan_columns(table, existing, incoming, "duckdb")
                for name, declared in added:
                    conn.execute(f"ALTER TABLE {target} ADD COLUMN {quote(name)} {declared}")
                if added:
                    entry.columns[key] = existing = {**existing, **dict(added)}
            by_lower = {name.lower(): name for name in existing}
            if request.mode is RefreshMode.REPLACE:
                column = by_lower[request.date_column.lower()]
                day = f"DATE '{request.data_date.isoformat()}'"
                if family_of_sql(existing[column]) is Family.DATE:
                    condition = f"{quote(column)} = {day}"
                else:
                    condition = f"CAST({quote(column)} AS DATE) = {day}"
                conn.execute(f"DELETE FROM {target} WHERE {condition}")
            elif request.mode is RefreshMode.OVERWRITE:
                conn.execute(f"DELETE FROM {target}")
            into = ", ".join(quote(by_lower[name.lower()]) for name in incoming.names)
            select = ", ".join(quote(name) for name in incoming.names)
            try:
                conn.execute(f"INSERT INTO {target} ({into}) SELECT {select} FROM {_INCOMING}")
            except duckdb.Error:
                if failure:
                    raise failure[0] from None
                raise
            if failure:
                raise failure[0]
            if request.cancelled.is_set():
                raise TransientRunError("The run was interrupted while writing to DuckDB.")
            conn.commit()
        except BaseException:
            entry.columns.pop(key, None)  # a rolled-back CREATE or ALTER must be forgotten
            with contextlib.suppress(duckdb.Error):
                conn.rollback()
            raise

    def test_connection(self, settings: Any, boundary: Boundary) -> None:
        config: DuckDBSettings = settings
        path = paths.team_path(config.path, boundary)
        shown = paths.shown(path, boundary)
        if path.is_dir():
            raise TerminalRunError(f"{shown} is a folder: the path must name a DuckDB file.")
        if not path.exists():
            # The first load creates it: checking must not (nor the folders above it).
            paths.check_creatable(path, boundary, "the DuckDB file")
            return
        # An API request: it waits a moment for runs writing the file, not their whole wait.
        wait = min(lock_wait_seconds(), TEST_WAIT_SECONDS)
        with _connection(path, shown, wait=wait) as (_, conn):
            try:
                conn.execute("SELECT 1").fetchall()
            except duckdb.Error as exc:
                raise TerminalRunError(f"DuckDB cannot use {shown}: {exc}") from None

    def read_table(self, settings: Any, table: str, boundary: Boundary) -> pa.Table:
        config: DuckDBSettings = settings
        check_identifier(table)
        path = paths.team_path(config.path, boundary)
        if not path.exists():
            return pa.table({})
        with _connection(path, paths.shown(path, boundary)) as (entry, conn):
            if not _columns(entry, conn, config.schema_name, table):
                return pa.table({})
            target = f"{quote(config.schema_name)}.{quote(table)}"
            result: pa.Table = conn.sql(f"SELECT * FROM {target}").to_arrow_table()
            return result
