"""Upgrading an install laid out the old way: warehouses are copied into team folders.

Up to migration 0003 relative destination paths lived in the data folder itself (every demo
team shared ``warehouse.duckdb``) and absolute ones anywhere. ``opendts migrate`` (as serve
and worker do on start) copies each embedded warehouse into its team's folder, loses no row,
deletes nothing, never copies the server's own files, and does nothing the second time.
"""

from __future__ import annotations

import json
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from alembic import command
from sqlalchemy import text

from opendts.connectors import registry
from opendts.connectors.base import parse_settings
from opendts.connectors.boundary import Boundary
from opendts.kit import migrate
from opendts.kit.db import Database
from opendts.settings import Settings
from tests import databases
from tests.live import opendts, server_env

DAY = date(2024, 1, 1)


@pytest.fixture(params=["sqlite", "postgresql"])
def old_install(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A metadata database at revision 0003 and its data folder: (database URL, data folder)."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    if request.param == "sqlite":
        url = f"sqlite:///{data_dir / 'opendts.db'}"
        db = Database(url)
        migrate.upgrade(db, "0003")
        db.dispose()
        yield url, data_dir
        return
    databases.require_pg()
    with databases.pg_database() as url:
        command.downgrade(migrate.alembic_config(url), "0003")
        yield url, data_dir


def add_destination(
    db: Database, team_id: int, kind: str, path: str, *, deleted: bool = False
) -> int:
    now = datetime.now(UTC)
    with db.session(write=True) as session:
        return int(
            session.execute(
                text(
                    "INSERT INTO destinations (team_id, display_name, type, fields, secrets, "
                    "created_at, updated_at, deleted_at) VALUES (:team, :name, :type, :fields, "
                    "'', :now, :now, :deleted) RETURNING id"
                ),
                {
                    "team": team_id,
                    "name": f"{kind} of team {team_id}",
                    "type": kind,
                    "fields": json.dumps({"path": path}),
                    "now": now,
                    "deleted": now if deleted else None,
                },
            ).scalar_one()
        )


def path_of(db: Database, destination_id: int) -> str:
    with db.session() as session:
        fields = session.execute(
            text("SELECT fields FROM destinations WHERE id = :id"), {"id": destination_id}
        ).scalar_one()
    return str(json.loads(fields)["path"])


def rows(data_dir: Path, url: str, team_id: int, kind: str, path: str, table: str) -> int:
    """Rows of ``table`` as the team's destination reads it (through the connector)."""
    destination = registry.get_destination(kind)
    boundary = Boundary.for_team(Settings(data_dir=data_dir, database_url=url), team_id)
    settings = parse_settings(destination.Settings, {"path": path}, boundary)
    found = destination.read_table(settings, table, boundary).num_rows
    if kind == "duckdb":
        from opendts.connectors.destinations import duckdb as duck

        duck.close_all()
    return int(found)


def old_layout(data_dir: Path, elsewhere: Path) -> dict[str, Any]:
    """Warehouses where the old code put them, with loaded rows."""
    shared = duckdb.connect(str(data_dir / "warehouse.duckdb"))
    shared.execute(
        "CREATE TABLE demo_ad_metrics AS SELECT DATE '2024-01-01' AS date, range AS n "
        "FROM range(1000)"
    )
    shared.close()
    lake = data_dir / "lake" / "ads" / f"date={DAY}"
    lake.mkdir(parents=True)
    pq.write_table(pa.table({"id": list(range(7))}), lake / "part-0.parquet")
    pq.write_metadata(
        pa.schema([("id", pa.int64()), ("date", pa.date32())]),
        data_dir / "lake" / "ads" / "_common_metadata",
    )
    (data_dir / "lake" / "notes.txt").write_text("not a table: never copied")
    elsewhere.mkdir()
    with sqlite3.connect(elsewhere / "abs.sqlite") as conn:
        conn.execute("CREATE TABLE ads (date TEXT, id INTEGER)")
        conn.executemany("INSERT INTO ads VALUES ('2024-01-01', ?)", [(n,) for n in range(5)])
    conn.close()
    (data_dir / "secret.key").write_text("not for teams\n")
    return {"abs": str(elsewhere / "abs.sqlite")}


def tree(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*"))}


def test_an_old_install_upgrades_without_losing_rows(
    old_install: tuple[str, Path], tmp_path: Path
) -> None:
    url, data_dir = old_install
    db = Database(url)
    with db.session(write=True) as session:
        for team in (1, 2, 3):
            session.execute(
                text("INSERT INTO teams (id, name, created_at) VALUES (:id, :name, :now)"),
                {"id": team, "name": f"Team {team}", "now": datetime.now(UTC)},
            )
    made = old_layout(data_dir, tmp_path / "elsewhere")
    ids = {
        "demo 1": add_destination(db, 1, "duckdb", "warehouse.duckdb"),
        "demo 1 again": add_destination(db, 1, "duckdb", "warehouse.duckdb"),
        "demo 2": add_destination(db, 2, "duckdb", "warehouse.duckdb"),
        "lake": add_destination(db, 1, "parquet", "lake"),
        "absolute": add_destination(db, 3, "sqlite", made["abs"]),
        "attack": add_destination(db, 2, "sqlite", "opendts.db"),
        "key": add_destination(db, 3, "duckdb", "../data/secret.key"),
        "missing": add_destination(db, 3, "duckdb", "/nonexistent/x.duckdb"),
        "deleted": add_destination(db, 1, "duckdb", "gone.duckdb", deleted=True),
    }
    originals = {**tree(data_dir), "abs": Path(made["abs"]).stat().st_size}
    originals = {k: v for k, v in originals.items() if not k.startswith("opendts.db")}

    env = server_env(data_dir, None if url.startswith("sqlite") else url)
    first = opendts(env, "migrate")
    assert "(was 0003)" in first.stdout  # upgraded through 0006_team_folders (and later)
    assert "copied" in first.stderr, first.stderr

    # Every team reads its loaded rows from its own copy.
    assert path_of(db, ids["demo 1"]) == path_of(db, ids["demo 2"]) == "warehouse.duckdb"
    assert path_of(db, ids["demo 1 again"]) == "warehouse.duckdb"
    assert rows(data_dir, url, 1, "duckdb", "warehouse.duckdb", "demo_ad_metrics") == 1000
    assert rows(data_dir, url, 2, "duckdb", "warehouse.duckdb", "demo_ad_metrics") == 1000
    assert path_of(db, ids["lake"]) == "lake"
    assert rows(data_dir, url, 1, "parquet", "lake", "ads") == 7
    assert not (data_dir / "teams" / "1" / "lake" / "notes.txt").exists()
    assert path_of(db, ids["absolute"]) == "abs.sqlite"
    assert rows(data_dir, url, 3, "sqlite", "abs.sqlite", "ads") == 5
    # The server's own files are never copied into a team's folder.
    assert path_of(db, ids["attack"]) == "warehouse.sqlite"
    assert not (data_dir / "teams" / "2" / "warehouse.sqlite").exists()
    assert path_of(db, ids["key"]) == "warehouse.duckdb"
    assert "server's own files" in first.stderr
    assert not any(p.name in ("secret.key", "opendts.db") for p in (data_dir / "teams").rglob("*"))
    assert path_of(db, ids["missing"]) == "x.duckdb"
    assert path_of(db, ids["deleted"]) == "gone.duckdb"
    # Nothing was moved or deleted, and the copies are private.
    now = {**tree(data_dir), "abs": Path(made["abs"]).stat().st_size}
    for name, size in originals.items():
        assert now.get(name) == size, name
    for copy in (data_dir / "teams").rglob("*"):
        expected = 0o700 if copy.is_dir() else 0o600
        assert stat.S_IMODE(copy.stat().st_mode) == expected, copy

    # A second start does nothing: rows loaded since stay, no file is copied again.
    team1 = duckdb.connect(str(data_dir / "teams" / "1" / "warehouse.duckdb"))
    team1.execute("DELETE FROM demo_ad_metrics WHERE n >= 10")
    team1.close()
    before = tree(data_dir / "teams")
    second = opendts(env, "migrate")
    assert "copied" not in second.stderr
    assert tree(data_dir / "teams") == before
    assert rows(data_dir, url, 1, "duckdb", "warehouse.duckdb", "demo_ad_metrics") == 10
    assert rows(data_dir, url, 2, "duckdb", "warehouse.duckdb", "demo_ad_metrics") == 1000
    db.dispose()


def test_a_warehouse_open_in_another_process_blocks_the_upgrade_and_changes_nothing(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    url = f"sqlite:///{data_dir / 'opendts.db'}"
    db = Database(url)
    migrate.upgrade(db, "0003")
    with db.session(write=True) as session:
        session.execute(
            text("INSERT INTO teams (id, name, created_at) VALUES (1, 'T', :now)"),
            {"now": datetime.now(UTC)},
        )
    destination = add_destination(db, 1, "duckdb", "warehouse.duckdb")
    script = (
        "import duckdb, sys; c = duckdb.connect(sys.argv[1]); "
        "c.execute('CREATE TABLE t AS SELECT 1 AS x'); print('ready', flush=True); "
        "sys.stdin.read()"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", script, str(data_dir / "warehouse.duckdb")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        blocked = opendts(server_env(data_dir), "migrate", check=False)
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)
    assert blocked.returncode == 1
    assert "UPGRADE_BLOCKED" in blocked.stderr and "Traceback" not in blocked.stderr
    assert "open in another process" in blocked.stderr
    assert migrate.current_revision(db) == "0003"
    assert not (data_dir / "teams").exists()
    # Once the other process is gone, the upgrade goes through.
    opendts(server_env(data_dir), "migrate")
    assert path_of(db, destination) == "warehouse.duckdb"
    copy = duckdb.connect(str(data_dir / "teams" / "1" / "warehouse.duckdb"), read_only=True)
    assert copy.execute("SELECT x FROM t").fetchall() == [(1,)]
    copy.close()
    db.dispose()
