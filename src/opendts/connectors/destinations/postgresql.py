"""``postgresql``: tables in a PostgreSQL database, loaded with binary ``COPY`` from Arrow.

Rows stay in Arrow end to end: the day's table is cast to the target columns' types in Arrow
and handed to ADBC (``adbc_driver_postgresql``), whose ``adbc_ingest`` streams it with
``COPY … FROM STDIN (FORMAT binary)``, naming the columns it sends (so a subset of the table's
columns, in any order, is loaded by name; the others get NULL).

Every write is one transaction: DDL (schema, table, date index, new columns), the refresh
mode's delete, the COPY and the commit. A crash at any point leaves the old rows or the new
ones, never a mix. DDL runs under a transaction-level advisory lock on the table, so two
writers creating or widening the same table wait for each other instead of failing; a
``replace`` also takes an advisory lock on (table, date), so two writers of the same date
cannot both delete the old rows and both insert.

Connections go only to the addresses the team's boundary allows: the host is resolved and
checked at every write, and libpq connects to exactly those addresses (``hostaddr``; the
name stays in ``host`` for TLS). Unix sockets and the metadata database are refused
(``connectors.postgres_target``).

Connections come from a small pool per connection settings (opening an ADBC database costs
about 50 ms, because the driver loads the type catalogue; another connection to it about 2 ms).

Errors: connection refused, timeouts, too many connections, serialization failures and
deadlocks are ``TransientRunError``; bad credentials, a missing database or missing
privileges are ``TerminalRunError`` saying what to fix. The password is never put in a
message.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, TypeVar

import adbc_driver_manager
import adbc_driver_postgresql.dbapi as adbc_pg
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from opendts.connectors import network, postgres_target
from opendts.connectors.base import (
    ConnectorSettings,
    RefreshMode,
    WriteRequest,
    as_reader,
    check_identifier,
    quote,
    settings_boundary,
)
from opendts.connectors.boundary import Boundary
from opendts.connectors.schema import Family, family_of_arrow, family_of_sql, plan_columns, sql_type
from opendts.engine.errors import TerminalRunError, TransientRunError

_T = TypeVar("_T")

#: Idle connections kept per connection settings; more are closed when returned.
MAX_IDLE = 8
#: An idle connection unused for this long is closed.
IDLE_SECONDS = 300.0
#: ``application_name`` shown in ``pg_stat_activity`` (``PGAPPNAME`` overrides it).
APPLICATION_NAME = "opendts"


class PostgreSQLSettings(ConnectorSettings):
    """How to reach the database, and the schema tables go in."""

    #: The password is sent only to this server, database and user, over this sslmode.
    credential_location: ClassVar[tuple[str, ...] | None] = (
        "host",
        "port",
        "database",
        "user",
        "sslmode",
    )

    # The default is checked like a typed host: this machine only if the operator allows it.
    host: str = Field(default="127.0.0.1", validate_default=True)
    port: int = Field(default=5432, ge=1, le=65535)
    database: str = Field(min_length=1, max_length=63)
    user: str = Field(default="postgres", min_length=1, max_length=63)
    password: SecretStr | None = None
    schema_name: str = "public"
    sslmode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] = "prefer"
    connect_timeout_seconds: int = Field(default=10, ge=1, le=300)

    @field_validator("host")
    @classmethod
    def _host(cls, value: str, info: ValidationInfo) -> str:
        if not value.strip():
            raise ValueError("must name a host, e.g. db.example.com")
        try:
            network.check_host(value, settings_boundary(info))
        except ValueError as exc:
            raise PydanticCustomError("address_refused", str(exc)) from None
        return value.strip()

    @field_validator("database")
    @classmethod
    def _database(cls, value: str, info: ValidationInfo) -> str:
        host, port = info.data.get("host"), info.data.get("port")
        if isinstance(host, str) and isinstance(port, int):
            try:
                postgres_target.check_not_metadata(host, port, value, settings_boundary(info))
            except ValueError as exc:
                raise PydanticCustomError("metadata_database", str(exc)) from None
        return value

    @field_validator("schema_name")
    @classmethod
    def _schema(cls, value: str) -> str:
        return check_identifier(value, "schema")


def _conninfo_value(value: str) -> str:
    """A libpq connection-string value, quoted."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def conninfo(settings: PostgreSQLSettings, pinned: postgres_target.Pinned | None = None) -> str:
    """The libpq connection string for ``settings`` (holds the password: never log it),
    connecting only to ``pinned``'s checked addresses when given."""
    parts = {
        "host": settings.host,
        "port": str(settings.port),
        "dbname": settings.database,
        "user": settings.user,
        "sslmode": settings.sslmode,
        "connect_timeout": str(settings.connect_timeout_seconds),
        "fallback_application_name": APPLICATION_NAME,
    }
    if settings.password is not None:
        parts["password"] = settings.password.get_secret_value()
    if pinned is not None:
        parts.update(pinned.params)
    return " ".join(f"{key}={_conninfo_value(value)}" for key, value in parts.items())


# --- errors ---------------------------------------------------------------------------------


def _scrub(text: str, settings: PostgreSQLSettings) -> str:
    """``text`` without the password (drivers may echo connection strings)."""
    if settings.password is not None:
        secret = settings.password.get_secret_value()
        if len(secret) >= 3:
            text = text.replace(secret, "***")
    return text


def _reason(exc: BaseException, settings: PostgreSQLSettings) -> str:
    """The server's or libpq's own words, without the driver's prefixes and the query."""
    text = _scrub(str(exc), settings)
    text = text.split("\n\nQuery was:", 1)[0]
    match = re.search(r"(?:ERROR|FATAL):\s+(.*)", text)
    if match:
        extra = [m.group(1) for m in re.finditer(r"(?:DETAIL|HINT|CONTEXT):\s+(.*)", text)]
        text = "; ".join([match.group(1).strip(), *[e.strip() for e in extra]])
    else:
        text = re.sub(r"^[A-Z_]+: (?:\[libpq\] )?", "", text)
        text = text.split(": ", 1)[1] if text.startswith("Failed to") and ": " in text else text
    text = re.sub(r"\.? ?SQLSTATE: [0-9A-Z]{5}$", "", text.strip())
    return " ".join(text.split())


def _where(settings: PostgreSQLSettings) -> str:
    return f"database {settings.database!r} at {settings.host}:{settings.port}"


_AUTH_WORDS = (
    "password authentication failed",
    "authentication failed",
    "no password supplied",
    "password is required",
    "pg_hba.conf",
    "does not exist",  # role "x" does not exist (databases are matched first)
)
_TRANSIENT_WORDS = (
    "connection refused",
    "timeout expired",
    "timed out",
    "too many clients",
    "too many connections",
    "remaining connection slots",
    "the database system is starting up",
    "the database system is shutting down",
    "the database system is in recovery mode",
    "the database system is not yet accepting connections",
    "server closed the connection",
    "connection reset",
    "no route to host",
    "network is unreachable",
    "could not translate host name",
    "temporary failure in name resolution",
    "no connection to the server",
    "terminating connection",
)


def connect_error(exc: BaseException, settings: PostgreSQLSettings) -> Exception:
    """A failure to open a connection, as a run error (libpq gives no SQLSTATE there)."""
    reason = _reason(exc, settings)
    lower = reason.lower()
    if "database" in lower and "does not exist" in lower:
        return TerminalRunError(
            f"PostgreSQL at {settings.host}:{settings.port} has no database "
            f"{settings.database!r}: create it or fix the destination's database name."
        )
    if "permission denied for database" in lower or "connect privilege" in lower:
        return TerminalRunError(
            f"PostgreSQL user {settings.user!r} may not connect to {_where(settings)} "
            f"({reason}): GRANT CONNECT ON DATABASE to the user, or use another user."
        )
    if any(word in lower for word in _TRANSIENT_WORDS):
        if "too many" in lower or "remaining connection slots" in lower:
            return TransientRunError(
                f"PostgreSQL {_where(settings)} has no free connection slot ({reason}); the "
                "run will be retried.",
                retry_after=5.0,
            )
        return TransientRunError(
            f"Cannot reach PostgreSQL {_where(settings)} ({reason}); the run will be retried."
        )
    if any(word in lower for word in _AUTH_WORDS):
        return TerminalRunError(
            f"PostgreSQL rejected user {settings.user!r} for database {settings.database!r} "
            f"({reason}): check the destination's user and password."
        )
    if "ssl" in lower or "certificate" in lower:
        return TerminalRunError(
            f"Cannot open a TLS connection to PostgreSQL {_where(settings)} ({reason}): check "
            f"the destination's sslmode ({settings.sslmode!r}) and the server's certificate."
        )
    return TransientRunError(
        f"Cannot connect to PostgreSQL {_where(settings)} ({reason}); the run will be retried."
    )


#: SQLSTATEs worth retrying: serialization failure, deadlock, lock not available, query
#: cancelled (statement timeout), server shutting down, out of resources, system errors.
_TRANSIENT_STATES = {"40001", "40P01", "55P03", "57014", "57P01", "57P02", "57P03", "57P05"}
_TRANSIENT_CLASSES = {"08", "53", "58"}


def _sqlstate(exc: BaseException) -> str | None:
    state = getattr(exc, "sqlstate", None)
    return str(state) if state else None


def broken(exc: BaseException) -> bool:
    """Whether ``exc`` means the connection itself is unusable."""
    if not isinstance(exc, adbc_driver_manager.Error):
        return True
    state = _sqlstate(exc)
    if state is None:
        return isinstance(exc, adbc_driver_manager.OperationalError)
    return (state.startswith("08") and state != "08P01") or state in {"57P01", "57P02"}


def statement_error(
    exc: BaseException, settings: PostgreSQLSettings, table: str | None
) -> Exception:
    """A failure while using ``table`` (or just the database), as a run error."""
    reason = _reason(exc, settings)
    state = _sqlstate(exc)
    if table is None:
        target = _where(settings)
    else:
        target = f"table {settings.schema_name}.{table} in {_where(settings)}"
    if state is None:
        if "connect" in reason.lower() or "server" in reason.lower():
            return TransientRunError(
                f"The connection to PostgreSQL broke while using {target} ({reason}); the "
                "run will be retried."
            )
        return TerminalRunError(f"PostgreSQL failed on {target}: {reason}")
    if state in _TRANSIENT_STATES or (state[:2] in _TRANSIENT_CLASSES and state != "08P01"):
        return TransientRunError(
            f"PostgreSQL aborted the transaction on {target} ({reason}, SQLSTATE {state}); "
            "the run will be retried."
        )
    if state in {"08P01", "22P03"}:  # a binary COPY value the column's type cannot read
        return TerminalRunError(
            f"PostgreSQL could not store the rows in {target} ({reason}): that column's type "
            "is not one opendts writes (it writes integer, floating point, numeric, text, "
            "boolean, date, timestamp, json and bytea columns). Change the column's type or "
            "point the transfer at a new table."
        )
    if state == "42501":
        return TerminalRunError(
            f"PostgreSQL user {settings.user!r} lacks a privilege on {target} ({reason}): "
            f"GRANT USAGE, CREATE ON SCHEMA {settings.schema_name} and INSERT, DELETE on the "
            "table to the user, or use another user."
        )
    if state.startswith("28"):
        return TerminalRunError(
            f"PostgreSQL rejected user {settings.user!r} for database {settings.database!r} "
            f"({reason}): check the destination's user and password."
        )
    if state == "3D000":
        return TerminalRunError(
            f"PostgreSQL at {settings.host}:{settings.port} has no database "
            f"{settings.database!r}: create it or fix the destination's database name."
        )
    return TerminalRunError(
        f"PostgreSQL rejected the rows for {target}: {reason} (SQLSTATE {state})."
    )


# --- connection pool ------------------------------------------------------------------------


class _Pool:
    """Connections to one database with one set of settings, reused across writes.

    The first connection opens an ADBC database (the driver loads the type catalogue, about
    50 ms); later ones are cloned from it (about 2 ms). Idle connections are kept LIFO, at
    most ``MAX_IDLE``, and closed after ``IDLE_SECONDS``.
    """

    def __init__(self, info: str) -> None:
        self._info = info
        self._lock = threading.Lock()
        self._create_lock = threading.Lock()
        self._idle: list[tuple[Any, float]] = []
        #: A connection whose ADBC database new connections are cloned from.
        self._anchor: Any = None
        #: Connections handed out and not yet released.
        self._out = 0
        #: Whether the server was found not to be the metadata database.
        self.verified = False

    def acquire(self) -> tuple[Any, bool]:
        """A connection with no open transaction, and whether it was used before."""
        self.sweep()
        with self._lock:
            reused = self._idle.pop()[0] if self._idle else None
            self._out += 1
        if reused is not None:
            return reused, True
        try:
            with self._create_lock:  # one ADBC database; connections created one at a time
                if self._anchor is None:
                    conn = adbc_pg.connect(self._info)
                    self._anchor = conn
                    return conn, False
                return self._anchor.adbc_clone(), False
        except BaseException:
            with self._lock:
                self._out -= 1
            raise

    def sweep(self) -> bool:
        """Close connections idle for longer than ``IDLE_SECONDS``; whether the pool is unused."""
        now = time.monotonic()
        with self._lock:
            stale = []
            while self._idle and now - self._idle[0][1] > IDLE_SECONDS:
                stale.append(self._idle.pop(0)[0])
        for conn in stale:
            self._close(conn)
        with self._lock:
            return not self._idle and not self._out

    def release(self, conn: Any, *, is_broken: bool = False) -> None:
        """Give ``conn`` back (its transaction ended); a broken one, and the idle, are closed."""
        if is_broken:
            # The server probably restarted or dropped us: the idle ones are likely dead too.
            with self._lock:
                self._out -= 1
                dead = [conn] + [idle for idle, _ in self._idle]
                self._idle.clear()
            for item in dead:
                self._close(item)
            return
        with self._lock:
            self._out -= 1
            if len(self._idle) < MAX_IDLE:
                self._idle.append((conn, time.monotonic()))
                return
        self._close(conn)

    def _close(self, conn: Any) -> None:
        with self._create_lock:
            if conn is self._anchor:
                self._anchor = None
        with contextlib.suppress(Exception):
            conn.close()

    def close(self) -> None:
        with self._lock:
            idle = [conn for conn, _ in self._idle]
            self._idle.clear()
        for conn in idle:
            self._close(conn)


_pools: dict[str, _Pool] = {}
_pools_lock = threading.Lock()
_pools_pid = os.getpid()
_swept = time.monotonic()
#: Pools inherited over ``fork``: kept referenced so their sockets (the parent's) stay open.
_orphans: list[_Pool] = []


def _pool(settings: PostgreSQLSettings, pinned: postgres_target.Pinned) -> _Pool:
    global _pools_pid, _swept
    info = conninfo(settings, pinned)
    with _pools_lock:
        if os.getpid() != _pools_pid:
            _orphans.extend(_pools.values())
            _pools.clear()
            _pools_pid = os.getpid()
        if time.monotonic() - _swept > 60:
            # Pools of settings no longer used (an edited or deleted destination) are dropped.
            _swept = time.monotonic()
            for key, other in list(_pools.items()):
                if key != info and other.sweep():
                    del _pools[key]
        pool = _pools.get(info)
        if pool is None:
            pool = _pools[info] = _Pool(info)
        return pool


def close_all() -> None:
    """Close every pooled connection (at exit, and in tests)."""
    with _pools_lock:
        pools = list(_pools.values()) if os.getpid() == _pools_pid else []
        _pools.clear()
    for pool in pools:
        pool.close()


atexit.register(close_all)


# --- tables, columns and types --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Column:
    name: str
    declared: str  # format_type(): "bigint", "numeric(12,2)", "timestamp with time zone", …
    typname: str  # pg_type.typname: "int8", "numeric", "timestamptz", …


@dataclass(frozen=True, slots=True)
class _Table:
    schema: str
    name: str
    columns: dict[str, _Column]  # by column name, in table order


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _candidates(name: str) -> str:
    """The names an identifier may have been created with: as given, or folded (unquoted)."""
    return ", ".join(_literal(n) for n in dict.fromkeys((name, name.lower())))


def _find_table(cur: Any, schema: str, table: str, lock: str | None = None) -> _Table | None:
    """The table (and its columns) named ``schema.table``, matched case-insensitively.

    ``lock`` (an advisory-lock call) is taken by the same statement, saving a round trip:
    the lock is the preserved side of the join, so it is taken whether or not the table
    exists. What the statement reads may predate the lock's wait; callers re-read under
    the DDL lock before changing anything, and later statements see fresh data.
    """
    catalog = (
        "SELECT n.nspname, c.relname, a.attname, format_type(a.atttypid, a.atttypmod) AS "
        "declared, t.typname, a.attnum FROM pg_catalog.pg_class c "
        "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
        "JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid "
        "AND a.attnum > 0 AND NOT a.attisdropped "
        "JOIN pg_catalog.pg_type t ON t.oid = a.atttypid "
        f"WHERE n.nspname IN ({_candidates(schema)}) AND c.relname IN ({_candidates(table)}) "
        "AND c.relkind IN ('r', 'p')"
    )
    order = (
        f"ORDER BY f.nspname = {_literal(schema)} DESC, f.relname = {_literal(table)} DESC, "
        "f.nspname, f.relname, f.attnum"
    )
    columns = "f.nspname, f.relname, f.attname, f.declared, f.typname"
    if lock is None:
        cur.execute(f"SELECT {columns} FROM ({catalog}) f {order}")
    else:
        cur.execute(
            f"SELECT {columns} FROM (SELECT true AS locked FROM {lock}) l "
            f"LEFT JOIN ({catalog}) f ON true {order}"
        )
    rows = [row for row in cur.fetchall() if row[0] is not None]
    if not rows:
        return None
    found_schema, found_table = str(rows[0][0]), str(rows[0][1])
    found = {
        str(name): _Column(str(name), str(declared), str(typname))
        for nsp, rel, name, declared, typname in rows
        if nsp == found_schema and rel == found_table
    }
    return _Table(found_schema, found_table, found)


def _schema_exists(cur: Any, schema: str) -> str | None:
    cur.execute(
        f"SELECT nspname FROM pg_catalog.pg_namespace WHERE nspname IN ({_candidates(schema)}) "
        f"ORDER BY nspname = {_literal(schema)} DESC LIMIT 1"
    )
    row = cur.fetchone()
    return None if row is None else str(row[0])


def _lock_key(schema: str, table: str) -> str:
    """The advisory-lock key of a table (case-folded, as names match): ``hashtext(s.t)``."""
    return f"hashtext({_literal(f'{schema}.{table}'.lower())})"


def _create_table(cur: Any, schema: str, table: str, columns: pa.Schema) -> _Table | None:
    """Create the schema (if missing) and the table; the caller holds the table's lock."""
    found_schema = _schema_exists(cur, schema)
    if found_schema is None:
        # Tables of one new schema may be created at once: serialise on the schema too.
        cur.execute(f"SELECT pg_advisory_xact_lock(hashtext({_literal(schema.lower())}))")
        cur.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(schema)}")
        found_schema = schema
    target = f"{quote(found_schema)}.{quote(table)}"
    body = ", ".join(f"{quote(f.name)} {sql_type(f.type, 'postgresql')}" for f in columns)
    cur.execute(f"CREATE TABLE IF NOT EXISTS {target} ({body})")
    return _find_table(cur, found_schema, table)


def _create_date_index(cur: Any, table: _Table, date_column: str) -> None:
    """The index REPLACE's delete uses; built after the first COPY (faster than maintained)."""
    index = f"{table.name}_{date_column}_idx"[:63]
    target = f"{quote(table.schema)}.{quote(table.name)}"
    cur.execute(f"CREATE INDEX IF NOT EXISTS {quote(index)} ON {target} ({quote(date_column)})")


def _json_text(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Nested values (lists, structs, maps) as JSON text; PostgreSQL has no such types."""
    values = [
        None if value is None else json.dumps(value, default=str, separators=(",", ":"))
        for value in column.to_pylist()
    ]
    return pa.chunked_array([pa.array(values, pa.string())], pa.string())


_ARROW_OF: dict[str, pa.DataType] = {
    "int8": pa.int64(),
    "int4": pa.int32(),
    "int2": pa.int16(),
    "float8": pa.float64(),
    "float4": pa.float32(),
    "bool": pa.bool_(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us"),
    "timestamptz": pa.timestamp("us", tz="UTC"),
    "text": pa.string(),
    "varchar": pa.string(),
    "bpchar": pa.string(),
    "json": pa.string(),
    "jsonb": pa.json_(),
    "bytea": pa.binary(),
}
_STRINGS = (pa.string(), pa.large_string())
_TEXT_TYPES = {"text", "varchar", "bpchar", "json", "jsonb"}


def _cast(column: pa.ChunkedArray, target: pa.DataType) -> pa.ChunkedArray:
    options = pc.CastOptions(target, allow_time_truncate=True)
    result: pa.ChunkedArray = pc.cast(column, options=options)
    return result


def _conform_column(column: pa.ChunkedArray, typname: str) -> pa.ChunkedArray:
    """``column`` in the Arrow type whose binary COPY form the column of ``typname`` reads."""
    source = column.type
    if typname == "numeric":
        # ADBC encodes integers and decimals as numeric; floats must become decimals first.
        if pa.types.is_floating(source):
            return _cast(column, pa.decimal128(38, 9))
        if pa.types.is_null(source):
            return _cast(column, pa.decimal128(38, 9))
        return column
    target = _ARROW_OF.get(typname)
    if target is None or source == target:
        return column  # a type ADBC matches itself (or the server rejects, with a message)
    if typname in _TEXT_TYPES:
        if family_of_arrow(source) is Family.JSON and not isinstance(source, pa.ExtensionType):
            column = _json_text(column)
        elif isinstance(source, pa.ExtensionType):
            column = pa.chunked_array(
                [chunk.storage for chunk in column.chunks], source.storage_type
            )
        if typname != "jsonb" and column.type in _STRINGS:
            return column
        if column.type != pa.string():
            column = _cast(column, pa.string())
        return column if typname != "jsonb" else _cast(column, target)
    if typname == "bytea" and pa.types.is_large_binary(source):
        return column
    return _cast(column, target)


def _conform(data: pa.Table, table: _Table, name: str) -> pa.Table:
    """``data`` with the table's column names and types, ready for a binary COPY."""
    by_lower = {column.lower(): column for column in table.columns}
    names: list[str] = []
    arrays: list[pa.ChunkedArray] = []
    for field, column in zip(data.schema, data.columns, strict=True):
        existing = table.columns[by_lower[field.name.lower()]]
        try:
            arrays.append(_conform_column(column, existing.typname))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
            raise TerminalRunError(
                f"The values of column {field.name!r} ({field.type}) do not fit column "
                f"{existing.name!r} ({existing.declared}) of table {name!r}: {exc}"
            ) from None
        names.append(existing.name)
    return pa.Table.from_arrays(arrays, names=names)


def _check_names(schema: pa.Schema, date_column: str) -> None:
    """Every column name usable, none twice up to letter case, the date column present."""
    seen: dict[str, str] = {}
    for name in schema.names:
        try:
            check_identifier(name, "column")
        except ValueError as exc:
            raise TerminalRunError(f"{exc}: rename the column in the source.") from None
        other = seen.setdefault(name.lower(), name)
        if other != name:
            raise TerminalRunError(
                f"The source sends both {other!r} and {name!r}: column names must differ in "
                "more than letter case."
            )
    if date_column not in schema.names:
        raise TerminalRunError(f"The rows to write have no date column {date_column!r}.")


def _decoded(schema: pa.Schema) -> pa.Schema:
    """``schema`` with dictionary columns as their values' type (the values are stored)."""
    return pa.schema(
        [
            pa.field(f.name, f.type.value_type) if pa.types.is_dictionary(f.type) else f
            for f in schema
        ]
    )


def _decode(data: pa.Table) -> pa.Table:
    """Dictionary columns decoded."""
    for index, field in enumerate(data.schema):
        if pa.types.is_dictionary(field.type):
            decoded = pc.cast(data.column(index), field.type.value_type)
            data = data.set_column(index, field.name, decoded)
    return data


# --- the destination ------------------------------------------------------------------------


def _send(
    cur: Any, found: _Table, name: str, data: pa.RecordBatchReader, request: WriteRequest
) -> int:
    """COPY the reader's batches into ``found``, one stream, each batch conformed as it goes;
    returns the rows sent. An exception raised by the reader (or the conforming) is raised
    as itself, not as the driver's error it caused."""
    schema = _conform(_decode(data.schema.empty_table()), found, name).schema
    failure: list[BaseException] = []
    rows = 0

    def batches() -> Iterator[pa.RecordBatch]:
        nonlocal rows
        try:
            for batch in data:
                if request.cancelled.is_set():
                    raise TransientRunError("The run was interrupted while writing to PostgreSQL.")
                if not batch.num_rows:
                    continue
                conformed = _conform(_decode(pa.Table.from_batches([batch])), found, name)
                if not conformed.schema.equals(schema):
                    conformed = conformed.cast(schema)
                rows += conformed.num_rows
                yield from conformed.to_batches()
        except BaseException as exc:
            failure.append(exc)
            raise

    stream = pa.RecordBatchReader.from_batches(schema, batches())
    try:
        cur.adbc_ingest(found.name, stream, mode="append", db_schema_name=found.schema)
    except adbc_driver_manager.Error:
        if failure:
            raise failure[0] from None
        raise
    if failure:
        raise failure[0]
    return rows


class PostgreSQLDestination:
    """Writes each date into a table of a PostgreSQL database, in one transaction."""

    name: ClassVar[str] = "postgresql"
    title: ClassVar[str] = "PostgreSQL"
    Settings: ClassVar[type[ConnectorSettings]] = PostgreSQLSettings

    def write(
        self, settings: Any, request: WriteRequest, data: pa.RecordBatchReader | pa.Table
    ) -> int:
        config: PostgreSQLSettings = settings
        try:
            table = check_identifier(request.table)
            date_column = check_identifier(request.date_column, "date column")
        except ValueError as exc:
            raise TerminalRunError(str(exc)) from None
        reader = as_reader(data)
        _check_names(reader.schema, date_column)
        if request.cancelled.is_set():
            raise TransientRunError("The run was interrupted before writing to PostgreSQL.")
        started = False

        def batches() -> Iterator[pa.RecordBatch]:
            nonlocal started
            started = True
            yield from reader

        once = pa.RecordBatchReader.from_batches(reader.schema, batches())

        def work(cur: Any) -> int:
            # A pooled connection found dead is replaced and ``work`` run again: fine before
            # the first batch was read, not after (the batches cannot be read twice).
            if started:
                raise TransientRunError(
                    "The connection to PostgreSQL broke while the rows were being sent; the "
                    "run will be retried."
                )
            rows = self._write(cur, config.schema_name, table, date_column, request, once)
            if request.cancelled.is_set():
                raise TransientRunError("The run was interrupted while writing to PostgreSQL.")
            return rows

        return _session(config, request.boundary, table, work, commit=True)

    @staticmethod
    def _write(
        cur: Any,
        schema: str,
        table: str,
        date_column: str,
        request: WriteRequest,
        data: pa.RecordBatchReader,
    ) -> int:
        # Locks, always in this order (date, table, schema), so writers never deadlock: two
        # writers of one date must not both delete the old rows and both insert; an
        # overwrite, and DDL, are one writer at a time per table.
        key = _lock_key(schema, table)
        lock = None
        if request.mode is RefreshMode.REPLACE:
            lock = f"pg_advisory_xact_lock({key}, {request.data_date.toordinal()})"
        elif request.mode is RefreshMode.OVERWRITE:
            lock = f"pg_advisory_xact_lock({key})"
        found = _find_table(cur, schema, table, lock)
        added: list[tuple[str, str]] = []
        created = False
        incoming = _decoded(data.schema)
        if found is not None:
            existing = {name: column.declared for name, column in found.columns.items()}
            added = plan_columns(table, existing, incoming, "postgresql")
        if found is None or added:
            # DDL: one writer at a time per table; the others then see what it created.
            cur.execute(f"SELECT pg_advisory_xact_lock({key})")
            found = _find_table(cur, schema, table)
            if found is None:
                found = _create_table(cur, schema, table, incoming)
                created = True
                if found is None:
                    raise TerminalRunError(f"Table {table!r} could not be created.")
            existing = {name: column.declared for name, column in found.columns.items()}
            added = plan_columns(table, existing, incoming, "postgresql")
            if added:
                target = f"{quote(found.schema)}.{quote(found.name)}"
                for name, declared in added:
                    cur.execute(
                        f"ALTER TABLE {target} ADD COLUMN IF NOT EXISTS {quote(name)} {declared}"
                    )
                found = _find_table(cur, found.schema, found.name)
                if found is None:
                    raise TerminalRunError(f"Table {table!r} was dropped while being written.")
        target = f"{quote(found.schema)}.{quote(found.name)}"
        if created:
            pass  # a table created in this transaction holds no rows to delete
        elif request.mode is RefreshMode.REPLACE:
            date_name = {n.lower(): n for n in found.columns}[date_column.lower()]
            day = f"DATE '{request.data_date.isoformat()}'"
            if family_of_sql(found.columns[date_name].declared) is Family.DATE:
                condition = f"{quote(date_name)} = {day}"
            else:
                condition = f"CAST({quote(date_name)} AS date) = {day}"
            cur.execute(f"DELETE FROM {target} WHERE {condition}")
        elif request.mode is RefreshMode.OVERWRITE:
            # DELETE rather than TRUNCATE: readers keep seeing the old rows until the commit.
            cur.execute(f"DELETE FROM {target}")
        rows = _send(cur, found, table, data, request)
        if created:
            _create_date_index(cur, found, date_column)
        return rows

    def test_connection(self, settings: Any, boundary: Boundary) -> None:
        config: PostgreSQLSettings = settings

        def check(cur: Any) -> tuple[str | None, bool]:
            cur.execute("SELECT 1")
            cur.fetchall()
            schema = _schema_exists(cur, config.schema_name)
            if schema is None:
                cur.execute("SELECT has_database_privilege(current_database(), 'CREATE')")
            else:
                cur.execute(
                    "SELECT has_schema_privilege(oid, 'CREATE') FROM "
                    f"pg_catalog.pg_namespace WHERE nspname = {_literal(schema)}"
                )
            row = cur.fetchone()
            return schema, bool(row and row[0])

        schema, may_create = _session(config, boundary, None, check, commit=False)
        if may_create:
            return
        if schema is None:
            raise TerminalRunError(
                f"Schema {config.schema_name!r} does not exist in {_where(config)} and user "
                f"{config.user!r} may not create it: create the schema or GRANT CREATE ON "
                f"DATABASE {config.database} TO {config.user}."
            )
        raise TerminalRunError(
            f"PostgreSQL user {config.user!r} may not create tables in schema {schema!r} "
            f"of {_where(config)}: GRANT USAGE, CREATE ON SCHEMA {schema} TO "
            f"{config.user}, or use another user."
        )

    def read_table(self, settings: Any, table: str, boundary: Boundary) -> pa.Table:
        config: PostgreSQLSettings = settings
        check_identifier(table)

        def read(cur: Any) -> pa.Table:
            found = _find_table(cur, config.schema_name, table)
            if found is None:
                return pa.table({})
            cur.execute(f"SELECT * FROM {quote(found.schema)}.{quote(found.name)}")
            result: pa.Table = cur.fetch_arrow_table()
            return result

        return _session(config, boundary, table, read, commit=False)


def _acquire(pool: _Pool, config: PostgreSQLSettings) -> tuple[Any, bool]:
    try:
        return pool.acquire()
    except adbc_driver_manager.Error as exc:
        raise connect_error(exc, config) from None


def _target(config: PostgreSQLSettings, boundary: Boundary) -> postgres_target.Pinned:
    """The checked addresses of the destination's host, refused if they are the metadata
    database's or outside the team's boundary."""
    pinned = postgres_target.pin(config.host, config.port, boundary)
    postgres_target.refuse_metadata(pinned.addresses, config.port, config.database, boundary)
    return pinned


def _verify(cur: Any, boundary: Boundary) -> bool:
    """Refuse a server that turns out to be the metadata database (an alias of its
    address); whether that was settled."""

    def fetch_one(sql: str) -> Any:
        cur.execute(sql)
        return cur.fetchone()

    return postgres_target.refuse_identity(postgres_target.identity(fetch_one), boundary)


def _session(
    config: PostgreSQLSettings,
    boundary: Boundary,
    table: str | None,
    work: Callable[[Any], _T],
    *,
    commit: bool,
) -> _T:
    """``work(cursor)`` in one transaction on a pooled connection, committed or rolled back.

    Driver errors become run errors. A pooled connection that turns out dead (the server
    restarted or closed it while idle) is replaced and the work run once more, unless the
    failure came at the commit, whose outcome is then unknown.
    """
    pool = _pool(config, _target(config, boundary))
    for attempt in (1, 2):
        conn, reused = _acquire(pool, config)
        ending = False
        try:
            with conn.cursor() as cur:
                if not pool.verified:
                    pool.verified = _verify(cur, boundary)
                result = work(cur)
            ending = True
            if commit:
                conn.commit()
            else:
                conn.rollback()
        except BaseException as exc:
            dead = broken(exc) if isinstance(exc, adbc_driver_manager.Error) else False
            if not dead:
                try:
                    conn.rollback()
                except Exception:
                    dead = True
            pool.release(conn, is_broken=dead)
            if not isinstance(exc, adbc_driver_manager.Error):
                raise
            if dead and reused and not (ending and commit) and attempt == 1:
                continue
            raise statement_error(exc, config, table) from None
        pool.release(conn)
        return result
    raise AssertionError("unreachable")  # pragma: no cover
