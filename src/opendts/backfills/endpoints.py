"""HTTP routes of the backfill API (paths and status codes exactly as in the contract)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from opendts.api.context import BackfillId, TeamId, TransferId, guarded, request_id, runtime
from opendts.auth.permissions import Access
from opendts.backfills import schemas, service
from opendts.kit.envelope import data_response

router = APIRouter(tags=["Data Backfills"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": schemas.ErrorEnvelope} for status in (400, 401, 403, 404, 422, 429, 500)
}


async def raw_body(request: Request) -> bytes:
    """The request body, read on the event loop so the endpoint itself can stay sync."""
    return await request.body()


RawBody = Annotated[bytes, Depends(raw_body)]


@router.post(
    "/teams/{team_id}/transfers/{transfer_id}/backfills",
    summary="Create a backfill",
    operation_id="createBackfill",
    responses={200: {"model": schemas.BackfillEnvelope}, **_ERRORS},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": schemas.CreateBackfillRequest.model_json_schema()}
            },
        }
    },
)
def create_backfill(
    request: Request, team_id: TeamId, transfer_id: TransferId, body: RawBody
) -> Response:
    """Schedule a backfill of ``transfer_id`` over an inclusive date range (status CREATED)."""
    with guarded(request, team_id, Access.WRITE, write=True) as ctx:
        range_start, range_end = schemas.parse_create(body, request.headers.get("content-type"))
        backfill = service.create(
            ctx.session,
            team_id=team_id,
            transfer_id=transfer_id,
            user_id=ctx.principal.user_id,
            range_start=range_start,
            range_end=range_end,
            rules=service.RangeRules(max_days=runtime(request).settings.max_backfill_days),
        )
        data = schemas.to_wire(backfill)
    return data_response(request_id(request), data)


@router.get(
    "/teams/{team_id}/backfills",
    summary="List incomplete backfills for team",
    operation_id="listIncompleteBackfills",
    responses={200: {"model": schemas.BackfillListEnvelope}, **_ERRORS},
)
def list_incomplete_backfills(request: Request, team_id: TeamId) -> Response:
    """The team's CREATED, SCHEDULED, RUNNING and FAILED backfills, newest first (≤ 100)."""
    with guarded(request, team_id, Access.READ) as ctx:
        data = [schemas.to_wire(b) for b in service.list_incomplete(ctx.session, team_id)]
    return data_response(request_id(request), data)


@router.get(
    "/teams/{team_id}/backfills/{backfill_id}",
    summary="Get a backfill",
    operation_id="getBackfill",
    responses={200: {"model": schemas.BackfillEnvelope}, **_ERRORS},
)
def get_backfill(request: Request, team_id: TeamId, backfill_id: BackfillId) -> Response:
    """One backfill of the team, whatever its status."""
    with guarded(request, team_id, Access.READ) as ctx:
        data = schemas.to_wire(service.get(ctx.session, team_id, backfill_id))
    return data_response(request_id(request), data)


@router.get(
    "/teams/{team_id}/transfers/{transfer_id}/backfills/latest",
    summary="Get the latest backfill of a transfer",
    operation_id="getLatestBackfill",
    responses={200: {"model": schemas.BackfillEnvelope}, **_ERRORS},
)
def get_latest_backfill(request: Request, team_id: TeamId, transfer_id: TransferId) -> Response:
    """The transfer's most recent backfill of any status; 404 if it never had one."""
    with guarded(request, team_id, Access.READ) as ctx:
        data = schemas.to_wire(service.latest(ctx.session, team_id, transfer_id))
    return data_response(request_id(request), data)


@router.patch(
    "/teams/{team_id}/backfills/{backfill_id}",
    summary="Cancel a backfill",
    operation_id="updateBackfillStatus",
    responses={200: {"model": schemas.BackfillEnvelope}, **_ERRORS},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": schemas.UpdateBackfillStatusBody.model_json_schema()}
            },
        }
    },
)
def update_backfill_status(
    request: Request, team_id: TeamId, backfill_id: BackfillId, body: RawBody
) -> Response:
    """Cancel a backfill: body ``{"status": "CANCELLED"}``."""
    with guarded(request, team_id, Access.WRITE, write=True) as ctx:
        schemas.parse_status_update(body, request.headers.get("content-type"))
        backfill = service.cancel(
            ctx.session, team_id=team_id, backfill_id=backfill_id, user_id=ctx.principal.user_id
        )
        data = schemas.to_wire(backfill)
    return data_response(request_id(request), data)
