"""Schema only through Alembic: migrate from empty, idempotently, reversibly, without drift."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from opendts.kit import migrate
from opendts.kit.db import Database
from opendts.kit.registry import metadata
from tests import databases
from tests.live import opendts, server_env


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    databases.require_pg()
    with databases.pg_database() as url:
        # pg_database hands out a migrated database: take it back to empty first.
        command.downgrade(migrate.alembic_config(url), "base")
        yield url


def table_names(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_cli_migrate_from_empty_is_complete_and_idempotent(empty_url: str, tmp_path: Path) -> None:
    env = server_env(tmp_path, empty_url)
    assert table_names(empty_url) <= {"alembic_version"}
    first = opendts(env, "migrate")
    db = Database(empty_url)
    head = migrate.head_revision(db)
    assert f"at revision {head}" in first.stdout
    assert {t.name for t in metadata.sorted_tables} <= table_names(empty_url)
    second = opendts(env, "migrate")
    assert f"at revision {head} (was {head})" in second.stdout
    assert migrate.is_current(db)
    db.dispose()


def test_downgrade_to_empty_and_back(empty_url: str) -> None:
    db = Database(empty_url)
    migrate.upgrade(db)
    command.downgrade(migrate.alembic_config(empty_url), "base")
    assert table_names(empty_url) <= {"alembic_version"}
    migrate.upgrade(db)
    assert migrate.is_current(db)
    db.dispose()


def test_models_match_migrations(empty_url: str) -> None:
    db = Database(empty_url)
    migrate.upgrade(db)
    with db.engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), metadata)
    db.dispose()
    assert diff == []


def test_processes_starting_together_on_an_empty_postgresql_migrate_once(tmp_path: Path) -> None:
    import subprocess
    import sys

    databases.require_pg()
    with databases.pg_database() as url:
        command.downgrade(migrate.alembic_config(url), "base")
        env = server_env(tmp_path, url)
        starters = [
            subprocess.Popen(
                [sys.executable, "-m", "opendts", "admin", "demo", "--json"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(4)
        ]
        outputs = [process.communicate(timeout=120) for process in starters]
        assert [process.returncode for process in starters] == [0] * 4, outputs
        teams = {json.loads(out)["team_id"] for out, _ in outputs}
        assert len(teams) == 4
        db = Database(url)
        assert migrate.is_current(db)
        db.dispose()


def test_a_migration_waits_for_another_migrator_on_postgresql(tmp_path: Path) -> None:
    import subprocess
    import sys
    import time

    import psycopg

    databases.require_pg()
    with databases.pg_database() as url:
        command.downgrade(migrate.alembic_config(url), "base")
        plain = url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(plain) as holder:
            holder.execute("SELECT pg_advisory_xact_lock(7270001)")  # as a migrator would
            waiting = subprocess.Popen(
                [sys.executable, "-m", "opendts", "migrate"],
                env=server_env(tmp_path, url),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            time.sleep(3)
            assert waiting.poll() is None, waiting.communicate()
            holder.rollback()  # releases the transaction-level lock
        out, err = waiting.communicate(timeout=60)
        assert waiting.returncode == 0, err
        assert "was empty" in out
