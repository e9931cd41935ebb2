"""Engines and the one session scope.

SQLite runs in WAL mode with a busy timeout. Write transactions on SQLite start with
``BEGIN IMMEDIATE`` so that check-then-insert rules (such as the backfill overlap rule) are
serialised between threads and processes; reads use plain deferred transactions so they never
wait for a writer. On PostgreSQL both scopes share one engine and rely on row locks.

A SQLite metadata file is created 0600 before SQLite opens it (its ``-wal`` and ``-shm`` then
get the same mode), and an existing one is narrowed to 0600 with its side files.

Besides the session scope, ``Database.read`` lends a bare driver connection in autocommit mode
for the hottest reads (authentication and the backfill list, see ``kit.driver_sql``): no
session, no BEGIN/COMMIT, and on PostgreSQL no liveness ping per request; a connection found
dead is replaced and the read tried again once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Dialect, Engine, MetaData, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from opendts.kit.errors import NotFound
from opendts.kit.filelock import MachineLock
from opendts.kit.private import create_private_file, private_files

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

SQLITE_BUSY_TIMEOUT_MS = 30_000

#: SQLAlchemy puts a failed statement's parameters into the exception's text, and that text
#: reaches the logs (and a client-supplied value could be a secret): every engine hides them.
HIDE_PARAMETERS = True


class Base(DeclarativeBase):
    """Declarative base for every table of the metadata database."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def is_sqlite(url: str) -> bool:
    """Whether a SQLAlchemy URL points at SQLite."""
    return url.startswith("sqlite")


#: The files of a SQLite database besides the main one.
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL (``None`` in memory or for another database)."""
    if not is_sqlite(url):
        return None
    database = make_url(url).database or ""
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def keep_private(url: str) -> None:
    """Create a SQLite database file 0600 before SQLite does (SQLite gives its journal and
    WAL the main file's mode), or narrow an existing one and its side files to 0600."""
    path = sqlite_file(url)
    if path is None:
        return
    if path.parent.is_dir():
        create_private_file(path)
    private_files(path, *(path.with_name(path.name + suffix) for suffix in SQLITE_SIDE_FILES))


def _sqlite_engine(url: str, *, immediate: bool) -> Engine:
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
        pool_size=8,
        max_overflow=16,
        hide_parameters=HIDE_PARAMETERS,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from pysqlite so BEGIN is ours to emit.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.close()

    begin = "BEGIN IMMEDIATE" if immediate else "BEGIN"

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql(begin)

    return engine


def _postgresql_engine(
    url: str, *, autocommit: bool, pre_ping: bool = True, pool_size: int = 10
) -> Engine:
    # Reads run in autocommit: no BEGIN/COMMIT round trips for single-statement reads, and
    # every statement sees the latest committed data.
    return create_engine(
        url,
        pool_size=pool_size,
        max_overflow=2 * pool_size,
        pool_pre_ping=pre_ping,
        isolation_level="AUTOCOMMIT" if autocommit else "READ COMMITTED",
        hide_parameters=HIDE_PARAMETERS,
    )


@dataclass(frozen=True, slots=True)
class Reader:
    """A pooled driver connection in autocommit mode, lent by ``Database.read``."""

    connection: Any
    dialect: Dialect
    #: Kept with the driver connection for its lifetime (across checkouts): see ``change_token``.
    memo: dict[Any, Any]

    def change_token(self) -> tuple[int, int] | None:
        """A value that stays the same exactly as long as nothing was committed to the
        database, by any connection of any process; None where there is no cheap one.

        SQLite: ``PRAGMA data_version`` changes when another connection commits, and the
        connection's ``total_changes`` when this one writes. PostgreSQL has no counterpart.
        """
        if self.dialect.name != "sqlite":
            return None
        version = self.connection.execute("PRAGMA data_version").fetchone()[0]
        return int(version), int(self.connection.total_changes)


T = TypeVar("T")


ModelT = TypeVar("ModelT", bound=Base)


def get_or_not_found(session: Session, model: type[ModelT], key: int, what: str) -> ModelT:
    """``session.get`` or a NotFound naming the object (``what``: "Team", "API key", ...)."""
    found = session.get(model, key)
    if found is None:
        code = what.upper().replace(" ", "_") + "_NOT_FOUND"
        raise NotFound(f"{what} {key} does not exist.", code=code)
    return found


class Database:
    """The metadata database: a read scope and a write scope over one URL."""

    def __init__(self, url: str) -> None:
        self.url = url
        if is_sqlite(url):
            keep_private(url)
            self.engine = _sqlite_engine(url, immediate=False)
            self.write_engine = _sqlite_engine(url, immediate=True)
            # Read connections already run without a transaction until a session begins one.
            self._reader_engine = self.engine
        else:
            self.engine = _postgresql_engine(url, autocommit=True)
            self.write_engine = _postgresql_engine(url, autocommit=False)
            # Its own small pool without the ping: a dead connection is retried instead.
            self._reader_engine = _postgresql_engine(
                url, autocommit=True, pre_ping=False, pool_size=5
            )
        # SQLite has one writer at a time. Queueing writers on a lock, rather than on SQLite's
        # busy handler (which sleeps and retries), keeps write latency flat under concurrent
        # requests: a lock file next to the database queues the writers of every process on
        # the machine (``serve --workers N``, admin commands), a plain lock those of an
        # in-memory database.
        self._write_lock: AbstractContextManager[Any] | None = None
        if is_sqlite(url):
            path = make_url(url).database
            self._write_lock = (
                MachineLock(Path(f"{path}.writelock"))
                if path and path != ":memory:" and not path.startswith("file:")
                else threading.RLock()
            )
        self._read = sessionmaker(self.engine, expire_on_commit=False)
        self._write = sessionmaker(self.write_engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.engine.dialect.name

    @contextmanager
    def session(self, *, write: bool = False) -> Iterator[Session]:
        """The one session scope: commit on success, roll back on any error."""
        factory = self._write if write else self._read
        lock = self._write_lock if write else None
        with lock or nullcontext(), factory() as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    def read(self, work: Callable[[Reader], T]) -> T:
        """Run ``work`` on a pooled driver connection outside any transaction.

        For hot reads that are one statement each (each sees the latest committed data).
        A connection that turns out dead (the database restarted, a failover, terminated
        backends) is discarded and ``work`` runs once more on a fresh one, so it must be
        safe to repeat: reads only.
        """
        dialect = self._reader_engine.dialect
        for attempt in (1, 2):
            pooled = self._reader_engine.raw_connection()
            try:
                return work(Reader(pooled.dbapi_connection, dialect, pooled.info))
            except dialect.loaded_dbapi.Error as exc:
                if attempt == 2 or not dialect.is_disconnect(exc, pooled.dbapi_connection, None):
                    raise
                pooled.invalidate(exc)
            finally:
                pooled.close()
        raise AssertionError("unreachable")  # the loop returns or raises

    def dispose(self) -> None:
        """Close every pooled connection."""
        for engine in {self.engine, self.write_engine, self._reader_engine}:
            engine.dispose()
