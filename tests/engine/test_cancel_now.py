"""Cancel "now" (issue 11 §4): a cancel with ``"mode": "now"`` stops the backfill's running
runs (their run processes killed), which end CANCELLED, and a stopped date keeps its rows."""

from __future__ import annotations

from datetime import date

import pytest
from starlette.testclient import TestClient

from opendts.api.app import create_app
from opendts.kit.db import Database
from opendts.settings import Settings
from tests.boundaries import allow_local
from tests.engine.support import final, make_transfer, run_rows, running_engine, wait_for
from tests.engine.support import snapshot as snap_of
from tests.factories import Account, make_backfill
from tests.transfers.loads import expected, make_data_transfer, warehouse, warehouse_fields

DAY = date(2024, 2, 1)


def cancel(client: TestClient, account: Account, backfill_id: int, **extra: str) -> dict:
    response = client.patch(
        f"/v1/teams/{account.team_id}/backfills/{backfill_id}",
        json={"status": "CANCELLED", **extra},
        headers=account.headers,
    )
    assert response.status_code == 200, response.text
    data: dict = response.json()["data"]
    return data


@pytest.mark.parametrize("kind", ["duckdb", "postgresql"])
def test_cancel_now_stops_a_running_run_and_the_date_keeps_its_rows(
    db: Database, settings: Settings, account: Account, kind: str
) -> None:
    settings = allow_local(settings)  # the PostgreSQL warehouse is on this machine
    with warehouse_fields(kind) as fields, TestClient(create_app(settings, db)) as client:
        fast, _ = make_data_transfer(db, settings, account.team_id, kind, fields)
        # The same table, from a source that takes ten minutes to answer.
        slow, _ = make_data_transfer(
            db, settings, account.team_id, kind, fields, rows_per_day=5, latency_ms=600_000
        )
        with running_engine(db, settings) as engine:
            loaded = make_backfill(db, account, DAY, DAY, fast)
            assert final(db, loaded.id).status == "COMPLETED"
            before = warehouse(settings, kind, fields, account.team_id)
            assert before.equals(expected(DAY, DAY))

            stopped = make_backfill(db, account, DAY, DAY, slow)
            wait_for(lambda: snap_of(db, stopped.id).runs_running, what="the slow run")
            wait_for(lambda: engine.processes.started, what="its run process")
            assert cancel(client, account, stopped.id, mode="now")["status"] == "CANCELLED"
            snap = final(db, stopped.id, timeout=30)
            assert engine.stats.stopped == 1
            wait_for(lambda: engine.processes.killed, what="its run process killed")
        assert snap.status == "CANCELLED" and snap.runs_cancelled == 1 and snap.counters_true
        assert (snap.completed, snap.failed) == (0, 0)
        [run] = run_rows(db, stopped.id)
        assert run["status"] == "CANCELLED"
        assert 'cancelled the backfill with "mode": "now"' in run["message"]
        # The date keeps the rows it had before the stopped run.
        assert warehouse(settings, kind, fields, account.team_id).equals(before)


def test_cancel_now_stops_runs_in_threads_too_and_the_default_lets_them_finish(
    db: Database, settings: Settings, account: Account
) -> None:
    hung = make_transfer(db, account.team_id, kind="fault", parallel=2, hang_dates=[DAY])
    slow = make_transfer(db, account.team_id, kind="fault", latency_ms=1500)
    with TestClient(create_app(settings, db)) as client, running_engine(db, settings) as engine:
        stopped = make_backfill(db, account, DAY, DAY, hung)
        finishing = make_backfill(db, account, DAY, DAY, slow)
        wait_for(lambda: snap_of(db, stopped.id).runs_running, what="the hung run")
        wait_for(lambda: snap_of(db, finishing.id).runs_running, what="the slow run")
        cancel(client, account, stopped.id, mode="now")
        cancel(client, account, finishing.id)  # the contract's cancel: running runs finish
        assert final(db, stopped.id, timeout=30).runs_cancelled == 1
        finished = final(db, finishing.id, timeout=30)
        assert engine.stats.stopped == 1
    assert finished.status == "CANCELLED" and finished.runs_completed == 1
    assert finished.counters_true


def test_the_engine_serving_the_api_stops_the_runs_at_once_not_at_its_next_heartbeat(
    db: Database, settings: Settings, account: Account
) -> None:
    hung = make_transfer(db, account.team_id, kind="fault", hang_dates=[DAY])
    # A heartbeat every 100 s: only the API's wake-up can stop the run within the test.
    with running_engine(db, settings, lease_seconds=300) as engine:
        app = create_app(settings, db, wake=engine.wake, stop_runs=engine.check_stops)
        with TestClient(app) as client:
            stopped = make_backfill(db, account, DAY, DAY, hung)
            wait_for(lambda: snap_of(db, stopped.id).runs_running, what="the hung run")
            cancel(client, account, stopped.id, mode="now")
            snap = final(db, stopped.id, timeout=20)
    assert snap.status == "CANCELLED" and snap.runs_cancelled == 1 and snap.counters_true
    assert engine.stats.stopped == 1


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
@pytest.mark.parametrize("mode", ["later", "", 1, ["now"]])
def test_an_unknown_cancel_mode_is_a_400_naming_the_field(
    db: Database, settings: Settings, account: Account, mode: object
) -> None:
    backfill = make_backfill(db, account, DAY, DAY)
    with TestClient(create_app(settings, db)) as client:
        response = client.patch(
            f"/v1/teams/{account.team_id}/backfills/{backfill.id}",
            json={"status": "CANCELLED", "mode": mode},
            headers=account.headers,
        )
        assert response.status_code == 400, response.text
        assert "'mode'" in response.json()["error"]["description"]
        assert snap_of(db, backfill.id).status == "CREATED"
