"""Transfer run use cases of the API."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from opendts.kit.errors import NotFound
from opendts.runs import repository, schemas
from opendts.transfers import repository as transfers


def list_runs(
    session: Session, team_id: int, transfer_id: int, query: schemas.RunsQuery
) -> list[dict[str, Any]]:
    """A page of the transfer's runs, as TransferRunItems."""
    if transfers.get_in_team(session, team_id, transfer_id) is None:
        raise NotFound(
            f"Transfer {transfer_id} does not exist in this team. Check the transfer id.",
            code="TRANSFER_NOT_FOUND",
            message="Transfer not found",
        )
    found = repository.list_of_transfer(
        session,
        transfer_id=transfer_id,
        first=query.first,
        last=query.last,
        issues_only=query.issues_only,
        sort_field=query.sort_field,
        descending=query.descending,
        limit=query.limit,
        offset=query.offset,
    )
    return [schemas.item_to_wire(run) for run in found]


def get_run(session: Session, team_id: int, run_id: int) -> dict[str, Any]:
    """One run of the team as a TransferRunDetail, or 404."""
    run = repository.get_in_team(session, team_id, run_id)
    if run is None:
        raise NotFound(
            f"Transfer run {run_id} does not exist in this team. "
            "List the transfer's runs and check the id.",
            code="TRANSFER_RUN_NOT_FOUND",
            message="Transfer run not found",
        )
    return schemas.detail_to_wire(run)
