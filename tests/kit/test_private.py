"""The data folder, the metadata database (with its WAL) and the secret key are private."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from opendts.cli import runtime
from opendts.kit.db import Database
from opendts.kit.secrets import KEY_FILE, load_key
from opendts.settings import Settings


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    """A distribution's default umask: files would be 0644 and folders 0755 without care."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def test_a_new_metadata_database_and_its_wal_are_0600(tmp_path: Path) -> None:
    path = tmp_path / "opendts.db"
    db = Database(f"sqlite:///{path}")
    with db.session(write=True) as session:
        session.execute(text("CREATE TABLE t (x INTEGER)"))
        session.execute(text("INSERT INTO t VALUES (1)"))
    try:
        for name in ("opendts.db", "opendts.db-wal", "opendts.db-shm"):
            assert (tmp_path / name).exists(), name
            assert mode(tmp_path / name) == 0o600, name
    finally:
        db.dispose()


def test_an_existing_metadata_database_is_narrowed(tmp_path: Path) -> None:
    for name in ("opendts.db", "opendts.db-wal", "opendts.db-shm"):
        (tmp_path / name).write_bytes(b"")
        (tmp_path / name).chmod(0o644)
    Database(f"sqlite:///{tmp_path / 'opendts.db'}").dispose()
    for name in ("opendts.db", "opendts.db-wal", "opendts.db-shm"):
        assert mode(tmp_path / name) == 0o600, name


def test_the_secret_key_and_a_new_data_folder_are_private(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    key = load_key(data_dir, None)
    assert mode(data_dir) == 0o700
    assert mode(data_dir / KEY_FILE) == 0o600
    (data_dir / KEY_FILE).chmod(0o644)
    assert load_key(data_dir, None) == key
    assert mode(data_dir / KEY_FILE) == 0o600


def test_starting_narrows_an_existing_data_folder(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o755)
    db = runtime.connect(Settings(data_dir=data_dir))
    db.dispose()
    assert mode(data_dir) == 0o700
    assert mode(data_dir / "opendts.db") == 0o600


def test_starting_creates_a_private_data_folder(tmp_path: Path) -> None:
    data_dir = tmp_path / "new" / "data"
    db = runtime.connect(Settings(data_dir=data_dir))
    db.dispose()
    assert mode(data_dir) == 0o700
