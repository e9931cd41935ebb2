"""HTTP routes of the backfill API (paths and status codes exactly as in the contract)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response, StreamingResponse

from opendts.api.context import (
    BackfillId,
    Guarded,
    TeamId,
    TransferId,
    authorization_of,
    request_id,
    run_guarded,
    run_guarded_read,
    runtime,
)
from opendts.auth.permissions import Access
from opendts.auth.service import authenticate, authorize
from opendts.backfills import schemas, service
from opendts.kit.envelope import data_response, raw_data_response
from opendts.kit.errors import ApiError

router = APIRouter(tags=["Data Backfills"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": schemas.ErrorEnvelope} for status in (400, 401, 403, 404, 422, 429, 500)
}


def _json_body(model: type[Any]) -> dict[str, Any]:
    # Bodies are parsed by hand (for precise 400s), so describe them for the OpenAPI document.
    schema = {"application/json": {"schema": model.model_json_schema()}}
    return {"requestBody": {"required": True, "content": schema}}


@router.post(
    "/teams/{team_id}/transfers/{transfer_id}/backfills",
    summary="Create a backfill",
    operation_id="createBackfill",
    responses={200: {"model": schemas.BackfillEnvelope}, **_ERRORS},
    openapi_extra=_json_body(schemas.CreateBackfillRequest),
)
async def create_backfill(request: Request, team_id: TeamId, transfer_id: TransferId) -> Response:
    """Schedule a backfill of ``transfer_id`` over an inclusive date range (status CREATED)."""
    body = await request.body()
    rules = service.RangeRules(max_days=runtime(request).settings.max_backfill_days)

    def work(ctx: Guarded) -> dict[str, Any]:
        range_start, range_end = schemas.parse_create(body, request.headers.get("content-type"))
        backfill = service.create(
            ctx.session,
            team_id=team_id,
            transfer_id=transfer_id,
            user_id=ctx.principal.user_id,
            range_start=range_start,
            range_end=range_end,
            rules=rules,
        )
        return schemas.to_wire(backfill)

    def created() -> None:
        runtime(request).wake()

    data = await run_guarded(request, team_id, Access.WRITE, work, write=True)
    created()
    return data_response(request_id(request), data)


@router.get(
    "/teams/{team_id}/backfills",
    summary="List incomplete backfills for team",
    operation_id="listIncompleteBackfills",
    responses={200: {"model": schemas.BackfillListEnvelope}, **_ERRORS},
)
async def list_incomplete_backfills(request: Request, team_id: TeamId) -> Response:
    """The team's CREATED, SCHEDULED, RUNNING and FAILED backfills, newest first (≤ 100).

    An opendts extension: ``?status=all`` (or a comma list of statuses), ``transfer_id`` and
    ``limit`` (1 to 1,000) list any backfills; without parameters the contract's list is returned.
    """
    if any(name in request.query_params for name in service.LIST_PARAMETERS):
        params = dict(request.query_params)
        data = await run_guarded(
            request,
            team_id,
            Access.READ,
            lambda ctx: service.list_filtered(ctx.session, team_id, params),
        )
        return data_response(request_id(request), data)
    data_json = await run_guarded_read(
        request,
        team_id,
        Access.READ,
        lambda reader, _principal: service.list_incomplete_json(reader, team_id),
    )
    return raw_data_response(request_id(request), data_json)


@router.get(
    "/teams/{team_id}/backfills/{backfill_id}",
    summary="Get a backfill",
    operation_id="getBackfill",
    responses={200: {"model": schemas.BackfillEnvelope}, **_ERRORS},
)
async def get_backfill(request: Request, team_id: TeamId, backfill_id: BackfillId) -> Response:
    """One backfill of the team, whatever its status."""
    data = await run_guarded(
        request,
        team_id,
        Access.READ,
        lambda ctx: service.wire(ctx.session, service.get(ctx.session, team_id, backfill_id)),
    )
    return data_response(request_id(request), data)


@router.get(
    "/teams/{team_id}/transfers/{transfer_id}/backfills/latest",
    summary="Get the latest backfill of a transfer",
    operation_id="getLatestBackfill",
    responses={200: {"model": schemas.BackfillEnvelope}, **_ERRORS},
)
async def get_latest_backfill(
    request: Request, team_id: TeamId, transfer_id: TransferId
) -> Response:
    """The transfer's most recent backfill of any status; 404 if it never had one."""
    data = await run_guarded(
        request,
        team_id,
        Access.READ,
        lambda ctx: service.wire(ctx.session, service.latest(ctx.session, team_id, transfer_id)),
    )
    return data_response(request_id(request), data)


@router.patch(
    "/teams/{team_id}/backfills/{backfill_id}",
    summary="Cancel a backfill",
    operation_id="updateBackfillStatus",
    responses={200: {"model": schemas.BackfillEnvelope}, **_ERRORS},
    openapi_extra=_json_body(schemas.UpdateBackfillStatusBody),
)
async def update_backfill_status(
    request: Request, team_id: TeamId, backfill_id: BackfillId
) -> Response:
    """Cancel a backfill: body ``{"status": "CANCELLED"}``."""
    body = await request.body()

    def work(ctx: Guarded) -> dict[str, Any]:
        schemas.parse_status_update(body, request.headers.get("content-type"))
        backfill = service.cancel(
            ctx.session, team_id=team_id, backfill_id=backfill_id, user_id=ctx.principal.user_id
        )
        return service.wire(ctx.session, backfill)

    data = await run_guarded(request, team_id, Access.WRITE, work, write=True)
    return data_response(request_id(request), data)


#: Statuses after which a backfill's stream ends (FAILED can still be cancelled, but nothing
#: runs any more: a watcher is done).
ENDED = frozenset({"COMPLETED", "FAILED", "CANCELLED"})
EVENT_POLL_SECONDS = 0.25
KEEPALIVE_SECONDS = 15.0


def _sse(event: str, data: dict[str, Any], event_id: int) -> bytes:
    return f"id: {event_id}\nevent: {event}\ndata: ".encode() + orjson.dumps(data) + b"\n\n"


@router.get(
    "/teams/{team_id}/backfills/{backfill_id}/events",
    summary="Follow a backfill (server-sent events)",
    operation_id="streamBackfillEvents",
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "An event stream"},
        **{s: e for s, e in _ERRORS.items() if s != 400 and s != 422},
    },
)
async def backfill_events(request: Request, team_id: TeamId, backfill_id: BackfillId) -> Response:
    """``event: backfill`` with the backfill object whenever it changes (the first at once),
    then ``event: end`` with its final state once it is COMPLETED, FAILED or CANCELLED.

    Same access rules as reading the backfill; the key is checked again at every look, so a
    revoked key ends the stream. Comment lines keep idle connections open.
    """
    rt = runtime(request)
    authorization = authorization_of(request)
    first = await run_guarded(
        request,
        team_id,
        Access.READ,
        lambda ctx: service.wire(ctx.session, service.get(ctx.session, team_id, backfill_id)),
    )

    def look() -> dict[str, Any] | None:
        try:
            with rt.db.session() as session:
                principal = authenticate(session, authorization)
                authorize(principal, team_id, Access.READ)
                return service.wire(session, service.get(session, team_id, backfill_id))
        except ApiError:
            return None  # revoked key, lost membership: the stream ends

    async def stream() -> AsyncIterator[bytes]:
        data: dict[str, Any] | None = first
        last: dict[str, Any] | None = None
        event_id = 0
        quiet_since = time.monotonic()
        while data is not None:
            if data != last:
                event_id += 1
                yield _sse("backfill", data, event_id)
                last = data
                quiet_since = time.monotonic()
                if data["status"] in ENDED:
                    yield _sse("end", data, event_id + 1)
                    return
            elif time.monotonic() - quiet_since > KEEPALIVE_SECONDS:
                yield b": keep-alive\n\n"
                quiet_since = time.monotonic()
            if await request.is_disconnected():
                return
            await asyncio.sleep(EVENT_POLL_SECONDS)
            data = await run_in_threadpool(look)

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
