"""Security headers on every response: a Content-Security-Policy per kind of page, no framing,
no referrer, no content sniffing.

Three policies, chosen by path:

- the dashboard (``/``, ``/static/…``, ``/ui/…``) loads only its own files: scripts and styles
  from ``'self'``, no inline script, no inline style sheet (``app.js`` sets sizes through the
  CSSOM, which a policy does not restrict);
- an API reference page (``/docs``, ``/docs/…``) served from packaged Swagger UI files gets
  ``'self'`` scripts, ``'self'`` and inline styles (Swagger UI sets style attributes) and
  ``data:`` images (its icons); its start-up script must be a file too, never inline;
- everything else (``/v1/…``, ``/healthz``, ``/readyz``, ``/metrics``) is data that is never
  rendered: ``default-src 'none'``.

A route that sets its own ``Content-Security-Policy`` keeps it. Every response also says
``frame-ancestors 'none'`` and ``X-Frame-Options: DENY`` (no clickjacking),
``Referrer-Policy: no-referrer`` and ``X-Content-Type-Options: nosniff``.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_COMMON = "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"

DASHBOARD_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    f"connect-src 'self'; form-action 'self'; {_COMMON}"
)
DOCS_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    f"img-src 'self' data:; connect-src 'self'; form-action 'self'; {_COMMON}"
)
API_POLICY = f"default-src 'none'; form-action 'none'; {_COMMON}"

#: Path prefixes of the dashboard and of the API reference page.
DASHBOARD_PREFIXES = ("/static/", "/ui/")
DOCS_PREFIXES = ("/docs/",)

STATIC_HEADERS = {
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


def policy_for(path: str) -> str:
    """The Content-Security-Policy of the response to ``path``."""
    if path == "/docs" or path.startswith(DOCS_PREFIXES):
        return DOCS_POLICY
    if path == "/" or path.startswith(DASHBOARD_PREFIXES):
        return DASHBOARD_POLICY
    return API_POLICY


class SecurityHeadersMiddleware:
    """Adds the security headers to every HTTP response (errors included)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        policy = policy_for(scope["path"])

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("Content-Security-Policy", policy)
                for name, value in STATIC_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)
