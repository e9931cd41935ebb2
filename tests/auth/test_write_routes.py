"""Every route that changes something needs the write scope AND the edit permission.

The routes are read from the application's own OpenAPI document, so a route added later is
checked too.
"""

from __future__ import annotations

import re

import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient

from opendts.auth.permissions import Role
from opendts.kit.db import Database
from tests.factories import Account, make_account

READ = "dwh_transfers_read"
WRITE = "dwh_transfers_write"
CHANGES = {"POST", "PUT", "PATCH", "DELETE"}


def team_write_routes(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path template) of every team route that is not a read."""
    found = []
    for path, operations in app.openapi()["paths"].items():
        if path.startswith("/v1/teams/{team_id}"):
            found += [(m.upper(), path) for m in sorted(operations) if m.upper() in CHANGES]
    return found


def concrete(template: str, owner: Account) -> str:
    values = {"team_id": owner.team_id, "transfer_id": owner.transfer_id}
    return re.sub(r"\{(\w+)\}", lambda m: str(values.get(m.group(1), 1)), template)


def test_the_validation_posts_are_among_the_write_routes(app: FastAPI) -> None:
    routes = team_write_routes(app)
    assert ("POST", "/v1/teams/{team_id}/transfers/validations") in routes
    assert ("POST", "/v1/teams/{team_id}/transfers/{transfer_id}/validations") in routes
    assert len(routes) >= 10


@pytest.mark.parametrize(
    ("role", "scopes", "code"),
    [
        (Role.ADMIN, (READ,), "INSUFFICIENT_SCOPE"),  # a read-only key, whatever the role
        (Role.VIEWER, (READ, WRITE), "PERMISSION_ERROR"),  # a viewer, whatever the key
    ],
)
def test_every_write_route_refuses_a_read_only_caller(
    app: FastAPI, client: TestClient, db: Database, role: Role, scopes: tuple[str, ...], code: str
) -> None:
    owner = make_account(db)
    caller = make_account(db, role=role, scopes=scopes, team_id=owner.team_id)
    refused = {}
    for method, template in team_write_routes(app):
        response = client.request(
            method, concrete(template, owner), json={}, headers=caller.headers
        )
        refused[(method, template)] = (response.status_code, response.json()["error"]["code"])
    assert set(refused.values()) == {(403, code)}, refused


def test_an_editor_gets_past_authorisation_on_every_write_route(
    app: FastAPI, client: TestClient, db: Database
) -> None:
    owner = make_account(db)
    editor = make_account(db, role=Role.EDITOR, team_id=owner.team_id)
    for method, template in team_write_routes(app):
        response = client.request(
            method, concrete(template, owner), json={}, headers=editor.headers
        )
        assert response.status_code not in (401, 403, 500), (method, template, response.text)
