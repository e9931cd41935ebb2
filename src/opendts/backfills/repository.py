"""All SQL about backfills."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import Select, Table, bindparam, exists, func, insert, literal_column, select, text
from sqlalchemy.orm import Session

from opendts.backfills.models import INCOMPLETE_SQL, Backfill
from opendts.backfills.status import ACTIVE
from opendts.backfills.wire_sql import backfill_json
from opendts.kit.db import Reader
from opendts.kit.driver_sql import DriverQuery
from opendts.teams.models import Team

LIST_LIMIT = 100


def get_in_team(
    session: Session, team_id: int, backfill_id: int, *, lock: bool = False
) -> Backfill | None:
    """The team's backfill, optionally row-locked until commit."""
    query = select(Backfill).where(Backfill.id == backfill_id, Backfill.team_id == team_id)
    if lock:
        query = query.with_for_update()
    return session.scalars(query).first()


def latest_of_transfer(session: Session, team_id: int, transfer_id: int) -> Backfill | None:
    """The transfer's most recently created backfill, whatever its status."""
    return session.scalars(
        select(Backfill)
        .where(Backfill.transfer_id == transfer_id, Backfill.team_id == team_id)
        .order_by(Backfill.created_time.desc(), Backfill.id.desc())
        .limit(1)
    ).first()


def _incomplete_json_statement(dialect: str) -> Select[Any]:
    return (
        select(backfill_json(dialect))
        .where(Backfill.team_id == bindparam("team_id"), text(INCOMPLETE_SQL))
        .order_by(Backfill.created_time.desc(), Backfill.id.desc())
        .limit(LIST_LIMIT)
    )


# The hot read path: compiled once per dialect, fetched straight from the driver.
_INCOMPLETE_JSON = DriverQuery(_incomplete_json_statement)


def incomplete_json_of_team(session: Session | Reader, team_id: int) -> bytes:
    """The team's incomplete backfills as a JSON array, newest first, at most ``LIST_LIMIT``."""
    rows = _INCOMPLETE_JSON.rows(session, reuse=True, team_id=team_id)
    return b"[" + b",".join(row[0].encode() for row in rows) + b"]"


def _insert_unless_overlapping() -> Any:
    # INSERT … SELECT … WHERE NOT EXISTS: the overlap check and the insert in one statement.
    # It runs after the transfer's row lock was taken, so (read committed) it sees every
    # backfill committed by an earlier create of the same transfer.
    b = Backfill.__table__.c
    columns = [
        "team_id",
        "transfer_id",
        "range_start",
        "range_end",
        "status",
        "created_time",
        "created_user_id",
        "runs_total",
        "runs_created",
        "runs_completed",
        "runs_failed",
    ]
    overlap: Select[Any] = (
        select(literal_column("1"))
        .select_from(Backfill.__table__)
        .where(
            b.transfer_id == bindparam("transfer_id"),
            b.status.in_([s.value for s in sorted(ACTIVE)]),
            b.range_start <= bindparam("range_end"),
            b.range_end >= bindparam("range_start"),
        )
    )
    values = select(*(bindparam(name, type_=b[name].type) for name in columns)).where(
        ~exists(overlap)
    )
    table = Backfill.__table__
    assert isinstance(table, Table)
    return insert(table).from_select(columns, values).returning(b.id)


_INSERT_UNLESS_OVERLAPPING = _insert_unless_overlapping()


def insert_unless_overlapping(session: Session, backfill: Backfill) -> int | None:
    """Insert ``backfill`` (not added to the session) unless an active backfill of its
    transfer shares a date; its new id, or None when one does."""
    row = session.execute(
        _INSERT_UNLESS_OVERLAPPING,
        {
            "team_id": backfill.team_id,
            "transfer_id": backfill.transfer_id,
            "range_start": backfill.range_start,
            "range_end": backfill.range_end,
            "status": backfill.status,
            "created_time": backfill.created_time,
            "created_user_id": backfill.created_user_id,
            "runs_total": backfill.runs_total,
            "runs_created": backfill.runs_created,
            "runs_completed": backfill.runs_completed,
            "runs_failed": backfill.runs_failed,
        },
    ).first()
    return int(row[0]) if row is not None else None


def active_overlapping(
    session: Session, transfer_id: int, range_start: date, range_end: date
) -> Backfill | None:
    """An active backfill of the transfer whose range shares at least one date."""
    return session.scalars(
        select(Backfill)
        .where(
            Backfill.transfer_id == transfer_id,
            Backfill.status.in_([s.value for s in ACTIVE]),
            Backfill.range_start <= range_end,
            Backfill.range_end >= range_start,
        )
        .order_by(Backfill.id)
        .limit(1)
    ).first()


def incomplete_ids_of_transfer(session: Session, transfer_id: int) -> list[int]:
    """Ids of the transfer's CREATED, SCHEDULED, RUNNING or FAILED backfills."""
    return list(
        session.scalars(
            select(Backfill.id)
            .where(Backfill.transfer_id == transfer_id, text(INCOMPLETE_SQL))
            .order_by(Backfill.id)
        )
    )


def list_of_team(
    session: Session,
    team_id: int,
    *,
    statuses: tuple[str, ...] | None,
    transfer_id: int | None,
    limit: int,
) -> list[Backfill]:
    """The team's backfills in ``statuses`` (all if None), newest first, at most ``limit``."""
    query = select(Backfill).where(Backfill.team_id == team_id)
    if statuses is not None:
        query = query.where(Backfill.status.in_(statuses))
    if transfer_id is not None:
        query = query.where(Backfill.transfer_id == transfer_id)
    return list(session.scalars(query.order_by(Backfill.id.desc()).limit(limit)))


def lock_team_queue(session: Session, team_id: int) -> None:
    """Serialise the team's backfill creates until commit (PostgreSQL: ``FOR NO KEY UPDATE``
    on the team's row, which inserts referencing the team do not wait for; SQLite: the write
    scope's ``BEGIN IMMEDIATE`` already serialises every write)."""
    session.execute(select(Team.id).where(Team.id == team_id).with_for_update(key_share=True))


def runs_to_do_of_team(session: Session, team_id: int) -> int:
    """Runs the team's incomplete backfills still have to do: queued, running, or not yet
    planned (``runs_total`` minus the final ones; the counters move with the runs)."""
    rest = Backfill.runs_total - Backfill.runs_completed - Backfill.runs_failed
    total = session.scalar(
        select(func.coalesce(func.sum(rest), 0)).where(
            Backfill.team_id == team_id, text(INCOMPLETE_SQL)
        )
    )
    return int(total or 0)
