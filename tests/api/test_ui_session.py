"""The dashboard's session: an API key kept in an HttpOnly cookie, accepted by the API for
reads and for writes that carry the dashboard's header; and the backfill list's filters."""

from __future__ import annotations

from datetime import date

from starlette.testclient import TestClient

from opendts.auth.permissions import Role
from opendts.kit.db import Database
from tests.factories import Account, make_account, make_backfill, make_user, revoke, set_status


def sign_in(client: TestClient, key: str) -> dict[str, object]:
    response = client.post("/ui/session", json={"api_key": key})
    assert response.status_code == 200, response.text
    cookie = response.headers["set-cookie"]
    assert "opendts_session=" in cookie and "HttpOnly" in cookie
    assert "samesite=strict" in cookie.lower() and "Path=/" in cookie
    data: dict[str, object] = response.json()
    return data


def test_sign_in_lists_the_keys_teams_and_the_cookie_authenticates_reads(
    client: TestClient, db: Database, account: Account
) -> None:
    other = make_account(db, role=Role.VIEWER)  # a second team for the same person? no: a stranger
    data = sign_in(client, account.api_key)
    assert data == {"teams": [{"team_id": account.team_id, "name": "Team", "role": "admin"}]}
    backfills = client.get(f"/v1/teams/{account.team_id}/backfills")
    assert backfills.status_code == 200
    # The cookie never opens another team.
    assert client.get(f"/v1/teams/{other.team_id}/backfills").status_code == 403
    assert client.get("/ui/session").json() == data
    assert client.delete("/ui/session").status_code == 204
    client.cookies.clear()
    assert client.get(f"/v1/teams/{account.team_id}/backfills").status_code == 401
    assert client.get("/ui/session").status_code == 401


def test_cookie_writes_need_the_dashboard_header(
    client: TestClient, db: Database, account: Account
) -> None:
    sign_in(client, account.api_key)
    url = f"/v1/teams/{account.team_id}/transfers/{account.transfer_id}/backfills"
    body = {"range_start": "2024-01-01", "range_end": "2024-01-02"}
    assert client.post(url, json=body).status_code == 401  # a cross-site form cannot add it
    created = client.post(url, json=body, headers={"X-Opendts-UI": "1"})
    assert created.status_code == 200, created.text


def test_bad_keys_and_revoked_keys(client: TestClient, db: Database, account: Account) -> None:
    bad = client.post("/ui/session", json={"api_key": "odts_nope_nope"})
    assert bad.status_code == 401 and "set-cookie" not in bad.headers
    assert client.post("/ui/session", json={}).status_code == 400
    sign_in(client, account.api_key)
    revoke(db, account.key_id)
    assert client.get(f"/v1/teams/{account.team_id}/backfills").status_code == 401


def test_the_dashboard_page_is_served(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")


def test_the_list_filters_by_status_and_transfer(
    client: TestClient, db: Database, account: Account
) -> None:
    first = make_backfill(db, account, date(2024, 1, 1), date(2024, 1, 2))
    set_status(db, first.id, "COMPLETED")
    second = make_backfill(db, account, date(2024, 2, 1), date(2024, 2, 2))
    url = f"/v1/teams/{account.team_id}/backfills"
    contract = client.get(url, headers=account.headers).json()["data"]
    assert [b["transfer_backfill_id"] for b in contract] == [second.id]
    everything = client.get(url, params={"status": "all"}, headers=account.headers).json()
    assert [b["transfer_backfill_id"] for b in everything["data"]] == [second.id, first.id]
    done = client.get(url, params={"status": "completed"}, headers=account.headers).json()
    assert [b["transfer_backfill_id"] for b in done["data"]] == [first.id]
    other = client.get(
        url, params={"status": "all", "transfer_id": 999}, headers=account.headers
    ).json()
    assert other["data"] == []
    one = client.get(url, params={"status": "all", "limit": 1}, headers=account.headers).json()
    assert len(one["data"]) == 1
    bad = client.get(url, params={"status": "DONE"}, headers=account.headers)
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "INVALID_PARAMETER"
    assert client.get(url, params={"limit": 0}, headers=account.headers).status_code == 400
    ignored = client.get(url, params={"foo": "bar"}, headers=account.headers).json()["data"]
    assert ignored == contract


def test_a_key_that_opens_no_team_gets_a_reason_and_no_cookie(
    client: TestClient, db: Database
) -> None:
    loner = make_user(db)
    response = client.post("/ui/session", json={"api_key": loner.api_key})
    assert response.status_code == 403
    assert "set-cookie" not in response.headers
    error = response.json()["error"]
    assert error["code"] == "FORBIDDEN" and "not a member of any team" in error["description"]
