"""All SQL about backfills."""

from __future__ import annotations

from datetime import date
from functools import cache
from typing import Any

from sqlalchemy import Select, bindparam, select, text
from sqlalchemy.orm import Session

from opendts.backfills.models import INCOMPLETE_SQL, Backfill
from opendts.backfills.status import ACTIVE
from opendts.backfills.wire_sql import backfill_json

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


@cache
def _incomplete_json_statement(dialect: str) -> Select[Any]:
    # Built once per dialect: a large expression costs more to build and cache-key than to run.
    return (
        select(backfill_json(dialect))
        .where(Backfill.team_id == bindparam("team_id"), text(INCOMPLETE_SQL))
        .order_by(Backfill.created_time.desc(), Backfill.id.desc())
        .limit(LIST_LIMIT)
    )


def incomplete_json_of_team(session: Session, team_id: int) -> bytes:
    """The team's incomplete backfills as a JSON array, newest first, at most ``LIST_LIMIT``."""
    statement = _incomplete_json_statement(session.get_bind().dialect.name)
    # A Core statement on the session's connection skips the ORM's per-execute bookkeeping.
    rows = session.connection().execute(statement, {"team_id": team_id}).scalars()
    return b"[" + b",".join(str(row).encode() for row in rows) + b"]"


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
