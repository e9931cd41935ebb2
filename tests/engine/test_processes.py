"""Crashes, restarts and many workers: real processes on a real database."""

from __future__ import annotations

import signal
import time
from datetime import date
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from opendts.kit.db import Database
from tests.engine.processes import CRASH_ENV, workers
from tests.engine.support import final, make_transfer, run_rows, snapshot, wait_for
from tests.factories import Account, make_backfill
from tests.live import live_server


def executed_once_each(db: Database, backfill_id: int, days: int) -> None:
    """Every date COMPLETED, counted exactly once, nothing left RUNNING."""
    snap = snapshot(db, backfill_id)
    assert snap.status == "COMPLETED", snap
    assert (snap.created, snap.completed, snap.failed) == (days, days, 0)
    assert snap.counters_true and snap.runs_running == 0
    rows = run_rows(db, backfill_id)
    assert len(rows) == days == len({str(r["data_date"]) for r in rows})


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_a_worker_killed_mid_run_loses_nothing(
    db: Database, database_url: str, tmp_path: Path, account: Account
) -> None:
    transfer = make_transfer(db, account.team_id, kind="fault", parallel=4, latency_ms=200)
    backfill = make_backfill(db, account, date(2024, 1, 1), date(2024, 1, 30), transfer_id=transfer)
    with workers(tmp_path, database_url) as group:
        victim = group.start(concurrency=4)
        wait_for(lambda: snapshot(db, backfill.id).completed >= 4, what="first runs")
        wait_for(lambda: snapshot(db, backfill.id).runs_running >= 2, what="runs in flight")
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        held = snapshot(db, backfill.id).runs_running
        assert held >= 2  # the dead worker still holds leases
        group.start(concurrency=4)
        final(db, backfill.id, timeout=60)
    executed_once_each(db, backfill.id, 30)
    retried = [r for r in run_rows(db, backfill.id) if r["attempt"] == 2]
    assert len(retried) >= held
    assert all("Succeeded on attempt 2" in r["message"] for r in retried)


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_four_workers_share_a_365_day_backfill_within_its_parallelism(
    db: Database, database_url: str, tmp_path: Path, account: Account
) -> None:
    transfer = make_transfer(db, account.team_id, kind="fault", parallel=8, latency_ms=5)
    backfill = make_backfill(
        db, account, date(2023, 1, 1), date(2023, 12, 31), transfer_id=transfer
    )
    peak = 0
    owners: set[str] = set()
    with workers(tmp_path, database_url) as group:
        for _ in range(4):
            group.start(concurrency=4)
        deadline = time.monotonic() + 120
        while snapshot(db, backfill.id).status != "COMPLETED" and time.monotonic() < deadline:
            with db.session() as session:
                rows = (
                    session.execute(
                        text("SELECT lease_owner FROM transfer_runs WHERE status = 'RUNNING'")
                    )
                    .scalars()
                    .all()
                )
            peak = max(peak, len(rows))
            owners.update(o.rsplit(":", 1)[0] for o in rows if o)
            time.sleep(0.005)
    executed_once_each(db, backfill.id, 365)
    assert 1 <= peak <= 8
    assert len(owners) >= 2, "the work should spread over several worker processes"
    assert {r["attempt"] for r in run_rows(db, backfill.id)} == {1}


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_workers_survive_their_connections_being_killed(
    db: Database, database_url: str, tmp_path: Path, account: Account
) -> None:
    transfer = make_transfer(db, account.team_id, kind="fault", parallel=4, latency_ms=20)
    backfill = make_backfill(db, account, date(2024, 1, 1), date(2024, 3, 31), transfer_id=transfer)
    name = database_url.rsplit("/", 1)[1]
    kill = text(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE datname = :name AND pid <> pg_backend_pid()"
    )
    killed = 0
    with workers(tmp_path, database_url) as group:
        group.start(concurrency=4)
        group.start(concurrency=4)
        wait_for(lambda: snapshot(db, backfill.id).completed >= 5, what="first runs")
        admin = Database(database_url.rsplit("/", 1)[0] + "/postgres")
        try:
            for _ in range(5):
                with admin.session() as session:
                    killed += int(session.execute(kill, {"name": name}).scalar_one())
                time.sleep(0.3)
        finally:
            admin.dispose()
        db.dispose()  # our own pooled connections were killed too
        final(db, backfill.id, timeout=90)
        alive = [p.poll() is None for p in group.processes]
    assert killed >= 2
    assert all(alive), "workers must reconnect, not exit"
    executed_once_each(db, backfill.id, 91)


@pytest.mark.parametrize("kill", [False, True], ids=["sigterm", "sigkill"])
def test_serve_restarted_mid_backfill_resumes_and_completes(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest, kill: bool
) -> None:
    database_url = None
    if backend == "postgresql":
        database_url = str(request.getfixturevalue("database_url"))
        request.getfixturevalue("db")  # emptied for this test
    env = {**CRASH_ENV, "OPENDTS_SHUTDOWN_GRACE_SECONDS": "5"}
    with live_server(tmp_path, database_url, **env) as server:
        team, headers = server.team_id, server.headers
        created = server.admin(
            "transfer",
            "create",
            "--team",
            str(team),
            "--name",
            "slow",
            "--kind",
            "fault",
            "--config",
            '{"latency_ms": 100}',
            "--max-parallel-runs",
            "3",
        )
        response = httpx.post(
            f"{server.base_url}/teams/{team}/transfers/{created['transfer_id']}/backfills",
            headers=headers,
            json={"range_start": "2024-01-01", "range_end": "2024-01-31"},
        )
        backfill = response.json()["data"]["transfer_backfill_id"]
        path = f"/teams/{team}/backfills/{backfill}"

        def completed() -> int:
            data = httpx.get(server.base_url + path, headers=headers).json()["data"]
            return int(data["transfer_runs_completed"])

        wait_for(lambda: completed() >= 3, what="first runs")
        server.process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        code = server.process.wait(timeout=30)
    assert code == (-signal.SIGKILL if kill else 0)
    # The same data folder (and database): a new server resumes the backfill and finishes it.
    with live_server(tmp_path, database_url, **env) as server:

        def ended() -> dict[str, object] | None:
            data: dict[str, object] = httpx.get(server.base_url + path, headers=headers).json()[
                "data"
            ]
            return data if data["status"] in ("COMPLETED", "FAILED", "CANCELLED") else None

        body = wait_for(ended, timeout=60, what="the backfill to end after the restart")
    assert body["status"] == "COMPLETED"
    assert body["transfer_runs_completed"] == 31 and body["transfer_runs_failed"] == 0
    db = Database(database_url or f"sqlite:///{tmp_path / 'opendts.db'}")
    try:
        executed_once_each(db, int(backfill), 31)
        attempts = {r["attempt"] for r in run_rows(db, int(backfill))}
    finally:
        db.dispose()
    # A graceful stop finishes its runs; a kill costs the runs in flight one attempt.
    assert attempts == {1} if not kill else attempts <= {1, 2}


@pytest.mark.parametrize("grace", ["10", "0"], ids=["finish", "release"])
def test_sigterm_stops_claiming_finishes_or_releases_and_exits_0(
    db: Database, database_url: str, tmp_path: Path, account: Account, grace: str
) -> None:
    transfer = make_transfer(db, account.team_id, kind="fault", parallel=2, latency_ms=4000)
    backfill = make_backfill(db, account, date(2024, 1, 1), date(2024, 1, 10), transfer_id=transfer)
    with workers(tmp_path, database_url, OPENDTS_SHUTDOWN_GRACE_SECONDS=grace) as group:
        worker = group.start(concurrency=2)
        wait_for(lambda: snapshot(db, backfill.id).runs_running == 2, what="two runs in flight")
        in_flight = {r["id"] for r in run_rows(db, backfill.id) if r["status"] == "RUNNING"}
        started = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0, group.log(0)
        took = time.monotonic() - started
    rows = {r["id"]: r for r in run_rows(db, backfill.id)}
    snap = snapshot(db, backfill.id)
    assert snap.runs_running == 0 and snap.counters_true
    if grace == "10":
        # The two runs finished; nothing new was claimed after the signal.
        assert {rows[i]["status"] for i in in_flight} == {"COMPLETED"}
        assert snap.completed == 2 and snap.runs_queued == 8
    else:
        # Released at once (well before the 4 s runs could finish), without spending an attempt.
        assert took < 3.5
        assert {rows[i]["status"] for i in in_flight} == {"QUEUED"}
        assert {rows[i]["attempt"] for i in in_flight} == {0}
        assert all("Released" in rows[i]["message"] for i in in_flight)
        assert snap.completed == 0 and snap.runs_queued == 10
    assert snap.status == "RUNNING"


def test_a_second_sigterm_stops_a_draining_worker_at_once_and_its_runs_come_back(
    db: Database, database_url: str, tmp_path: Path, account: Account
) -> None:
    transfer = make_transfer(db, account.team_id, kind="fault", parallel=2, latency_ms=60_000)
    backfill = make_backfill(db, account, date(2024, 1, 1), date(2024, 1, 2), transfer_id=transfer)
    with workers(tmp_path, database_url, OPENDTS_SHUTDOWN_GRACE_SECONDS="60") as group:
        first = group.start(concurrency=2)
        wait_for(lambda: snapshot(db, backfill.id).runs_running == 2, what="two runs in flight")
        first.send_signal(signal.SIGTERM)
        wait_for(lambda: "stopping" in group.log(0), what="the worker to start draining")
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=5) == -signal.SIGTERM
        # Its runs were left RUNNING; another worker re-claims them once the lease expires.
        make_transfer_fast(db, transfer)
        group.start(concurrency=2)
        snap = final(db, backfill.id, timeout=30)
    assert snap.status == "COMPLETED" and snap.completed == 2 and snap.counters_true


def make_transfer_fast(db: Database, transfer_id: int) -> None:
    with db.session(write=True) as session:
        session.execute(
            text("UPDATE transfers SET config = :config WHERE id = :id"),
            {"config": '{"latency_ms": 10}', "id": transfer_id},
        )
