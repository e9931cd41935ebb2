"""The ASGI application."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.exc import SQLAlchemyError
from starlette.requests import Request
from starlette.responses import Response

from opendts import __version__
from opendts.api import errors
from opendts.api.context import Runtime
from opendts.api.headers import SecurityHeadersMiddleware
from opendts.api.middleware import EnvelopeMiddleware
from opendts.api.routing import MethodSemantics
from opendts.backfills.endpoints import router as backfills_router
from opendts.connections.endpoints import router as connections_router
from opendts.destinations.endpoints import router as destinations_router
from opendts.kit import metrics, migrate, openapi
from opendts.kit.db import Database
from opendts.kit.envelope import error_body, json_response
from opendts.kit.errors import ServiceUnavailable
from opendts.kit.ratelimit import RateLimiter
from opendts.kit.streams import StreamSlots
from opendts.runs.endpoints import router as runs_router
from opendts.settings import Settings
from opendts.transfers.endpoints import router as transfers_router
from opendts.web.reference import router as reference_router
from opendts.web.session import STATIC
from opendts.web.session import router as web_router


class NotReady(ServiceUnavailable):
    """``/readyz``: the database cannot be reached, or its schema is not this version's."""

    code = "NOT_READY"
    message = "Not ready"


class Readiness:
    """Whether this process can serve: the metadata database answers and is migrated to head.

    The database is asked on every check (reading the current revision is one indexed row);
    the verdict that migrations are current is reused for ``ttl`` seconds, so a load balancer
    probing every second costs one query per check. The head revision comes from the packaged
    migration scripts and is read once.
    """

    def __init__(self, db: Database, *, ttl: float = 5.0) -> None:
        self.db = db
        self.ttl = ttl
        self._head: str | None = None
        self._current_until = -float("inf")
        self._lock = threading.Lock()

    def problem(self) -> str | None:
        """None when ready, else what is wrong and what to do, in words."""
        try:
            with self.db.engine.connect() as connection:
                connection.exec_driver_sql("SELECT 1")
        except SQLAlchemyError as exc:
            return (
                f"The metadata database cannot be reached ({exc.__class__.__name__}). "
                "Check OPENDTS_DATABASE_URL and that the database is running."
            )
        with self._lock:
            if time.monotonic() < self._current_until:
                return None
        try:
            current = migrate.current_revision(self.db)
        except SQLAlchemyError as exc:
            return f"The metadata database cannot be read ({exc.__class__.__name__})."
        if self._head is None:
            self._head = migrate.head_revision(self.db)
        if current != self._head:
            return (
                f"migrations not current: at {current or 'an empty schema'}, head is "
                f"{self._head}; run `opendts migrate`."
            )
        with self._lock:
            self._current_until = time.monotonic() + self.ttl
        return None


def create_app(
    settings: Settings,
    db: Database | None = None,
    *,
    wake: Callable[[], None] | None = None,
    stop_runs: Callable[[], None] | None = None,
) -> FastAPI:
    """Build the API app for ``settings`` (routes under ``/v1``).

    ``wake`` is called after a backfill is created: the in-process engine's wake-up;
    ``stop_runs`` after a cancel with ``"mode": "now"``, so that engine stops the runs at once.
    """
    database = db or Database(settings.resolved_database_url)
    app = FastAPI(
        title="opendts",
        version=__version__,
        description="Self-hosted Data Warehouse Transfer Service (Supermetrics DTS compatible).",
        openapi_url="/v1/openapi.json",
        docs_url=None,  # /docs is ours (web/reference.py): FastAPI's loads from a CDN
        redoc_url=None,
        redirect_slashes=False,
    )
    limiter = RateLimiter(settings.rate_limit_per_hour, settings.resolved_rate_limit_storage_url)
    app.state.runtime = Runtime(
        settings=settings,
        db=database,
        limiter=limiter,
        wake=wake or (lambda: None),
        stop_runs=stop_runs or (lambda: None),
        failed_auth=limiter.per_minute(settings.failed_auth_per_minute, "failed-auth"),
        sign_ins=limiter.per_minute(settings.sign_ins_per_minute, "sign-in"),
        streams=StreamSlots(settings.max_event_streams_per_key),
    )
    registry, api_metrics = metrics.api_registry(database)
    app.state.metrics_registry = registry
    readiness = Readiness(database)
    errors.install(app)
    openapi.install(app)
    app.include_router(backfills_router, prefix="/v1")
    app.include_router(runs_router, prefix="/v1")
    app.include_router(transfers_router, prefix="/v1")
    app.include_router(destinations_router, prefix="/v1")
    app.include_router(connections_router, prefix="/v1")
    app.include_router(web_router)
    app.include_router(reference_router)
    app.mount("/static", StaticFiles(directory=STATIC, check_dir=False), name="static")

    @app.get("/healthz", include_in_schema=False)
    def healthz(request: Request) -> Response:
        return json_response({"status": "ok", "version": __version__})

    @app.get("/readyz", include_in_schema=False)
    def readyz(request: Request) -> Response:
        problem = readiness.problem()
        if problem is None:
            return json_response({"status": "ready"})
        body = error_body(request.state.request_id, NotReady.code, NotReady.message, problem)
        return json_response(body, NotReady.status_code, {"Retry-After": "5"})

    @app.get("/metrics", include_in_schema=False)
    def prometheus_metrics(request: Request) -> Response:
        # No key and no rate limit, like /healthz: scrapers have no API key.
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(MethodSemantics, routes=lambda: app.routes)
    app.add_middleware(
        EnvelopeMiddleware, max_body_bytes=settings.max_request_bytes, metrics=api_metrics
    )
    # Outermost, so the envelope's own answers (413, last-resort 500) carry the headers too.
    app.add_middleware(SecurityHeadersMiddleware)
    return app
