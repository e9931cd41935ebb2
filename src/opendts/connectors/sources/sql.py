"""``sql``: one date of rows from any database SQLAlchemy can reach, by a query.

The query binds the date as ``:date`` (``WHERE day = :date``); rows stream in chunks of
``chunk_size`` and become record batches, types inferred by pyarrow (decimals, dates and
timestamps keep their types; nested values such as JSON or arrays become JSON text).

A database that cannot be reached is a transient failure (the date is retried); a query the
database rejects (bad SQL, a missing table or column) fails the date with the first line of its
message, rejected values hidden. The URL's password (and query values) are credentials: stored
sealed, shown as ``***``, sent only to the rest of the URL.

A SQLite file lives in the team's folder: ``sqlite:///shop.db`` is ``<team folder>/shop.db``
(``connectors.paths``, checked again at every read); absolute paths, ``file:`` URIs and URL
options are refused. SQLite is opened read-only, and an authorizer lets the query only read:
``ATTACH``, ``VACUUM INTO``, ``PRAGMA`` and writes are denied, so a query cannot reach (or
create) another file.
"""

from __future__ import annotations

import re
import sqlite3
import urllib.parse
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa
from pydantic import Field, SecretStr, ValidationInfo, field_validator
from sqlalchemy import Date, bindparam, create_engine, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.pool import NullPool

from opendts.connectors import excerpts, paths
from opendts.connectors.base import ConnectorSettings, ReadRequest, settings_boundary
from opendts.connectors.boundary import Boundary
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


def engine_url(raw: str, boundary: Boundary | None = None) -> URL:
    """The SQLAlchemy URL to connect with: psycopg 3 for PostgreSQL; for a SQLite file, its
    path in the team's folder when ``boundary`` is given (``PathRefused`` if it is not one)."""
    url = make_url(raw)
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    database = _sqlite_file(url)
    if database is not None:
        paths.check_team_path(database, None, example="shop.db")
        if boundary is not None:
            path = paths.team_path(database, boundary, example="shop.db")
            url = url.set(database=str(path))
    return url


def _sqlite_file(url: URL) -> str | None:
    """The file of a SQLite URL, ``None`` for another database or SQLite in memory.

    ``PathRefused`` for what would let SQLite open a file of its choosing: ``file:`` URIs
    (``?uri=true`` turns any path into one) and URL options.
    """
    if url.get_backend_name() != "sqlite":
        return None
    if url.query:
        raise paths.PathRefused(
            "SQLite URLs take no options (the part after '?'): write sqlite:///<file in the "
            "team's folder>, e.g. sqlite:///shop.db"
        )
    database = url.database or ""
    if database.startswith("file:"):
        raise paths.PathRefused(
            "SQLite 'file:' URIs are not allowed: write sqlite:///<file in the team's folder>, "
            "e.g. sqlite:///shop.db"
        )
    if not database or database == ":memory:":
        return None
    return database


#: What a query may make SQLite do: read (tables, functions, recursive CTEs), nothing else.
_SQLITE_READS = frozenset(
    {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE}
)


def _sqlite_reads_only(action: int, *_: object) -> int:
    return sqlite3.SQLITE_OK if action in _SQLITE_READS else sqlite3.SQLITE_DENY


def _sqlite_denied(exc: sa_exc.SQLAlchemyError) -> bool:
    text_ = str(getattr(exc, "orig", exc)).lower()
    return "not authorized" in text_ or "authorization denied" in text_


def _sqlite_connection(path: Path | None) -> sqlite3.Connection:
    """A read-only connection to ``path`` (a database in memory without one)."""
    if path is None:
        return sqlite3.connect(":memory:", check_same_thread=False)
    uri = f"file:{urllib.parse.quote(str(path))}?mode=ro"
    return sqlite3.connect(uri, uri=True, check_same_thread=False)


class SqlSettings(ConnectorSettings):
    """The database and the query that selects one date's rows."""

    #: The URL's password (and query values) are sent only to the rest of the URL.
    credential_location: ClassVar[tuple[str, ...] | None] = ()
    credential_urls: ClassVar[Mapping[str, str]] = {"url": "database"}

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
    def _url(cls, value: SecretStr, info: ValidationInfo) -> SecretStr:
        try:
            url = engine_url(value.get_secret_value(), settings_boundary(info))
        except paths.PathRefused:
            raise
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
    """The database's own message, safe to show: its first line, the password masked, quoted
    values hidden (a rejected value is data; a table or column name is kept)."""
    orig = getattr(exc, "orig", None)
    text_ = str(orig if orig is not None else exc).strip()
    shown = excerpts.excerpt(text_, secrets=[secret] if secret else [])
    return shown or type(exc).__name__


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
        raw = settings.url.get_secret_value()
        url = engine_url(raw, request.boundary)
        shown = make_url(raw).render_as_string(hide_password=True)
        secret = url.password if isinstance(url.password, str) and url.password else None
        sqlite = url.get_backend_name() == "sqlite"
        database = _sqlite_file(url)
        if database is not None and not Path(database).is_file():
            raise TerminalRunError(
                f"The SQLite database file {make_url(raw).database} does not exist in the "
                "team's folder. Check the source's url."
            )
        connect_args: dict[str, Any] = {}
        if url.get_backend_name() == "postgresql":
            connect_args["connect_timeout"] = CONNECT_TIMEOUT_SECONDS
        # One engine per read, without a pool: nothing stays open between dates.
        try:
            if sqlite:
                file = Path(database) if database is not None else None
                engine: Engine = create_engine(
                    url, poolclass=NullPool, creator=lambda: _sqlite_connection(file)
                )
            else:
                engine = create_engine(url, poolclass=NullPool, connect_args=connect_args)
        except (sa_exc.ArgumentError, sa_exc.NoSuchModuleError, ImportError) as exc:
            raise TerminalRunError(f"Cannot use the URL {shown}: {_message(exc, secret)}") from None
        statement = text(settings.query).bindparams(bindparam("date", type_=Date()))
        try:
            with engine.connect() as conn:
                if sqlite:  # after SQLAlchemy's own set-up queries, before the team's
                    driver = conn.connection.driver_connection
                    driver.set_authorizer(_sqlite_reads_only)  # type: ignore[union-attr]
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
            if sqlite and _sqlite_denied(exc):
                raise TerminalRunError(
                    f"The query was refused ({_message(exc, secret)}): a SQLite query may only "
                    "read (SELECT); ATTACH, VACUUM, PRAGMA and writes are not allowed."
                ) from None
            raise _classify(exc, shown, secret) from None
        finally:
            engine.dispose()
