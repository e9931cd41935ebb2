"""A backfill's whole life on the engine, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from datetime import date

from starlette.testclient import TestClient

from opendts.kit.db import Database
from opendts.settings import Settings
from tests.engine.support import (
    final,
    make_transfer,
    run_rows,
    running_engine,
    snapshot,
    wait_for,
)
from tests.factories import Account, make_backfill

JAN_1, JAN_10, JAN_31 = date(2024, 1, 1), date(2024, 1, 10), date(2024, 1, 31)


def test_a_backfill_completes_with_one_run_per_date_newest_first(
    db: Database, settings: Settings, account: Account
) -> None:
    backfill = make_backfill(db, account, JAN_1, JAN_10)
    assert snapshot(db, backfill.id).status == "CREATED"
    with running_engine(db, settings):
        snap = final(db, backfill.id)
    assert snap.status == "COMPLETED"
    assert (snap.total, snap.created, snap.completed, snap.failed) == (10, 10, 10, 0)
    assert snap.counters_true
    assert snap.start_time is not None and snap.end_time is not None
    assert snap.start_time <= snap.end_time
    rows = run_rows(db, backfill.id)
    assert [str(r["data_date"]) for r in rows] == [f"2024-01-{d:02d}" for d in range(1, 11)]
    assert {r["status"] for r in rows} == {"COMPLETED"}
    # One date at a time (max_parallel_runs 1): the newest date started first, in order.
    by_start = sorted(rows, key=lambda r: r["started_time"])
    assert [r["data_date"] for r in by_start] == [r["data_date"] for r in reversed(rows)]


def test_terminal_failures_fail_the_backfill_with_an_error_report(
    db: Database, settings: Settings, account: Account, client: TestClient
) -> None:
    transfer = make_transfer(
        db,
        account.team_id,
        kind="fault",
        parallel=4,
        fail_dates=["2024-01-03", "2024-01-07"],
        failure="terminal",
    )
    backfill = make_backfill(db, account, JAN_1, JAN_10, transfer_id=transfer)
    with running_engine(db, settings):
        snap = final(db, backfill.id)
    assert snap.status == "FAILED"
    assert (snap.completed, snap.failed) == (8, 2) and snap.counters_true
    assert snap.end_time is not None
    rows = {str(r["data_date"]): r for r in run_rows(db, backfill.id)}
    # Terminal errors are not retried.
    assert rows["2024-01-03"]["attempt"] == 1 and rows["2024-01-03"]["status"] == "FAILED"
    body = client.get(
        f"/v1/teams/{account.team_id}/backfills/{backfill.id}", headers=account.headers
    ).json()["data"]
    assert body["status"] == "FAILED"
    assert [e["transfer_run_date"] for e in body["error_report"]] == ["2024-01-03", "2024-01-07"]
    assert all("Simulated terminal failure" in e["error"] for e in body["error_report"])
    # The list renders the report in SQL: it must say exactly the same.
    listed = client.get(f"/v1/teams/{account.team_id}/backfills", headers=account.headers)
    assert [b for b in listed.json()["data"] if b["transfer_backfill_id"] == backfill.id] == [body]
    latest = client.get(
        f"/v1/teams/{account.team_id}/transfers/{transfer}/backfills/latest",
        headers=account.headers,
    ).json()["data"]
    assert latest == body


def test_transient_failures_are_retried_until_they_pass(
    db: Database, settings: Settings, account: Account
) -> None:
    transfer = make_transfer(db, account.team_id, kind="fault", parallel=3, fail_attempts=2)
    backfill = make_backfill(db, account, JAN_1, date(2024, 1, 5), transfer_id=transfer)
    with running_engine(db, settings, run_max_attempts=3):
        snap = final(db, backfill.id)
    assert snap.status == "COMPLETED" and snap.counters_true
    rows = run_rows(db, backfill.id)
    assert {r["attempt"] for r in rows} == {3}
    assert all("Succeeded on attempt 3 of 3" in r["message"] for r in rows)


def test_a_date_that_keeps_failing_fails_after_its_attempts(
    db: Database, settings: Settings, account: Account, client: TestClient
) -> None:
    transfer = make_transfer(
        db, account.team_id, kind="fault", parallel=2, fail_dates=["2024-01-02"]
    )
    backfill = make_backfill(db, account, JAN_1, date(2024, 1, 3), transfer_id=transfer)
    with running_engine(db, settings, run_max_attempts=3):
        snap = final(db, backfill.id)
    assert snap.status == "FAILED" and (snap.completed, snap.failed) == (2, 1)
    failed = next(r for r in run_rows(db, backfill.id) if str(r["data_date"]) == "2024-01-02")
    assert failed["attempt"] == 3
    assert "Failed after 3 attempts" in failed["message"]
    detail = client.get(
        f"/v1/teams/{account.team_id}/transfer_runs/{failed['id']}", headers=account.headers
    ).json()["data"]
    assert [q["status"] for q in detail["query_details"]] == ["FAILED"] * 3
    assert detail["failed_query_amount"] == 3 and detail["query_amount"] == 3


def test_cancel_mid_run_cancels_queued_runs_and_counts_the_running_ones(
    db: Database, settings: Settings, account: Account, client: TestClient
) -> None:
    transfer = make_transfer(db, account.team_id, kind="fault", parallel=2, latency_ms=150)
    backfill = make_backfill(db, account, JAN_1, JAN_31, transfer_id=transfer)
    with running_engine(db, settings):
        wait_for(lambda: snapshot(db, backfill.id).completed >= 2, what="two runs done")
        cancelled = client.patch(
            f"/v1/teams/{account.team_id}/backfills/{backfill.id}",
            headers=account.headers,
            json={"status": "CANCELLED"},
        )
        assert cancelled.status_code == 200
        at_cancel = snapshot(db, backfill.id)
        assert at_cancel.status == "CANCELLED" and at_cancel.runs_queued == 0
        snap = final(db, backfill.id)
    assert snap.status == "CANCELLED" and snap.counters_true
    assert snap.runs_running == 0 and snap.runs_queued == 0
    # Runs that were executing at the cancel finished and were counted.
    assert snap.completed >= at_cancel.completed + at_cancel.runs_running
    assert snap.completed + snap.runs_cancelled == 31
    assert snap.runs_cancelled >= 20
    body = client.get(
        f"/v1/teams/{account.team_id}/backfills/{backfill.id}", headers=account.headers
    ).json()["data"]
    assert body["transfer_runs_completed"] == snap.completed
    assert body["removed_user_id"] == account.user_id


def test_a_failed_backfill_can_be_cancelled(
    db: Database, settings: Settings, account: Account, client: TestClient
) -> None:
    transfer = make_transfer(
        db, account.team_id, kind="fault", failure_rate=1.0, failure="terminal", parallel=4
    )
    backfill = make_backfill(db, account, JAN_1, date(2024, 1, 4), transfer_id=transfer)
    with running_engine(db, settings):
        assert final(db, backfill.id).status == "FAILED"
    response = client.patch(
        f"/v1/teams/{account.team_id}/backfills/{backfill.id}",
        headers=account.headers,
        json={"status": "CANCELLED"},
    )
    body = response.json()["data"]
    assert response.status_code == 200
    assert body["status"] == "CANCELLED"
    assert body["transfer_runs_failed"] == 4 and len(body["error_report"]) == 4
    again = client.patch(
        f"/v1/teams/{account.team_id}/backfills/{backfill.id}",
        headers=account.headers,
        json={"status": "CANCELLED"},
    )
    assert again.status_code == 422


def test_counters_equal_the_runs_table_at_every_moment(
    db: Database, settings: Settings, account: Account
) -> None:
    transfer = make_transfer(
        db,
        account.team_id,
        kind="fault",
        parallel=6,
        failure_rate=0.2,
        failure="terminal",
        seed=7,
        latency_ms=2,
    )
    backfill = make_backfill(
        db, account, date(2023, 1, 1), date(2023, 12, 31), transfer_id=transfer
    )
    seen: list[str] = []
    wrong: list[object] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            snap = snapshot(db, backfill.id)
            seen.append(snap.status)
            if not snap.counters_true:
                wrong.append(snap)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with running_engine(db, settings, plan_batch_size=50, run_max_attempts=1):
            snap = final(db, backfill.id, timeout=120)
    finally:
        stop.set()
        watcher.join()
    assert not wrong, wrong[:3]
    assert len(seen) > 10
    assert snap.status == "FAILED" and snap.completed + snap.failed == 365 and snap.counters_true
    assert 0 < snap.failed < 365


def test_the_planner_creates_runs_in_batches_and_schedules_when_all_exist(
    db: Database, settings: Settings, account: Account
) -> None:
    from opendts.engine import queue
    from opendts.kit.clock import utcnow

    backfill = make_backfill(db, account, JAN_1, JAN_31)
    steps = []
    while True:
        with db.session(write=True) as session:
            step = queue.plan_step(session, batch_size=7, max_attempts=3, now=utcnow())
        if step is None:
            break
        snap = snapshot(db, backfill.id)
        steps.append((snap.created, snap.status))
        assert snap.counters_true
    assert steps == [
        (7, "CREATED"),
        (14, "CREATED"),
        (21, "CREATED"),
        (28, "CREATED"),
        (31, "SCHEDULED"),
    ]
    # Newest dates were planned first.
    with db.session() as session:
        first_ids = (
            session.execute(queue.select(queue.runs.c.data_date).order_by(queue.runs.c.id).limit(3))
            .scalars()
            .all()
        )
    assert [str(d) for d in first_ids] == ["2024-01-31", "2024-01-30", "2024-01-29"]


def test_cancel_while_planning_stops_the_planner_and_cancels_what_exists(
    db: Database, account: Account, client: TestClient
) -> None:
    from opendts.engine import queue
    from opendts.kit.clock import utcnow

    backfill = make_backfill(db, account, date(2020, 1, 1), JAN_31)
    with db.session(write=True) as session:
        queue.plan_step(session, batch_size=100, max_attempts=3, now=utcnow())
    assert snapshot(db, backfill.id).created == 100
    response = client.patch(
        f"/v1/teams/{account.team_id}/backfills/{backfill.id}",
        headers=account.headers,
        json={"status": "CANCELLED"},
    )
    assert response.status_code == 200
    with db.session(write=True) as session:
        assert queue.plan_step(session, batch_size=100, max_attempts=3, now=utcnow()) is None
    snap = snapshot(db, backfill.id)
    assert snap.status == "CANCELLED" and snap.counters_true
    assert (snap.created, snap.runs_cancelled, snap.runs_queued) == (100, 100, 0)
    body = response.json()["data"]
    assert body["transfer_runs_created"] == 100 and body["transfer_runs_total"] == 1492


def test_two_engines_and_cancels_racing_keep_every_counter_true(
    db: Database, settings: Settings, account: Account
) -> None:
    from opendts.backfills import service as backfills

    ids = []
    for month in range(1, 7):
        transfer = make_transfer(
            db,
            account.team_id,
            kind="fault",
            parallel=2 if month % 2 else 4,
            latency_ms=20,
            failure_rate=0.1,
            failure="terminal",
            seed=month,
        )
        first = date(2023, month, 1)
        ids.append(
            make_backfill(db, account, first, date(2023, month, 28), transfer_id=transfer).id
        )
    wrong: list[object] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            for backfill_id in ids:
                snap = snapshot(db, backfill_id)
                if not snap.counters_true:
                    wrong.append((backfill_id, snap))

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with (
            running_engine(db, settings, run_max_attempts=1) as one,
            running_engine(db, settings, run_max_attempts=1) as two,
        ):
            assert one.owner != two.owner
            for backfill_id in ids[::2]:
                wait_for(lambda b=backfill_id: snapshot(db, b).completed >= 3, what="progress")
                with db.session(write=True) as session:
                    backfills.cancel(
                        session,
                        team_id=account.team_id,
                        backfill_id=backfill_id,
                        user_id=account.user_id,
                    )
            ends = [final(db, backfill_id) for backfill_id in ids]
            shared = one.stats.claimed > 0 and two.stats.claimed > 0
    finally:
        stop.set()
        watcher.join()
    assert not wrong, wrong[:3]
    assert shared, "both engines should have taken work"
    for backfill_id, snap in zip(ids, ends, strict=True):
        assert snap.counters_true and snap.runs_running == 0 and snap.runs_queued == 0
        if backfill_id in ids[::2]:
            assert snap.status == "CANCELLED"
        else:
            assert snap.status in ("COMPLETED", "FAILED")
            assert snap.completed + snap.failed == 28
