"""The response envelope: ``{meta: {request_id}, data}`` or ``{meta, error}``, rendered once."""

from __future__ import annotations

import re
import secrets
from typing import Any

import orjson
from starlette.responses import Response

REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{8,50}$")
_LIMIT = 255


def new_request_id() -> str:
    """A fresh 26-character request id from the URL-safe alphabet the contract allows."""
    return secrets.token_urlsafe(19)


def _clip(text: str) -> str:
    # The contract caps message and description at 255 characters and forbids line breaks.
    one_line = " ".join(text.split())
    return one_line if len(one_line) <= _LIMIT else one_line[: _LIMIT - 1] + "…"


def error_body(
    request_id: str, code: str, message: str, description: str | None = None
) -> dict[str, Any]:
    """The error envelope, with no keys beyond the contract's."""
    error: dict[str, str] = {"code": code, "message": _clip(message) or code}
    if description:
        error["description"] = _clip(description)
    return {"meta": {"request_id": request_id}, "error": error}


def json_response(
    payload: dict[str, Any], status_code: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """Serialise an envelope with orjson."""
    return Response(
        content=orjson.dumps(payload),
        status_code=status_code,
        headers=headers,
        media_type="application/json",
    )


def raw_data_response(request_id: str, data_json: bytes) -> Response:
    """A success envelope around data that is already JSON (rendered by the database)."""
    prefix = orjson.dumps({"request_id": request_id})
    return Response(
        content=b'{"meta":' + prefix + b',"data":' + data_json + b"}",
        media_type="application/json",
    )


def data_response(request_id: str, data: Any, status_code: int = 200) -> Response:
    """A success envelope."""
    return json_response({"meta": {"request_id": request_id}, "data": data}, status_code)
