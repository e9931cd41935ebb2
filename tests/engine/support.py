"""Helpers for engine tests: fast settings, a running engine, consistent snapshots."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import text

from opendts.engine.engine import Engine
from opendts.kit.db import Database
from opendts.settings import Settings
from opendts.transfers import service as transfers

FAST = {
    "lease_seconds": 2.0,
    "poll_seconds": 0.05,
    "retry_base_seconds": 0.02,
    "retry_max_seconds": 0.1,
    "shutdown_grace_seconds": 5.0,
}


def fast_settings(settings: Settings, **overrides: Any) -> Settings:
    """``settings`` with timings short enough for tests."""
    return settings.model_copy(update={**FAST, **overrides})


@contextmanager
def running_engine(db: Database, settings: Settings, **overrides: Any) -> Iterator[Engine]:
    """An in-process engine, stopped (in-flight runs released) when the block ends."""
    engine = Engine(db, fast_settings(settings, **overrides))
    engine.start()
    try:
        yield engine
    finally:
        engine.stop(grace=0)


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, what: str = "") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(0.02)


def make_transfer(
    db: Database, team_id: int, *, kind: str = "noop", parallel: int = 1, **config: Any
) -> int:
    """A transfer of ``kind`` with ``config`` (a ``fault`` transfer fails or sleeps on demand)."""
    with db.session(write=True) as session:
        return transfers.create(
            session,
            team_id,
            f"{kind} transfer",
            kind=kind,
            config=config,
            max_parallel_runs=parallel,
        ).id


@dataclass(frozen=True)
class Snapshot:
    """A backfill row and the counts of its runs, read by one statement (one snapshot)."""

    status: str
    total: int
    created: int
    completed: int
    failed: int
    runs: int
    runs_completed: int
    runs_failed: int
    runs_running: int
    runs_queued: int
    runs_cancelled: int
    start_time: Any
    end_time: Any

    @property
    def counters_true(self) -> bool:
        return (self.created, self.completed, self.failed) == (
            self.runs,
            self.runs_completed,
            self.runs_failed,
        )


_SNAPSHOT = text(
    """
    SELECT b.status, b.runs_total, b.runs_created, b.runs_completed, b.runs_failed,
      (SELECT count(*) FROM transfer_runs r WHERE r.backfill_id = b.id),
      (SELECT count(*) FROM transfer_runs r WHERE r.backfill_id = b.id AND r.status = 'COMPLETED'),
      (SELECT count(*) FROM transfer_runs r WHERE r.backfill_id = b.id AND r.status = 'FAILED'),
      (SELECT count(*) FROM transfer_runs r WHERE r.backfill_id = b.id AND r.status = 'RUNNING'),
      (SELECT count(*) FROM transfer_runs r WHERE r.backfill_id = b.id AND r.status = 'QUEUED'),
      (SELECT count(*) FROM transfer_runs r WHERE r.backfill_id = b.id AND r.status = 'CANCELLED'),
      b.start_time, b.end_time
    FROM backfills b WHERE b.id = :id
    """
)


def snapshot(db: Database, backfill_id: int) -> Snapshot:
    """The backfill and its runs as of one instant."""
    with db.session() as session:
        row = session.execute(_SNAPSHOT, {"id": backfill_id}).one()
    return Snapshot(*row)


def final(db: Database, backfill_id: int, timeout: float = 60.0) -> Snapshot:
    """Wait until the backfill is COMPLETED, FAILED or CANCELLED with nothing running."""

    def done() -> Snapshot | None:
        snap = snapshot(db, backfill_id)
        if snap.status in ("COMPLETED", "FAILED", "CANCELLED") and not snap.runs_running:
            return snap
        return None

    result: Snapshot = wait_for(done, timeout, f"backfill {backfill_id} to end")
    return result


def run_rows(db: Database, backfill_id: int) -> list[dict[str, Any]]:
    """Every run of a backfill, by date."""
    with db.session() as session:
        rows = session.execute(
            text(
                "SELECT id, data_date, status, attempt, started_time, ended_time, error, message, "
                "total_rows, total_duration "
                "FROM transfer_runs WHERE backfill_id = :id ORDER BY data_date"
            ),
            {"id": backfill_id},
        ).mappings()
        return [dict(row) for row in rows]


def days(first: date, last: date) -> int:
    return (last - first).days + 1
