"""Starting against a database whose connections are lost while it migrates."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from sqlalchemy.exc import OperationalError

from opendts.cli import runtime
from opendts.kit import migrate
from opendts.kit.db import Database
from opendts.settings import Settings


def lost(invalidated: bool = True) -> OperationalError:
    return OperationalError(
        "COMMIT",
        {},
        Exception("terminating connection due to administrator command"),
        connection_invalidated=invalidated,
    )


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path)


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime.time, "sleep", lambda _seconds: None)


def test_a_migration_whose_connection_was_lost_is_tried_again(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = migrate.upgrade
    calls: list[int] = []

    def flaky(db: Database, revision: str = "head", data_dir: Path | None = None) -> None:
        calls.append(1)
        if len(calls) <= 2:
            raise lost()
        real(db, revision, data_dir=data_dir)

    monkeypatch.setattr(migrate, "upgrade", flaky)
    db = runtime.open_database(settings)
    try:
        assert len(calls) == 3
        assert migrate.current_revision(db) == migrate.head_revision(db)
    finally:
        db.dispose()


def test_it_gives_up_with_the_reason_after_repeated_losses(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    calls: list[int] = []

    def dead(db: Database, revision: str = "head", data_dir: Path | None = None) -> None:
        calls.append(1)
        raise lost()

    monkeypatch.setattr(migrate, "upgrade", dead)
    with pytest.raises(typer.Exit) as stopped:
        runtime.open_database(settings)
    assert stopped.value.exit_code == 1
    assert len(calls) == runtime.MIGRATE_ATTEMPTS
    err = capsys.readouterr().err
    assert "DATABASE_UNAVAILABLE" in err and f"lost {runtime.MIGRATE_ATTEMPTS} times" in err
    assert "administrator command" in err


def test_other_database_errors_are_not_retried(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    calls: list[int] = []

    def broken(db: Database, revision: str = "head", data_dir: Path | None = None) -> None:
        calls.append(1)
        raise lost(invalidated=False)

    monkeypatch.setattr(migrate, "upgrade", broken)
    with pytest.raises(typer.Exit):
        runtime.open_database(settings)
    assert len(calls) == 1
    err = capsys.readouterr().err
    assert "DATABASE_UNAVAILABLE" in err and "connection lost" not in err
