"""Schema migrations through Alembic, callable from the CLI, ``serve`` and tests."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from opendts.kit.db import Database

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(url: str) -> Config:
    """An Alembic config pointing at the packaged migrations."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


class UpgradeBlocked(RuntimeError):
    """A data migration cannot go on now (its message says why and what to do); the
    upgrade's transaction is rolled back, so nothing changed."""


#: Any constant: PostgreSQL advisory lock that serialises concurrent migrators.
_MIGRATION_LOCK = 7_270_001


def upgrade(db: Database, revision: str = "head", *, data_dir: Path | None = None) -> None:
    """Bring the metadata database to ``revision`` (latest by default).

    On PostgreSQL the whole upgrade is one transaction holding an advisory lock, so several
    processes starting at once (API servers, workers) migrate exactly once and never see a
    half-migrated schema. ``data_dir`` is the data folder, for data migrations that move
    files (``0006_team_folders``); a database with embedded warehouses needs it.
    """
    config = alembic_config(db.url)
    config.attributes["data_dir"] = data_dir
    with db.write_engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})")
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def current_revision(db: Database) -> str | None:
    """The revision the database is at, ``None`` if never migrated."""
    with db.engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision(db: Database) -> str | None:
    """The newest revision shipped with this version of opendts."""
    return ScriptDirectory.from_config(alembic_config(db.url)).get_current_head()


def is_current(db: Database) -> bool:
    """Whether the database schema matches this version of opendts."""
    return current_revision(db) == head_revision(db)
