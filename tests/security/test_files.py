"""Issue 11, files: what an editor did with paths, replayed through the API and the engine.

Each test is an attack from the issue's table (or its file findings) that worked before the
tenant boundary: the API now refuses the path with 400 naming the field, or the run stays
inside the team's folder, and the server's own files and other teams' data are untouched.
They run on SQLite and PostgreSQL metadata where the attack applies (an attack on the SQLite
metadata file needs SQLite metadata).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pytest
from sqlalchemy import text
from starlette.testclient import TestClient

from opendts.auth.permissions import Role
from opendts.connectors import registry
from opendts.connectors.base import parse_settings
from opendts.connectors.boundary import Boundary
from opendts.connectors.destinations import duckdb as duck
from opendts.kit.db import Database
from opendts.kit.secrets import SecretBox
from opendts.settings import Settings
from opendts.teams.demo import DEMO_TABLE, create_demo
from tests.engine.support import final, run_rows, running_engine
from tests.factories import Account, make_account

DAY = date(2024, 1, 1)
SECRET = "TOPSECRET-line-of-a-file-outside"


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    # The operator allows SQLite for the sql source (a laptop setup): files stay confined.
    return Settings(data_dir=tmp_path, database_url=database_url, sql_dialects="sqlite")


@pytest.fixture
def editor(db: Database) -> Account:
    """The attacker: an editor of their own team."""
    return make_account(db, role=Role.EDITOR)


@pytest.fixture
def outside(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of the host outside the data folder, holding something private."""
    folder = tmp_path_factory.mktemp("outside")
    (folder / "shadow").write_text(f"{SECRET}\nroot:$6$hash:19000:0:99999:7:::\n")
    (folder / "ads").mkdir()
    (folder / "ads" / "keep.txt").write_text("the operator's file")
    return folder


def team_folder(settings: Settings, team_id: int) -> Path:
    return settings.data_dir / "teams" / str(team_id)


# --- the API, as an editor would use it -------------------------------------------------------


def post_destination(
    client: TestClient, account: Account, kind: str, fields: dict[str, Any]
) -> Any:
    return client.post(
        f"/v1/teams/{account.team_id}/destinations",
        json={"type": kind, "display_name": f"{kind} destination", "fields": fields},
        headers=account.headers,
    )


def destination(client: TestClient, account: Account, kind: str, fields: dict[str, Any]) -> int:
    created = post_destination(client, account, kind, fields)
    assert created.status_code == 201, created.text
    return int(created.json()["data"]["id"])


def post_transfer(
    client: TestClient,
    account: Account,
    destination_id: int,
    source: str,
    config: dict[str, Any],
    **extra: Any,
) -> Any:
    body = {
        "data_source_id": source,
        "destination_id": destination_id,
        "display_name": "Attack",
        "table": "loot",
        "source_config": config,
        **extra,
    }
    return client.post(f"/v1/teams/{account.team_id}/transfers", json=body, headers=account.headers)


def transfer(
    client: TestClient,
    account: Account,
    destination_id: int,
    source: str,
    config: dict[str, Any],
    **extra: Any,
) -> int:
    created = post_transfer(client, account, destination_id, source, config, **extra)
    assert created.status_code == 201, created.text
    return int(created.json()["data"]["transfer_id"])


def refused(response: Any, field: str) -> str:
    """The 400 INVALID_PARAMETER naming ``field``; returns its description."""
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "INVALID_PARAMETER"
    assert f"'{field}'" in error["description"], error["description"]
    return str(error["description"])


@dataclass(frozen=True)
class Outcome:
    """How a backfill ended, and its runs' error messages."""

    status: str
    errors: str


def backfill(
    client: TestClient,
    db: Database,
    settings: Settings,
    account: Account,
    transfer_id: int,
    last: date = DAY,
) -> Outcome:
    """Backfill ``DAY..last`` through the API and let the engine run it to the end."""
    created = client.post(
        f"/v1/teams/{account.team_id}/transfers/{transfer_id}/backfills",
        json={"range_start": DAY.isoformat(), "range_end": last.isoformat()},
        headers=account.headers,
    )
    assert created.status_code == 200, created.text
    backfill_id = int(created.json()["data"]["transfer_backfill_id"])
    with running_engine(db, settings, worker_concurrency=2):
        snap = final(db, backfill_id, timeout=90)
    duck.close_all()
    messages = " | ".join(str(run["error"] or "") for run in run_rows(db, backfill_id))
    return Outcome(snap.status, messages)


def warehouse_rows(settings: Settings, team_id: int, kind: str, path: str, table: str) -> int:
    destination_type = registry.get_destination(kind)
    boundary = Boundary.for_team(settings, team_id)
    config = parse_settings(destination_type.Settings, {"path": path})
    found = destination_type.read_table(config, table, boundary).num_rows
    duck.close_all()
    return int(found)


def plant(settings: Settings, team_id: int, name: str, target: Path) -> None:
    """A symbolic link planted after the config was saved (in the team's files folder, and
    in the data folder where the old code looked)."""
    for folder in (team_folder(settings, team_id) / "files", settings.data_dir):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).symlink_to(target)


# --- became admin of another team ---------------------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_sqlite_destination_cannot_write_the_metadata_database(
    client: TestClient, db: Database, settings: Settings, editor: Account, account: Account
) -> None:
    victim = account.team_id
    rows = f"team_id,user_id,role,created_at\n{victim},{editor.user_id},admin,{DAY}\n"
    for folder in (team_folder(settings, editor.team_id) / "files", settings.data_dir):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"m-{DAY}.csv").write_text(rows)
    metadata = str(settings.data_dir / "opendts.db")
    refused(post_destination(client, editor, "sqlite", {"path": metadata}), "fields.path")
    refused(post_destination(client, editor, "sqlite", {"path": "../../opendts.db"}), "fields.path")
    # The relative name the issue used now names a file of the team's own folder.
    sqlite_id = destination(client, editor, "sqlite", {"path": "opendts.db"})
    transfer_id = transfer(
        client,
        editor,
        sqlite_id,
        "file",
        {"path": "m-{date}.csv", "missing": "fail"},
        table="memberships",
        date_column="created_at",
        refresh_mode="append",
    )
    backfill(client, db, settings, editor, transfer_id)
    with db.session() as session:
        role = session.execute(
            text("SELECT role FROM memberships WHERE team_id = :team AND user_id = :user"),
            {"team": victim, "user": editor.user_id},
        ).scalar_one_or_none()
    assert role is None
    other = client.get(f"/v1/teams/{victim}/backfills", headers=editor.headers)
    assert other.status_code in (403, 404)


# --- copied every team's API key hashes -----------------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_sql_source_cannot_read_the_metadata_database(
    client: TestClient, db: Database, settings: Settings, editor: Account
) -> None:
    duck_id = destination(client, editor, "duckdb", {"path": "loot.duckdb"})
    query = {"query": "SELECT * FROM api_keys WHERE :date IS NOT NULL"}
    metadata = settings.data_dir / "opendts.db"
    for url in (
        f"sqlite:///{metadata}",
        "sqlite:///../../opendts.db",
        "sqlite:///file:opendts.db",
        f"sqlite:///x.db?uri=true&database={metadata}",
    ):
        answer = post_transfer(client, editor, duck_id, "sql", {"url": url, **query})
        refused(answer, "source_config.url")
    transfer_id = transfer(client, editor, duck_id, "sql", {"url": "sqlite:///opendts.db", **query})
    snap = backfill(client, db, settings, editor, transfer_id)
    assert snap.status == "FAILED"
    assert "does not exist in the team's folder" in snap.errors
    assert warehouse_rows(settings, editor.team_id, "duckdb", "loot.duckdb", "loot") == 0


# --- read /etc/shadow, .., symlinks -------------------------------------------------------------


def test_the_file_source_reads_only_the_teams_files(
    client: TestClient, db: Database, settings: Settings, editor: Account, outside: Path
) -> None:
    duck_id = destination(client, editor, "duckdb", {"path": "loot.duckdb"})
    csv = {"format": "csv", "csv_delimiter": "|", "missing": "fail"}
    for path in (
        "/etc/shadow",
        str(outside / "shadow"),
        "../../secret.key",
        "../2/files/export.csv",
        "~/.ssh/id_rsa",
        "exports/../../../opendts.db",
    ):
        answer = post_transfer(client, editor, duck_id, "file", {"path": path, **csv})
        description = refused(answer, "source_config.path")
        assert SECRET not in description
    # A link planted in the team's folder after the transfer was saved is not followed.
    transfer_id = transfer(client, editor, duck_id, "file", {"path": "day-{date}.csv", **csv})
    plant(settings, editor.team_id, f"day-{DAY}.csv", outside / "shadow")
    snap = backfill(client, db, settings, editor, transfer_id)
    assert snap.status == "FAILED"
    message = snap.errors
    assert "outside the team's folder" in message and SECRET not in message
    assert warehouse_rows(settings, editor.team_id, "duckdb", "loot.duckdb", "loot") == 0


def test_the_secret_key_is_never_a_source(
    client: TestClient, db: Database, settings: Settings, editor: Account
) -> None:
    key = SecretBox.new_key()
    (settings.data_dir / "secret.key").write_text(f"{key}\n")
    duck_id = destination(client, editor, "duckdb", {"path": "loot.duckdb"})
    files = team_folder(settings, editor.team_id) / "files"
    files.mkdir(parents=True, exist_ok=True)
    os.link(settings.data_dir / "secret.key", files / f"key-{DAY}.csv")  # even a hard link
    (settings.data_dir / f"key-{DAY}.csv").symlink_to(settings.data_dir / "secret.key")
    transfer_id = transfer(
        client, editor, duck_id, "file", {"path": "key-{date}.csv", "missing": "fail"}
    )
    snap = backfill(client, db, settings, editor, transfer_id)
    assert snap.status == "FAILED"
    message = snap.errors
    assert "server's own files" in message and key not in message


# --- deleted a folder, created authorized_keys ---------------------------------------------------


def test_a_parquet_overwrite_cannot_reach_an_outside_folder(
    client: TestClient, db: Database, settings: Settings, editor: Account, outside: Path
) -> None:
    for path in (str(outside), "../../..", f"../../../{outside.name}"):
        refused(post_destination(client, editor, "parquet", {"path": path}), "fields.path")
    lake_id = destination(client, editor, "parquet", {"path": "lake"})
    transfer_id = transfer(
        client, editor, lake_id, "demo", {"rows_per_day": 5}, table="ads", refresh_mode="overwrite"
    )
    # The team's lake folder becomes a link to the operator's folder after it was saved.
    folder = team_folder(settings, editor.team_id)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "lake").symlink_to(outside)
    (settings.data_dir / "lake").symlink_to(outside)
    snap = backfill(client, db, settings, editor, transfer_id)
    assert snap.status == "FAILED"
    assert "outside the team's folder" in snap.errors
    assert (outside / "ads" / "keep.txt").read_text() == "the operator's file"


def test_test_connection_creates_nothing(
    client: TestClient, settings: Settings, editor: Account, outside: Path
) -> None:
    url = f"/v1/teams/{editor.team_id}/destinations/test-connection"
    planted = outside / "ssh" / "authorized_keys"
    for kind in ("duckdb", "sqlite", "parquet"):
        for path in (str(planted), f"../../../{outside.name}/ssh/authorized_keys"):
            body = {"type": kind, "display_name": "t", "fields": {"path": path}}
            refused(client.post(url, json=body, headers=editor.headers), "fields.path")
        assert not planted.parent.exists()
        # Inside the team's folder: the check passes and still creates nothing.
        body = {"type": kind, "display_name": "t", "fields": {"path": "new/warehouse"}}
        answer = client.post(url, json=body, headers=editor.headers)
        assert answer.status_code == 200 and answer.json()["data"]["success"] is True, answer.text
        assert not (settings.data_dir / "teams").exists()
        assert not (settings.data_dir / "new").exists()


# --- wiped another team's table -------------------------------------------------------------


def test_demo_teams_do_not_share_a_warehouse(
    client: TestClient, db: Database, settings: Settings
) -> None:
    with db.session(write=True) as session:
        first = create_demo(session, settings)
        second = create_demo(session, settings, "Second demo team")
    one = Account(first.team_id, first.user_id, 0, first.api_key, first.transfer_id)
    two = Account(second.team_id, second.user_id, 0, second.api_key, second.transfer_id)
    assert backfill(client, db, settings, one, one.transfer_id, date(2024, 1, 3)).status == (
        "COMPLETED"
    )
    # The second team overwrites the demo table of *its* warehouse.
    overwrite = transfer(
        client,
        two,
        second.destination_id,
        "demo",
        {"rows_per_day": 10},
        table=DEMO_TABLE,
        refresh_mode="overwrite",
    )
    assert backfill(client, db, settings, two, overwrite).status == "COMPLETED"
    paths = {Path(first.warehouse).resolve(), Path(second.warehouse).resolve()}
    assert paths == {
        team_folder(settings, first.team_id).resolve() / "warehouse.duckdb",
        team_folder(settings, second.team_id).resolve() / "warehouse.duckdb",
    }
    with duckdb.connect(first.warehouse, read_only=True) as conn:
        assert conn.execute(f"SELECT count(*) FROM {DEMO_TABLE}").fetchone() == (3 * 1000,)
    with duckdb.connect(second.warehouse, read_only=True) as conn:
        assert conn.execute(f"SELECT count(*) FROM {DEMO_TABLE}").fetchone() == (10,)
    assert not (settings.data_dir / "warehouse.duckdb").exists()


def test_duckdb_downloads_and_loads_nothing_and_reads_no_other_file(
    client: TestClient, db: Database, settings: Settings, editor: Account
) -> None:
    duck_id = destination(client, editor, "duckdb", {"path": "w.duckdb"})
    transfer_id = transfer(client, editor, duck_id, "demo", {"rows_per_day": 5})
    assert backfill(client, db, settings, editor, transfer_id).status == "COMPLETED"
    path = team_folder(settings, editor.team_id).resolve() / "w.duckdb"
    with duck._connection(path, "w.duckdb") as (_, conn):
        found = conn.execute(
            "SELECT current_setting('autoinstall_known_extensions'), "
            "current_setting('autoload_known_extensions'), "
            "current_setting('enable_external_access')"
        ).fetchone()
        assert found == (False, False, False)
        with pytest.raises(duckdb.Error, match="disabled by configuration"):
            conn.execute("SELECT * FROM read_csv('/etc/passwd')")
    duck.close_all()


# --- broke the live server's SQLite locks -----------------------------------------------------


def wal_survives_another_process(metadata: Path) -> bool:
    """Whether this process still holds its SQLite locks: another process that opens and
    closes the database must not think it is the last one (it would delete the WAL)."""
    script = (
        "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
        "c.execute('SELECT count(*) FROM teams').fetchall(); c.close()"
    )
    subprocess.run([sys.executable, "-c", script, str(metadata)], check=True, timeout=60)
    return metadata.with_name(metadata.name + "-wal").exists()


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
@pytest.mark.parametrize("how", ["file source", "stored file source", "duckdb destination"])
def test_no_run_opens_the_metadata_database_in_process(
    client: TestClient, db: Database, settings: Settings, editor: Account, how: str
) -> None:
    metadata = settings.data_dir / "opendts.db"
    assert wal_survives_another_process(metadata)  # the server's connections hold locks
    if how == "duckdb destination":
        target = destination(client, editor, "duckdb", {"path": "opendts.db"})
        transfer_id = transfer(client, editor, target, "demo", {"rows_per_day": 5})
    else:
        target = destination(client, editor, "duckdb", {"path": "loot.duckdb"})
        config = {"path": "opendts.db", "format": "csv", "missing": "fail"}
        transfer_id = transfer(client, editor, target, "file", config)
        if how == "stored file source":  # saved by an older version: checked at run time
            with db.session(write=True) as session:
                session.execute(
                    text("UPDATE transfers SET config = :config WHERE id = :id"),
                    {"config": f'{{"path": "{metadata}", "format": "csv"}}', "id": transfer_id},
                )
    backfill(client, db, settings, editor, transfer_id)
    assert client.get(f"/v1/teams/{editor.team_id}/backfills", headers=editor.headers).is_success
    assert wal_survives_another_process(metadata)


# --- every way to save a path checks it -----------------------------------------------------


def test_update_validation_and_test_connection_check_paths_too(
    client: TestClient, editor: Account
) -> None:
    duck_id = destination(client, editor, "duckdb", {"path": "w.duckdb"})
    base = f"/v1/teams/{editor.team_id}"
    escape = {"type": "duckdb", "display_name": "x", "fields": {"path": "../../opendts.db"}}
    updated = client.put(f"{base}/destinations/{duck_id}", json=escape, headers=editor.headers)
    refused(updated, "fields.path")
    saved = {"destination_id": duck_id, "type": "duckdb", "fields": {"path": "/etc/passwd"}}
    tested = client.post(f"{base}/destinations/test-connection", json=saved, headers=editor.headers)
    refused(tested, "fields.path")
    transfer_id = transfer(client, editor, duck_id, "file", {"path": "day-{date}.csv"})
    body = {
        "data_source_id": "file",
        "destination_id": duck_id,
        "display_name": "Attack",
        "table": "loot",
        "source_config": {"path": "/etc/shadow", "format": "csv"},
    }
    answer = client.put(f"{base}/transfers/{transfer_id}", json=body, headers=editor.headers)
    refused(answer, "source_config.path")
    for url in (f"{base}/transfers/validations", f"{base}/transfers/{transfer_id}/validations"):
        checked = client.post(url, json=body, headers=editor.headers)
        assert checked.status_code == 200, checked.text
        found = checked.json()
        assert found["is_valid"] is False
        assert [e["field_id"] for e in found["errors"]] == ["source_config.path"]
        assert "outside the folders this team may read" in found["errors"][0]["message"]
