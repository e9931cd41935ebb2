"""The ASGI application."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response

from opendts import __version__
from opendts.api import errors
from opendts.api.context import Runtime
from opendts.api.middleware import EnvelopeMiddleware
from opendts.backfills.endpoints import router as backfills_router
from opendts.connectors import paths
from opendts.destinations.endpoints import router as destinations_router
from opendts.kit.db import Database
from opendts.kit.envelope import json_response
from opendts.kit.ratelimit import RateLimiter
from opendts.runs.endpoints import router as runs_router
from opendts.settings import Settings
from opendts.transfers.endpoints import router as transfers_router


def create_app(
    settings: Settings, db: Database | None = None, *, wake: Callable[[], None] | None = None
) -> FastAPI:
    """Build the API app for ``settings`` (routes under ``/v1``).

    ``wake`` is called after a backfill is created: the in-process engine's wake-up.
    """
    database = db or Database(settings.resolved_database_url)
    paths.set_data_dir(settings.data_dir)
    app = FastAPI(
        title="opendts",
        version=__version__,
        description="Self-hosted Data Warehouse Transfer Service (Supermetrics DTS compatible).",
        openapi_url="/v1/openapi.json",
        docs_url=None,  # Swagger UI loads from a CDN; opendts must work offline
        redoc_url=None,
        redirect_slashes=False,
    )
    app.state.runtime = Runtime(
        settings=settings,
        db=database,
        limiter=RateLimiter(settings.rate_limit_per_hour, settings.rate_limit_storage_url),
        wake=wake or (lambda: None),
    )
    errors.install(app)
    app.include_router(backfills_router, prefix="/v1")
    app.include_router(runs_router, prefix="/v1")
    app.include_router(transfers_router, prefix="/v1")
    app.include_router(destinations_router, prefix="/v1")

    @app.get("/healthz", include_in_schema=False)
    def healthz(request: Request) -> Response:
        return json_response({"status": "ok", "version": __version__})

    app.add_middleware(EnvelopeMiddleware, max_body_bytes=settings.max_request_bytes)
    return app
