"""Who may do what: scope, role permission and team membership, on both databases."""

from __future__ import annotations

from datetime import date

import pytest
from starlette.testclient import TestClient

from opendts.auth.permissions import Role
from opendts.auth.service import revoke_key
from opendts.kit.db import Database
from tests.factories import Account, make_account, make_backfill

READ = "dwh_transfers_read"
WRITE = "dwh_transfers_write"
BODY = {"range_start": "2024-01-01", "range_end": "2024-01-03"}


def call(client: TestClient, kind: str, owner: Account, headers: dict[str, str]) -> int:
    team, transfer = owner.team_id, owner.transfer_id
    if kind == "list":
        return client.get(f"/v1/teams/{team}/backfills", headers=headers).status_code
    if kind == "latest":
        url = f"/v1/teams/{team}/transfers/{transfer}/backfills/latest"
        return client.get(url, headers=headers).status_code
    if kind == "create":
        url = f"/v1/teams/{team}/transfers/{transfer}/backfills"
        return client.post(url, json=BODY, headers=headers).status_code
    raise AssertionError(kind)


@pytest.mark.parametrize(
    ("role", "scopes", "kind", "expected"),
    [
        (Role.VIEWER, (READ,), "list", 200),
        (Role.VIEWER, (READ, WRITE), "create", 403),  # role lacks dwh.transfer.edit
        (Role.EDITOR, (READ,), "create", 403),  # key lacks dwh_transfers_write
        (Role.EDITOR, (WRITE,), "list", 403),  # key lacks dwh_transfers_read
        (Role.EDITOR, (WRITE,), "create", 200),
        (Role.EDITOR, (READ, WRITE), "list", 200),
        (Role.ADMIN, (READ, WRITE), "create", 200),
        (Role.ADMIN, (WRITE,), "latest", 403),
    ],
)
def test_scope_and_permission_are_both_required(
    client: TestClient, db: Database, role: Role, scopes: tuple[str, ...], kind: str, expected: int
) -> None:
    owner = make_account(db)
    caller = make_account(db, role=role, scopes=scopes, team_id=owner.team_id)
    status = call(client, kind, owner, caller.headers)
    if kind == "latest" and expected == 200:
        expected = 404  # allowed, but the transfer has no backfill yet
    assert status == expected


def test_error_codes_say_which_rule_refused(client: TestClient, db: Database) -> None:
    owner = make_account(db)
    viewer = make_account(db, role=Role.VIEWER, team_id=owner.team_id)
    read_only = make_account(db, role=Role.ADMIN, scopes=(READ,), team_id=owner.team_id)
    outsider = make_account(db)
    url = f"/v1/teams/{owner.team_id}/transfers/{owner.transfer_id}/backfills"
    codes = {
        name: client.post(url, json=BODY, headers=account.headers).json()["error"]["code"]
        for name, account in [("viewer", viewer), ("read_only", read_only), ("out", outsider)]
    }
    assert codes == {
        "viewer": "PERMISSION_ERROR",
        "read_only": "INSUFFICIENT_SCOPE",
        "out": "FORBIDDEN",
    }


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Basic dXNlcjpwYXNz", "Bearer", "Bearer ", "bearer odts_unknown", "Token abc"],
)
def test_missing_or_malformed_credentials_get_401(
    client: TestClient, account: Account, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    response = client.get(f"/v1/teams/{account.team_id}/backfills", headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.json()["error"]["code"] in {"UNAUTHORIZED", "API_KEY_INVALID"}


def test_a_key_that_looks_right_but_is_not_ours_gets_401(
    client: TestClient, account: Account
) -> None:
    lookup = account.api_key.split("_")[1]
    forged = f"odts_{lookup}_{'A' * 43}"
    response = client.get(
        f"/v1/teams/{account.team_id}/backfills", headers={"Authorization": f"Bearer {forged}"}
    )
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "API_KEY_INVALID"


def test_revoked_key_stops_working_at_once(
    client: TestClient, db: Database, account: Account
) -> None:
    url = f"/v1/teams/{account.team_id}/backfills"
    assert client.get(url, headers=account.headers).status_code == 200
    with db.session(write=True) as session:
        revoke_key(session, account.key_id)
    response = client.get(url, headers=account.headers)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "API_KEY_INVALID"


def test_other_teams_objects_are_404_exactly_like_missing_ones(
    client: TestClient, db: Database, account: Account
) -> None:
    stranger = make_account(db)
    theirs = make_backfill(db, stranger, date(2024, 1, 1), date(2024, 1, 5))
    team = account.team_id
    pairs = [
        (f"/v1/teams/{team}/backfills/{theirs.id}", f"/v1/teams/{team}/backfills/999999"),
        (
            f"/v1/teams/{team}/transfers/{stranger.transfer_id}/backfills/latest",
            f"/v1/teams/{team}/transfers/999999/backfills/latest",
        ),
    ]
    for foreign, missing in pairs:
        a = client.get(foreign, headers=account.headers)
        b = client.get(missing, headers=account.headers)
        assert (a.status_code, b.status_code) == (404, 404)
        assert a.json()["error"]["code"] == b.json()["error"]["code"]
    create = client.post(
        f"/v1/teams/{team}/transfers/{stranger.transfer_id}/backfills",
        json=BODY,
        headers=account.headers,
    )
    assert (create.status_code, create.json()["error"]["code"]) == (404, "TRANSFER_NOT_FOUND")
    cancel = client.patch(
        f"/v1/teams/{team}/backfills/{theirs.id}",
        json={"status": "CANCELLED"},
        headers=account.headers,
    )
    assert (cancel.status_code, cancel.json()["error"]["code"]) == (404, "BACKFILL_NOT_FOUND")
    # And the stranger's backfill is untouched.
    fetched = client.get(
        f"/v1/teams/{stranger.team_id}/backfills/{theirs.id}", headers=stranger.headers
    )
    assert fetched.json()["data"]["status"] == "CREATED"
