"""Shared CLI plumbing: settings from flags, an up-to-date database, error printing.

The database stack (SQLAlchemy, Alembic, the settings model) is imported by the functions that
use it, so that the remote commands, which only speak HTTP, start in a fraction of the time.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NoReturn

import typer

from opendts.kit.errors import ApiError
from opendts.kit.private import private_folder

if TYPE_CHECKING:
    from opendts.kit.db import Database
    from opendts.settings import Settings


def settings_from(ctx: typer.Context) -> Settings:
    """Settings built from the environment, overridden by the root command's flags."""
    from pydantic import ValidationError

    from opendts.settings import Settings

    overrides: dict[str, Any] = (ctx.find_root().obj or {}).copy()
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(
            f"OPENDTS_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']} "
            f"(got {err.get('input')!r})"
            for err in exc.errors()
        )
        fail("INVALID_SETTING", f"{problems}. Fix the environment variable or flag.", as_json=False)


def connect(settings: Settings) -> Database:
    """The metadata database, or a clean exit that says why it cannot be reached."""
    from sqlalchemy.exc import OperationalError

    from opendts.kit import migrate
    from opendts.kit.db import Database, is_sqlite

    url = settings.resolved_database_url
    # The data folder holds the key, the teams' folders and SQLite's database: 0700.
    if is_sqlite(url) or settings.data_dir.is_dir():
        private_folder(settings.data_dir)
    db = Database(url)
    try:
        migrate.current_revision(db)
    except OperationalError as exc:
        db.dispose()
        fail(
            "DATABASE_UNAVAILABLE",
            f"Cannot open the metadata database {safe_url(url)}: {str(exc.orig).strip()}. "
            "Check OPENDTS_DATABASE_URL (or --database-url) and that the server is running.",
            as_json=False,
        )
    return db


#: How many times a migration whose connection was lost is tried before giving up.
MIGRATE_ATTEMPTS = 6


def open_database(settings: Settings) -> Database:
    """The metadata database, migrated to this version's schema.

    Migrating on start is safe on both backends: SQLite has one writer, and PostgreSQL
    migrations run under an advisory lock in one transaction (see ``kit.migrate.upgrade``).
    A connection lost while migrating (the server restarting, a failover, an operator
    terminating backends) is retried: the upgrade is one transaction, so a retry starts from
    a consistent schema. After ``MIGRATE_ATTEMPTS`` losses the command stops with the reason.
    """
    from sqlalchemy.exc import OperationalError

    from opendts.kit import migrate

    db = connect(settings)
    delay = 0.2
    for attempt in range(1, MIGRATE_ATTEMPTS + 1):
        try:
            migrate.upgrade(db, data_dir=settings.data_dir)
            return db
        except migrate.UpgradeBlocked as exc:
            db.dispose()
            fail("UPGRADE_BLOCKED", str(exc), as_json=False)
        except OperationalError as exc:
            if not exc.connection_invalidated or attempt == MIGRATE_ATTEMPTS:
                db.dispose()
                lost = f" (connection lost {attempt} times)" if exc.connection_invalidated else ""
                fail(
                    "DATABASE_UNAVAILABLE",
                    f"Cannot migrate the metadata database {safe_url(db.url)}{lost}: "
                    f"{str(exc.orig).strip()}. "
                    "Check that the database server is running, then start again.",
                    as_json=False,
                )
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
    raise AssertionError("unreachable")  # the loop returns or fails


def safe_url(url: str) -> str:
    """A database URL with any password masked, for messages and logs."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def fail(code: str, description: str, *, as_json: bool) -> NoReturn:
    """Print an error the way scripts and people want it, then exit 1."""
    if as_json:
        typer.echo(json.dumps({"error": {"code": code, "description": description}}))
    else:
        typer.secho(f"error: {code}: {description}", fg=typer.colors.RED, err=True)
    raise typer.Exit(1)


def emit(payload: dict[str, Any], *, as_json: bool, human: Callable[[], str]) -> None:
    """Print JSON for scripts or a sentence for people."""
    typer.echo(json.dumps(payload) if as_json else human())


@contextmanager
def admin_session(ctx: typer.Context, *, as_json: bool) -> Iterator[Any]:
    """A write session for an admin command; domain errors become a clean exit 1."""
    db = open_database(settings_from(ctx))
    try:
        with db.session(write=True) as session:
            yield session
    except ApiError as exc:
        fail(exc.code, exc.description or exc.message, as_json=as_json)
    finally:
        db.dispose()


#: The signals that stop ``serve`` and ``worker``.
STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT})


@contextmanager
def stop_signals_for_main_thread() -> Iterator[None]:
    """Start threads inside this block so that SIGTERM/SIGINT reach the main thread.

    The kernel hands a process-wide signal to any thread that does not block it, and
    Python runs the handler only when the main thread next executes bytecode: a signal
    caught by an engine thread would wait for the main thread's next wake-up. Threads
    inherit their creator's mask, so threads started here (and the threads they start)
    block these signals for good, and the kernel delivers them to the main thread.
    """
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
