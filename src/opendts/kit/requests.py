"""Reading request bodies strictly, with errors that name the field to fix.

Every JSON body goes through ``json_object``, which applies one rule to all endpoints before
any endpoint sees the value: at most ``MAX_JSON_DEPTH`` levels of nesting (deeper values would
exhaust Python's recursion limit wherever they are serialised again: a 500), no NUL character
in any string or key (PostgreSQL cannot store it in text: a 503), and no string or key longer
than ``MAX_JSON_STRING`` characters (nothing a client configures needs more, and fields stored
in sized columns have their own, smaller bounds).
"""

from __future__ import annotations

import re
from datetime import date
from typing import Any

import orjson

from opendts.kit.errors import InvalidParameter

_DATE_PATTERN = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")

#: Levels of arrays and objects a body may nest (the body itself is level 1).
MAX_JSON_DEPTH = 64
#: Characters a string (or an object key) of a body may have.
MAX_JSON_STRING = 32_768


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
        if "depth" in exc.msg:  # orjson's own limit (1024) is deeper than ours
            raise _too_deep() from None
        msg = f"The body is not valid JSON ({exc.msg}). Send e.g. {example}."
        raise InvalidParameter(msg) from None
    if not isinstance(value, dict):
        raise InvalidParameter(f"The body must be a JSON object, e.g. {example}.")
    check_json_value(value)
    return value


def _too_deep(where: str | None = None) -> InvalidParameter:
    inside = f", in {where}" if where else ""
    return InvalidParameter(
        f"The body nests arrays and objects more than {MAX_JSON_DEPTH} levels deep (the "
        f"limit){inside}. Send a flatter value.",
    )


def _field_name(path: list[str | int], *, parts: int = 6) -> str:
    # The first few parts name the field a client typed; the rest would only be noise.
    name = ""
    for part in path[:parts]:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else part)
    if len(path) > parts:
        name += "…"
    printable = "".join(ch if ch.isprintable() else "?" for ch in name[:80])
    return f"'{printable}'" if name else "the body"


def _check_text(text: str, path: list[str | int], what: str) -> None:
    if "\x00" in text:
        raise InvalidParameter(
            f"{_field_name(path)} contains a NUL character (\\u0000) in {what}; "
            "remove it: text fields cannot hold it.",
        )
    if len(text) > MAX_JSON_STRING:
        raise InvalidParameter(
            f"{_field_name(path)} has {what} of {len(text)} characters; "
            f"the limit is {MAX_JSON_STRING}.",
        )


def check_json_value(value: Any) -> None:
    """Apply the body rule (depth, NUL characters, string length) to a parsed JSON value.

    Walks the value with an explicit stack, so a deep value cannot exhaust the recursion limit
    while it is being checked.
    """
    stack: list[tuple[Any, list[str | int], int]] = [(value, [], 1)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, str):
            _check_text(item, path, "a string")
            continue
        if not isinstance(item, dict | list):
            continue
        if depth > MAX_JSON_DEPTH:
            raise _too_deep(_field_name(path) if path else None)
        if isinstance(item, dict):
            for key, child in item.items():
                _check_text(key, [*path, key], "a key")
                stack.append((child, [*path, key], depth + 1))
        else:
            stack.extend((child, [*path, index], depth + 1) for index, child in enumerate(item))


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


def required_text(payload: dict[str, Any], field: str, *, max_length: int = 200) -> str:
    """A non-blank string field (trimmed)."""
    value = payload.get(field)
    if value is None:
        raise InvalidParameter(f"'{field}' is required: a non-empty string.")
    if not isinstance(value, str) or not value.strip():
        raise InvalidParameter(f"'{field}' must be a non-empty string.")
    if len(value.strip()) > max_length:
        raise InvalidParameter(f"'{field}' must be at most {max_length} characters.")
    return value.strip()


def optional_text(payload: dict[str, Any], field: str, *, max_length: int = 200) -> str | None:
    """A string field that may be missing or null."""
    if payload.get(field) is None:
        return None
    return required_text(payload, field, max_length=max_length)


def required_int(payload: dict[str, Any], field: str, *, minimum: int = 1) -> int:
    """An integer field (JSON number without a fraction; not a boolean)."""
    value = payload.get(field)
    if value is None:
        raise InvalidParameter(f"'{field}' is required: an integer.")
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidParameter(f"'{field}' must be an integer.")
    if value < minimum or value > 9223372036854775807:
        raise InvalidParameter(f"'{field}' must be an integer of at least {minimum}.")
    return value


def optional_int(payload: dict[str, Any], field: str, *, minimum: int = 0) -> int | None:
    """An integer field that may be missing or null."""
    if payload.get(field) is None:
        return None
    return required_int(payload, field, minimum=minimum)


def optional_object(payload: dict[str, Any], field: str) -> dict[str, Any]:
    """A JSON object field; missing or null is an empty object."""
    value = payload.get(field)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidParameter(f"'{field}' must be a JSON object.")
    return value


def optional_list(payload: dict[str, Any], field: str) -> list[Any]:
    """A JSON array field; missing or null is an empty list."""
    value = payload.get(field)
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidParameter(f"'{field}' must be a JSON array.")
    return value
