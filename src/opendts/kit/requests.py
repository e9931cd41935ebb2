"""Reading request bodies strictly, with errors that name the field to fix."""

from __future__ import annotations

import re
from datetime import date
from typing import Any

import orjson

from opendts.kit.errors import InvalidParameter

_DATE_PATTERN = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")


def is_json_content_type(content_type: str | None) -> bool:
    """``application/json`` (any parameters) or a ``+json`` media type."""
    if not content_type:
        return False
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


def json_object(body: bytes, content_type: str | None, example: str) -> dict[str, Any]:
    """Parse a JSON object body, or raise 400 saying what a valid body looks like."""
    if not is_json_content_type(content_type):
        raise InvalidParameter(
            f"Send the body as JSON with 'Content-Type: application/json', e.g. {example}."
        )
    if not body.strip():
        raise InvalidParameter(f"The request body is empty. Send a JSON object, e.g. {example}.")
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        msg = f"The body is not valid JSON ({exc.msg}). Send e.g. {example}."
        raise InvalidParameter(msg) from None
    if not isinstance(value, dict):
        raise InvalidParameter(f"The body must be a JSON object, e.g. {example}.")
    return value


def required_date(payload: dict[str, Any], field: str) -> date:
    """A ``YYYY-MM-DD`` string field that names a real calendar date."""
    if field not in payload or payload[field] is None:
        raise InvalidParameter(f"'{field}' is required: a date as YYYY-MM-DD.")
    value = payload[field]
    if not isinstance(value, str) or not _DATE_PATTERN.fullmatch(value):
        raise InvalidParameter(f"'{field}' must be a date string as YYYY-MM-DD, e.g. 2024-01-31.")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidParameter(f"'{field}' is not a real calendar date: {value}.") from None


def required_choice(payload: dict[str, Any], field: str, allowed: tuple[str, ...]) -> str:
    """A string field limited to ``allowed`` values."""
    value = payload.get(field)
    choices = ", ".join(f'"{choice}"' for choice in allowed)
    if value is None:
        raise InvalidParameter(f"'{field}' is required; allowed: {choices}.")
    if not isinstance(value, str) or value not in allowed:
        raise InvalidParameter(f"'{field}' must be one of {choices}.")
    return value
