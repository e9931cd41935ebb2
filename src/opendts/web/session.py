"""The dashboard's routes: its static files at ``/`` and a server-side session opened with an
API key.

Signing in checks the key and opens a session (``auth.sessions``): the cookie holds a random
session id, HttpOnly, SameSite=Strict and Secure over HTTPS, so scripts on the page never see
it and the key itself is never kept in the browser. The API accepts the session instead of the
``Authorization`` header (reads, and writes that carry ``X-Opendts-UI: 1``; see
``api.context.credentials_of``), acting for the key: only its teams, only its scopes. Signing
out deletes the session; so does revoking the key; it also ends when idle or too old.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool
from starlette.responses import FileResponse, Response

from opendts.api.context import (
    SESSION_COOKIE,
    Credentials,
    authenticate_credentials,
    client_address,
    runtime,
    session_policy,
    spend,
)
from opendts.auth import sessions
from opendts.auth.service import Principal
from opendts.kit.clock import utcnow
from opendts.kit.envelope import json_response
from opendts.kit.errors import ApiError, Forbidden, InvalidParameter, NotFound, Unauthorized
from opendts.kit.requests import json_object
from opendts.teams.models import Team

STATIC = Path(__file__).resolve().parent / "static"

router = APIRouter(include_in_schema=False)

NO_TEAM = (
    "This key's user is not a member of any team, so the dashboard has nothing to show. "
    "Ask a team admin to add you to a team."
)


def _teams(request: Request, credentials: Credentials) -> tuple[Principal, dict[str, Any]]:
    rt = runtime(request)
    with rt.db.session() as session:
        principal = authenticate_credentials(rt, session, credentials)
        names = dict(
            session.execute(
                select(Team.id, Team.name).where(Team.id.in_(list(principal.roles)))
            ).all()
        )
    return principal, {
        "teams": [
            {"team_id": team_id, "name": names.get(team_id, ""), "role": role.value}
            for team_id, role in sorted(principal.roles.items())
        ]
    }


def _open(request: Request, principal: Principal) -> str:
    rt = runtime(request)
    policy = session_policy(rt.settings)
    now = utcnow()
    with rt.db.session(write=True) as session:
        sessions.delete_ended(session, now=now, idle=policy.idle)
        return sessions.open_session(session, principal.key_id, now=now, lifetime=policy.lifetime)


def _close(request: Request, token: str) -> None:
    with runtime(request).db.session(write=True) as session:
        sessions.close(session, token)


def _no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response


def _forget_cookie(response: Response) -> Response:
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response


@router.post("/ui/session")
async def sign_in(request: Request) -> Response:
    """Check the key; on success open a session (its id in the cookie) and list its teams."""
    payload = json_object(
        await request.body(), request.headers.get("content-type"), '{"api_key": "odts_..."}'
    )
    key = payload.get("api_key")
    if not isinstance(key, str) or not key.strip():
        raise InvalidParameter("'api_key' is required: the key opendts printed for you.")
    address = client_address(request)
    await run_in_threadpool(spend, runtime(request).sign_ins, address, "sign-ins")
    credentials = Credentials(authorization=f"Bearer {key.strip()}", client=address)
    principal, data = await run_in_threadpool(_teams, request, credentials)
    if not data["teams"]:
        # A valid key that opens no team: no session, and a reason instead of an empty page.
        raise Forbidden(NO_TEAM, code="FORBIDDEN", message="Not a member of any team")
    token = await run_in_threadpool(_open, request, principal)
    response = json_response(data)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=runtime(request).settings.ui_session_max_hours * 3600,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return _no_store(response)


@router.get("/ui/session")
async def current_session(request: Request) -> Response:
    """The signed-in key's teams, or 401 (and the cookie of an ended session is cleared)."""
    token = request.cookies.get(SESSION_COOKIE)
    if token is None:
        raise Unauthorized("Not signed in: sign in with an API key.", code="UNAUTHORIZED")
    credentials = Credentials(ui_session=token, client=client_address(request))
    try:
        _, data = await run_in_threadpool(_teams, request, credentials)
    except ApiError as error:
        if error.status_code != 401:
            raise
        error.headers["Set-Cookie"] = _forget_cookie(Response()).headers["set-cookie"]
        raise
    return _no_store(json_response(data))


@router.delete("/ui/session", status_code=204)
async def sign_out(request: Request) -> Response:
    """End the session (deleted on the server) and clear the cookie."""
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        await run_in_threadpool(_close, request, token)
    return _forget_cookie(Response(status_code=204))


@router.get("/")
async def dashboard() -> Response:
    """The dashboard's single page."""
    page = STATIC / "index.html"
    if not page.is_file():
        raise NotFound("This opendts build has no dashboard files.", code="NOT_FOUND")
    return _no_store(FileResponse(page, media_type="text/html"))
