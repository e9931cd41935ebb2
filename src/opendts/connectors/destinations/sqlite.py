"""``sqlite``: a SQLite database file (``warehouse.sqlite`` in the team's folder by default).

Each write opens its own connection and runs in one ``BEGIN IMMEDIATE`` transaction:
concurrent writers (threads or processes) wait for each other up to ``BUSY_TIMEOUT_SECONDS``
and then fail with a ``TransientRunError``. Dates are stored as ISO text (``2024-01-31``),
timestamps as ISO text (``2024-01-31 12:00:00``, UTC with ``+00:00`` if zoned), decimals as
numbers, nested values as JSON text. A table gets an index on its date column when it is
created, so replacing one date does not scan the table.

The file lives in the team's folder (``connectors.paths``), checked again right before every
open; it is created 0600 (SQLite gives its journal the same mode). Reads and the connection
test open it without creating it.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import urllib.parse
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa
import pyarrow.compute as pc
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
from opendts.connectors.schema import Family, family_of_arrow, family_of_sql, plan_columns, sql_type
from opendts.engine.errors import TerminalRunError, TransientRunError

#: How long a write waits for another writer before failing (it is then retried).
BUSY_TIMEOUT_SECONDS = 30.0


class SQLiteSettings(ConnectorSettings):
    """Where the SQLite file is."""

    #: The database file, relative to the team's folder.
    path: str = "warehouse.sqlite"

    @field_validator("path")
    @classmethod
    def _path(cls, value: str, info: ValidationInfo) -> str:
        if not value.strip():
            raise ValueError("must name a file, e.g. warehouse.sqlite")
        return paths.check_team_path(value, settings_boundary(info), example="warehouse.sqlite")


def _busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def _create(path: Path, shown: str) -> None:
    """Create the database file 0600 if it is missing (an empty file is an empty database).

    Only a file this call creates is opened here: opening and closing a file another
    connection of this process has locked would drop that connection's POSIX locks.
    """
    try:
        paths.make_folders(path.parent)
    except OSError as exc:
        raise TerminalRunError(
            f"Cannot create the folder for the SQLite file {shown} ({exc.strerror}): "
            "fix the destination's path or the folder's permissions."
        ) from None
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, paths.FILE_MODE)
    except FileExistsError:
        return
    except OSError as exc:
        raise TerminalRunError(f"Cannot create the SQLite file {shown}: {exc.strerror}") from None
    os.close(fd)


@contextlib.contextmanager
def _connect(path: Path, shown: str, mode: str = "rw") -> Iterator[sqlite3.Connection]:
    """A connection to the existing file ``path`` (``mode``: ``rw`` or ``ro``)."""
    uri = f"file:{urllib.parse.quote(str(path))}?mode={mode}"
    try:
        conn = sqlite3.connect(
            uri,
            uri=True,
            timeout=BUSY_TIMEOUT_SECONDS,
            isolation_level=None,  # transactions are begun explicitly
            check_same_thread=False,
        )
    except sqlite3.Error as exc:
        raise TerminalRunError(f"Cannot open the SQLite file {shown}: {exc}") from None
    try:
        yield conn
    except sqlite3.OperationalError as exc:
        if _busy(exc):
            raise TransientRunError(
                f"The SQLite file {shown} stayed locked by another writer for "
                f"{BUSY_TIMEOUT_SECONDS:.0f} s; the run will be retried."
            ) from None
        if "readonly" in str(exc).lower():
            raise TerminalRunError(
                f"The SQLite file {shown} is read-only ({exc}): fix its permissions."
            ) from None
        if "disk" in str(exc).lower():
            raise TransientRunError(
                f"SQLite could not write {shown} ({exc}); the run will be retried. Check the "
                "free disk space."
            ) from None
        raise TerminalRunError(f"SQLite rejected the write to {shown}: {exc}") from None
    except sqlite3.DatabaseError as exc:
        raise TerminalRunError(f"SQLite cannot use {shown}: {exc}") from None
    finally:
        conn.close()


def _table_columns(conn: sqlite3.Connection, table: str) -> dict[str, str]:
    rows = conn.execute(f"PRAGMA table_info({quote(table)})").fetchall()
    return {str(row[1]): str(row[2]) for row in rows}


def _iso_timestamp(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.isoformat(sep=" ")


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, default=str, ensure_ascii=False)


def _python_column(column: pa.Array | pa.ChunkedArray) -> list[Any]:
    """A column's values as what sqlite3 can bind."""
    arrow_type = column.type
    if pa.types.is_dictionary(arrow_type):
        column = column.cast(arrow_type.value_type)
        arrow_type = column.type
    family = family_of_arrow(arrow_type)
    if family is Family.DATE:
        return list(pc.cast(column, pa.string()).to_pylist())
    values = column.to_pylist()
    if family in (Family.TIMESTAMP, Family.TIMESTAMPTZ):
        return [_iso_timestamp(v) for v in values]
    if family is Family.DECIMAL:
        return [None if v is None else str(v) for v in values]
    if family is Family.JSON:
        return [_json(v) for v in values]
    return list(values)


class SQLiteDestination:
    """Writes each date into a table of a SQLite file, in one transaction."""

    name: ClassVar[str] = "sqlite"
    title: ClassVar[str] = "SQLite"
    Settings: ClassVar[type[ConnectorSettings]] = SQLiteSettings

    def write(
        self, settings: Any, request: WriteRequest, data: pa.RecordBatchReader | pa.Table
    ) -> int:
        config: SQLiteSettings = settings
        reader = as_reader(data)
        table, _ = write_names(request, reader.schema)
        if request.cancelled.is_set():
            raise TransientRunError("The run was interrupted before writing to SQLite.")
        paths.ensure_team_dir(request.boundary)
        path = paths.team_path(config.path, request.boundary, example="warehouse.sqlite")
        shown = paths.shown(path, request.boundary)
        _create(path, shown)
        paths.make_private(path)
        with _connect(path, shown) as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                rows = self._write(conn, table, request, reader)
                if request.cancelled.is_set():
                    raise TransientRunError("The run was interrupted while writing to SQLite.")
                conn.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise
        return rows

    def _write(
        self,
        conn: sqlite3.Connection,
        table: str,
        request: WriteRequest,
        data: pa.RecordBatchReader,
    ) -> int:
        target = quote(table)
        schema = data.schema
        existing = _table_columns(conn, table)
        if not existing:
            declared = [(f.name, sql_type(f.type, "sqlite")) for f in schema]
            body = ", ".join(f"{quote(name)} {kind}" for name, kind in declared)
            conn.execute(f"CREATE TABLE {target} ({body})")
            conn.execute(
                f"CREATE INDEX IF NOT EXISTS {quote(f'{table}__{request.date_column}')} "
                f"ON {target} ({quote(request.date_column)})"
            )
            existing = dict(declared)
        else:
            for name, kind in plan_columns(table, existing, schema, "sqlite"):
                conn.execute(f"ALTER TABLE {target} ADD COLUMN {quote(name)} {kind}")
                existing[name] = kind
        by_lower = {name.lower(): name for name in existing}
        if request.mode is RefreshMode.REPLACE:
            column = by_lower[request.date_column.lower()]
            if family_of_sql(existing[column]) is Family.DATE:
                condition = f"{quote(column)} = ?"
            else:
                condition = f"date({quote(column)}) = ?"
            conn.execute(f"DELETE FROM {target} WHERE {condition}", [request.data_date.isoformat()])
        elif request.mode is RefreshMode.OVERWRITE:
            conn.execute(f"DELETE FROM {target}")
        into = ", ".join(quote(by_lower[name.lower()]) for name in schema.names)
        marks = ", ".join("?" for _ in schema.names)
        insert = f"INSERT INTO {target} ({into}) VALUES ({marks})"
        rows = 0
        for batch in data:
            if not batch.num_rows:
                continue
            if request.cancelled.is_set():
                raise TransientRunError("The run was interrupted while writing to SQLite.")
            columns = [_python_column(column) for column in batch.columns]
            try:
                conn.executemany(insert, zip(*columns, strict=True))
            except OverflowError:
                raise TerminalRunError(
                    f"A value for table {table!r} is too large for SQLite's 64-bit integers."
                ) from None
            rows += batch.num_rows
        return rows

    def test_connection(self, settings: Any, boundary: Boundary) -> None:
        config: SQLiteSettings = settings
        path = paths.team_path(config.path, boundary, example="warehouse.sqlite")
        shown = paths.shown(path, boundary)
        if path.is_dir():
            raise TerminalRunError(f"{shown} is a folder: the path must name a SQLite file.")
        if not path.exists():
            # The first load creates it: checking must not (nor the folders above it).
            paths.check_creatable(path, boundary, "the SQLite file")
            return
        with _connect(path, shown) as conn:
            conn.execute("PRAGMA schema_version").fetchone()  # fails if not a database
            conn.execute("BEGIN IMMEDIATE")  # fails (after the busy timeout) if not writable
            conn.execute("ROLLBACK")

    def read_table(self, settings: Any, table: str, boundary: Boundary) -> pa.Table:
        config: SQLiteSettings = settings
        check_identifier(table)
        path = paths.team_path(config.path, boundary, example="warehouse.sqlite")
        if not path.exists():
            return pa.table({})
        with _connect(path, paths.shown(path, boundary), "ro") as conn:
            declared = _table_columns(conn, table)
            if not declared:
                return pa.table({})
            cursor = conn.execute(f"SELECT * FROM {quote(table)}")
            names = [str(d[0]) for d in cursor.description]
            rows = cursor.fetchall()
        values = list(zip(*rows, strict=True)) if rows else [() for _ in names]
        arrays = [
            _arrow_column(list(v), declared.get(n, "")) for n, v in zip(names, values, strict=True)
        ]
        return pa.table(arrays, names=names)


def _parse_date(value: Any) -> Any:
    return date.fromisoformat(value[:10]) if isinstance(value, str) else value


def _parse_boolean(value: Any) -> Any:
    return bool(value) if isinstance(value, (int, float)) else value


def _parse_timestamp(value: Any) -> Any:
    return datetime.fromisoformat(value) if isinstance(value, str) else value


_READERS: dict[Family, tuple[pa.DataType, Callable[[Any], Any] | None]] = {
    Family.BOOLEAN: (pa.bool_(), _parse_boolean),
    Family.INTEGER: (pa.int64(), None),
    Family.FLOAT: (pa.float64(), None),
    Family.DECIMAL: (pa.float64(), None),
    Family.DATE: (pa.date32(), _parse_date),
    Family.BINARY: (pa.binary(), None),
}


def _arrow_column(values: list[Any], declared: str) -> pa.Array:
    """Values read back from SQLite as an Arrow array typed by the column's declared type.

    SQLite stores whatever it is given: values that do not fit the declared type come back
    as text rather than failing the read.
    """
    family = family_of_sql(declared)
    try:
        if family in (Family.TIMESTAMP, Family.TIMESTAMPTZ):
            parsed = [_parse_timestamp(v) for v in values]
            zoned = any(v is not None and v.tzinfo is not None for v in parsed)
            if zoned:
                parsed = [v if v is None or v.tzinfo else v.replace(tzinfo=UTC) for v in parsed]
            return pa.array(parsed, pa.timestamp("us", tz="UTC" if zoned else None))
        reader = _READERS.get(family)
        if reader is not None:
            arrow_type, parse = reader
            return pa.array([parse(v) for v in values] if parse else values, arrow_type)
        if all(v is None or isinstance(v, str) for v in values):
            return pa.array(values, pa.string())
    except (ValueError, TypeError, pa.ArrowInvalid, pa.ArrowTypeError):
        pass
    return pa.array([None if v is None else str(v) for v in values], pa.string())
