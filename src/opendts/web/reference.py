"""The API reference at ``/docs``: Swagger UI from packaged files, on this server's document.

The page and its scripts are static files under ``web/static/docs/`` (served at
``/static/docs/``): nothing comes from a CDN, so the reference works offline, and no script is
inline, so it works under a Content-Security-Policy that only allows ``'self'``.
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import FileResponse, Response

from opendts.kit.errors import NotFound
from opendts.web.session import STATIC

router = APIRouter(include_in_schema=False)


@router.get("/docs")
async def api_reference() -> Response:
    """The reference page (its assets load from ``/static/docs/``)."""
    page = STATIC / "docs" / "index.html"
    if not page.is_file():
        raise NotFound("This opendts build has no API reference files.", code="NOT_FOUND")
    return FileResponse(page, media_type="text/html")
