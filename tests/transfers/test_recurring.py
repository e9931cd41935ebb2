"""Recurring refreshes: when schedules fire, which dates they reload, and how they share dates
with backfills."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text
from starlette.testclient import TestClient

from opendts.kit.clock import utcnow
from opendts.kit.db import Database
from opendts.settings import Settings
from opendts.transfers import schedule as schedules
from tests.engine.support import final, running_engine, wait_for
from tests.factories import Account, make_backfill
from tests.transfers.loads import expected, make_data_transfer, warehouse, warehouse_fields


def at(text_value: str) -> datetime:
    return datetime.fromisoformat(text_value).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("entry", "after", "due"),
    [
        (schedules.Entry("daily", 3), "2024-05-10T02:59:59", "2024-05-10T03:00:00"),
        (schedules.Entry("daily", 3), "2024-05-10T03:00:00", "2024-05-11T03:00:00"),
        (schedules.Entry("hourly"), "2024-05-10T03:20:00", "2024-05-10T04:00:00"),
        (schedules.Entry("weekly", 6, run_weekday=1), "2024-05-10T12:00:00", "2024-05-13T06:00:00"),
        (schedules.Entry("monthly", 0, run_day=31), "2024-02-10T00:00:00", "2024-02-29T00:00:00"),
    ],
)
def test_next_occurrence(entry: schedules.Entry, after: str, due: str) -> None:
    assert schedules.next_after(entry, at(after)) == at(due)


def test_due_dates_cover_the_refresh_window_ending_yesterday_or_today_for_hourly() -> None:
    now = at("2024-05-10T03:00:05")
    daily = [schedules.Entry("daily", 3, refresh_window=3)]
    assert schedules.due_dates(daily, at("2024-05-09T03:00:00"), now) == [
        date(2024, 5, 9),
        date(2024, 5, 8),
        date(2024, 5, 7),
    ]
    assert schedules.due_dates(daily, at("2024-05-10T03:00:01"), now) == []
    hourly = [schedules.Entry("hourly", refresh_window=1)]
    assert schedules.due_dates(hourly, at("2024-05-10T02:10:00"), now) == [date(2024, 5, 10)]


def make_due(db: Database, transfer_id: int, *, schedule: list[dict[str, Any]]) -> None:
    """Give the transfer ``schedule`` and make it due now (as if its hour had just come)."""
    import json

    with db.session(write=True) as session:
        session.execute(
            text(
                "UPDATE transfers SET schedule = :schedule, next_run_at = :due, "
                "last_scheduled_at = :since WHERE id = :id"
            ),
            {
                "schedule": json.dumps(schedule),
                "due": utcnow() - timedelta(seconds=1),
                "since": utcnow() - timedelta(days=1, hours=1),
                "id": transfer_id,
            },
        )


def recurring_runs(db: Database, transfer_id: int) -> list[dict[str, Any]]:
    with db.session() as session:
        rows = session.execute(
            text(
                "SELECT id, data_date, status, type, started_time, ended_time FROM transfer_runs "
                "WHERE transfer_id = :id AND type = 'Recurring' ORDER BY data_date"
            ),
            {"id": transfer_id},
        ).mappings()
        return [dict(r) for r in rows]


def test_a_due_schedule_refreshes_its_window_once_even_with_two_engines(
    db: Database, settings: Settings, account: Account, client: TestClient
) -> None:
    with warehouse_fields("duckdb") as fields:
        transfer_id, _ = make_data_transfer(db, settings, account.team_id, "duckdb", fields)
        now_hour = utcnow().hour
        make_due(
            db,
            transfer_id,
            schedule=[{"run_interval": "daily", "run_hour": now_hour, "refresh_window": 3}],
        )
        with running_engine(db, settings), running_engine(db, settings):
            wait_for(
                lambda: (
                    (runs := recurring_runs(db, transfer_id))
                    and all(r["status"] == "COMPLETED" for r in runs)
                ),
                what="the refresh to complete",
            )
        runs = recurring_runs(db, transfer_id)
        today = utcnow().date()
        assert [r["data_date"] for r in runs] == [
            str(today - timedelta(days=n))
            if isinstance(runs[0]["data_date"], str)
            else today - timedelta(days=n)
            for n in (3, 2, 1)
        ]
        with db.session() as session:
            next_run = session.execute(
                text("SELECT next_run_at FROM transfers WHERE id = :id"), {"id": transfer_id}
            ).scalar_one()
        assert next_run is not None
        assert warehouse(settings, "duckdb", fields, account.team_id).equals(
            expected(today - timedelta(days=3), today - timedelta(days=1))
        )
    listed = client.get(
        f"/v1/teams/{account.team_id}/transfers/{transfer_id}/runs",
        params={"start_date": str(today - timedelta(days=10)), "end_date": str(today)},
        headers=account.headers,
    ).json()["data"]
    assert [r["type"] for r in listed] == ["Recurring"] * 3


def test_a_paused_transfer_skips_its_turn(
    db: Database, settings: Settings, account: Account
) -> None:
    with warehouse_fields("duckdb") as fields:
        transfer_id, _ = make_data_transfer(db, settings, account.team_id, "duckdb", fields)
        make_due(db, transfer_id, schedule=[{"run_interval": "hourly", "refresh_window": 2}])
        with db.session(write=True) as session:
            session.execute(
                text("UPDATE transfers SET state = 'paused' WHERE id = :id"), {"id": transfer_id}
            )
        with running_engine(db, settings):
            wait_for(lambda: _next_run(db, transfer_id) > utcnow(), what="the turn to be skipped")
        assert recurring_runs(db, transfer_id) == []


def _next_run(db: Database, transfer_id: int) -> datetime:
    with db.session() as session:
        value = session.execute(
            text("SELECT next_run_at FROM transfers WHERE id = :id"), {"id": transfer_id}
        ).scalar_one()
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def test_refreshes_go_first_and_a_date_is_never_written_by_two_runs_at_once(
    db: Database, settings: Settings, account: Account
) -> None:
    with warehouse_fields("duckdb") as fields:
        transfer_id, _ = make_data_transfer(
            db, settings, account.team_id, "duckdb", fields, parallel=3, latency_ms=150
        )
        today = utcnow().date()
        backfill = make_backfill(
            db, account, today - timedelta(days=8), today - timedelta(days=1), transfer_id
        )
        make_due(db, transfer_id, schedule=[{"run_interval": "hourly", "refresh_window": 4}])
        with running_engine(db, settings, worker_concurrency=3):
            snap = final(db, backfill.id, timeout=60)
            wait_for(
                lambda: (
                    (runs := recurring_runs(db, transfer_id))
                    and all(r["status"] == "COMPLETED" for r in runs)
                ),
                what="the refresh to complete",
            )
        assert snap.status == "COMPLETED"
        with db.session() as session:
            rows = [
                dict(r)
                for r in session.execute(
                    text(
                        "SELECT data_date, type, started_time, ended_time FROM transfer_runs "
                        "WHERE transfer_id = :id ORDER BY started_time"
                    ),
                    {"id": transfer_id},
                ).mappings()
            ]
        # The refresh was claimed before the backfill's runs (which were queued first).
        assert rows[0]["type"] == "Recurring"
        by_date: dict[Any, list[dict[str, Any]]] = {}
        for row in rows:
            by_date.setdefault(row["data_date"], []).append(row)
        overlapping_dates = [d for d, rs in by_date.items() if len(rs) > 1]
        assert len(overlapping_dates) == 3  # yesterday..3 days ago: refreshed and backfilled
        for day in overlapping_dates:
            a, b = sorted(by_date[day], key=lambda r: str(r["started_time"]))
            assert str(a["ended_time"]) <= str(b["started_time"]), (day, a, b)
        assert warehouse(settings, "duckdb", fields, account.team_id).equals(
            expected(today - timedelta(days=8), today)
        )


def test_a_new_backfill_waits_for_a_cancelled_backfills_last_runs_of_the_same_dates(
    db: Database, settings: Settings, account: Account
) -> None:
    from opendts.backfills import service as backfills
    from tests.engine.support import make_transfer, snapshot

    transfer_id = make_transfer(db, account.team_id, kind="fault", parallel=4, latency_ms=800)
    first = make_backfill(db, account, date(2024, 1, 1), date(2024, 1, 2), transfer_id)
    with running_engine(db, settings, worker_concurrency=4):
        wait_for(lambda: snapshot(db, first.id).runs_running == 2, what="both dates running")
        with db.session(write=True) as session:
            backfills.cancel(
                session, team_id=account.team_id, backfill_id=first.id, user_id=account.user_id
            )
        second = make_backfill(db, account, date(2024, 1, 1), date(2024, 1, 2), transfer_id)
        assert final(db, second.id).status == "COMPLETED"
        assert final(db, first.id).status == "CANCELLED"
    with db.session() as session:
        rows = session.execute(
            text(
                "SELECT backfill_id, data_date, started_time, ended_time FROM transfer_runs "
                "WHERE transfer_id = :id"
            ),
            {"id": transfer_id},
        ).all()
    ends = {(r.data_date): r.ended_time for r in rows if r.backfill_id == first.id}
    for r in rows:
        if r.backfill_id == second.id:
            assert str(r.started_time) >= str(ends[r.data_date]), r
