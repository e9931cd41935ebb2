"""HTTP method semantics the router alone gets wrong: ``Allow``, 405, ``OPTIONS`` and ``HEAD``.

Starlette answers a request with the first route whose path and method both match, else a 405
naming only the first route whose path matched. With ``GET``, ``POST`` on one path as two routes
that lists one method; and a literal segment loses to a parameter of another route
(``PUT /teams/1/transfers/validations`` reached ``PUT /teams/{team_id}/transfers/{transfer_id}``
and failed on ``'transfer_id' must be an integer``). This middleware settles the method first:

- the route templates that match the path are narrowed to the most specific ones (at the first
  segment where two templates differ, a literal beats a parameter);
- a method none of them has gets 405 in the error envelope, with ``Allow`` naming every method
  of the path;
- ``OPTIONS`` (other than a CORS preflight, which the envelope middleware answers) gets 204 with
  ``Allow``;
- ``HEAD`` runs the path's ``GET`` and sends its status and headers without the body.

Paths no route template matches go on to the router (its 404), as do mounts (static files).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import fastapi.routing
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from opendts.kit.envelope import error_body, json_response, new_request_id
from opendts.kit.errors import MethodNotAllowed

#: The order methods are listed in ``Allow``.
_ORDER = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


@dataclass(frozen=True, slots=True)
class Template:
    """A route path template, the regex it compiles to, and every method routed on it."""

    path: str
    regex: re.Pattern[str]
    methods: frozenset[str]

    def specificity(self) -> tuple[int, ...]:
        """Compares templates that match one path: a literal segment (1) beats a parameter (0)."""
        return tuple(0 if "{" in part else 1 for part in self.path.split("/"))

    @property
    def allow(self) -> str:
        """The ``Allow`` header: the routed methods, ``HEAD`` with ``GET``, and ``OPTIONS``."""
        methods = set(self.methods) | {"OPTIONS"}
        if "GET" in methods:
            methods.add("HEAD")
        return ", ".join(sorted(methods, key=_rank))


def _rank(method: str) -> tuple[int, str]:
    return (_ORDER.index(method), "") if method in _ORDER else (len(_ORDER), method)


def templates(routes: Iterable[Any]) -> list[Template]:
    """Every method-routed path template of ``routes`` (routers included with a prefix are
    flattened; mounts, which route by prefix, are left out)."""
    flatten: Callable[[Sequence[Any]], Iterable[Any]] | None = getattr(
        fastapi.routing, "iter_route_contexts", None
    )
    flat = flatten(list(routes)) if flatten is not None else routes
    methods: dict[str, set[str]] = {}
    for route in flat:
        path, route_methods = getattr(route, "path", None), getattr(route, "methods", None)
        if isinstance(path, str) and route_methods:
            methods.setdefault(path, set()).update(m.upper() for m in route_methods)
    return [
        Template(path, compile_path(path)[0], frozenset(found)) for path, found in methods.items()
    ]


def resolve(table: Sequence[Template], path: str) -> Template | None:
    """The most specific template matching ``path``, or None."""
    matching = [template for template in table if template.regex.match(path)]
    if not matching:
        return None
    return max(matching, key=Template.specificity)


class MethodSemantics:
    """405 with ``Allow`` for a method the path lacks, 204 for ``OPTIONS``, ``HEAD`` as ``GET``.

    ``routes`` is read on the first request, once every router is included.
    """

    def __init__(self, app: ASGIApp, *, routes: Callable[[], Iterable[Any]]) -> None:
        self.app = app
        self.routes = routes
        self._table: list[Template] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self._table is None:
            self._table = templates(self.routes())
        template = resolve(self._table, scope["path"])
        method: str = scope["method"]
        if template is None or method in template.methods:
            await self.app(scope, receive, send)
        elif method == "HEAD" and "GET" in template.methods:
            await self._head(scope, receive, send)
        elif method == "OPTIONS":
            await send(
                {
                    "type": "http.response.start",
                    "status": 204,
                    "headers": [(b"allow", template.allow.encode())],
                }
            )
            await send({"type": "http.response.body", "body": b""})
        else:
            request_id = scope.get("state", {}).get("request_id") or new_request_id()
            allowed = template.allow
            body = error_body(
                request_id,
                MethodNotAllowed.code,
                MethodNotAllowed.message,
                f"{method} is not supported on {scope['path']}. Allowed: {allowed}.",
            )
            await json_response(body, 405, {"Allow": allowed})(scope, receive, send)

    async def _head(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer as ``GET`` would, without the body; a stream ends after its headers."""
        done = False

        async def headers_only(message: Message) -> None:
            nonlocal done
            if done:
                return
            if message["type"] == "http.response.start":
                await send(message)
            elif message["type"] == "http.response.body":
                done = True
                await send({"type": "http.response.body", "body": b""})

        async def receive_until_done() -> Message:
            # Once the headers are out the client has all a HEAD gets: a stream that waits
            # for more (server-sent events) is told the client left.
            if done:
                return {"type": "http.disconnect"}
            return await receive()

        await self.app({**scope, "method": "GET"}, receive_until_done, headers_only)
