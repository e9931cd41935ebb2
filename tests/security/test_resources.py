"""Issue 11 §4, resources: a team cannot hold every slot, and a run cannot take the server down.

Reproduced as an editor would: a transfer whose source answers slowly (here, not until the test
ends) with ``max_parallel_runs`` 16 and a month's backfill fills every slot of the engine; before
fair share, another team's one-day backfill waited for one of those runs to end (9 min 56 s in
the report). Now it starts at the next claim, in a spare slot, while the slow runs go on.

Data runs execute in run processes, outside the process serving the API: a run past the memory
cap or the time limit is killed and its date fails naming the limit, while the API answers; a run
process never sees the metadata database's URL (with its password) or the secret key.
"""

from __future__ import annotations

import json
import os
import threading
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from opendts.api.app import create_app
from opendts.auth.permissions import Role
from opendts.connectors.boundary import Boundary
from opendts.connectors.destinations import duckdb as duck
from opendts.destinations import service as destinations
from opendts.engine.processes import rss_mb
from opendts.kit.db import Database
from opendts.kit.secrets import box_for
from opendts.settings import Settings
from opendts.transfers import api as transfers_api
from tests.engine.support import final, run_rows, running_engine, snapshot, wait_for
from tests.factories import Account, make_account, make_backfill
from tests.security.resource_sources import HogSource, InspectSource, SleepSource, registered
from tests.security.test_network import duckdb_destination, http_transfer, site


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    # The slow API is on this machine: the operator allowed loopback (a laptop setup).
    return Settings(data_dir=tmp_path, database_url=database_url, allowed_networks="127.0.0.1/32")


def backfill(client: TestClient, account: Account, transfer_id: int, first: date) -> int:
    created = client.post(
        f"/v1/teams/{account.team_id}/transfers/{transfer_id}/backfills",
        json={"range_start": first.isoformat(), "range_end": "2024-01-31"},
        headers=account.headers,
    )
    assert created.status_code == 200, created.text
    return int(created.json()["data"]["transfer_backfill_id"])


def test_a_team_with_slow_runs_cannot_hold_every_slot(
    client: TestClient, db: Database, settings: Settings
) -> None:
    hog, other = make_account(db, role=Role.EDITOR), make_account(db, role=Role.EDITOR)
    release = threading.Event()

    def answer(path: str) -> tuple[int, dict[str, str], object]:
        if path.startswith("/slow"):
            release.wait(120)
        return 200, {}, [{"clicks": 1}]

    with site("127.0.0.1", answer) as api:
        slow = client.post(
            f"/v1/teams/{hog.team_id}/transfers",
            json={
                "data_source_id": "http",
                "destination_id": duckdb_destination(client, hog),
                "display_name": "Slow ads",
                "table": "ads",
                "max_parallel_runs": 16,
                "source_config": {"url": f"{api.base}/slow?day={{date}}", "timeout_seconds": 600},
            },
            headers=hog.headers,
        )
        assert slow.status_code == 201, slow.text
        slow_id = int(slow.json()["data"]["transfer_id"])
        quick = http_transfer(
            client, other, duckdb_destination(client, other), url=f"{api.base}/ads?day={{date}}"
        )
        assert quick.status_code == 201, quick.text
        hogging = backfill(client, hog, slow_id, date(2024, 1, 1))
        with running_engine(db, settings, worker_concurrency=4):
            try:
                wait_for(lambda: snapshot(db, hogging).runs_running == 4, what="every slot")
                quick_id = int(quick.json()["data"]["transfer_id"])
                one_day = backfill(client, other, quick_id, date(2024, 1, 31))
                assert final(db, one_day, timeout=30).status == "COMPLETED"
                held = snapshot(db, hogging)
                assert held.runs_running == 4 and held.completed == 0
            finally:
                release.set()
    duck.close_all()


# -- run processes: memory cap, time limit, what a run process sees --------------------------

DAY = date(2024, 1, 1)

SQLITE = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


def data_transfer(
    db: Database, settings: Settings, team_id: int, source: str, config: dict[str, Any]
) -> int:
    """A transfer of ``source`` into a DuckDB warehouse in the team's folder."""
    box = box_for(settings.data_dir, settings.secret_key)
    boundary = Boundary.for_team(settings, team_id)
    with db.session(write=True) as session:
        destination = destinations.create(
            session,
            box,
            boundary,
            None,
            destinations.DestinationInput("duckdb", "Warehouse", {"path": "warehouse.duckdb"}),
        )
        transfer = transfers_api.create(
            session,
            box,
            boundary,
            None,
            {
                "data_source_id": source,
                "destination_id": destination.id,
                "display_name": source,
                "table": source,
                "source_config": config,
                "max_parallel_runs": 1,
            },
        )
        return transfer.id


def backfill_answers(client: TestClient, account: Account, backfill_id: int) -> bool:
    path = f"/v1/teams/{account.team_id}/backfills/{backfill_id}"
    return client.get(path, headers=account.headers).status_code == 200


@SQLITE
def test_a_run_over_the_memory_cap_fails_naming_the_cap_while_the_api_answers(
    db: Database, settings: Settings, account: Account
) -> None:
    before = rss_mb(os.getpid()) or 0.0
    with registered(HogSource()), TestClient(create_app(settings, db)) as client:
        transfer = data_transfer(db, settings, account.team_id, "test_hog", {"megabytes": 600})
        backfill = make_backfill(db, account, DAY, DAY, transfer)
        with running_engine(db, settings, run_memory_mb=200):
            wait_for(lambda: snapshot(db, backfill.id).runs_running, what="the run to start")
            assert backfill_answers(client, account, backfill.id)  # during
            snap = final(db, backfill.id)
            assert backfill_answers(client, account, backfill.id)  # after
    assert snap.status == "FAILED"
    [run] = run_rows(db, backfill.id)
    assert run["attempt"] == 1  # terminal: not retried
    # The parent's watch kills the process, or, when the allocation outruns the watch (a loaded
    # machine), the child's RLIMIT_AS backstop makes it fail with MemoryError: the same message.
    assert "used more than 200 MB, the run memory cap (OPENDTS_RUN_MEMORY_MB)" in run["error"]
    # The memory was the run process's, never this one's (the API's).
    assert (rss_mb(os.getpid()) or 0.0) - before < 150


@SQLITE
def test_a_hung_run_is_killed_at_the_time_limit_and_its_slot_is_reused(
    db: Database, settings: Settings, account: Account, tmp_path: Path
) -> None:
    pid_file = tmp_path / "hung.pid"
    with registered(SleepSource()):
        hung = data_transfer(
            db, settings, account.team_id, "test_sleep", {"pid_file": str(pid_file)}
        )
        quick = data_transfer(db, settings, account.team_id, "test_sleep", {"seconds": 0})
        first = make_backfill(db, account, DAY, DAY, hung)
        with running_engine(
            db, settings, worker_concurrency=1, run_timeout_seconds=3, run_max_attempts=1
        ):
            wait_for(pid_file.exists, what="the hung run to start")
            pid = int(pid_file.read_text())
            second = make_backfill(db, account, DAY, DAY, quick)
            assert final(db, first.id).status == "FAILED"
            # The one slot is free again: the next run completes.
            assert final(db, second.id).status == "COMPLETED"
    [run] = run_rows(db, first.id)
    assert "the run time limit (OPENDTS_RUN_TIMEOUT_SECONDS)" in run["error"]
    assert "within 3 seconds" in run["error"]
    assert pid != os.getpid()
    assert not Path(f"/proc/{pid}").exists() or _zombie(pid)  # the hung process is gone


def _zombie(pid: int) -> bool:
    try:
        return "State:\tZ" in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_a_run_process_has_neither_the_database_url_nor_the_secret_key(
    db: Database,
    settings: Settings,
    account: Account,
    tmp_path: Path,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The operator's secrets, in the settings and in the environment of the server.
    secret_key = "sBq1u2l8l3Vn0qvC7Kq0yK3tX5c3e1L0u7q0b8p4w0E="
    password = "metadata-db-password-3141"
    with_password = database_url.replace("postgres@", f"postgres:{password}@", 1)
    assert password in with_password
    monkeypatch.setenv("OPENDTS_SECRET_KEY", secret_key)
    monkeypatch.setenv("OPENDTS_DATABASE_URL", with_password)
    settings = settings.model_copy(update={"secret_key": secret_key, "database_url": with_password})
    report_file = tmp_path / "report.json"
    with registered(InspectSource()):
        transfer = data_transfer(
            db, settings, account.team_id, "test_inspect", {"report_file": str(report_file)}
        )
        backfill = make_backfill(db, account, DAY, DAY, transfer)
        with running_engine(db, settings):
            assert final(db, backfill.id).status == "COMPLETED"
    report = json.loads(report_file.read_text())
    assert report["pid"] != os.getpid()
    assert "OPENDTS_SECRET_KEY" not in report["environ"]
    assert "OPENDTS_DATABASE_URL" not in report["environ"]
    for secret in (secret_key, password):
        assert secret not in json.dumps(report["environ"])
        assert secret not in report["initial_environ"]
        assert secret not in (report["metadata_url"] or "")
    # The run process still knows where the metadata database is, to refuse it.
    assert report["metadata_url"].endswith(database_url.rsplit("@", 1)[1])
