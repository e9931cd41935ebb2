"""All SQL about transfers."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import bindparam, select
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


# Creating a backfill needs two columns, not the entity: a prebuilt Core statement.
_STATE_FOR_UPDATE = (
    select(Transfer.state, Transfer.deleted_at)
    .where(Transfer.id == bindparam("transfer_id"), Transfer.team_id == bindparam("team_id"))
    .with_for_update()
)


def lock_state(
    session: Session, team_id: int, transfer_id: int
) -> tuple[str, datetime | None] | None:
    """The team's transfer's (state, deleted_at), row-locked until commit; None if unknown."""
    row = session.execute(
        _STATE_FOR_UPDATE, {"transfer_id": transfer_id, "team_id": team_id}
    ).first()
    return (row[0], row[1]) if row is not None else None
