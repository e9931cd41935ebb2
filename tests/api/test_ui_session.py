"""The dashboard's session: a server-side session opened with an API key, its id in an HttpOnly
cookie, accepted by the API for reads and for writes that carry the dashboard's header, ended by
sign-out, by revoking the key, when idle and when too old; and the backfill list's filters."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from fastapi import FastAPI
from sqlalchemy import select
from starlette.testclient import TestClient

from opendts.auth.permissions import Role
from opendts.auth.sessions import UiSession, hash_token
from opendts.kit.clock import set_clock
from opendts.kit.db import Database
from opendts.settings import Settings
from tests.api.support import error_of
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


def session_cookie(client: TestClient) -> str:
    value = client.cookies.get("opendts_session")
    assert value
    return value


def travel(minutes: float) -> None:
    """Move the server's clock ``minutes`` ahead of now."""
    moved = datetime.now(UTC) + timedelta(minutes=minutes)
    set_clock(lambda: moved)


def test_the_cookie_is_a_session_id_stored_only_as_a_hash(
    client: TestClient, db: Database, account: Account
) -> None:
    sign_in(client, account.api_key)
    token = session_cookie(client)
    secret = account.api_key.rsplit("_", 1)[1]
    assert secret not in token and account.api_key not in token
    with db.session() as session:
        rows = session.scalars(select(UiSession)).all()
    assert [row.api_key_id for row in rows] == [account.key_id]
    assert rows[0].token_hash == hash_token(token) and token not in rows[0].token_hash
    # The key itself is no cookie: only a session the server opened is.
    client.cookies.set("opendts_session", account.api_key)
    response = client.get(f"/v1/teams/{account.team_id}/backfills")
    assert error_of(response, 401, "SESSION_ENDED")


def test_each_sign_in_is_its_own_session(
    client: TestClient, db: Database, account: Account
) -> None:
    sign_in(client, account.api_key)
    first = session_cookie(client)
    sign_in(client, account.api_key)
    second = session_cookie(client)
    assert first != second
    client.delete("/ui/session")  # ends the second only
    client.cookies.set("opendts_session", first)
    assert client.get(f"/v1/teams/{account.team_id}/backfills").status_code == 200


def test_sessions_end_when_idle(
    client: TestClient, settings: Settings, db: Database, account: Account
) -> None:
    url = f"/v1/teams/{account.team_id}/backfills"
    sign_in(client, account.api_key)
    idle = settings.ui_session_idle_minutes
    # Used every (idle - 1) minutes, it stays open (each use renews it)...
    for step in range(1, 4):
        travel(step * (idle - 1))
        assert client.get(url).status_code == 200, step
    # ...left alone for the idle period, it ends.
    travel(3 * (idle - 1) + idle + 0.1)
    assert error_of(client.get(url), 401, "SESSION_ENDED")


def test_sessions_end_at_their_absolute_lifetime(
    client: TestClient, settings: Settings, db: Database, account: Account
) -> None:
    url = f"/v1/teams/{account.team_id}/backfills"
    sign_in(client, account.api_key)
    cookie = client.cookies.jar
    assert any(c.expires for c in cookie)  # the browser forgets it too
    lifetime = settings.ui_session_max_hours * 60
    minutes = 0.0
    while minutes < lifetime - 30:
        minutes += 30
        travel(minutes)
        assert client.get(url).status_code == 200, minutes  # busy all along
    travel(lifetime + 0.1)
    response = client.get("/ui/session")
    assert error_of(response, 401, "SESSION_ENDED")
    assert 'opendts_session=""' in response.headers["set-cookie"]  # the ended cookie is cleared
    # The next sign-in forgets ended sessions.
    sign_in(client, account.api_key)
    with db.session() as session:
        assert len(session.scalars(select(UiSession)).all()) == 1


def test_revoking_the_key_ends_its_sessions(
    client: TestClient, db: Database, account: Account
) -> None:
    sign_in(client, account.api_key)
    revoke(db, account.key_id)
    with db.session() as session:
        assert session.scalars(select(UiSession)).all() == []
    assert error_of(client.get(f"/v1/teams/{account.team_id}/backfills"), 401, "SESSION_ENDED")


def test_the_cookie_is_secure_over_https(app: FastAPI, account: Account) -> None:
    with TestClient(app, base_url="https://testserver") as secure:
        response = secure.post("/ui/session", json={"api_key": account.api_key})
        assert response.status_code == 200
        assert "; secure" in response.headers["set-cookie"].lower()
    with TestClient(app) as plain:
        response = plain.post("/ui/session", json={"api_key": account.api_key})
        assert "; secure" not in response.headers["set-cookie"].lower()
