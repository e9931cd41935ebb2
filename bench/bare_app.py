"""The framework's ceiling: FastAPI + uvicorn answering the same routes with fixed bytes.

Run as ``python bench/bare_app.py PORT LIST_JSON_FILE CREATE_JSON_FILE``. Same uvicorn settings
as ``opendts serve``; the routes validate the same integer path parameters and the create route
reads the request body, but nothing else happens: no auth, no rate limit, no database.
"""

from __future__ import annotations

import sys
from pathlib import Path

import uvicorn
from fastapi import FastAPI, Request
from starlette.responses import Response


def make_app(list_body: bytes, create_body: bytes) -> FastAPI:
    app = FastAPI()

    @app.get("/v1/teams/{team_id}/backfills")
    def list_backfills(team_id: int) -> Response:
        return Response(list_body, media_type="application/json")

    @app.post("/v1/teams/{team_id}/transfers/{transfer_id}/backfills")
    async def create_backfill(team_id: int, transfer_id: int, request: Request) -> Response:
        await request.body()
        return Response(create_body, media_type="application/json")

    @app.get("/healthz")
    def healthz() -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    return app


if __name__ == "__main__":
    port, list_file, create_file = int(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    app = make_app(list_file.read_bytes(), create_file.read_bytes())
    uvicorn.run(
        app, host="127.0.0.1", port=port, log_level="warning", access_log=False, server_header=False
    )
