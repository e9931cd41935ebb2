"""Transfer use cases available before the transfers API lands (admin CLI)."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy.orm import Session

from opendts.backfills import repository as backfill_repository
from opendts.backfills import service as backfills
from opendts.engine.errors import TerminalRunError
from opendts.engine.kinds import get_kind
from opendts.kit.clock import utcnow
from opendts.kit.db import get_or_not_found
from opendts.kit.errors import InvalidParameter
from opendts.teams.service import get_team
from opendts.transfers.models import Transfer, TransferState

#: Runs of one transfer at a time, at most (the engine's global and team caps still apply).
MAX_PARALLEL_RUNS = 1000


def create(
    session: Session,
    team_id: int,
    display_name: str,
    *,
    created_user_id: int | None = None,
    max_parallel_runs: int = 1,
    kind: str = "noop",
    config: dict[str, Any] | None = None,
) -> Transfer:
    """A new active transfer in ``team_id``."""
    get_team(session, team_id)
    if not display_name.strip():
        raise InvalidParameter("A transfer needs a non-empty display name.")
    _check_parallel(max_parallel_runs)
    transfer = Transfer(
        team_id=team_id,
        display_name=display_name.strip(),
        state=TransferState.ACTIVE.value,
        max_parallel_runs=max_parallel_runs,
        created_user_id=created_user_id,
        kind=kind,
        config=_checked_config(kind, config or {}),
    )
    session.add(transfer)
    session.flush()
    return transfer


def _check_parallel(value: int) -> None:
    if not 1 <= value <= MAX_PARALLEL_RUNS:
        raise InvalidParameter(
            f"max_parallel_runs must be between 1 and {MAX_PARALLEL_RUNS}; got {value}."
        )


def _checked_config(kind_name: str, config: dict[str, Any]) -> str:
    """The config as stored JSON, after the run kind accepted it."""
    try:
        kind = get_kind(kind_name)
    except TerminalRunError as exc:
        raise InvalidParameter(str(exc), code="UNKNOWN_TRANSFER_KIND") from None
    try:
        kind.prepare(config)
    except ValueError as exc:
        raise InvalidParameter(
            f"Invalid {kind_name} config: {exc}", code="INVALID_TRANSFER_CONFIG"
        ) from None
    return json.dumps(config, sort_keys=True, default=str)


def update(
    session: Session,
    transfer_id: int,
    *,
    max_parallel_runs: int | None = None,
    kind: str | None = None,
    config: dict[str, Any] | None = None,
) -> Transfer:
    """Change how a transfer runs; runs already executing keep their old settings."""
    transfer = get(session, transfer_id)
    if max_parallel_runs is not None:
        _check_parallel(max_parallel_runs)
        transfer.max_parallel_runs = max_parallel_runs
    if kind is not None or config is not None:
        new_kind = kind or transfer.kind
        new_config = config if config is not None else json.loads(transfer.config)
        transfer.config = _checked_config(new_kind, new_config)
        transfer.kind = new_kind
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


def soft_delete(session: Session, transfer_id: int, *, user_id: int | None = None) -> Transfer:
    """Mark a transfer deleted and cancel its unfinished backfills; history stays readable."""
    transfer = get(session, transfer_id)
    if transfer.deleted_at is None:
        transfer.deleted_at = utcnow()
    session.flush()
    for backfill_id in backfill_repository.incomplete_ids_of_transfer(session, transfer_id):
        backfills.cancel(
            session,
            team_id=transfer.team_id,
            backfill_id=backfill_id,
            user_id=user_id or transfer.created_user_id or 0,
        )
    return transfer
