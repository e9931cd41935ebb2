"""What users see around the edges: timeouts, long runs, paused and deleted transfers."""

from __future__ import annotations

import time
from datetime import date

from opendts.kit.db import Database
from opendts.settings import Settings
from opendts.transfers import service as transfers
from opendts.transfers.models import TransferState
from tests.engine.support import final, make_transfer, run_rows, running_engine, snapshot, wait_for
from tests.factories import Account, make_backfill


def test_a_hung_run_is_timed_out_retried_then_failed(
    db: Database, settings: Settings, account: Account
) -> None:
    transfer = make_transfer(
        db, account.team_id, kind="fault", parallel=2, hang_dates=["2024-01-02"]
    )
    backfill = make_backfill(db, account, date(2024, 1, 1), date(2024, 1, 3), transfer_id=transfer)
    with running_engine(db, settings, run_timeout_seconds=0.3, run_max_attempts=2):
        snap = final(db, backfill.id, timeout=30)
    assert snap.status == "FAILED" and (snap.completed, snap.failed) == (2, 1)
    hung = next(r for r in run_rows(db, backfill.id) if str(r["data_date"]) == "2024-01-02")
    assert hung["attempt"] == 2
    assert "did not finish within 0.3 seconds" in hung["error"]


def test_heartbeats_keep_a_long_run_owned_past_its_lease(
    db: Database, settings: Settings, account: Account
) -> None:
    transfer = make_transfer(db, account.team_id, kind="fault", latency_ms=2500)
    backfill = make_backfill(db, account, date(2024, 1, 1), date(2024, 1, 1), transfer_id=transfer)
    with running_engine(db, settings, lease_seconds=0.6) as engine:
        snap = final(db, backfill.id, timeout=30)
    assert snap.status == "COMPLETED"
    assert run_rows(db, backfill.id)[0]["attempt"] == 1
    assert engine.stats.reaped == 0 and engine.stats.lost == 0


def test_a_paused_transfer_holds_its_runs_until_unpaused(
    db: Database, settings: Settings, account: Account
) -> None:
    transfer = make_transfer(db, account.team_id, kind="fault", latency_ms=30)
    backfill = make_backfill(db, account, date(2024, 1, 1), date(2024, 1, 20), transfer_id=transfer)
    with running_engine(db, settings) as engine:
        wait_for(lambda: snapshot(db, backfill.id).completed >= 2, what="first runs")
        with db.session(write=True) as session:
            transfers.set_state(session, transfer, TransferState.PAUSED)
        wait_for(lambda: snapshot(db, backfill.id).runs_running == 0, what="running runs done")
        held = snapshot(db, backfill.id)
        engine.wake()
        wait_for(lambda: engine.stats.cycles > 0, what="a turn")
        time.sleep(0.5)
        assert snapshot(db, backfill.id).completed == held.completed
        assert held.status == "RUNNING" and held.runs_queued > 0
        with db.session(write=True) as session:
            transfers.set_state(session, transfer, TransferState.ACTIVE)
        engine.wake()
        snap = final(db, backfill.id)
    assert snap.status == "COMPLETED" and snap.completed == 20


def test_deleting_a_transfer_cancels_its_unfinished_backfills(
    db: Database, settings: Settings, account: Account
) -> None:
    transfer = make_transfer(db, account.team_id, kind="fault", latency_ms=50)
    backfill = make_backfill(db, account, date(2024, 1, 1), date(2024, 1, 20), transfer_id=transfer)
    with running_engine(db, settings):
        wait_for(lambda: snapshot(db, backfill.id).completed >= 1, what="a first run")
        with db.session(write=True) as session:
            transfers.soft_delete(session, transfer, user_id=account.user_id)
        snap = final(db, backfill.id)
    assert snap.status == "CANCELLED" and snap.counters_true
    assert snap.runs_queued == 0 and snap.runs_cancelled > 0


def test_a_finished_run_is_followed_at_once_not_at_the_next_poll(
    db: Database, settings: Settings, account: Account
) -> None:
    transfer = make_transfer(db, account.team_id, kind="fault", parallel=2, latency_ms=10)
    with running_engine(db, settings, poll_seconds=30, worker_concurrency=8) as engine:
        backfill = make_backfill(
            db, account, date(2024, 1, 1), date(2024, 1, 20), transfer_id=transfer
        )
        engine.wake()  # what the API does after a create
        started = time.monotonic()
        snap = final(db, backfill.id, timeout=20)
        took = time.monotonic() - started
    assert snap.status == "COMPLETED"
    # 20 dates, two at a time, 10 ms each: well under a second unless slots wait for a poll.
    assert took < 3, took
