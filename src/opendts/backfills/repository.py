"""All SQL about backfills."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session

from opendts.backfills.models import Backfill
from opendts.backfills.status import ACTIVE, INCOMPLETE

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


def incomplete_of_team(session: Session, team_id: int) -> Sequence[Backfill]:
    """The team's incomplete backfills, newest first, at most ``LIST_LIMIT``."""
    return session.scalars(
        select(Backfill)
        .where(Backfill.team_id == team_id, Backfill.status.in_([s.value for s in INCOMPLETE]))
        .order_by(Backfill.created_time.desc(), Backfill.id.desc())
        .limit(LIST_LIMIT)
    ).all()


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
