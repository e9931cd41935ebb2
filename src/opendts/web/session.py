"""The dashboard's routes: its static files at ``/`` and a cookie session made from an API key.

The key is kept in an HttpOnly, SameSite=Strict cookie: scripts on the page never see it, and
the API accepts it instead of the ``Authorization`` header (reads, and writes that carry
``X-Opendts-UI: 1``; see ``api.context.authorization_of``). A key only ever sees its teams.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool
from starlette.responses import FileResponse, Response

from opendts.api.context import SESSION_COOKIE, authorization_of, runtime
from opendts.auth.service import Principal, authenticate
from opendts.kit.envelope import json_response
from opendts.kit.errors import Forbidden, InvalidParameter, NotFound, Unauthorized
from opendts.kit.requests import json_object
from opendts.teams.models import Team

STATIC = Path(__file__).resolve().parent / "static"

router = APIRouter(include_in_schema=False)

NO_TEAM = (
    "This key's user is not a member of any team, so the dashboard has nothing to show. "
    "Ask a team admin to add you to a team."
)


def _teams(request: Request, authorization: str | None) -> dict[str, Any]:
    with runtime(request).db.session() as session:
        principal: Principal = authenticate(session, authorization)
        names = dict(
            session.execute(
                select(Team.id, Team.name).where(Team.id.in_(list(principal.roles)))
            ).all()
        )
    return {
        "teams": [
            {"team_id": team_id, "name": names.get(team_id, ""), "role": role.value}
            for team_id, role in sorted(principal.roles.items())
        ]
    }


def _no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response


@router.post("/ui/session")
async def sign_in(request: Request) -> Response:
    """Check the key; on success keep it in the session cookie and list its teams."""
    payload = json_object(
        await request.body(), request.headers.get("content-type"), '{"api_key": "odts_..."}'
    )
    key = payload.get("api_key")
    if not isinstance(key, str) or not key.strip():
        raise InvalidParameter("'api_key' is required: the key opendts printed for you.")
    data = await run_in_threadpool(_teams, request, f"Bearer {key.strip()}")
    if not data["teams"]:
        # A valid key that opens no team: no cookie, and a reason instead of an empty page.
        raise Forbidden(NO_TEAM, code="FORBIDDEN", message="Not a member of any team")
    response = json_response(data)
    response.set_cookie(
        SESSION_COOKIE,
        key.strip(),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return _no_store(response)


@router.get("/ui/session")
async def current_session(request: Request) -> Response:
    """The signed-in key's teams, or 401."""
    if request.cookies.get(SESSION_COOKIE) is None:
        raise Unauthorized("Not signed in: sign in with an API key.", code="UNAUTHORIZED")
    data = await run_in_threadpool(_teams, request, authorization_of(request))
    return _no_store(json_response(data))


@router.delete("/ui/session", status_code=204)
async def sign_out() -> Response:
    """Forget the key (the cookie is cleared)."""
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response


@router.get("/")
async def dashboard() -> Response:
    """The dashboard's single page."""
    page = STATIC / "index.html"
    if not page.is_file():
        raise NotFound("This opendts build has no dashboard files.", code="NOT_FOUND")
    return _no_store(FileResponse(page, media_type="text/html"))
