"""Queries on transfer runs used outside the engine: cancel, error report, the runs API."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, cast

from sqlalchemy import CursorResult, Table, func, literal_column, select, update
from sqlalchemy.orm import Session

from opendts.runs.models import RunStatus, TransferRun

runs = cast(Table, TransferRun.__table__)


def _status_is(status: RunStatus) -> Any:
    # Literal, not bound: SQLite only uses a partial index when the query repeats its predicate.
    return runs.c.status == literal_column(f"'{status.value}'")


def cancel_queued(session: Session, backfill_id: int, *, user_id: int, now: datetime) -> int:
    """Cancel a backfill's runs that have not started; returns how many."""
    result = session.execute(
        update(runs)
        .where(runs.c.backfill_id == backfill_id, runs.c.status == RunStatus.QUEUED.value)
        .values(
            status=RunStatus.CANCELLED.value,
            ended_time=now,
            lease_owner=None,
            lease_expires_at=None,
            message=f"Cancelled before it started: user {user_id} cancelled the backfill.",
        )
    )
    return int(cast(CursorResult[Any], result).rowcount or 0)


def request_stop(session: Session, backfill_id: int, *, user_id: int) -> int:
    """Ask the engines holding a backfill's running runs to stop them; returns how many.

    The runs stay RUNNING (their dates still held) until their engine has killed the process
    and written them CANCELLED. Runs locked by an engine writing their outcome right now are
    skipped (they are finishing anyway): on PostgreSQL a finish locks runs before the backfill,
    and this cancel holds the backfill.
    """
    chosen = (
        select(runs.c.id)
        .where(runs.c.backfill_id == backfill_id, runs.c.status == RunStatus.RUNNING.value)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    result = session.execute(
        update(runs)
        .where(runs.c.id.in_(chosen))
        .values(
            cancel_requested_by=user_id,
            message=f'Stopping: user {user_id} cancelled the backfill with "mode": "now".',
        )
    )
    return int(cast(CursorResult[Any], result).rowcount or 0)


def recurring_in_flight_of_team(session: Session, team_id: int) -> int:
    """The team's recurring runs (no backfill) that are queued or running."""
    count = session.scalar(
        select(func.count())
        .select_from(runs)
        .where(
            runs.c.team_id == team_id,
            runs.c.backfill_id.is_(None),
            runs.c.status.in_([RunStatus.QUEUED.value, RunStatus.RUNNING.value]),
        )
    )
    return int(count or 0)


def error_report(session: Session, backfill_id: int) -> list[dict[str, str]]:
    """One ``{transfer_run_date, error}`` per failed date, in date order."""
    rows = session.execute(
        select(runs.c.data_date, runs.c.error)
        .where(runs.c.backfill_id == backfill_id, _status_is(RunStatus.FAILED))
        .order_by(runs.c.data_date)
    )
    return [{"transfer_run_date": d.isoformat(), "error": e or "Failed."} for d, e in rows]


def status_counts(session: Session, backfill_id: int) -> dict[str, int]:
    """How many runs of the backfill are in each status (what its counters must agree with)."""
    rows = session.execute(
        select(runs.c.status, func.count())
        .where(runs.c.backfill_id == backfill_id)
        .group_by(runs.c.status)
    )
    return {status: int(count) for status, count in rows}


def get_in_team(session: Session, team_id: int, run_id: int) -> TransferRun | None:
    """One run of the team, or None (another team's run is as missing as a deleted one)."""
    return session.scalars(
        select(TransferRun).where(TransferRun.id == run_id, TransferRun.team_id == team_id)
    ).first()


SORT_COLUMNS = {
    "created_time": TransferRun.created_time,
    "data_date": TransferRun.data_date,
    "ended_time": TransferRun.ended_time,
}

#: Runs with issues: failed, or retried after an error, or cancelled.
ISSUE_STATUSES = (RunStatus.FAILED.value, RunStatus.CANCELLED.value)


def list_of_transfer(
    session: Session,
    *,
    transfer_id: int,
    first: date,
    last: date,
    issues_only: bool,
    sort_field: str,
    descending: bool,
    limit: int,
    offset: int,
) -> list[TransferRun]:
    """A page of a transfer's runs whose data date is in ``[first, last]``."""
    column: Any = SORT_COLUMNS[sort_field]
    query = select(TransferRun).where(
        TransferRun.transfer_id == transfer_id,
        TransferRun.data_date >= first,
        TransferRun.data_date <= last,
    )
    if issues_only:
        query = query.where(TransferRun.status.in_(ISSUE_STATUSES) | TransferRun.error.is_not(None))
    order: list[Any]
    if descending:
        order = [column.desc().nulls_last(), TransferRun.id.desc()]
    else:
        order = [column.asc().nulls_last(), TransferRun.id.asc()]
    return list(session.scalars(query.order_by(*order).limit(limit).offset(offset)))
