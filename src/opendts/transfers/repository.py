"""All SQL about transfers."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from opendts.transfers.models import Transfer


def get_in_team(
    session: Session, team_id: int, transfer_id: int, *, lock: bool = False
) -> Transfer | None:
    """The team's transfer (deleted ones included), optionally row-locked until commit."""
    query = select(Transfer).where(Transfer.id == transfer_id, Transfer.team_id == team_id)
    if lock:
        query = query.with_for_update()
    return session.scalars(query).first()
