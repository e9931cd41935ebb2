"""Backfill use cases. Services never commit: the caller's session scope does."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from opendts.backfills import repository, schemas
from opendts.backfills.models import Backfill
from opendts.backfills.status import BackfillStatus, can_transition
from opendts.kit.clock import today, utcnow
from opendts.kit.db import Reader
from opendts.kit.errors import InvalidParameter, NotFound, Unprocessable
from opendts.runs import repository as runs
from opendts.transfers import repository as transfers
from opendts.transfers.models import TransferState


@dataclass(frozen=True, slots=True)
class RangeRules:
    """Limits on a new backfill: its date range, and the team's queue it joins."""

    max_days: int
    #: Runs one team may have queued or running (``None``: no quota).
    max_queued_runs: int | None = None


def _transfer_not_found(transfer_id: int) -> NotFound:
    return NotFound(
        f"Transfer {transfer_id} does not exist in this team. Check the transfer id.",
        code="TRANSFER_NOT_FOUND",
        message="Transfer not found",
    )


def _backfill_not_found(backfill_id: int) -> NotFound:
    return NotFound(
        f"Backfill {backfill_id} does not exist in this team. "
        "List your team's backfills and check the id.",
        code="BACKFILL_NOT_FOUND",
        message="Backfill not found",
    )


def check_range(range_start: date, range_end: date, rules: RangeRules) -> int:
    """Validate an inclusive date range and return its number of days."""
    if range_end < range_start:
        raise Unprocessable(
            f"range_end ({range_end}) is before range_start ({range_start}). "
            "Swap them or fix the dates.",
            code="INVALID_DATE_RANGE",
            message="Invalid date range",
        )
    current = today()
    if range_end > current:
        raise Unprocessable(
            f"range_end ({range_end}) is in the future. Use {current} (today, UTC) or earlier.",
            code="RANGE_END_IN_FUTURE",
            message="Date range ends in the future",
        )
    days = (range_end - range_start).days + 1
    if days > rules.max_days:
        raise Unprocessable(
            f"The range covers {days} days; the maximum is {rules.max_days}. "
            "Split it into several backfills.",
            code="RANGE_TOO_LONG",
            message="Date range too long",
        )
    return days


def _check_transfer_accepts(transfer_id: int, state: str, deleted_at: datetime | None) -> None:
    if deleted_at is not None:
        raise Unprocessable(
            f"Transfer {transfer_id} was deleted; it cannot be backfilled.",
            code="TRANSFER_DELETED",
            message="Transfer deleted",
        )
    if state == TransferState.PAUSED:
        raise Unprocessable(
            f"Transfer {transfer_id} is paused. Unpause it, then create the backfill.",
            code="TRANSFER_PAUSED",
            message="Transfer paused",
        )


def create(
    session: Session,
    *,
    team_id: int,
    transfer_id: int,
    user_id: int,
    range_start: date,
    range_end: date,
    rules: RangeRules,
) -> Backfill:
    """Create a backfill in status CREATED, refusing overlaps with active ones.

    The returned backfill is not in ``session`` (it was inserted with one Core statement, the
    hot write path): read it, or ``repository.get_in_team`` it to change it.
    """
    # The row lock serialises concurrent creates for one transfer on PostgreSQL; on SQLite
    # the write scope's BEGIN IMMEDIATE does the same for the whole database.
    transfer = transfers.lock_state(session, team_id, transfer_id)
    if transfer is None:
        raise _transfer_not_found(transfer_id)
    _check_transfer_accepts(transfer_id, *transfer)
    days = check_range(range_start, range_end, rules)
    if rules.max_queued_runs is not None:
        # An overlap is the answer that says more: it wins over the quota.
        _refuse_overlap(session, transfer_id, range_start, range_end)
        check_queue_quota(session, team_id, days, rules.max_queued_runs)
    backfill = Backfill(
        team_id=team_id,
        transfer_id=transfer_id,
        range_start=range_start,
        range_end=range_end,
        status=BackfillStatus.CREATED.value,
        created_time=utcnow(),
        created_user_id=user_id,
        runs_total=days,
        runs_created=0,
        runs_completed=0,
        runs_failed=0,
    )
    new_id = repository.insert_unless_overlapping(session, backfill)
    if new_id is None:
        _refuse_overlap(session, transfer_id, range_start, range_end)
        raise AssertionError("only an overlapping backfill keeps the row out")
    backfill.id = new_id
    notify_workers(session)
    return backfill


def _refuse_overlap(session: Session, transfer_id: int, range_start: date, range_end: date) -> None:
    """422 BACKFILL_OVERLAP naming the active backfill that covers part of the range, if any."""
    overlap = repository.active_overlapping(session, transfer_id, range_start, range_end)
    if overlap is not None:
        raise Unprocessable(
            f"Backfill {overlap.id} ({overlap.range_start} to {overlap.range_end}, "
            f"{overlap.status}) already covers part of this range. Cancel it or pick other dates.",
            code="BACKFILL_OVERLAP",
            message="Overlapping backfill",
        )


def check_queue_quota(session: Session, team_id: int, days: int, limit: int) -> None:
    """Refuse (422) a backfill of ``days`` runs that would take the team's queued and running
    runs past ``limit``. Holds under concurrent creates: the team's creates are serialised
    until commit."""
    repository.lock_team_queue(session, team_id)
    queued = repository.runs_to_do_of_team(session, team_id)
    queued += runs.recurring_in_flight_of_team(session, team_id)
    if queued + days > limit:
        room = max(0, limit - queued)
        raise Unprocessable(
            f"Your team has {queued:,} runs queued or running; this backfill adds {days:,}, "
            f"past the limit of {limit:,} (room for {room:,}). Wait for runs to finish, cancel "
            "a backfill, or create a shorter range.",
            code="QUEUED_RUNS_QUOTA",
            message="Queued runs quota reached",
        )


def get(session: Session, team_id: int, backfill_id: int) -> Backfill:
    """One backfill of the team, or 404."""
    backfill = repository.get_in_team(session, team_id, backfill_id)
    if backfill is None:
        raise _backfill_not_found(backfill_id)
    return backfill


def latest(session: Session, team_id: int, transfer_id: int) -> Backfill:
    """The transfer's most recent backfill, or 404 if the transfer never had one."""
    if transfers.get_in_team(session, team_id, transfer_id) is None:
        raise _transfer_not_found(transfer_id)
    backfill = repository.latest_of_transfer(session, team_id, transfer_id)
    if backfill is None:
        raise NotFound(
            f"Transfer {transfer_id} has never had a backfill. Create one first.",
            code="BACKFILL_NOT_FOUND",
            message="No backfill for this transfer",
        )
    return backfill


#: Query parameters of the list's extension (other parameters are ignored, as the contract's
#: list takes none).
LIST_PARAMETERS = ("status", "transfer_id", "limit")


def list_filtered(session: Session, team_id: int, params: dict[str, str]) -> list[dict[str, Any]]:
    """Our extension of the list: ``status`` (``all`` or a comma list), ``transfer_id``,
    ``limit`` (1 to 1000, 100 by default); newest first."""
    raw = params.get("status", "all")
    valid = ", ".join(s.value for s in BackfillStatus)
    if not re.fullmatch(schemas.STATUS_FILTER, raw):
        raise InvalidParameter(f"'status' must be 'all' or a comma-separated list of {valid}.")
    statuses: tuple[str, ...] | None = None
    if raw.strip().lower() != "all":
        statuses = tuple(part.strip().upper() for part in raw.split(","))
    transfer_id = _int_param(params, "transfer_id", 1, 2**63 - 1, None)
    limit = _int_param(params, "limit", 1, 1000, 100)
    rows = repository.list_of_team(
        session, team_id, statuses=statuses, transfer_id=transfer_id, limit=limit or 100
    )
    return [wire(session, row) for row in rows]


def _int_param(
    params: dict[str, str], name: str, low: int, high: int, default: int | None
) -> int | None:
    value = params.get(name)
    if value is None:
        return default
    if not re.fullmatch("[0-9]{1,19}", value) or not low <= int(value) <= high:
        raise InvalidParameter(f"'{name}' must be an integer from {low} to {high}.")
    return int(value)


def list_incomplete_json(source: Session | Reader, team_id: int) -> bytes:
    """The team's incomplete backfills, newest first, as the contract's JSON array."""
    return repository.incomplete_json_of_team(source, team_id)


def cancel(
    session: Session, *, team_id: int, backfill_id: int, user_id: int, mode: str = "finish"
) -> Backfill:
    """Cancel an incomplete backfill; a final one gives 422.

    ``mode`` ``"finish"`` (the contract's): running runs finish and are counted. ``"now"``:
    running runs are asked to stop; the engine holding each one kills its process at its next
    heartbeat and writes it CANCELLED (not counted as completed or failed).
    """
    backfill = repository.get_in_team(session, team_id, backfill_id, lock=True)
    if backfill is None:
        raise _backfill_not_found(backfill_id)
    current = BackfillStatus(backfill.status)
    if not can_transition(current, BackfillStatus.CANCELLED):
        raise Unprocessable(
            f"Backfill {backfill_id} is already {current.value}; only CREATED, SCHEDULED, "
            "RUNNING or FAILED backfills can be cancelled.",
            code="BACKFILL_NOT_CANCELLABLE",
            message="Backfill already final",
        )
    now = utcnow()
    backfill.status = BackfillStatus.CANCELLED.value
    backfill.removed_time = now
    backfill.removed_user_id = user_id
    backfill.end_time = now
    session.flush()
    # Queued runs are cancelled at once; running ones finish and are still counted, unless
    # the cancel stops them too.
    runs.cancel_queued(session, backfill.id, user_id=user_id, now=now)
    if mode == "now":
        runs.request_stop(session, backfill.id, user_id=user_id)
    return backfill


def wire(session: Session, backfill: Backfill) -> dict[str, Any]:
    """The backfill as the contract's JSON object, with its error report."""
    report = runs.error_report(session, backfill.id) if backfill.runs_failed else []
    return schemas.to_wire(backfill, report)


def notify_workers(session: Session) -> None:
    """On PostgreSQL, wake listening workers when this transaction commits."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_notify('opendts_work', '')"))
