"""The queue protocol: leases, fencing, the reaper, caps and fairness."""

from __future__ import annotations

import time
from datetime import date, timedelta

from sqlalchemy import text

from opendts.engine import queue
from opendts.kit.clock import utcnow
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
from tests.factories import Account, make_account, make_backfill

CAPS = queue.Caps(total=100, per_team=100)


def plan_all(db: Database) -> None:
    while True:
        with db.session(write=True) as session:
            if queue.plan_step(session, batch_size=1000, max_attempts=3, now=utcnow()) is None:
                return


def claim(db: Database, owner: str, want: int = 1, now=None) -> list[queue.Claimed]:  # type: ignore[no-untyped-def]
    with db.session(write=True) as session:
        return queue.claim(
            session, owner=owner, want=want, caps=CAPS, lease_seconds=30, now=now or utcnow()
        )


def apply(db: Database, *outcomes: queue.Outcome, now=None) -> queue.Applied:  # type: ignore[no-untyped-def]
    with db.session(write=True) as session:
        return queue.apply(session, outcomes, now=now or utcnow())


def done(run: queue.Claimed, owner: str) -> queue.Outcome:
    return queue.Outcome(run.run_id, owner, run.attempt, queue.Result.COMPLETED, "ok", rows=5)


def test_a_worker_that_lost_its_lease_cannot_overwrite_the_new_owner(
    db: Database, account: Account
) -> None:
    backfill = make_backfill(db, account, date(2024, 1, 1), date(2024, 1, 1))
    plan_all(db)
    [first] = claim(db, "worker-a")
    assert first.attempt == 1
    assert snapshot(db, backfill.id).status == "RUNNING"
    # worker-a stops heartbeating; after the lease the reaper hands the run back.
    later = utcnow() + timedelta(seconds=31)
    with db.session(write=True) as session:
        reaped = queue.reap(session, now=later)
    assert reaped.applied == {first.run_id}
    [second] = claim(db, "worker-b", now=later)
    assert (second.run_id, second.attempt) == (first.run_id, 2)
    # worker-a wakes up and reports: dropped, nothing counted.
    stale = apply(db, done(first, "worker-a"))
    assert stale.lost == {first.run_id} and not stale.applied
    with db.session(write=True) as session:
        lost = queue.heartbeat(
            session, owner="worker-a", held=[(first.run_id, 1)], lease_seconds=30, now=utcnow()
        )
    assert lost == {(first.run_id, 1)}
    snap = snapshot(db, backfill.id)
    assert (snap.completed, snap.runs_running, snap.status) == (0, 1, "RUNNING")
    # The new owner's result is the one that counts, once.
    assert apply(db, done(second, "worker-b")).applied == {second.run_id}
    assert apply(db, done(second, "worker-b")).lost == {second.run_id}
    snap = snapshot(db, backfill.id)
    assert (snap.status, snap.completed) == ("COMPLETED", 1) and snap.counters_true


def test_the_same_owner_with_an_old_attempt_is_fenced_too(db: Database, account: Account) -> None:
    make_backfill(db, account, date(2024, 1, 1), date(2024, 1, 1))
    plan_all(db)
    [first] = claim(db, "worker-a")
    later = utcnow() + timedelta(seconds=31)
    with db.session(write=True) as session:
        queue.reap(session, now=later)
    [second] = claim(db, "worker-a", now=later)
    assert apply(db, done(first, "worker-a")).lost == {first.run_id}
    assert apply(db, done(second, "worker-a")).applied == {second.run_id}


def test_heartbeats_keep_a_lease_alive(db: Database, account: Account) -> None:
    make_backfill(db, account, date(2024, 1, 1), date(2024, 1, 1))
    plan_all(db)
    [run] = claim(db, "worker-a")
    soon = utcnow() + timedelta(seconds=25)
    with db.session(write=True) as session:
        assert not queue.heartbeat(
            session, owner="worker-a", held=[(run.run_id, 1)], lease_seconds=30, now=soon
        )
    with db.session(write=True) as session:
        assert not queue.reap(session, now=soon + timedelta(seconds=20)).applied
        assert queue.reap(session, now=soon + timedelta(seconds=31)).applied == {run.run_id}


def test_an_expired_lease_on_the_last_attempt_fails_the_date(
    db: Database, account: Account
) -> None:
    backfill = make_backfill(db, account, date(2024, 1, 1), date(2024, 1, 1))
    with db.session(write=True) as session:
        queue.plan_step(session, batch_size=10, max_attempts=1, now=utcnow())
    assert len(claim(db, "worker-a")) == 1
    with db.session(write=True) as session:
        queue.reap(session, now=utcnow() + timedelta(seconds=31))
    snap = snapshot(db, backfill.id)
    assert (snap.status, snap.failed) == ("FAILED", 1) and snap.counters_true
    assert "stopped responding" in (run_rows(db, backfill.id)[0]["error"] or "")


def test_claims_take_newest_dates_first_and_respect_max_parallel_runs(
    db: Database, account: Account
) -> None:
    transfer = make_transfer(db, account.team_id, parallel=3)
    make_backfill(db, account, date(2024, 1, 1), date(2024, 1, 10), transfer_id=transfer)
    plan_all(db)
    got = claim(db, "w", want=10)
    assert [str(c.data_date) for c in got] == ["2024-01-10", "2024-01-09", "2024-01-08"]
    assert claim(db, "w2", want=10) == []
    apply(db, done(got[0], "w"))
    [nxt] = claim(db, "w2", want=10)
    assert str(nxt.data_date) == "2024-01-07"


def test_the_team_cap_and_the_least_busy_team_first(db: Database, account: Account) -> None:
    big = make_transfer(db, account.team_id, parallel=50)
    make_backfill(db, account, date(2020, 1, 1), date(2023, 12, 31), transfer_id=big)
    other = make_account(db)
    small = make_transfer(db, other.team_id, parallel=50)
    make_backfill(db, other, date(2024, 1, 1), date(2024, 1, 7), transfer_id=small)
    plan_all(db)
    caps = queue.Caps(total=10, per_team=6)
    with db.session(write=True) as session:
        got = queue.claim(session, owner="w", want=100, caps=caps, lease_seconds=30, now=utcnow())
    teams = [c.team_id for c in got]
    assert len(got) == 10
    # Dealt one slot at a time to the least busy team: an even split, under the team cap.
    assert teams.count(account.team_id) == 5 and teams.count(other.team_id) == 5
    # Nothing more until something finishes: the global cap is reached.
    with db.session(write=True) as session:
        assert (
            queue.claim(session, owner="w", want=5, caps=caps, lease_seconds=30, now=utcnow()) == []
        )


def test_a_small_backfill_is_not_starved_by_a_big_one(
    db: Database, settings: Settings, account: Account
) -> None:
    big = make_transfer(db, account.team_id, kind="fault", parallel=8, latency_ms=20)
    big_backfill = make_backfill(db, account, date(2015, 1, 1), date(2024, 12, 31), transfer_id=big)
    other = make_account(db)
    small = make_transfer(db, other.team_id, kind="fault", parallel=8, latency_ms=20)
    with running_engine(db, settings, worker_concurrency=4, max_running_runs_per_team=4):
        # The big one is well under way before the small one arrives.
        wait_for(lambda: snapshot(db, big_backfill.id).completed >= 20, what="20 big runs")
        small_backfill = make_backfill(
            db, other, date(2024, 1, 1), date(2024, 1, 7), transfer_id=small
        )
        final_small = final(db, small_backfill.id, timeout=30)
        big_at_small_end = snapshot(db, big_backfill.id)
    assert final_small.status == "COMPLETED"
    # 7 runs of 20 ms with a fair share of 4 slots: done long before the 3,653-day one.
    assert big_at_small_end.status == "RUNNING"
    assert big_at_small_end.completed < 1000


def test_peak_parallelism_never_exceeds_the_transfer_limit(
    db: Database, settings: Settings, account: Account
) -> None:
    transfer = make_transfer(db, account.team_id, kind="fault", parallel=3, latency_ms=15)
    backfill = make_backfill(db, account, date(2024, 1, 1), date(2024, 2, 29), transfer_id=transfer)
    peak = 0
    deadline = time.monotonic() + 60
    with running_engine(db, settings, worker_concurrency=8):
        while time.monotonic() < deadline:
            with db.session() as session:
                running = session.execute(
                    text("SELECT count(*) FROM transfer_runs WHERE status = 'RUNNING'")
                ).scalar_one()
            peak = max(peak, running)
            if snapshot(db, backfill.id).status == "COMPLETED":
                break
    assert snapshot(db, backfill.id).status == "COMPLETED"
    assert peak == 3


def test_free_slots_are_dealt_evenly_and_the_reserve_is_for_idle_teams(
    db: Database, account: Account
) -> None:
    busy = make_transfer(db, account.team_id, parallel=16)
    make_backfill(db, account, date(2024, 1, 1), date(2024, 3, 31), transfer_id=busy)
    plan_all(db)
    with db.session(write=True) as session:
        held = queue.claim(
            session, owner="w", want=8, spare=1, caps=CAPS, lease_seconds=30, now=utcnow()
        )
    # Alone, a team takes every regular slot; the reserve is not for a team already running.
    assert [c.team_id for c in held] == [account.team_id] * 8
    with db.session(write=True) as session:
        assert (
            queue.claim(
                session, owner="w", want=0, spare=1, caps=CAPS, lease_seconds=30, now=utcnow()
            )
            == []
        )
    # A newcomer arrives while the busy team holds every slot: it gets the reserve at once.
    newcomer = make_account(db)
    small = make_transfer(db, newcomer.team_id, parallel=16)
    make_backfill(db, newcomer, date(2024, 1, 1), date(2024, 1, 5), transfer_id=small)
    plan_all(db)
    with db.session(write=True) as session:
        got = queue.claim(
            session, owner="w", want=0, spare=1, caps=CAPS, lease_seconds=30, now=utcnow()
        )
    assert [(c.team_id, str(c.data_date)) for c in got] == [(newcomer.team_id, "2024-01-05")]
    # Freed slots go to the least busy team first: 1 + 3 = 4 each, not all to the busy one.
    apply(db, *(done(run, "w") for run in held[:4]))
    with db.session(write=True) as session:
        dealt = queue.claim(
            session, owner="w", want=4, spare=1, caps=CAPS, lease_seconds=30, now=utcnow()
        )
    teams = [c.team_id for c in dealt]
    assert teams.count(newcomer.team_id) == 3 and teams.count(account.team_id) == 1


def test_a_team_with_slow_runs_in_every_slot_does_not_hold_up_another_team(
    db: Database, settings: Settings, account: Account
) -> None:
    slow = make_transfer(db, account.team_id, kind="fault", parallel=16, latency_ms=600_000)
    slow_backfill = make_backfill(
        db, account, date(2024, 1, 1), date(2024, 1, 31), transfer_id=slow
    )
    other = make_account(db)
    quick = make_transfer(db, other.team_id, kind="fault")
    with running_engine(db, settings, worker_concurrency=4, worker_spare_slots=1):
        wait_for(
            lambda: snapshot(db, slow_backfill.id).runs_running == 4, what="4 slow runs running"
        )
        quick_backfill = make_backfill(
            db, other, date(2024, 1, 1), date(2024, 1, 1), transfer_id=quick
        )
        # Without a share for it, the one-day backfill would wait 10 minutes for a slot.
        assert final(db, quick_backfill.id, timeout=20).status == "COMPLETED"
        slow_now = snapshot(db, slow_backfill.id)
    assert slow_now.runs_running == 4 and slow_now.completed == 0


def test_fair_share_holds_across_engines(
    db: Database, settings: Settings, account: Account
) -> None:
    # Two engines on one database: the counts of running runs are the database's, not each
    # engine's, so a team running on one engine is no newcomer to the other.
    slow = make_transfer(db, account.team_id, kind="fault", parallel=16, latency_ms=600_000)
    slow_backfill = make_backfill(
        db, account, date(2024, 1, 1), date(2024, 1, 31), transfer_id=slow
    )
    other = make_account(db)
    quick = make_transfer(db, other.team_id, kind="fault", parallel=4, latency_ms=300_000)
    with (
        running_engine(db, settings, worker_concurrency=2, worker_spare_slots=1),
        running_engine(db, settings, worker_concurrency=2, worker_spare_slots=1),
    ):
        wait_for(lambda: snapshot(db, slow_backfill.id).runs_running == 4, what="4 slow runs")
        quick_backfill = make_backfill(
            db, other, date(2024, 1, 1), date(2024, 1, 10), transfer_id=quick
        )
        # One spare slot, on one engine: the other engine's spare is for a team with nothing
        # running, which this team no longer is.
        wait_for(lambda: snapshot(db, quick_backfill.id).runs_running == 1, what="a spare slot")
        time.sleep(0.5)  # several claim cycles of both engines
        assert snapshot(db, quick_backfill.id).runs_running == 1
        assert snapshot(db, slow_backfill.id).runs_running == 4
