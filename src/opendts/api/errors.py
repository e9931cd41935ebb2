"""The one place that turns failures into the error envelope."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import DBAPIError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from opendts.api.context import MAX_ID
from opendts.kit.envelope import error_body, json_response
from opendts.kit.errors import (
    ApiError,
    InvalidParameter,
    MethodNotAllowed,
    NotFound,
    ServiceUnavailable,
)

log = logging.getLogger("opendts.api")

_ID_FIELDS = {"team_id", "transfer_id", "backfill_id", "transfer_run_id", "destination_id"}


def render(request: Request, error: ApiError) -> Response:
    """An ApiError as an enveloped JSON response."""
    body = error_body(request.state.request_id, error.code, error.message, error.description)
    headers = dict(error.headers)
    if error.status_code == 401:
        headers.setdefault("WWW-Authenticate", 'Bearer realm="opendts"')
    return json_response(body, error.status_code, headers)


def _describe_validation(errors: list[Any]) -> str:
    first = errors[0] if errors else {}
    location = [str(part) for part in first.get("loc", ())]
    field = location[-1] if location else "request"
    where = location[0] if location else ""
    if field in _ID_FIELDS and where == "path":
        return f"'{field}' must be an integer from 1 to {MAX_ID}."
    if where == "query":
        return f"Query parameter '{field}': {first.get('msg', 'invalid value')}."
    return f"'{field}': {first.get('msg', 'invalid value')}."


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return render(request, exc)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return render(request, InvalidParameter(_describe_validation(list(exc.errors()))))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404:
        error: ApiError = NotFound(
            f"No route {request.method} {request.url.path}. API routes start with /v1/teams/.",
        )
    elif exc.status_code == 405:
        error = MethodNotAllowed(
            f"{request.method} is not supported on {request.url.path}.",
            headers=dict(exc.headers or {}),
        )
    else:
        error = ApiError(str(exc.detail), message=str(exc.detail))
        error.status_code = exc.status_code
        error.code = "BAD_REQUEST" if exc.status_code == 400 else "HTTP_ERROR"
    return render(request, error)


async def _database_error(request: Request, exc: Exception) -> Response:
    log.error("database unavailable: %s", exc, extra={"request_id": request.state.request_id})
    return render(
        request,
        ServiceUnavailable(
            "The metadata database cannot be reached. Retry in a few seconds.",
            headers={"Retry-After": "5"},
        ),
    )


def install(app: FastAPI) -> None:
    """Register every handler on ``app``."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(OperationalError, _database_error)
    app.add_exception_handler(DBAPIError, _database_error)
