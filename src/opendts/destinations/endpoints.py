"""HTTP routes of the destinations API (paths and status codes as the official client expects)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from opendts.api.context import Guarded, TeamId, path_id, request_id, run_guarded, runtime
from opendts.auth.permissions import Access
from opendts.connectors.boundary import Boundary
from opendts.destinations import schemas, service
from opendts.kit.envelope import data_response
from opendts.kit.openapi import link, operation
from opendts.kit.requests import json_object, optional_int
from opendts.kit.secrets import SecretBox, box_for

router = APIRouter(tags=["Destinations"])

DestinationId = Annotated[int, *path_id("destination")]

EXAMPLE = '{"type": "duckdb", "display_name": "Warehouse", "fields": {"path": "warehouse.duckdb"}}'


_NOT_FOUND = {404: "DESTINATION_NOT_FOUND: no such destination in this team (or it was deleted)."}
_INVALID = (
    "INVALID_PARAMETER: the body is not a JSON object, or a field does not fit: the description "
    "names it (fields.<name> for a setting the connector refuses)."
)
_EXAMPLES = {
    "duckdb": {
        "type": "duckdb",
        "display_name": "Warehouse",
        "fields": {"path": "warehouse.duckdb"},
    }
}


def _destination_links(destination_id: str) -> dict[str, dict[str, object]]:
    ids = {"team_id": "$request.path.team_id", "destination_id": destination_id}
    return {
        "getDestination": link("getDestination", "Read the destination.", **ids),
        "updateDestination": link("updateDestination", "Replace its settings.", **ids),
        "getDestinationUsage": link("getDestinationUsage", "Which transfers use it.", **ids),
        "deleteDestination": link("deleteDestination", "Delete it.", **ids),
    }


def _boundary(request: Request, team_id: int) -> Boundary:
    return Boundary.for_team(runtime(request).settings, team_id)


def _box(request: Request) -> SecretBox:
    settings = runtime(request).settings
    return box_for(settings.data_dir, settings.secret_key)


async def _body(request: Request) -> Any:
    """The body, read now and parsed later (after authentication: a 401 comes before a 400)."""
    raw = await request.body()
    content_type = request.headers.get("content-type")
    return lambda: json_object(raw, content_type, EXAMPLE)


@router.get(
    "/teams/{team_id}/destinations",
    **operation("listDestinations", "List destinations", returns=schemas.DestinationListEnvelope),
)
async def list_destinations(request: Request, team_id: TeamId) -> Response:
    """The team's destinations (id, display name, type), oldest first."""
    data = await run_guarded(
        request,
        team_id,
        Access.READ,
        lambda ctx: [service.list_item(d) for d in service.list_of_team(ctx.session, team_id)],
    )
    return data_response(request_id(request), data)


@router.post(
    "/teams/{team_id}/destinations",
    **operation(
        "createDestination",
        "Create a destination",
        returns=schemas.DestinationInfoEnvelope,
        status=201,
        description="The new destination (credentials never included).",
        body=schemas.DestinationRequest,
        examples=_EXAMPLES,
        errors={400: _INVALID},
        links=_destination_links("$response.body#/data/id"),
    ),
)
async def create_destination(request: Request, team_id: TeamId) -> Response:
    """A new destination; settings validated by its connector; credentials stored encrypted."""
    body = await _body(request)
    box = _box(request)

    def work(ctx: Guarded) -> dict[str, Any]:
        payload = body()
        spec = service.parse_input(payload)
        row = service.create(
            ctx.session, box, _boundary(request, team_id), ctx.principal.user_id, spec
        )
        return service.to_wire(row, box)

    data = await run_guarded(request, team_id, Access.WRITE, work, write=True)
    return data_response(request_id(request), data, status_code=201)


@router.post(
    "/teams/{team_id}/destinations/test-connection",
    **operation(
        "testDestinationConnection",
        "Test a connection",
        returns=schemas.TestConnectionEnvelope,
        description="Whether the destination answered, and why not.",
        body=schemas.TestConnectionRequest,
        examples=_EXAMPLES,
        errors={**_NOT_FOUND, 400: _INVALID},
    ),
)
async def test_connection(request: Request, team_id: TeamId) -> Response:
    """Try the settings (merged with a saved destination's credentials if ``destination_id``)."""
    body = await _body(request)
    box = _box(request)

    def work(ctx: Guarded) -> dict[str, Any]:
        payload = body()
        spec = service.parse_input(payload, display_name_required=False)
        destination_id = optional_int(payload, "destination_id", minimum=1)
        return service.test_connection(
            ctx.session, box, _boundary(request, team_id), spec, destination_id
        )

    data = await run_guarded(request, team_id, Access.WRITE, work, write=True)
    return data_response(request_id(request), data)


@router.get(
    "/teams/{team_id}/destinations/{destination_id}",
    **operation(
        "getDestination",
        "Get a destination",
        returns=schemas.DestinationInfoEnvelope,
        errors=_NOT_FOUND,
    ),
)
async def get_destination(
    request: Request, team_id: TeamId, destination_id: DestinationId
) -> Response:
    """DestinationInfo: the type's description and the current settings (no credentials)."""
    box = _box(request)
    data = await run_guarded(
        request,
        team_id,
        Access.READ,
        lambda ctx: service.to_wire(service.get(ctx.session, team_id, destination_id), box),
    )
    return data_response(request_id(request), data)


@router.put(
    "/teams/{team_id}/destinations/{destination_id}",
    **operation(
        "updateDestination",
        "Update a destination",
        returns=schemas.DestinationInfoEnvelope,
        body=schemas.DestinationRequest,
        examples=_EXAMPLES,
        errors={**_NOT_FOUND, 400: _INVALID},
        links={
            "getDestination": _destination_links("$request.path.destination_id")["getDestination"]
        },
    ),
)
async def update_destination(
    request: Request, team_id: TeamId, destination_id: DestinationId
) -> Response:
    """Full replacement; credentials left out are kept, ``new_password`` replaces the password."""
    body = await _body(request)
    box = _box(request)

    def work(ctx: Guarded) -> dict[str, Any]:
        payload = body()
        spec = service.parse_input(payload)
        row = service.update(ctx.session, box, _boundary(request, team_id), destination_id, spec)
        return service.to_wire(row, box)

    data = await run_guarded(request, team_id, Access.WRITE, work, write=True)
    return data_response(request_id(request), data)


@router.delete(
    "/teams/{team_id}/destinations/{destination_id}",
    **operation(
        "deleteDestination",
        "Delete a destination",
        returns=None,
        status=204,
        description="Deleted (no body).",
        errors={
            **_NOT_FOUND,
            409: "DESTINATION_IN_USE: transfers still load into it; the description names them.",
        },
    ),
)
async def delete_destination(
    request: Request, team_id: TeamId, destination_id: DestinationId
) -> Response:
    """204; 409 DESTINATION_IN_USE while a transfer loads into it."""
    await run_guarded(
        request,
        team_id,
        Access.WRITE,
        lambda ctx: service.delete(ctx.session, team_id, destination_id),
        write=True,
    )
    return Response(status_code=204)


@router.get(
    "/teams/{team_id}/destinations/{destination_id}/usage",
    **operation(
        "getDestinationUsage",
        "Destination usage",
        returns=schemas.DestinationUsageEnvelope,
        errors=_NOT_FOUND,
    ),
)
async def destination_usage(
    request: Request, team_id: TeamId, destination_id: DestinationId
) -> Response:
    """Whether transfers use the destination, and which."""
    data = await run_guarded(
        request,
        team_id,
        Access.READ,
        lambda ctx: service.usage(ctx.session, team_id, destination_id),
    )
    return data_response(request_id(request), data)
