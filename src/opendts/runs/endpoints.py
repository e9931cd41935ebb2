"""HTTP routes of the transfer runs API (paths and parameters as the official client sends)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request
from starlette.responses import Response

from opendts.api.context import TeamId, TransferId, path_id, request_id, run_guarded
from opendts.auth.permissions import Access
from opendts.kit.envelope import data_response
from opendts.kit.openapi import link, operation
from opendts.runs import schemas, service

router = APIRouter(tags=["Transfer runs"])

TransferRunId = Annotated[int, *path_id("transfer run")]


@router.get(
    "/teams/{team_id}/transfers/{transfer_id}/runs",
    **operation(
        "listTransferRuns",
        "List a transfer's runs",
        returns=schemas.TransferRunListEnvelope,
        query=schemas.ListRunsQuery,
        errors={404: "TRANSFER_NOT_FOUND: no such transfer in this team."},
        links={
            "getFirstRun": link(
                "getTransferRun",
                "The first run of the page.",
                team_id="$request.path.team_id",
                transfer_run_id="$response.body#/data/0/id",
            )
        },
    ),
)
async def list_transfer_runs(
    request: Request, team_id: TeamId, transfer_id: TransferId
) -> Response:
    """Runs whose data date is within ``start_date``..``end_date`` (inclusive), a page at a time.

    ``filter_issues_only=true`` keeps runs that failed, were cancelled or needed a retry.
    Sorted by ``data_date`` descending unless ``sort_field``/``sort_direction`` say otherwise;
    ``limit`` 1 to 10,000 (100 by default), ``offset`` from 0.
    """
    params = dict(request.query_params)
    data = await run_guarded(
        request,
        team_id,
        Access.READ,
        lambda ctx: service.list_runs(
            ctx.session, team_id, transfer_id, schemas.parse_query(params)
        ),
    )
    return data_response(request_id(request), data)


@router.get(
    "/teams/{team_id}/transfer_runs/{transfer_run_id}",
    **operation(
        "getTransferRun",
        "Get a transfer run",
        returns=schemas.TransferRunEnvelope,
        errors={404: "TRANSFER_RUN_NOT_FOUND: no such transfer run in this team."},
    ),
)
async def get_transfer_run(
    request: Request, team_id: TeamId, transfer_run_id: TransferRunId
) -> Response:
    """One run with one ``query_details`` entry per attempt."""
    data = await run_guarded(
        request,
        team_id,
        Access.READ,
        lambda ctx: service.get_run(ctx.session, team_id, transfer_run_id),
    )
    return data_response(request_id(request), data)
