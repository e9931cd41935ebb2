"""Pure ASGI middleware: request id, CORS, rate-limit headers, body size, last-resort 500,
log context and request latency."""

from __future__ import annotations

import logging
import re
import time
from typing import Any

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import Response
from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from opendts.kit import logs
from opendts.kit.envelope import REQUEST_ID_PATTERN, error_body, json_response, new_request_id
from opendts.kit.errors import PayloadTooLarge
from opendts.kit.metrics import UNMATCHED, ApiMetrics
from opendts.kit.ratelimit import RateLimitState

log = logging.getLogger("opendts.api")

EXPOSED_HEADERS = "X-Request-Id, X-RateLimit-Limit, X-RateLimit-Remaining, Retry-After"
ALLOWED_METHODS = "GET, POST, PUT, PATCH, DELETE, OPTIONS"
_TEAM_PATH = re.compile(r"^/v1/teams/([1-9][0-9]{0,18})(?:/|$)")


def route_template(scope: Scope) -> str:
    """The matched route's path template (``/v1/teams/{team_id}/backfills``), never raw ids.

    Routers included with a prefix leave the route's own path (``/teams/{team_id}/backfills``)
    in the scope on recent FastAPI versions: the prefix (constant segments such as ``/v1``) is
    taken from the request path, segment for segment.
    """
    route = scope.get("route")
    path = getattr(route, "path", None)
    if not isinstance(path, str):
        return UNMATCHED
    if isinstance(route, Mount):
        return path.rstrip("/") + "/{path}"
    if ":path}" in path:
        return path  # a catch-all spans segments: the request path cannot be lined up with it
    raw = scope["path"].rstrip("/").split("/")
    own = path.rstrip("/").split("/")
    extra = len(raw) - len(own)
    if extra <= 0:
        return path
    return "/".join(raw[: extra + 1]) + (path if path != "/" else "")


class EnvelopeMiddleware:
    """Gives every response a request id and CORS headers, and refuses oversized bodies."""

    def __init__(
        self, app: ASGIApp, *, max_body_bytes: int, metrics: ApiMetrics | None = None
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if len(path) > 1 and path.endswith("/"):
            # A trailing slash names the same resource; answering it directly beats a redirect
            # (which the official client does not follow) or a 404.
            scope = {**scope, "path": path.rstrip("/") or "/"}
            scope.pop("raw_path", None)
        headers = Headers(scope=scope)
        incoming = headers.get("x-request-id", "")
        request_id = incoming if REQUEST_ID_PATTERN.fullmatch(incoming) else new_request_id()
        state: dict[str, Any] = scope.setdefault("state", {})
        state["request_id"] = request_id
        team = _TEAM_PATH.match(scope["path"])
        # Log records of this request (and of the threads it hands work to) carry these.
        tokens = logs.bind(request_id=request_id, team_id=int(team.group(1)) if team else None)
        began = time.perf_counter()
        try:
            await self._handle(scope, receive, send, headers, request_id, state)
        finally:
            logs.unbind(tokens)
            if self.metrics is not None:
                self.metrics.observe(
                    scope["method"],
                    route_template(scope),
                    state.get("response_status", 500),
                    time.perf_counter() - began,
                )

    async def _handle(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        headers: Headers,
        request_id: str,
        state: dict[str, Any],
    ) -> None:
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                state["response_status"] = message["status"]
                out = MutableHeaders(scope=message)
                out["X-Request-Id"] = request_id
                out["Access-Control-Allow-Origin"] = "*"
                out["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
                rate: RateLimitState | None = state.get("rate_limit")
                if rate is not None:
                    out["X-RateLimit-Limit"] = str(rate.limit)
                    out["X-RateLimit-Remaining"] = str(rate.remaining)
            await send(message)

        if scope["method"] == "OPTIONS" and "access-control-request-method" in headers:
            await self._preflight(scope, receive, send_with_headers)
            return

        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            await self._too_large(request_id)(scope, receive, send_with_headers)
            return

        received = 0

        async def receive_limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise PayloadTooLarge(self._too_large_text())
            return message

        try:
            await self.app(scope, receive_limited, send_with_headers)
        except Exception:
            log.exception("unhandled error in request %s", request_id)
            if started:
                raise
            body = error_body(
                request_id,
                "INTERNAL_SERVER_ERROR",
                "Internal server error",
                f"An unexpected error occurred. Retry later; if it persists, report request id "
                f"{request_id} to your opendts operator.",
            )
            await json_response(body, 500)(scope, receive, send_with_headers)

    def _too_large_text(self) -> str:
        return f"Send a request body of at most {self.max_body_bytes} bytes."

    def _too_large(self, request_id: str) -> Any:
        body = error_body(
            request_id, PayloadTooLarge.code, PayloadTooLarge.message, self._too_large_text()
        )
        return json_response(body, 413)

    async def _preflight(self, scope: Scope, receive: Receive, send: Send) -> None:
        requested = Headers(scope=scope).get("access-control-request-headers", "")
        response = Response(
            status_code=204,
            headers={
                "Access-Control-Allow-Methods": ALLOWED_METHODS,
                "Access-Control-Allow-Headers": requested
                or "Authorization, Content-Type, X-Request-Id",
                "Access-Control-Max-Age": "600",
            },
        )
        await response(scope, receive, send)
