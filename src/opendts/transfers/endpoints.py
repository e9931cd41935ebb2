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
from opendts.kit.openapi import link, operation
from opendts.kit.requests import json_object, required_choice
from opendts.kit.secrets import SecretBox, box_for
from opendts.transfers import api, catalogue, schemas

router = APIRouter(tags=["Data Transfers"])

EXAMPLE = (
    '{"data_source_id": "demo", "destination_id": 1, "display_name": "Ads", '
    '"schema_id": 1, "schedule": [{"run_interval": "daily", "run_hour": 3, '
    '"refresh_window": 3}], "accounts": [{"account_id": "acc-1"}]}'
)


_NOT_FOUND = {404: "TRANSFER_NOT_FOUND: no such transfer in this team (or it was deleted)."}
_INVALID = (
    "INVALID_PARAMETER: the body is not a JSON object, or a field does not fit: the description "
    "names every one (a destination_id that is not the team's, source settings its connector "
    "refuses, a wrong type or value)."
)
_TEAM = "$request.path.team_id"
_EXAMPLES = {
    "demo": {
        "data_source_id": "demo",
        "destination_id": 1,
        "display_name": "Ad metrics",
        "schedule": [{"run_interval": "daily", "run_hour": 3, "refresh_window": 3}],
        "accounts": [{"account_id": "acc-1"}],
        "source_config": {"rows_per_day": 100},
        "table": "ad_metrics",
    },
}


def _transfer_links(transfer_id: str) -> dict[str, dict[str, object]]:
    ids = {"team_id": _TEAM, "transfer_id": transfer_id}
    return {
        "getTransfer": link("getTransfer", "Read the transfer.", **ids),
        "updateTransfer": link("updateTransfer", "Replace its configuration.", **ids),
        "setTransferState": link("setTransferState", "Pause or unpause it.", **ids),
        "validateTransferUpdate": link("validateTransferUpdate", "Check a change.", **ids),
        "getLatestBackfill": link("getLatestBackfill", "Its latest backfill.", **ids),
        "deleteTransfer": link("deleteTransfer", "Delete it.", **ids),
    }


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


@router.get(
    "/teams/{team_id}/transfers",
    **operation("listTransfers", "List transfers", returns=schemas.TransferInfoListEnvelope),
)
async def list_transfers(request: Request, team_id: TeamId) -> Response:
    """The team's transfers (TransferInfoResponse items), oldest first."""
    data = await run_guarded(
        request, team_id, Access.READ, lambda ctx: api.info_list(ctx.session, team_id)
    )
    return data_response(request_id(request), data)


@router.post(
    "/teams/{team_id}/transfers",
    **operation(
        "createTransfer",
        "Create a transfer",
        returns=schemas.TransferCreatedEnvelope,
        status=201,
        description="The new transfer's id and name.",
        body=schemas.TransferConfigurationRequest,
        examples=_EXAMPLES,
        errors={400: _INVALID},
        links=_transfer_links("$response.body#/data/transfer_id"),
    ),
)
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


@router.post(
    "/teams/{team_id}/transfers/validations",
    **operation(
        "validateTransfer",
        "Validate a new transfer",
        returns=schemas.ValidationErrorsResponse,
        description="Every problem of the configuration (a plain object, not enveloped).",
        body=schemas.TransferConfigurationCandidate,
        examples=_EXAMPLES,
    ),
)
async def validate_transfer(request: Request, team_id: TeamId) -> Response:
    """``{is_valid, errors: [{field_id, error_code, message}]}`` (200 even when invalid)."""
    body = await _body(request)
    box = _box(request)
    # Validating checks what only an editor may configure (destinations, connections): the
    # same scope and permission as creating it (docs/api.md).
    data = await run_guarded(
        request,
        team_id,
        Access.WRITE,
        lambda ctx: api.validation(ctx.session, box, _boundary(request, team_id), body()),
    )
    return json_response(data)


@router.get(
    "/teams/{team_id}/transfers/available-sources",
    **operation(
        "listAvailableSources",
        "Installed sources",
        returns=schemas.AvailableSourcesResponse,
        description="Every source connector of this server (a plain object, not enveloped).",
    ),
)
async def available_sources(request: Request, team_id: TeamId) -> Response:
    """AvailableSourcesResponse: installed sources, the team's destinations, destination types."""
    data = await run_guarded(
        request,
        team_id,
        Access.READ,
        lambda ctx: catalogue.available_sources(ctx.session, team_id),
    )
    return json_response(data)


@router.get(
    "/teams/{team_id}/transfers/available-options",
    **operation(
        "getAvailableOptions",
        "Options of a source",
        returns=schemas.TransferOptionsResponse,
        description="The source's settings and the choices a transfer has (a plain object).",
        query=schemas.AvailableOptionsQuery,
    ),
)
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


@router.get(
    "/teams/{team_id}/transfers/{transfer_id}",
    **operation(
        "getTransfer",
        "Get a transfer",
        returns=schemas.TransferConfigurationResponse,
        description="The configuration (a plain object, not enveloped).",
        errors=_NOT_FOUND,
    ),
)
async def get_transfer(request: Request, team_id: TeamId, transfer_id: TransferId) -> Response:
    """TransferConfigurationResponse (plain object; credentials never included)."""
    data = await run_guarded(
        request,
        team_id,
        Access.READ,
        lambda ctx: api.configuration(ctx.session, api.get_live(ctx.session, team_id, transfer_id)),
    )
    return json_response(data)


@router.put(
    "/teams/{team_id}/transfers/{transfer_id}",
    **operation(
        "updateTransfer",
        "Update a transfer",
        returns=schemas.TransferCreated,
        description="The transfer's id and name (a plain object, not enveloped).",
        body=schemas.TransferConfigurationRequest,
        examples=_EXAMPLES,
        errors={**_NOT_FOUND, 400: _INVALID},
        links={"getTransfer": _transfer_links("$request.path.transfer_id")["getTransfer"]},
    ),
)
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
    "/teams/{team_id}/transfers/{transfer_id}",
    **operation(
        "deleteTransfer",
        "Delete a transfer",
        returns=None,
        status=204,
        description="Deleted (no body).",
        errors=_NOT_FOUND,
    ),
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


@router.put(
    "/teams/{team_id}/transfers/{transfer_id}/state",
    **operation(
        "setTransferState",
        "Pause or unpause",
        returns=schemas.TransferStateResponse,
        description="The new state (a plain object, not enveloped).",
        body=schemas.TransferStateRequest,
        examples={"pause": {"transfer_state": "pause"}, "unpause": {"transfer_state": "unpause"}},
        errors=_NOT_FOUND,
        links={"getTransfer": _transfer_links("$request.path.transfer_id")["getTransfer"]},
    ),
)
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


@router.post(
    "/teams/{team_id}/transfers/{transfer_id}/validations",
    **operation(
        "validateTransferUpdate",
        "Validate an update",
        returns=schemas.ValidationErrorsResponse,
        description="Every problem of the change (a plain object, not enveloped).",
        body=schemas.TransferConfigurationCandidate,
        examples=_EXAMPLES,
        errors=_NOT_FOUND,
    ),
)
async def validate_update(request: Request, team_id: TeamId, transfer_id: TransferId) -> Response:
    """Like ``validations``, for a change to an existing transfer (404 if it does not exist)."""
    body = await _body(request)
    box = _box(request)

    def work(ctx: Guarded) -> dict[str, Any]:
        existing = api.get_live(ctx.session, team_id, transfer_id)
        return api.validation(ctx.session, box, _boundary(request, team_id), body(), existing)

    data = await run_guarded(request, team_id, Access.WRITE, work)
    return json_response(data)
