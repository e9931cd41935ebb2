"""Who may call what: key scope x role permission x team membership, 401s, and 404 across teams."""

from __future__ import annotations

import re
from datetime import date
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from opendts.auth.permissions import Role
from opendts.kit.db import Database
from tests.api.support import (
    backfill_url,
    create_url,
    data_of,
    error_of,
    fetched,
    latest_url,
    list_url,
)
from tests.factories import (
    Account,
    add_key,
    backfill_rows,
    make_account,
    make_backfill,
    make_user,
    revoke,
)

READ = "dwh_transfers_read"
WRITE = "dwh_transfers_write"
SCOPES = {"read": (READ,), "write": (WRITE,), "read+write": (READ, WRITE)}
BODY = {"range_start": "2024-01-01", "range_end": "2024-01-03"}
NEEDS = {  # endpoint: (scope it needs, whether it needs dwh.transfer.edit)
    "list": (READ, False),
    "get": (READ, False),
    "latest": (READ, False),
    "create": (WRITE, True),
    "cancel": (WRITE, True),
}


def call(client: TestClient, endpoint: str, owner: Account, backfill_id: int, headers: Any):  # type: ignore[no-untyped-def]
    team, transfer = owner.team_id, owner.transfer_id
    if endpoint == "list":
        return client.get(list_url(team), headers=headers)
    if endpoint == "get":
        return client.get(backfill_url(team, backfill_id), headers=headers)
    if endpoint == "latest":
        return client.get(latest_url(team, transfer), headers=headers)
    if endpoint == "create":
        url = create_url(team, transfer)
        return client.post(
            url, json={"range_start": "2024-02-01", "range_end": "2024-02-03"}, headers=headers
        )
    if endpoint == "cancel":
        return client.patch(
            backfill_url(team, backfill_id), json={"status": "CANCELLED"}, headers=headers
        )
    raise AssertionError(endpoint)


def refusals(endpoint: str, scopes: tuple[str, ...], membership: str) -> set[str]:
    """The 403 codes docs/api.md gives for every rule this caller breaks (empty: allowed)."""
    scope, needs_edit = NEEDS[endpoint]
    broken = set()
    if scope not in scopes:
        broken.add("INSUFFICIENT_SCOPE")
    if membership == "outsider":
        broken.add("FORBIDDEN")
    elif membership == "viewer" and needs_edit:
        broken.add("PERMISSION_ERROR")
    return broken


def caller_for(db: Database, owner: Account, membership: str, scopes: tuple[str, ...]) -> Account:
    if membership == "outsider":
        # An admin with a full-power key, but of another team.
        return make_account(db, role=Role.ADMIN, scopes=scopes)
    return make_account(
        db,
        role=Role(membership),
        scopes=scopes,
        team_id=owner.team_id,
        transfer_id=owner.transfer_id,
    )


@pytest.mark.parametrize("membership", ["viewer", "editor", "admin", "outsider"])
@pytest.mark.parametrize("scopes", list(SCOPES), ids=list(SCOPES))
@pytest.mark.parametrize("endpoint", ["list", "create", "cancel"])
def test_access_matrix(
    client: TestClient, db: Database, endpoint: str, scopes: str, membership: str
) -> None:
    owner = make_account(db)
    existing = make_backfill(db, owner, date(2024, 1, 1), date(2024, 1, 10))
    caller = caller_for(db, owner, membership, SCOPES[scopes])
    before = backfill_rows(db)

    response = call(client, endpoint, owner, existing.id, caller.headers)

    broken = refusals(endpoint, SCOPES[scopes], membership)
    if broken:
        error = error_of(response, 403)
        # One broken rule: the code names it. Several: any of them is a fair answer.
        assert error["code"] in broken
        assert backfill_rows(db) == before  # a refused write changes nothing
        return
    data = data_of(response)
    if endpoint == "list":
        assert [item["transfer_backfill_id"] for item in data] == [existing.id]
    elif endpoint == "create":
        assert data["status"] == "CREATED"
        assert data["created_user_id"] == caller.user_id
        assert len(backfill_rows(db)) == len(before) + 1
    else:
        assert data["status"] == "CANCELLED"
        assert data["removed_user_id"] == caller.user_id
        assert fetched(client, owner, existing.id)["status"] == "CANCELLED"


@pytest.mark.parametrize("endpoint", ["get", "latest"])
@pytest.mark.parametrize(
    ("membership", "scopes", "expected"),
    [
        ("viewer", (READ,), 200),
        ("viewer", (WRITE,), 403),
        ("editor", (READ, WRITE), 200),
        ("outsider", (READ, WRITE), 403),
    ],
)
def test_other_read_endpoints_follow_the_same_rules(
    client: TestClient,
    db: Database,
    endpoint: str,
    membership: str,
    scopes: tuple[str, ...],
    expected: int,
) -> None:
    owner = make_account(db)
    existing = make_backfill(db, owner, date(2024, 1, 1), date(2024, 1, 10))
    caller = caller_for(db, owner, membership, scopes)
    response = call(client, endpoint, owner, existing.id, caller.headers)
    if expected == 200:
        assert data_of(response)["transfer_backfill_id"] == existing.id
    else:
        assert error_of(response, 403)["code"] in refusals(endpoint, scopes, membership)


def test_a_user_in_no_team_at_all_is_403(
    client: TestClient, db: Database, account: Account
) -> None:
    loner = make_user(db)
    error_of(client.get(list_url(account.team_id), headers=loner.headers), 403, "FORBIDDEN")
    response = client.post(
        create_url(account.team_id, account.transfer_id), json=BODY, headers=loner.headers
    )
    error_of(response, 403, "FORBIDDEN")
    assert backfill_rows(db) == []


def test_roles_are_per_team(client: TestClient, db: Database) -> None:
    """Admin in one team, viewer in another: the viewer role applies in that other team."""
    home = make_account(db, role=Role.ADMIN)
    other = make_account(db)
    with db.session(write=True) as session:
        from opendts.teams.service import set_role

        set_role(session, other.team_id, home.user_id, Role.VIEWER)
    url = create_url(other.team_id, other.transfer_id)
    error_of(client.post(url, json=BODY, headers=home.headers), 403, "PERMISSION_ERROR")
    assert data_of(client.get(list_url(other.team_id), headers=home.headers)) == []
    data_of(
        client.post(create_url(home.team_id, home.transfer_id), json=BODY, headers=home.headers)
    )


def test_the_path_team_decides_not_the_key_owner_team(client: TestClient, db: Database) -> None:
    """A member of team A cannot reach team B's backfill through team B's URL."""
    a = make_account(db)
    b = make_account(db)
    theirs = make_backfill(db, b, date(2024, 1, 1), date(2024, 1, 2))
    error_of(client.get(backfill_url(b.team_id, theirs.id), headers=a.headers), 403, "FORBIDDEN")
    error_of(
        client.patch(
            backfill_url(b.team_id, theirs.id), json={"status": "CANCELLED"}, headers=a.headers
        ),
        403,
    )
    assert fetched(client, b, theirs.id)["status"] == "CREATED"


# 401: no usable credentials.

WELL_FORMED_UNKNOWN = "odts_AbCdEfGh1234_" + "x" * 43


def credentials(account: Account, kind: str) -> dict[str, str]:
    lookup_id = account.api_key.split("_")[1]
    values = {
        "missing": None,
        "empty": "",
        "basic": "Basic x",
        "basic-with-key": f"Basic {account.api_key}",
        "bearer-nothing": "Bearer",
        "bearer-space": "Bearer ",
        "garbage": "Bearer not-a-key",
        "unknown": f"Bearer {WELL_FORMED_UNKNOWN}",
        "wrong-secret": f"Bearer odts_{lookup_id}_{'A' * 43}",
        "key-without-scheme": account.api_key,
    }
    value = values[kind]
    return {} if value is None else {"Authorization": value}


EXPECTED_401 = {  # docs/api.md: no Bearer header -> UNAUTHORIZED; bad key -> API_KEY_INVALID
    "missing": {"UNAUTHORIZED"},
    "empty": {"UNAUTHORIZED"},
    "basic": {"UNAUTHORIZED"},
    "basic-with-key": {"UNAUTHORIZED"},
    "bearer-nothing": {"UNAUTHORIZED", "API_KEY_INVALID"},
    "bearer-space": {"UNAUTHORIZED", "API_KEY_INVALID"},
    "garbage": {"API_KEY_INVALID"},
    "unknown": {"API_KEY_INVALID"},
    "wrong-secret": {"API_KEY_INVALID"},
    "key-without-scheme": {"UNAUTHORIZED"},
}


@pytest.mark.parametrize("endpoint", ["list", "create", "cancel"])
@pytest.mark.parametrize("kind", list(EXPECTED_401))
def test_no_usable_credentials_is_401_with_www_authenticate(
    client: TestClient, db: Database, account: Account, endpoint: str, kind: str
) -> None:
    existing = make_backfill(db, account, date(2024, 1, 1), date(2024, 1, 10))
    before = backfill_rows(db)
    response = call(client, endpoint, account, existing.id, credentials(account, kind))
    assert error_of(response, 401)["code"] in EXPECTED_401[kind]  # error_of checks WWW-Authenticate
    assert backfill_rows(db) == before


@pytest.mark.parametrize("endpoint", ["list", "create", "cancel"])
def test_a_revoked_key_is_401_at_once(
    client: TestClient, db: Database, account: Account, endpoint: str
) -> None:
    existing = make_backfill(db, account, date(2024, 1, 1), date(2024, 1, 10))
    data_of(client.get(list_url(account.team_id), headers=account.headers))  # works before
    revoke(db, account.key_id)
    before = backfill_rows(db)
    response = call(client, endpoint, account, existing.id, account.headers)
    error_of(response, 401, "API_KEY_INVALID")
    assert backfill_rows(db) == before


def test_revoking_one_key_leaves_the_users_other_keys_working(
    client: TestClient, db: Database, account: Account
) -> None:
    spare = add_key(db, account.user_id)
    revoke(db, account.key_id)
    error_of(client.get(list_url(account.team_id), headers=account.headers), 401)
    assert data_of(client.get(list_url(account.team_id), headers=spare.headers)) == []


def test_the_scheme_name_is_case_insensitive(client: TestClient, account: Account) -> None:
    for scheme in ("bearer", "BEARER", "Bearer"):
        headers = {"Authorization": f"{scheme} {account.api_key}"}
        assert data_of(client.get(list_url(account.team_id), headers=headers)) == []


# 404: another team's objects are indistinguishable from missing ones.


def same_404(
    foreign: httpx.Response, missing: httpx.Response, foreign_id: int, missing_id: int
) -> None:
    a = error_of(foreign, 404)
    b = error_of(missing, 404)

    def blind(error: dict[str, str], object_id: int) -> dict[str, str]:
        return {k: re.sub(rf"\b{object_id}\b", "<id>", v) for k, v in error.items()}

    assert blind(a, foreign_id) == blind(b, missing_id)


def test_another_teams_backfill_is_404_like_a_missing_one(
    client: TestClient, db: Database, account: Account
) -> None:
    stranger = make_account(db)
    theirs = make_backfill(db, stranger, date(2024, 1, 1), date(2024, 1, 5))
    missing = theirs.id + 1000
    before = backfill_rows(db)

    get_foreign = client.get(backfill_url(account.team_id, theirs.id), headers=account.headers)
    get_missing = client.get(backfill_url(account.team_id, missing), headers=account.headers)
    same_404(get_foreign, get_missing, theirs.id, missing)
    assert get_foreign.json()["error"]["code"] == "BACKFILL_NOT_FOUND"

    body = {"status": "CANCELLED"}
    cancel_foreign = client.patch(
        backfill_url(account.team_id, theirs.id), json=body, headers=account.headers
    )
    cancel_missing = client.patch(
        backfill_url(account.team_id, missing), json=body, headers=account.headers
    )
    same_404(cancel_foreign, cancel_missing, theirs.id, missing)
    assert backfill_rows(db) == before  # the stranger's backfill was not cancelled


def test_another_teams_transfer_is_404_like_a_missing_one(
    client: TestClient, db: Database, account: Account
) -> None:
    stranger = make_account(db)
    make_backfill(db, stranger, date(2024, 1, 1), date(2024, 1, 5))  # it has a latest backfill
    foreign, missing = stranger.transfer_id, stranger.transfer_id + 1000
    before = backfill_rows(db)

    latest_foreign = client.get(latest_url(account.team_id, foreign), headers=account.headers)
    latest_missing = client.get(latest_url(account.team_id, missing), headers=account.headers)
    same_404(latest_foreign, latest_missing, foreign, missing)
    assert latest_foreign.json()["error"]["code"] == "TRANSFER_NOT_FOUND"

    create_foreign = client.post(
        create_url(account.team_id, foreign), json=BODY, headers=account.headers
    )
    create_missing = client.post(
        create_url(account.team_id, missing), json=BODY, headers=account.headers
    )
    same_404(create_foreign, create_missing, foreign, missing)
    assert backfill_rows(db) == before  # nothing was created in either team
