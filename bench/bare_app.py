"""The framework's ceiling: FastAPI + uvicorn answering the same routes with fixed bytes.

Run as ``python bench/bare_app.py PORT LIST_JSON_FILE CREATE_JSON_FILE [PROCESSES]``. Same
uvicorn settings as ``opendts serve``; the routes validate the same integer path parameters and
the create route reads the request body, but nothing else happens: no auth, no rate limit, no
database. With PROCESSES > 1 it runs like ``opendts serve --workers N``: N processes accepting
on one socket bound by a supervisor (uvicorn's own multiprocess mode).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

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


def app_from_environment() -> FastAPI:
    """The app of one of several processes (uvicorn imports this in each)."""
    return make_app(
        Path(os.environ["BARE_LIST_JSON"]).read_bytes(),
        Path(os.environ["BARE_CREATE_JSON"]).read_bytes(),
    )


if __name__ == "__main__":
    port, list_file, create_file = int(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    processes = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    options: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "log_level": "warning",
        "access_log": False,
        "server_header": False,
    }
    if processes == 1:
        uvicorn.run(make_app(list_file.read_bytes(), create_file.read_bytes()), **options)
    else:
        os.environ["BARE_LIST_JSON"] = str(list_file)
        os.environ["BARE_CREATE_JSON"] = str(create_file)
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        uvicorn.run("bare_app:app_from_environment", factory=True, workers=processes, **options)
