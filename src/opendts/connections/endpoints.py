"""HTTP routes of data-source connections.

``POST`` is the contract's ``transfers.create_datasource_connection`` (201, enveloped
DataSourceConnection); list, get, ``PATCH`` and delete are opendts extensions under the same
path. Every answer is enveloped; credentials are never in one.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from opendts.api.context import Guarded, TeamId, request_id, run_guarded, runtime
from opendts.auth.permissions import Access
from opendts.connections import service
from opendts.connectors.boundary import Boundary
from opendts.kit.envelope import data_response
from opendts.kit.requests import json_object
from opendts.kit.secrets import SecretBox, box_for

router = APIRouter(tags=["Data Transfers"])

PATH = "/teams/{team_id}/data-source-connections"


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


@router.post(PATH, summary="Create a data-source connection", status_code=201)
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


@router.get(PATH, summary="List data-source connections")
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


@router.get(PATH + "/{connection_id}", summary="Get a data-source connection")
async def get_connection(request: Request, team_id: TeamId, connection_id: str) -> Response:
    """One connection (credentials masked); 404 for another team's."""
    box = _box(request)
    data = await run_guarded(
        request,
        team_id,
        Access.READ,
        lambda ctx: service.to_wire(service.get(ctx.session, team_id, connection_id), box),
    )
    return data_response(request_id(request), data)


@router.patch(PATH + "/{connection_id}", summary="Update a data-source connection")
async def update_connection(request: Request, team_id: TeamId, connection_id: str) -> Response:
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
    PATH + "/{connection_id}", summary="Delete a data-source connection", status_code=204
)
async def delete_connection(request: Request, team_id: TeamId, connection_id: str) -> Response:
    """204; 409 DATA_SOURCE_CONNECTION_IN_USE while a transfer reads with it."""
    await run_guarded(
        request,
        team_id,
        Access.WRITE,
        lambda ctx: service.delete(ctx.session, team_id, connection_id),
        write=True,
    )
    return Response(status_code=204)
