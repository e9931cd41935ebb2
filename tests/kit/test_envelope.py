"""Every response, success or error: request id, CORS, the envelope, no framework defaults."""

from __future__ import annotations

import re

import pytest
from starlette.testclient import TestClient

from tests.factories import Account

REQUEST_ID = re.compile(r"^[A-Za-z0-9_-]{8,50}$")
CODE = re.compile(r"^[A-Z][A-Z0-9_]*$")


def requests_for(account: Account) -> list[tuple[str, str, dict[str, object]]]:
    team, transfer = account.team_id, account.transfer_id
    good = account.headers
    return [
        ("GET", f"/v1/teams/{team}/backfills", {"headers": good}),
        ("GET", f"/v1/teams/{team}/backfills", {}),  # 401
        ("GET", f"/v1/teams/{team + 1000}/backfills", {"headers": good}),  # 403
        ("GET", f"/v1/teams/{team}/backfills/99999", {"headers": good}),  # 404
        ("GET", "/v1/teams/x/backfills", {"headers": good}),  # 400
        ("GET", "/v1/no/such/route", {"headers": good}),  # 404 route
        ("DELETE", f"/v1/teams/{team}/backfills/1", {"headers": good}),  # 405
        (
            "POST",
            f"/v1/teams/{team}/transfers/{transfer}/backfills",
            {"headers": good, "json": {"range_start": "2024-02-01", "range_end": "2024-01-01"}},
        ),  # 422
        (
            "POST",
            f"/v1/teams/{team}/transfers/{transfer}/backfills",
            {"headers": good, "json": {"range_start": "2024-02-01", "range_end": "2024-02-02"}},
        ),  # 200
    ]


def test_every_response_is_enveloped_with_request_id_and_cors(
    client: TestClient, account: Account
) -> None:
    seen = set()
    for method, url, kwargs in requests_for(account):
        response = client.request(method, url, **kwargs)  # type: ignore[arg-type]
        seen.add(response.status_code)
        body = response.json()
        request_id = response.headers["X-Request-Id"]
        assert REQUEST_ID.match(request_id)
        assert body["meta"] == {"request_id": request_id}
        assert response.headers["Access-Control-Allow-Origin"] == "*"
        assert "detail" not in body
        if response.status_code >= 400:
            assert set(body) == {"meta", "error"}
            error = body["error"]
            assert set(error) <= {"code", "message", "description"}
            assert CODE.match(error["code"])
            assert error["message"] and "\n" not in error["message"]
            assert len(error.get("description", "")) <= 255
        else:
            assert set(body) == {"meta", "data"}
    assert seen == {200, 400, 401, 403, 404, 405, 422}


def test_request_ids_are_unique_and_a_valid_incoming_one_is_kept(
    client: TestClient, account: Account
) -> None:
    url = f"/v1/teams/{account.team_id}/backfills"
    ids = {client.get(url, headers=account.headers).headers["X-Request-Id"] for _ in range(20)}
    assert len(ids) == 20
    mine = client.get(url, headers={**account.headers, "X-Request-Id": "trace_1234-abcd"})
    assert mine.headers["X-Request-Id"] == "trace_1234-abcd"
    assert mine.json()["meta"]["request_id"] == "trace_1234-abcd"
    for bad in ["short", "x" * 51, "has space!", "semi;colon-id"]:
        replaced = client.get(
            url, headers={**account.headers, "X-Request-Id": bad.encode().decode("latin-1")}
        )
        assert replaced.headers["X-Request-Id"] != bad
        assert REQUEST_ID.match(replaced.headers["X-Request-Id"])


def test_rate_limit_headers_on_authenticated_responses(
    client: TestClient, account: Account
) -> None:
    url = f"/v1/teams/{account.team_id}/backfills"
    first = client.get(url, headers=account.headers)
    second = client.get(url, headers=account.headers)
    assert first.headers["X-RateLimit-Limit"] == "5000"
    assert int(first.headers["X-RateLimit-Remaining"]) == 4999
    assert int(second.headers["X-RateLimit-Remaining"]) == 4998
    # A 403 still spends the key's budget and reports it.
    denied = client.get(f"/v1/teams/{account.team_id + 99}/backfills", headers=account.headers)
    assert denied.status_code == 403 and denied.headers["X-RateLimit-Remaining"] == "4997"


def test_cors_preflight(client: TestClient, account: Account) -> None:
    response = client.options(
        f"/v1/teams/{account.team_id}/backfills",
        headers={
            "Origin": "https://dashboard.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    assert "authorization" in response.headers["Access-Control-Allow-Headers"].lower()


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_oversized_bodies_get_413_in_the_envelope(
    client: TestClient, account: Account, chunked: bool
) -> None:
    url = f"/v1/teams/{account.team_id}/transfers/{account.transfer_id}/backfills"
    payload = (
        b'{"range_start": "2024-01-01", "range_end": "2024-01-02", "pad": "' + b"x" * 70_000 + b'"}'
    )
    headers = {**account.headers, "Content-Type": "application/json"}
    if chunked:

        def pieces():  # type: ignore[no-untyped-def]
            for start in range(0, len(payload), 8192):
                yield payload[start : start + 8192]

        response = client.post(url, content=pieces(), headers=headers)
    else:
        response = client.post(url, content=payload, headers=headers)
    assert response.status_code == 413
    body = response.json()
    assert body["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert body["meta"]["request_id"] == response.headers["X-Request-Id"]
    listed = client.get(f"/v1/teams/{account.team_id}/backfills", headers=account.headers)
    assert listed.json()["data"] == []


def test_a_trailing_slash_names_the_same_resource(client: TestClient, account: Account) -> None:
    response = client.get(
        f"/v1/teams/{account.team_id}/backfills/", headers=account.headers, follow_redirects=False
    )
    assert response.status_code == 200
    assert response.json()["data"] == []
