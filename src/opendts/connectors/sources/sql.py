"""``sql``: one date of rows from any database SQLAlchemy can reach, by a query.

The query binds the date as ``:date`` (``WHERE day = :date``); rows stream in chunks of
``chunk_size`` and become record batches, types inferred by pyarrow (decimals, dates and
timestamps keep their types; nested values such as JSON or arrays become JSON text).

A database that cannot be reached is a transient failure (the date is retried); a query the
database rejects (bad SQL, a missing table or column) fails the date with its message. The
URL may hold a password: it is a credential, and messages show the URL with it hidden.
A relative SQLite path lives in the data folder.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa
from pydantic import Field, SecretStr, field_validator
from sqlalchemy import Date, bindparam, create_engine, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.pool import NullPool

from opendts.connectors import paths
from opendts.connectors.base import ConnectorSettings, ReadRequest
from opendts.connectors.sources.http import column_array
from opendts.engine.errors import RunError, TerminalRunError, TransientRunError

#: How SQLAlchemy finds bind parameters in ``text()`` (``::date`` casts are not parameters).
_BIND = re.compile(r"(?<![:\w\x5c]):(\w+)(?!:)")

#: OperationalError messages that retrying cannot fix (SQLite reports bad SQL this way).
_TERMINAL_OPERATIONAL = (
    "no such table",
    "no such column",
    "syntax error",
    "password authentication failed",
    "authentication failed",
    "access denied",
    "permission denied",
    "does not exist",
    "unknown database",
    "no password supplied",
    "ambiguous column",
    "misuse of",
    "wrong number of arguments",
)

CONNECT_TIMEOUT_SECONDS = 10


def engine_url(raw: str) -> URL:
    """The SQLAlchemy URL to connect with: psycopg 3 for PostgreSQL, SQLite in the data folder."""
    url = make_url(raw)
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    database = _sqlite_file(url)
    if database is not None:
        url = url.set(database=str(paths.resolve(database)))
    return url


def _sqlite_file(url: URL) -> str | None:
    """The file of a SQLite URL (not in-memory, not a ``file:`` URI); ``None`` otherwise."""
    if url.get_backend_name() != "sqlite":
        return None
    database = url.database or ""
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return database


class SqlSettings(ConnectorSettings):
    """The database and the query that selects one date's rows."""

    url: SecretStr = Field(
        description="SQLAlchemy URL, e.g. postgresql://user:password@host:5432/db "
        "or sqlite:///data.db"
    )
    query: str = Field(
        min_length=1,
        description="SELECT with the date bound as :date, e.g. SELECT * FROM t WHERE day = :date",
    )
    chunk_size: int = Field(default=10_000, ge=1, le=10_000_000)

    @field_validator("url")
    @classmethod
    def _url(cls, value: SecretStr) -> SecretStr:
        try:
            url = engine_url(value.get_secret_value())
        except (sa_exc.ArgumentError, ValueError):
            raise ValueError(
                "not a SQLAlchemy URL; e.g. postgresql://user:password@host:5432/db"
            ) from None
        try:
            url.get_dialect()
        except (sa_exc.NoSuchModuleError, ImportError):
            raise ValueError(
                f"no installed driver for {url.drivername!r} URLs "
                "(install its SQLAlchemy dialect and DB-API driver)"
            ) from None
        return value

    @field_validator("query")
    @classmethod
    def _query(cls, value: str) -> str:
        if "date" not in _BIND.findall(value):
            raise ValueError(
                "must use the bind parameter :date to select the date's rows, "
                "e.g. SELECT * FROM events WHERE day = :date"
            )
        return value


def _message(exc: BaseException, secret: str | None) -> str:
    """The database's own message: the DB-API error's first lines, password removed."""
    orig = getattr(exc, "orig", None)
    text_ = str(orig if orig is not None else exc).strip()
    lines = [line for line in text_.splitlines() if line.strip()][:3]
    text_ = " ".join(line.strip() for line in lines) or type(exc).__name__
    if secret:
        text_ = text_.replace(secret, "***")
    return text_[:500]


def _classify(exc: sa_exc.SQLAlchemyError, shown: str, secret: str | None) -> RunError:
    message = _message(exc, secret)
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return TransientRunError(f"The connection to {shown} was lost ({message}); will retry.")
    if isinstance(exc, sa_exc.OperationalError):
        if any(marker in message.lower() for marker in _TERMINAL_OPERATIONAL):
            return TerminalRunError(f"The database at {shown} rejected the query: {message}")
        return TransientRunError(f"The database at {shown} is unavailable ({message}); will retry.")
    if isinstance(exc, (sa_exc.InterfaceError, sa_exc.InternalError)):
        return TransientRunError(f"The database at {shown} failed ({message}); will retry.")
    if isinstance(exc, sa_exc.DBAPIError):  # ProgrammingError, DataError, IntegrityError, ...
        return TerminalRunError(f"The database at {shown} rejected the query: {message}")
    return TerminalRunError(f"Reading from {shown} failed: {message}")


class SqlSource:
    """Rows returned by a SQL query with the date bound as ``:date``."""

    name: ClassVar[str] = "sql"
    title: ClassVar[str] = "SQL query"
    Settings: ClassVar[type[ConnectorSettings]] = SqlSettings

    def read(self, settings: SqlSettings, request: ReadRequest) -> Iterator[pa.RecordBatch]:
        url = engine_url(settings.url.get_secret_value())
        shown = url.render_as_string(hide_password=True)
        secret = url.password if isinstance(url.password, str) and url.password else None
        database = _sqlite_file(url)
        if database is not None and not Path(database).is_file():
            # SQLite would create an empty file and then report a missing table.
            raise TerminalRunError(
                f"The SQLite database file {database} does not exist. Check the source's url."
            )
        connect_args: dict[str, Any] = {}
        if url.get_backend_name() == "postgresql":
            connect_args["connect_timeout"] = CONNECT_TIMEOUT_SECONDS
        # One engine per read, without a pool: nothing stays open between dates.
        try:
            engine: Engine = create_engine(
                url, poolclass=NullPool, connect_args=connect_args, hide_parameters=True
            )
        except (sa_exc.ArgumentError, sa_exc.NoSuchModuleError, ImportError) as exc:
            raise TerminalRunError(f"Cannot use the URL {shown}: {_message(exc, secret)}") from None
        statement = text(settings.query).bindparams(bindparam("date", type_=Date()))
        try:
            with engine.connect() as conn:
                result = conn.execution_options(
                    stream_results=True, max_row_buffer=settings.chunk_size
                ).execute(statement, {"date": request.data_date})
                names = list(result.keys())
                duplicates = sorted({n for n in names if names.count(n) > 1})
                if duplicates:
                    raise TerminalRunError(
                        f"The query returns several columns named {', '.join(duplicates)}: "
                        "give each column its own name (AS ...)."
                    )
                while True:
                    if request.cancelled.is_set():
                        raise TransientRunError("interrupted")
                    rows = result.fetchmany(settings.chunk_size)
                    if not rows:
                        break
                    columns = list(zip(*rows, strict=True))
                    arrays = [column_array(list(values)) for values in columns]
                    yield pa.RecordBatch.from_arrays(arrays, names=names)
                result.close()
        except sa_exc.SQLAlchemyError as exc:
            raise _classify(exc, shown, secret) from None
        finally:
            engine.dispose()
