"""The OpenAPI document: declared next to each route, finished in one place.

Endpoints read their bodies and query strings themselves (a 401 comes before a 400, and every
400 names the field to fix), so FastAPI cannot infer either. Each route declares its operation
instead, with ``operation(...)``: the pydantic models of its body, query string and success
response, what its error statuses mean, request examples and links for stateful clients. The
statuses every ``/v1`` operation can answer (400, 401, 403, 429, 500, 503; 413 with a body) are
added here, in the one error envelope, so no route can forget them. ``install`` finishes the
document FastAPI builds from those declarations (body schemas, response headers, security).

To document a new endpoint::

    @router.post(
        "/teams/{team_id}/things",
        **operation(
            "createThing",
            "Create a thing",
            returns=enveloped(ThingOut),
            status=201,
            body=CreateThingRequest,
            examples={"minimal": {"name": "x"}},
            errors={404: "THING_NOT_FOUND: ..."},
        ),
    )

``tests/api/test_openapi_document.py`` fails for a ``/v1`` route declared without it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, Field, create_model
from pydantic.json_schema import models_json_schema
from starlette.responses import Response

#: Statuses any ``/v1`` operation can answer, with what they mean everywhere.
COMMON_ERRORS: dict[int, str] = {
    400: (
        "INVALID_PARAMETER: a path id, query parameter or body field is missing or malformed; "
        "error.description names it."
    ),
    401: "UNAUTHORIZED or API_KEY_INVALID: no Bearer key, or an unknown, malformed or revoked one.",
    403: (
        "INSUFFICIENT_SCOPE, PERMISSION_ERROR or FORBIDDEN: the key lacks the scope, the user's "
        "role lacks the permission, or the user is not a member of the team."
    ),
    429: "TOO_MANY_REQUESTS: the key used its hourly budget; retry after Retry-After seconds.",
    500: "INTERNAL_SERVER_ERROR: a bug; error.description carries the request id to report.",
    503: (
        "SERVICE_UNAVAILABLE: the metadata database cannot be reached; retry after Retry-After "
        "seconds."
    ),
}
#: Added to every operation that takes a body.
BODY_ERRORS: dict[int, str] = {
    400: (
        "INVALID_PARAMETER: the body is not a JSON object sent as application/json, breaks the "
        "body rule (nested deeper than 64 levels, a NUL character (\\u0000) in a key or "
        "string, a string longer than 32,768 characters), or a path id, query parameter or body "
        "field is missing or malformed; error.description names it."
    ),
    413: "PAYLOAD_TOO_LARGE: the body is larger than OPENDTS_MAX_REQUEST_BYTES.",
}

_HEADERS: dict[str, dict[str, Any]] = {
    "X-Request-Id": {
        "description": "The request id (the same as meta.request_id); quote it to report.",
        "required": True,
        "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{8,50}$"},
    },
    "Retry-After": {
        "description": "Whole seconds to wait before retrying.",
        "required": True,
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    },
    "WWW-Authenticate": {
        "description": "The scheme to authenticate with.",
        "required": True,
        "schema": {"type": "string"},
    },
    "X-RateLimit-Limit": {
        "description": "Requests this key may make per clock hour.",
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    },
    "X-RateLimit-Remaining": {
        "description": "Requests this key has left in the current clock hour.",
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    },
}
_STATUS_HEADERS: dict[int, tuple[str, ...]] = {
    401: ("WWW-Authenticate",),
    429: ("Retry-After", "X-RateLimit-Limit", "X-RateLimit-Remaining"),
    503: ("Retry-After",),
}

#: Models the document carries that FastAPI does not see (request bodies, event data), by name.
_COMPONENTS: dict[str, type[BaseModel]] = {}
_ENVELOPES: dict[str, type[BaseModel]] = {}


class Meta(BaseModel):
    """The envelope's ``meta``."""

    request_id: str = Field(
        pattern=r"^[A-Za-z0-9_-]+$", min_length=8, max_length=50, description="The request id."
    )


class ErrorDetail(BaseModel):
    """What went wrong: a stable code, a short message, what to fix."""

    code: str = Field(pattern=r"^[A-Z][A-Z0-9_]*$", examples=["INVALID_PARAMETER"])
    message: str = Field(min_length=1, max_length=255, examples=["Invalid parameter"])
    description: str | None = Field(
        None, max_length=255, examples=["'range_end' must be a date string as YYYY-MM-DD."]
    )


class ErrorEnvelope(BaseModel):
    """Every error: ``{meta, error}``, nothing else."""

    meta: Meta
    error: ErrorDetail


def enveloped(data: Any, name: str) -> type[BaseModel]:
    """The success envelope ``{meta, data}`` around ``data`` (a model or ``list[Model]``)."""
    known = _ENVELOPES.get(name)
    if known is not None:
        if known.model_fields["data"].annotation != data:
            raise ValueError(f"envelope {name} is already declared around another type")
        return known
    model: type[BaseModel] = create_model(name, meta=(Meta, ...), data=(data, ...))
    _ENVELOPES[name] = model
    return model


def link(operation_id: str, description: str, **parameters: str) -> dict[str, Any]:
    """An OpenAPI link: call ``operation_id`` with ``parameters`` (runtime expressions)."""
    return {"operationId": operation_id, "parameters": parameters, "description": description}


def _component(model: type[BaseModel]) -> dict[str, str]:
    known = _COMPONENTS.setdefault(model.__name__, model)
    if known is not model:
        raise ValueError(f"two models are named {model.__name__}")
    return {"$ref": f"#/components/schemas/{model.__name__}"}


@dataclass(frozen=True, slots=True)
class EventStream:
    """A ``text/event-stream`` response: events named ``names`` whose ``data`` is JSON ``data``."""

    names: tuple[str, ...]
    data: type[BaseModel]

    def schema(self) -> dict[str, Any]:
        """One event, as OpenAPI describes the items of a stream."""
        return {
            "type": "object",
            "required": ["event", "data"],
            "properties": {
                "event": {"type": "string", "enum": list(self.names)},
                "id": {"type": "string", "pattern": "^[0-9]+$"},
                "data": {
                    "type": "string",
                    "contentMediaType": "application/json",
                    "contentSchema": _component(self.data),
                },
            },
        }


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema()
    required = set(schema.get("required", ()))
    parameters = []
    for name, field in schema["properties"].items():
        # ``X | None = None`` means "may be left out": a query string has no null.
        branches = [b for b in field.get("anyOf", ()) if b != {"type": "null"}]
        if len(branches) == 1:
            field = {**branches[0], **{k: v for k, v in field.items() if k != "anyOf"}}
        field = {k: v for k, v in field.items() if k not in ("title", "default")}
        description = field.pop("description", None)
        parameter: dict[str, Any] = {
            "name": name,
            "in": "query",
            "required": name in required,
            "schema": field,
        }
        if description:
            parameter["description"] = description
        parameters.append(parameter)
    return parameters


def operation(
    operation_id: str,
    summary: str,
    *,
    returns: type[BaseModel] | EventStream | None,
    status: int = 200,
    description: str = "Success.",
    body: type[BaseModel] | None = None,
    examples: Mapping[str, Any] | None = None,
    query: type[BaseModel] | None = None,
    errors: Mapping[int, str] | None = None,
    links: Mapping[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Keyword arguments of a route decorator that document one ``/v1`` operation.

    ``returns`` is the success body's model (an ``EventStream`` for server-sent events, None
    for no body, e.g. 204); ``errors`` adds statuses beyond ``COMMON_ERRORS`` (or says more
    about one of them); ``examples`` are request bodies by name.
    """
    success: dict[str, Any] = {"description": description}
    if isinstance(returns, EventStream):
        success["content"] = {"text/event-stream": {"schema": returns.schema()}}
    elif returns is not None:
        success["model"] = returns
    if links:
        success["links"] = dict(links)
    declared = {**COMMON_ERRORS, **(BODY_ERRORS if body is not None else {}), **(errors or {})}
    responses: dict[int | str, dict[str, Any]] = {status: success}
    for code, meaning in sorted(declared.items()):
        responses[code] = {"model": ErrorEnvelope, "description": meaning}
    extra: dict[str, Any] = {}
    if body is not None:
        content: dict[str, Any] = {"schema": _component(body)}
        if examples:
            content["examples"] = {name: {"value": value} for name, value in examples.items()}
        extra["requestBody"] = {"required": True, "content": {"application/json": content}}
    if query is not None:
        extra["parameters"] = _query_parameters(query)
    return {
        "operation_id": operation_id,
        "summary": summary,
        "status_code": status,
        "response_class": Response,
        "responses": responses,
        "openapi_extra": extra or None,
    }


def _component_schemas() -> dict[str, Any]:
    _, definitions = models_json_schema(
        [(model, "validation") for model in _COMPONENTS.values()],
        ref_template="#/components/schemas/{model}",
    )
    defs: dict[str, Any] = definitions.get("$defs", {})
    return defs


def _without_defaults(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {k: _without_defaults(v) for k, v in schema.items() if k != "default"}
    if isinstance(schema, list):
        return [_without_defaults(item) for item in schema]
    return schema


def _finish(document: dict[str, Any]) -> dict[str, Any]:
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for name, schema in _component_schemas().items():
        # A model in a body and in a response is one component: it must mean the same there.
        if name in schemas and _without_defaults(schemas[name]) != _without_defaults(schema):
            raise ValueError(f"the request schema {name} differs from the response schema")
        schemas[name] = schema
    for path, operations in document.get("paths", {}).items():
        if not path.startswith("/v1/"):
            continue
        for spec in operations.values():
            _finish_operation(spec)
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    components["securitySchemes"] = {
        "bearerAuth": {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key: `Authorization: Bearer odts_...`.",
        }
    }
    components["headers"] = dict(_HEADERS)
    document["security"] = [{"bearerAuth": []}]
    return document


def _finish_operation(spec: dict[str, Any]) -> None:
    responses: dict[str, Any] = spec["responses"]
    validation = responses.get("422", {}).get("content", {}).get("application/json", {})
    if validation.get("schema", {}).get("$ref", "").endswith("/HTTPValidationError"):
        del responses["422"]  # FastAPI's default; our validation errors are 400s
    for code, response in responses.items():
        names = ("X-Request-Id", *_STATUS_HEADERS.get(int(code), ()))
        if code.startswith("2"):
            names += ("X-RateLimit-Limit", "X-RateLimit-Remaining")
        headers = response.setdefault("headers", {})
        for name in names:
            headers.setdefault(name, {"$ref": f"#/components/headers/{name}"})
    if "description" in spec:
        spec["description"] = spec["description"].replace("``", "`")  # docstrings' rST


def install(app: FastAPI) -> None:
    """Serve the finished document at the app's ``openapi_url`` (built once, on first use)."""
    build: Callable[[], dict[str, Any]] = app.openapi
    finished: dict[str, Any] = {}

    def openapi() -> dict[str, Any]:
        document = build()
        if finished.get("source") is not document:
            finished["source"] = document
            finished["result"] = _finish(copy.deepcopy(document))
        result: dict[str, Any] = finished["result"]
        return result

    app.openapi = openapi  # type: ignore[method-assign]
