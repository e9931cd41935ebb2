"""Test databases: a migrated SQLite file per test, or a per-session PostgreSQL database.

PostgreSQL is mandatory under ``CI=true`` (an unreachable server fails the run); on a laptop
without it the PostgreSQL half of the suite is skipped with the reason.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import text

from opendts.kit import migrate
from opendts.kit.db import Database
from opendts.kit.registry import metadata

PG_ADMIN_DSN = os.environ.get(
    "OPENDTS_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)
ON_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def pg_available() -> str | None:
    """``None`` if PostgreSQL answers, else the reason it does not."""
    try:
        with psycopg.connect(PG_ADMIN_DSN, connect_timeout=3):
            return None
    except psycopg.Error as exc:
        return f"PostgreSQL at {PG_ADMIN_DSN} unreachable: {exc}".strip()


def require_pg() -> None:
    """Fail on CI, skip elsewhere, when PostgreSQL is not there."""
    reason = pg_available()
    if reason is None:
        return
    if ON_CI:
        pytest.fail(f"{reason} (CI=true: the PostgreSQL tests must run)", pytrace=False)
    pytest.skip(reason)


@contextmanager
def pg_database() -> Iterator[str]:
    """A new, migrated PostgreSQL database, dropped afterwards; yields its SQLAlchemy URL."""
    name = f"opendts_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_DSN.rsplit("/", 1)[0]
    url = f"postgresql+psycopg://{base.split('://', 1)[1]}/{name}"
    db = Database(url)
    migrate.upgrade(db)
    db.dispose()
    try:
        yield url
    finally:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def sqlite_template(directory: Path) -> Path:
    """A migrated SQLite file to copy for each test (migrating once is much faster)."""
    path = directory / "template.db"
    db = Database(f"sqlite:///{path}")
    migrate.upgrade(db)
    with db.engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    db.dispose()
    return path


def fresh_sqlite(template: Path, directory: Path) -> str:
    """A private copy of the migrated template; returns its URL."""
    target = directory / "opendts.db"
    shutil.copyfile(template, target)
    return f"sqlite:///{target}"


def truncate_all(db: Database) -> None:
    """Empty every table (PostgreSQL), resetting ids, so each test starts clean."""
    names = ", ".join(f'"{table.name}"' for table in metadata.sorted_tables)
    with db.engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
