"""HTTP routes of data-source connections.

``POST`` is the contract's ``transfers.create_datasource_connection`` (201, enveloped
DataSourceConnection); list, get, ``PATCH`` and delete are opendts extensions under the same
path. Every answer is enveloped; credentials are never in one.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from starlette.responses import Response

from opendts.api.context import Guarded, TeamId, request_id, run_guarded, runtime
from opendts.auth.permissions import Access
from opendts.connections import schemas, service
from opendts.connectors.boundary import Boundary
from opendts.kit.envelope import data_response
from opendts.kit.openapi import link, operation
from opendts.kit.requests import json_object
from opendts.kit.secrets import SecretBox, box_for

router = APIRouter(tags=["Data Transfers"])

PATH = "/teams/{team_id}/data-source-connections"

ConnectionId = Annotated[
    str,
    Path(
        description="The connection's UUID (connection_id)",
        json_schema_extra={"format": "uuid"},
    ),
]

_NOT_FOUND = {
    404: "DATA_SOURCE_CONNECTION_NOT_FOUND: no such connection in this team (or it was deleted).",
}
_INVALID = (
    "INVALID_PARAMETER: the body is not a JSON object, a field does not fit (the description "
    "names it: fields.<name> for a setting the source refuses), or the settings now point "
    "elsewhere than the stored credentials were saved for: send them again."
)
_EXAMPLES = {
    "http": {
        "data_source_id": "http",
        "destination_type": "duckdb",
        "display_name": "Ads API",
        "fields": {"url": "https://api.example.com/ads?day={date}", "token": "secret-token"},
    },
    "contract": {"data_source_id": "demo", "destination_type": "duckdb"},
}
_UPDATE_EXAMPLES = {"rename": {"display_name": "Ads API (prod)"}}


def _links(connection_id: str) -> dict[str, dict[str, object]]:
    ids = {"team_id": "$request.path.team_id", "connection_id": connection_id}
    return {
        "getConnection": link("getDataSourceConnection", "Read the connection.", **ids),
        "updateConnection": link("updateDataSourceConnection", "Change it.", **ids),
        "deleteConnection": link("deleteDataSourceConnection", "Delete it.", **ids),
    }


def _boundary(request: Request, team_id: int) -> Boundary:
    return Boundary.for_team(runtime(request).settings, team_id)


def _box(request: Request) -> SecretBox:
    settings = runtime(request).settings
    return box_for(settings.data_dir, settings.secret_key)


async def _body(request: Request) -> Any:
    """The body, read now and parsed after authentication (a 401 comes before a 400)."""
    raw = await request.body()
    content_type = request.headers.get("content-type")
    return lambda: json_object(raw, content_type, service.EXAMPLE)


@router.post(
    PATH,
    **operation(
        "createDataSourceConnection",
        "Create a data-source connection",
        returns=schemas.DataSourceConnectionEnvelope,
        status=201,
        description="The new connection (connection_id a UUID; credentials masked).",
        body=schemas.CreateDataSourceConnectionRequest,
        examples=_EXAMPLES,
        errors={400: _INVALID},
        links=_links("$response.body#/data/connection_id"),
    ),
)
async def create_connection(request: Request, team_id: TeamId) -> Response:
    """201 with DataSourceConnection (``connection_id`` a UUID); credentials sealed."""
    body = await _body(request)
    box = _box(request)

    def work(ctx: Guarded) -> dict[str, Any]:
        row = service.create(
            ctx.session, box, _boundary(request, team_id), ctx.principal.user_id, body()
        )
        return service.to_wire(row, box)

    data = await run_guarded(request, team_id, Access.WRITE, work, write=True)
    return data_response(request_id(request), data, status_code=201)


@router.get(
    PATH,
    **operation(
        "listDataSourceConnections",
        "List data-source connections",
        returns=schemas.DataSourceConnectionListEnvelope,
        description="The team's connections, oldest first (credentials masked).",
    ),
)
async def list_connections(request: Request, team_id: TeamId) -> Response:
    """The team's connections, oldest first (credentials masked)."""
    box = _box(request)
    data = await run_guarded(
        request,
        team_id,
        Access.READ,
        lambda ctx: [service.to_wire(r, box) for r in service.list_of_team(ctx.session, team_id)],
    )
    return data_response(request_id(request), data)


@router.get(
    PATH + "/{connection_id}",
    **operation(
        "getDataSourceConnection",
        "Get a data-source connection",
        returns=schemas.DataSourceConnectionEnvelope,
        errors={**_NOT_FOUND, 400: "INVALID_PARAMETER: connection_id is not a UUID."},
    ),
)
async def get_connection(
    request: Request, team_id: TeamId, connection_id: ConnectionId
) -> Response:
    """One connection (credentials masked); 404 for another team's."""
    box = _box(request)
    data = await run_guarded(
        request,
        team_id,
        Access.READ,
        lambda ctx: service.to_wire(service.get(ctx.session, team_id, connection_id), box),
    )
    return data_response(request_id(request), data)


@router.patch(
    PATH + "/{connection_id}",
    **operation(
        "updateDataSourceConnection",
        "Update a data-source connection",
        returns=schemas.DataSourceConnectionEnvelope,
        body=schemas.UpdateDataSourceConnectionRequest,
        examples=_UPDATE_EXAMPLES,
        errors={**_NOT_FOUND, 400: _INVALID},
        links={"getConnection": _links("$request.path.connection_id")["getConnection"]},
    ),
)
async def update_connection(
    request: Request, team_id: TeamId, connection_id: ConnectionId
) -> Response:
    """Change ``display_name``, ``destination_type`` or ``fields`` (credentials left out are
    kept while the connection points where it did)."""
    body = await _body(request)
    box = _box(request)

    def work(ctx: Guarded) -> dict[str, Any]:
        row = service.update(ctx.session, box, _boundary(request, team_id), connection_id, body())
        return service.to_wire(row, box)

    data = await run_guarded(request, team_id, Access.WRITE, work, write=True)
    return data_response(request_id(request), data)


@router.delete(
    PATH + "/{connection_id}",
    **operation(
        "deleteDataSourceConnection",
        "Delete a data-source connection",
        returns=None,
        status=204,
        description="Deleted.",
        errors={
            **_NOT_FOUND,
            409: "DATA_SOURCE_CONNECTION_IN_USE: transfers still read with it; their ids are "
            "in the description.",
        },
    ),
)
async def delete_connection(
    request: Request, team_id: TeamId, connection_id: ConnectionId
) -> Response:
    """204; 409 DATA_SOURCE_CONNECTION_IN_USE while a transfer reads with it."""
    await run_guarded(
        request,
        team_id,
        Access.WRITE,
        lambda ctx: service.delete(ctx.session, team_id, connection_id),
        write=True,
    )
    return Response(status_code=204)
