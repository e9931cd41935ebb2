"""HTTP routes of the transfers API (shapes and status codes as the official client expects).

As in the contract, ``get``, ``update``, ``state`` and the validation and catalogue endpoints
answer plain JSON objects; ``list`` and ``create`` answer the ``{meta, data}`` envelope.
Errors always use the error envelope.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from opendts.api.context import Guarded, TeamId, TransferId, request_id, run_guarded, runtime
from opendts.auth.permissions import Access
from opendts.connectors.boundary import Boundary
from opendts.kit.envelope import data_response, json_response
from opendts.kit.requests import json_object, required_choice
from opendts.kit.secrets import SecretBox, box_for
from opendts.transfers import api, catalogue

router = APIRouter(tags=["Data Transfers"])

EXAMPLE = (
    '{"data_source_id": "demo", "destination_id": 1, "display_name": "Ads", '
    '"schema_id": 1, "schedule": [{"run_interval": "daily", "run_hour": 3, '
    '"refresh_window": 3}], "accounts": [{"account_id": "acc-1"}]}'
)


def _boundary(request: Request, team_id: int) -> Boundary:
    return Boundary.for_team(runtime(request).settings, team_id)


def _box(request: Request) -> SecretBox:
    settings = runtime(request).settings
    return box_for(settings.data_dir, settings.secret_key)


async def _body(request: Request, example: str = EXAMPLE) -> Any:
    """The body, read now and parsed after authentication (a 401 comes before a 400)."""
    raw = await request.body()
    content_type = request.headers.get("content-type")
    return lambda: json_object(raw, content_type, example)


@router.get("/teams/{team_id}/transfers", summary="List transfers")
async def list_transfers(request: Request, team_id: TeamId) -> Response:
    """The team's transfers (TransferInfoResponse items), oldest first."""
    data = await run_guarded(
        request, team_id, Access.READ, lambda ctx: api.info_list(ctx.session, team_id)
    )
    return data_response(request_id(request), data)


@router.post("/teams/{team_id}/transfers", summary="Create a transfer", status_code=201)
async def create_transfer(request: Request, team_id: TeamId) -> Response:
    """201 with ``{transfer_id, transfer_name}``; 400 naming every bad field."""
    body = await _body(request)
    box = _box(request)

    def work(ctx: Guarded) -> dict[str, Any]:
        transfer = api.create(
            ctx.session, box, _boundary(request, team_id), ctx.principal.user_id, body()
        )
        return {"transfer_id": transfer.id, "transfer_name": transfer.display_name}

    data = await run_guarded(request, team_id, Access.WRITE, work, write=True)
    runtime(request).wake()
    return data_response(request_id(request), data, status_code=201)


@router.post("/teams/{team_id}/transfers/validations", summary="Validate a new transfer")
async def validate_transfer(request: Request, team_id: TeamId) -> Response:
    """``{is_valid, errors: [{field_id, error_code, message}]}`` (200 even when invalid)."""
    body = await _body(request)
    box = _box(request)
    data = await run_guarded(
        request,
        team_id,
        Access.READ,
        lambda ctx: api.validation(ctx.session, box, _boundary(request, team_id), body()),
    )
    return json_response(data)


@router.get("/teams/{team_id}/transfers/available-sources", summary="Installed sources")
async def available_sources(request: Request, team_id: TeamId) -> Response:
    """AvailableSourcesResponse: installed sources, the team's destinations, destination types."""
    data = await run_guarded(
        request,
        team_id,
        Access.READ,
        lambda ctx: catalogue.available_sources(ctx.session, team_id),
    )
    return json_response(data)


@router.get("/teams/{team_id}/transfers/available-options", summary="Options of a source")
async def available_options(request: Request, team_id: TeamId) -> Response:
    """TransferOptionsResponse for ``source_id`` (into ``destination_id``, if given)."""
    query = request.query_params
    settings = runtime(request).settings
    data = await run_guarded(
        request,
        team_id,
        Access.READ,
        lambda ctx: catalogue.available_options(
            ctx.session, settings, team_id, query.get("source_id"), query.get("destination_id")
        ),
    )
    return json_response(data)


@router.get("/teams/{team_id}/transfers/{transfer_id}", summary="Get a transfer")
async def get_transfer(request: Request, team_id: TeamId, transfer_id: TransferId) -> Response:
    """TransferConfigurationResponse (plain object; credentials never included)."""
    data = await run_guarded(
        request,
        team_id,
        Access.READ,
        lambda ctx: api.configuration(ctx.session, api.get_live(ctx.session, team_id, transfer_id)),
    )
    return json_response(data)


@router.put("/teams/{team_id}/transfers/{transfer_id}", summary="Update a transfer")
async def update_transfer(request: Request, team_id: TeamId, transfer_id: TransferId) -> Response:
    """Full replacement; ``{transfer_id, transfer_name}`` (plain object)."""
    body = await _body(request)
    box = _box(request)

    def work(ctx: Guarded) -> dict[str, Any]:
        transfer = api.update(ctx.session, box, _boundary(request, team_id), transfer_id, body())
        return {"transfer_id": transfer.id, "transfer_name": transfer.display_name}

    data = await run_guarded(request, team_id, Access.WRITE, work, write=True)
    runtime(request).wake()
    return json_response(data)


@router.delete(
    "/teams/{team_id}/transfers/{transfer_id}", summary="Delete a transfer", status_code=204
)
async def delete_transfer(request: Request, team_id: TeamId, transfer_id: TransferId) -> Response:
    """Soft delete (204): runs and backfills stay readable; incomplete backfills are cancelled."""
    await run_guarded(
        request,
        team_id,
        Access.WRITE,
        lambda ctx: api.delete(ctx.session, team_id, transfer_id, ctx.principal.user_id),
        write=True,
    )
    return Response(status_code=204)


@router.put("/teams/{team_id}/transfers/{transfer_id}/state", summary="Pause or unpause")
async def set_transfer_state(
    request: Request, team_id: TeamId, transfer_id: TransferId
) -> Response:
    """``{"transfer_state": "pause" | "unpause"}`` → ``{result, state}`` (plain object)."""
    body = await _body(request, '{"transfer_state": "pause"}')

    def work(ctx: Guarded) -> dict[str, Any]:
        action = required_choice(body(), "transfer_state", ("pause", "unpause"))
        return api.set_state(ctx.session, team_id, transfer_id, action)

    data = await run_guarded(request, team_id, Access.WRITE, work, write=True)
    runtime(request).wake()
    return json_response(data)


@router.post("/teams/{team_id}/transfers/{transfer_id}/validations", summary="Validate an update")
async def validate_update(request: Request, team_id: TeamId, transfer_id: TransferId) -> Response:
    """Like ``validations``, for a change to an existing transfer (404 if it does not exist)."""
    body = await _body(request)
    box = _box(request)

    def work(ctx: Guarded) -> dict[str, Any]:
        existing = api.get_live(ctx.session, team_id, transfer_id)
        return api.validation(ctx.session, box, _boundary(request, team_id), body(), existing)

    data = await run_guarded(request, team_id, Access.READ, work)
    return json_response(data)
