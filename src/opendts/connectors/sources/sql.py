"""``sql``: one date of rows from any database SQLAlchemy can reach, by a query.

The query binds the date as ``:date`` (``WHERE day = :date``); rows stream from a server-side
cursor in chunks of ``chunk_size`` (at most ``MAX_CHUNK_ROWS``) and become record batches,
types inferred by pyarrow (decimals, dates and timestamps keep their types; nested values
such as JSON or arrays become JSON text).

A database that cannot be reached is a transient failure (the date is retried); a query the
database rejects (bad SQL, a missing table or column) fails the date with the first line of its
message, rejected values hidden. The URL's password (and query values) are credentials: stored
sealed, shown as ``***``, sent only to the rest of the URL.

A SQLite file lives in the team's folder: ``sqlite:///shop.db`` is ``<team folder>/shop.db``
(``connectors.paths``, checked again at every read); absolute paths, ``file:`` URIs and URL
options are refused. SQLite is opened read-only, and an authorizer lets the query only read:
``ATTACH``, ``VACUUM INTO``, ``PRAGMA`` and writes are denied, so a query cannot reach (or
create) another file.

Only the backends the operator allows (``OPENDTS_SQL_DIALECTS``) are used. A network
database is reached only at addresses the team's boundary allows: the host is resolved
and checked at every read and the driver connects to the checked address (PostgreSQL
through libpq's ``hostaddr``, so TLS still verifies the name). Unix sockets, query
parameters that name other hosts, sockets or files, and the metadata database are refused.
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
from pydantic_core import PydanticCustomError
from sqlalchemy import Date, bindparam, create_engine, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.pool import NullPool

from opendts.connectors import excerpts, network, paths, postgres_target
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
#: Rows fetched and yielded at a time, whatever ``chunk_size`` says (a day is never held).
MAX_CHUNK_ROWS = 65_536

#: Backends whose database is a file, not a server (their paths are checked elsewhere).
FILE_BACKENDS = frozenset({"sqlite"})
DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306, "mariadb": 3306}
#: URL query parameters a team may set, per backend: none of them names a host, a socket
#: or a file on this server.
QUERY_PARAMETERS = {
    "postgresql": frozenset(
        {
            "sslmode",
            "sslnegotiation",
            "channel_binding",
            "connect_timeout",
            "application_name",
            "options",
            "target_session_attrs",
            "client_encoding",
            "keepalives",
            "keepalives_idle",
            "keepalives_interval",
            "keepalives_count",
            "tcp_user_timeout",
        }
    ),
    "mysql": frozenset(
        {"charset", "collation", "connect_timeout", "read_timeout", "write_timeout"}
    ),
}
QUERY_PARAMETERS["mariadb"] = QUERY_PARAMETERS["mysql"]
#: For backends an operator adds: parameters that would reach past the checked host.
FORBIDDEN_QUERY_PARAMETERS = frozenset(
    {
        "host",
        "hostaddr",
        "port",
        "unix_socket",
        "socket",
        "service",
        "servicefile",
        "passfile",
        "sslkey",
        "sslcert",
        "sslrootcert",
        "sslcrl",
        "sslcrldir",
        "read_default_file",
        "read_default_group",
        "local_infile",
        "init_command",
        "plugin_dir",
    }
)


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
        boundary = settings_boundary(info)
        try:
            check_server(url, boundary)
        except ValueError as exc:
            raise PydanticCustomError("address_refused", str(exc)) from None
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


def check_server(url: URL, boundary: Boundary | None) -> None:
    """``ValueError`` if the URL's backend or server is outside the boundary.

    The backend must be one the operator allows; a network database must name a TCP host
    (no socket, no literal address the boundary refuses) and no query parameter that
    reaches another host, a socket or a file. Names are judged when they are resolved.
    """
    backend = url.get_backend_name()
    if boundary is not None and backend not in boundary.sql_dialects:
        allowed = ", ".join(boundary.sql_dialects) or "none"
        raise ValueError(
            f"{backend} databases are not allowed on this server (the operator allows: "
            f"{allowed}; OPENDTS_SQL_DIALECTS, docs/security.md)"
        )
    if backend in FILE_BACKENDS:
        return
    allowed_parameters = QUERY_PARAMETERS.get(backend)
    for name in url.query:
        refused = (
            name not in allowed_parameters
            if allowed_parameters is not None
            else name.lower() in FORBIDDEN_QUERY_PARAMETERS
        )
        if refused:
            hint = (
                f"; allowed: {', '.join(sorted(allowed_parameters))}"
                if allowed_parameters is not None
                else ""
            )
            raise ValueError(
                f"the query parameter {name!r} is not allowed: a team's database is reached "
                f"only at the URL's host{hint}"
            )
    if not url.host:
        raise ValueError(
            "must name the database server's host, e.g. "
            f"{backend}://user:password@db.example.com/db (Unix sockets are not allowed)"
        )
    network.check_host(url.host, boundary)
    if backend == "postgresql":
        port = url.port or DEFAULT_PORTS["postgresql"]
        database = url.database or url.username or ""
        postgres_target.check_not_metadata(url.host, port, database, boundary)


def _pinned(url: URL, boundary: Boundary) -> tuple[URL, dict[str, Any]]:
    """The URL and driver arguments that reach only the host's checked addresses.

    Raises ``TerminalRunError`` (outside the boundary, or the metadata database) or
    ``TransientRunError`` (the host does not resolve now).
    """
    try:
        check_server(url, boundary)
    except ValueError as exc:
        raise network.AddressRefused(f"The source's url: {exc}.") from None
    backend = url.get_backend_name()
    if backend in FILE_BACKENDS:
        return url, {}
    host = url.host or ""
    port = url.port or DEFAULT_PORTS.get(backend, 0)
    if backend == "postgresql":
        pinned = postgres_target.pin(host, port, boundary)
        database = url.database or url.username or ""
        postgres_target.refuse_metadata(pinned.addresses, port, database, boundary)
        return url, dict(pinned.params)
    try:
        addresses = network.resolve(host, port, boundary)
    except network.AddressRefused:
        raise
    except OSError as exc:
        raise TransientRunError(
            f"The database host {host} could not be resolved ({exc}); will retry."
        ) from None
    # Other drivers take no separate address: they get the checked address itself.
    arguments: dict[str, Any] = {}
    if backend in ("mysql", "mariadb"):
        arguments["local_infile"] = False  # the server may not ask for this host's files
    return url.set(host=str(addresses[0])), arguments


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


def _verify(conn: Any, boundary: Boundary) -> None:
    """Refuse a server that turns out to be the metadata database (an alias of its address)."""

    def fetch_one(sql: str) -> Any:
        return conn.exec_driver_sql(sql).one()

    postgres_target.refuse_identity(postgres_target.identity(fetch_one), boundary)


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
        url, connect_args = _pinned(url, request.boundary)
        is_postgresql = url.get_backend_name() == "postgresql"
        if is_postgresql:
            connect_args["connect_timeout"] = CONNECT_TIMEOUT_SECONDS
        # One engine per read, without a pool: nothing stays open between dates.
        try:
            if sqlite:
                file = Path(database) if database is not None else None
                engine: Engine = create_engine(
                    url,
                    poolclass=NullPool,
                    creator=lambda: _sqlite_connection(file),
                    hide_parameters=True,
                )
            else:
                engine = create_engine(
                    url, poolclass=NullPool, connect_args=connect_args, hide_parameters=True
                )
        except (sa_exc.ArgumentError, sa_exc.NoSuchModuleError, ImportError) as exc:
            raise TerminalRunError(f"Cannot use the URL {shown}: {_message(exc, secret)}") from None
        statement = text(settings.query).bindparams(bindparam("date", type_=Date()))
        try:
            with engine.connect() as conn:
                if sqlite:  # after SQLAlchemy's own set-up queries, before the team's
                    driver = conn.connection.driver_connection
                    driver.set_authorizer(_sqlite_reads_only)  # type: ignore[union-attr]
                if is_postgresql:
                    _verify(conn, request.boundary)
                chunk = min(settings.chunk_size, MAX_CHUNK_ROWS)
                result = conn.execution_options(stream_results=True, max_row_buffer=chunk).execute(
                    statement, {"date": request.data_date}
                )
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
                    rows = result.fetchmany(chunk)
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
