"""All SQL about backfills."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import Select, bindparam, select, text
from sqlalchemy.orm import Session

from opendts.backfills.models import INCOMPLETE_SQL, Backfill
from opendts.backfills.status import ACTIVE
from opendts.backfills.wire_sql import backfill_json
from opendts.kit.db import Reader
from opendts.kit.driver_sql import DriverQuery

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
    rows = _INCOMPLETE_JSON.rows(session, team_id=team_id)
    return b"[" + b",".join(row[0].encode() for row in rows) + b"]"


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
