"""Transfer use cases available before the transfers API lands (admin CLI)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from opendts.kit.clock import utcnow
from opendts.kit.db import get_or_not_found
from opendts.kit.errors import InvalidParameter
from opendts.teams.service import get_team
from opendts.transfers.models import Transfer, TransferState


def create(
    session: Session,
    team_id: int,
    display_name: str,
    *,
    created_user_id: int | None = None,
    max_parallel_runs: int = 1,
) -> Transfer:
    """A new active transfer in ``team_id``."""
    get_team(session, team_id)
    if not display_name.strip():
        raise InvalidParameter("A transfer needs a non-empty display name.")
    if max_parallel_runs < 1:
        raise InvalidParameter("max_parallel_runs must be at least 1.")
    transfer = Transfer(
        team_id=team_id,
        display_name=display_name.strip(),
        state=TransferState.ACTIVE.value,
        max_parallel_runs=max_parallel_runs,
        created_user_id=created_user_id,
    )
    session.add(transfer)
    session.flush()
    return transfer


def get(session: Session, transfer_id: int) -> Transfer:
    """A transfer by id, or NotFound."""
    return get_or_not_found(session, Transfer, transfer_id, "Transfer")


def set_state(session: Session, transfer_id: int, state: TransferState) -> Transfer:
    """Pause or unpause a transfer."""
    transfer = get(session, transfer_id)
    transfer.state = state.value
    session.flush()
    return transfer


def soft_delete(session: Session, transfer_id: int) -> Transfer:
    """Mark a transfer deleted; its history stays readable."""
    transfer = get(session, transfer_id)
    if transfer.deleted_at is None:
        transfer.deleted_at = utcnow()
    session.flush()
    return transfer
