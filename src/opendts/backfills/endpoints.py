"""HTTP routes of the backfill API (paths and status codes exactly as in the contract)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from opendts.api.context import (
    BackfillId,
    Guarded,
    TeamId,
    TransferId,
    authenticate_credentials,
    credentials_of,
    request_id,
    run_guarded,
    run_guarded_read,
    runtime,
)
from opendts.auth.permissions import Access
from opendts.auth.service import authorize
from opendts.backfills import schemas, service
from opendts.kit.envelope import data_response, raw_data_response
from opendts.kit.errors import ApiError, TooManyRequests
from opendts.kit.openapi import EventStream, link, operation

router = APIRouter(tags=["Data Backfills"])

_TRANSFER_NOT_FOUND = "TRANSFER_NOT_FOUND: no such transfer in this team."
_BACKFILL_NOT_FOUND = "BACKFILL_NOT_FOUND: no such backfill in this team."
_BACKFILL_ID = "$response.body#/data/transfer_backfill_id"
_BACKFILL_LINKS = {
    "getBackfill": link(
        "getBackfill",
        "Read the backfill.",
        team_id="$request.path.team_id",
        backfill_id=_BACKFILL_ID,
    ),
    "cancelBackfill": link(
        "updateBackfillStatus",
        "Cancel the backfill.",
        team_id="$request.path.team_id",
        backfill_id=_BACKFILL_ID,
    ),
}


@router.post(
    "/teams/{team_id}/transfers/{transfer_id}/backfills",
    **operation(
        "createBackfill",
        "Create a backfill",
        returns=schemas.BackfillEnvelope,
        description="The new backfill, status CREATED.",
        body=schemas.CreateBackfillRequest,
        examples={"january": {"range_start": "2024-01-01", "range_end": "2024-01-31"}},
        errors={
            404: _TRANSFER_NOT_FOUND,
            422: "INVALID_DATE_RANGE, RANGE_END_IN_FUTURE, RANGE_TOO_LONG, BACKFILL_OVERLAP, "
            "TRANSFER_PAUSED or TRANSFER_DELETED: the range or the transfer breaks a rule.",
        },
        links={
            **_BACKFILL_LINKS,
            "getLatestBackfill": link(
                "getLatestBackfill",
                "The transfer's latest backfill.",
                team_id="$request.path.team_id",
                transfer_id="$request.path.transfer_id",
            ),
        },
    ),
)
async def create_backfill(request: Request, team_id: TeamId, transfer_id: TransferId) -> Response:
    """Schedule a backfill of ``transfer_id`` over an inclusive date range (status CREATED)."""
    body = await request.body()
    settings = runtime(request).settings
    rules = service.RangeRules(
        max_days=settings.max_backfill_days, max_queued_runs=settings.max_queued_runs_per_team
    )

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
    **operation(
        "listIncompleteBackfills",
        "List incomplete backfills for team",
        returns=schemas.BackfillListEnvelope,
        description="Newest first: the contract's incomplete ones, or what the query asks for.",
        query=schemas.ListBackfillsQuery,
    ),
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
    **operation(
        "getBackfill",
        "Get a backfill",
        returns=schemas.BackfillEnvelope,
        errors={404: _BACKFILL_NOT_FOUND},
    ),
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
    **operation(
        "getLatestBackfill",
        "Get the latest backfill of a transfer",
        returns=schemas.BackfillEnvelope,
        errors={
            404: f"{_TRANSFER_NOT_FOUND} BACKFILL_NOT_FOUND: the transfer never had a backfill."
        },
    ),
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
    **operation(
        "updateBackfillStatus",
        "Cancel a backfill",
        returns=schemas.BackfillEnvelope,
        description="The backfill, CANCELLED, with removed_time, removed_user_id and end_time.",
        body=schemas.UpdateBackfillStatusBody,
        examples={
            "cancel": {"status": "CANCELLED"},
            "cancelNow": {"status": "CANCELLED", "mode": "now"},
        },
        errors={
            404: _BACKFILL_NOT_FOUND,
            422: "BACKFILL_NOT_CANCELLABLE: the backfill is already COMPLETED or CANCELLED.",
        },
        links={
            "getBackfill": link(
                "getBackfill",
                "Read the cancelled backfill.",
                team_id="$request.path.team_id",
                backfill_id="$request.path.backfill_id",
            )
        },
    ),
)
async def update_backfill_status(
    request: Request, team_id: TeamId, backfill_id: BackfillId
) -> Response:
    """Cancel a backfill: body ``{"status": "CANCELLED"}``, plus ``"mode": "now"`` (an
    extension) to stop its running runs too."""
    body = await request.body()
    modes: list[str] = []

    def work(ctx: Guarded) -> dict[str, Any]:
        _, mode = schemas.parse_status_update(body, request.headers.get("content-type"))
        backfill = service.cancel(
            ctx.session,
            team_id=team_id,
            backfill_id=backfill_id,
            user_id=ctx.principal.user_id,
            mode=mode,
        )
        modes.append(mode)
        return service.wire(ctx.session, backfill)

    data = await run_guarded(request, team_id, Access.WRITE, work, write=True)
    if "now" in modes:
        runtime(request).stop_runs()  # committed: this process's engine stops them now
    return data_response(request_id(request), data)


#: Statuses after which a backfill's stream ends (FAILED can still be cancelled, but nothing
#: runs any more: a watcher is done).
ENDED = frozenset({"COMPLETED", "FAILED", "CANCELLED"})
EVENT_POLL_SECONDS = 0.25
KEEPALIVE_SECONDS = 15.0
#: What a key refused a stream is told to wait (streams end when their backfill does).
STREAM_RETRY_SECONDS = 10


def _sse(event: str, data: dict[str, Any], event_id: int) -> bytes:
    return f"id: {event_id}\nevent: {event}\ndata: ".encode() + orjson.dumps(data) + b"\n\n"


@router.get(
    "/teams/{team_id}/backfills/{backfill_id}/events",
    **operation(
        "streamBackfillEvents",
        "Follow a backfill (server-sent events)",
        returns=EventStream(("backfill", "end"), schemas.BackfillOut),
        description="`event: backfill` with the backfill object (as getBackfill returns it) "
        "at once and whenever it changes, then `event: end` once it is COMPLETED, FAILED or "
        "CANCELLED; `: keep-alive` comments every 15 s while idle.",
        errors={404: _BACKFILL_NOT_FOUND},
    ),
)
async def backfill_events(request: Request, team_id: TeamId, backfill_id: BackfillId) -> Response:
    """``event: backfill`` with the backfill object whenever it changes (the first at once),
    then ``event: end`` with its final state once it is COMPLETED, FAILED or CANCELLED.

    Same access rules as reading the backfill; the key is checked again at every look, so a
    revoked key ends the stream. Comment lines keep idle connections open. One key holds at
    most ``OPENDTS_MAX_EVENT_STREAMS_PER_KEY`` streams in this process (429 past it).
    """
    rt = runtime(request)
    credentials = credentials_of(request)
    key, first = await run_guarded(
        request,
        team_id,
        Access.READ,
        lambda ctx: (
            ctx.principal.key_lookup_id,
            service.wire(ctx.session, service.get(ctx.session, team_id, backfill_id)),
        ),
    )
    release = rt.streams.acquire(key)
    if release is None:
        raise TooManyRequests(
            f"This API key already has {rt.streams.per_key} live-event streams open (the limit). "
            f"Close one, or poll GET /v1/teams/{team_id}/backfills/{backfill_id} instead.",
            code="TOO_MANY_STREAMS",
            message="Too many open streams",
            headers={"Retry-After": str(STREAM_RETRY_SECONDS)},
        )

    def look() -> dict[str, Any] | None:
        try:
            with rt.db.session() as session:
                principal = authenticate_credentials(rt, session, credentials)
                authorize(principal, team_id, Access.READ)
                return service.wire(session, service.get(session, team_id, backfill_id))
        except ApiError:
            return None  # revoked key, ended session, lost membership: the stream ends

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

    return _HeldStream(
        stream(),
        release,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


class _HeldStream(StreamingResponse):
    """A stream that frees its key's place when it ends, however it ends: the backfill
    finished, the key was revoked, or the client went away (Starlette cancels the response)."""

    def __init__(self, content: AsyncIterator[bytes], release: Callable[[], None], **kw: Any):
        super().__init__(content, **kw)
        self._release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._release()
