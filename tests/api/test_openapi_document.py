"""The OpenAPI document describes every ``/v1`` route, completely (no server, no database).

``problems`` lists what is missing for each operation; a route added without
``kit.openapi.operation(...)`` shows up there, which the last test proves with one.
Schemathesis (tests/contract/test_document_schemathesis.py) then checks that the server
behaves as described.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, Request
from starlette.responses import Response
from starlette.testclient import TestClient

from opendts.api.app import create_app
from opendts.api.routing import templates
from opendts.settings import Settings

COMMON = {"400", "401", "403", "429", "500", "503"}
OPERATION_ID = re.compile(r"^[a-z][A-Za-z]+$")  # ours, not FastAPI's generated ones
WRITES = {"post", "put", "patch"}


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> FastAPI:
    data = tmp_path_factory.mktemp("doc")
    return create_app(Settings(data_dir=data, database_url=f"sqlite:///{data / 'm.db'}"))


def document_of(app: FastAPI) -> dict[str, Any]:
    with TestClient(app) as client:
        response = client.get("/v1/openapi.json")
    assert response.status_code == 200, response.text
    document: dict[str, Any] = response.json()
    return document


def resolve(document: dict[str, Any], ref: str) -> dict[str, Any]:
    node: Any = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    assert isinstance(node, dict), ref
    return node


def problems(app: FastAPI) -> list[str]:
    """What the document lacks, one line per gap."""
    document = document_of(app)
    found: list[str] = []
    operations: dict[str, dict[str, Any]] = {}
    for template in templates(app.routes):
        if not template.path.startswith("/v1/teams/"):
            continue
        for method in template.methods:
            spec = document["paths"].get(template.path, {}).get(method.lower())
            where = f"{method} {template.path}"
            if spec is None:
                found.append(f"{where}: not in the document")
                continue
            operations[spec.get("operationId", where)] = spec
            found += [f"{where}: {gap}" for gap in operation_gaps(document, method.lower(), spec)]
    for operation_id, spec in operations.items():
        for response in spec["responses"].values():
            for name, target in response.get("links", {}).items():
                linked = operations.get(target["operationId"])
                if linked is None:
                    found.append(f"{operation_id}: link {name} to an unknown operation")
                    continue
                names = {p["name"] for p in linked.get("parameters", ())}
                if not set(target["parameters"]) <= names:
                    found.append(f"{operation_id}: link {name} names unknown parameters")
    if "HTTPValidationError" in str(document):
        found.append("FastAPI's HTTPValidationError is documented; our errors are the envelope")
    return found


def operation_gaps(document: dict[str, Any], method: str, spec: dict[str, Any]) -> list[str]:
    gaps = []
    if not OPERATION_ID.fullmatch(spec.get("operationId", "")):
        gaps.append(f"operationId {spec.get('operationId')!r} was not chosen")
    if not spec.get("summary") or not spec.get("description"):
        gaps.append("no summary or description")
    responses: dict[str, Any] = spec["responses"]
    successes = [code for code in responses if code.startswith("2")]
    if len(successes) != 1:
        gaps.append(f"success statuses {successes}")
    for code in successes:
        content = responses[code].get("content", {})
        if code != "204" and not any(media.get("schema") for media in content.values()):
            gaps.append(f"{code} has no schema")
    missing = COMMON - set(responses)
    path_ids = [p["name"] for p in spec.get("parameters", ()) if p["in"] == "path"]
    if set(path_ids) - {"team_id"} and "404" not in responses:
        missing.add("404")
    if method in WRITES:
        body = spec.get("requestBody", {})
        media = body.get("content", {}).get("application/json", {})
        if not body.get("required") or "$ref" not in media.get("schema", {}):
            gaps.append("no required JSON body schema")
        elif not media.get("examples"):
            gaps.append("no body example")
        else:
            resolve(document, media["schema"]["$ref"])
        if "413" not in responses:
            missing.add("413")
    if missing:
        gaps.append(f"statuses {sorted(missing)} not documented")
    for code, response in responses.items():
        if code.startswith("2"):
            continue
        schema = response.get("content", {}).get("application/json", {}).get("schema", {})
        if schema.get("$ref") != "#/components/schemas/ErrorEnvelope":
            gaps.append(f"{code} is not the error envelope")
        if not response.get("description"):
            gaps.append(f"{code} says nothing")
    for response in responses.values():
        if "X-Request-Id" not in response.get("headers", {}):
            gaps.append("a response without X-Request-Id")
    return gaps


def test_every_operation_is_documented(app: FastAPI) -> None:
    assert problems(app) == []


def test_the_document_has_every_v1_route(app: FastAPI) -> None:
    document = document_of(app)
    documented = {
        (method.upper(), path) for path, ops in document["paths"].items() for method in ops
    }
    routed = {
        (method, template.path)
        for template in templates(app.routes)
        if template.path.startswith("/v1/teams/")
        for method in template.methods
    }
    assert routed == documented
    assert len(routed) >= 25


def test_required_parameters_and_bodies_say_what_the_server_requires(app: FastAPI) -> None:
    document = document_of(app)
    runs = document["paths"]["/v1/teams/{team_id}/transfers/{transfer_id}/runs"]["get"]
    required = {p["name"] for p in runs["parameters"] if p["required"]}
    assert required == {"team_id", "transfer_id", "start_date", "end_date"}
    schemas = document["components"]["schemas"]
    assert set(schemas["CreateBackfillRequest"]["required"]) == {"range_start", "range_end"}
    assert schemas["UpdateBackfillStatusBody"]["properties"]["status"]["const"] == "CANCELLED"
    transfer = schemas["TransferConfigurationRequest"]
    assert set(transfer["required"]) == {"data_source_id", "destination_id", "display_name"}
    assert {"demo", "http", "sql", "file"} <= set(transfer["properties"]["data_source_id"]["enum"])
    assert document["security"] == [{"bearerAuth": []}]


def test_a_route_without_a_declaration_is_found(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'm.db'}"))

    @app.post("/v1/teams/{team_id}/gadgets/{gadget_id}")
    async def make_gadget(request: Request, team_id: int, gadget_id: int) -> Response:
        """Undocumented on purpose."""
        return Response(status_code=201)

    found = problems(app)
    assert found, "an undocumented route went unnoticed"
    assert all(line.startswith("POST /v1/teams/{team_id}/gadgets/{gadget_id}") for line in found)
    assert any("operationId" in line for line in found)
    assert any("no required JSON body schema" in line for line in found)
    assert any("not documented" in line for line in found)
