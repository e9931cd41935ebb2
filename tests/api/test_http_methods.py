"""HTTP method semantics: ``Allow`` names every method of a path, a method the path lacks is 405
(literal sub-routes included, never a 400 about a path id), OPTIONS answers, HEAD is GET
without the body."""

from __future__ import annotations

import re

import pytest
from starlette.testclient import TestClient

from tests.api.support import envelope, error_of
from tests.factories import Account

ANY_METHOD = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "TRACE")


def allow_of(value: str) -> set[str]:
    return {part.strip() for part in value.split(",")}


def documented_paths(client: TestClient) -> dict[str, set[str]]:
    """Every path of the OpenAPI document with a request path for it and its methods."""
    document = client.get("/v1/openapi.json").json()
    paths = {}
    for template, operations in document["paths"].items():
        concrete = re.sub(r"\{[a-z_]+\}", "1", template)
        paths[concrete] = {method.upper() for method in operations}
    return paths


def expected_allow(methods: set[str]) -> set[str]:
    return methods | {"OPTIONS"} | ({"HEAD"} if "GET" in methods else set())


def test_options_lists_every_method_of_the_path(client: TestClient) -> None:
    response = client.options("/v1/teams/1/transfers")
    assert response.status_code == 204, response.text
    assert allow_of(response.headers["Allow"]) == {"GET", "HEAD", "POST", "OPTIONS"}
    assert response.headers["X-Request-Id"]
    for path, methods in documented_paths(client).items():
        response = client.options(path)
        assert response.status_code == 204, (path, response.text)
        assert allow_of(response.headers["Allow"]) == expected_allow(methods), path


def test_a_method_the_path_lacks_is_405_naming_every_method(client: TestClient) -> None:
    checked = 0
    for path, methods in documented_paths(client).items():
        for method in ANY_METHOD:
            if method in expected_allow(methods):
                continue
            response = client.request(method, path)
            assert response.status_code == 405, (method, path, response.text)
            assert allow_of(response.headers["Allow"]) == expected_allow(methods), (method, path)
            checked += 1
            if method == "HEAD":
                continue  # no body, by definition
            assert error_of(response, 405, "METHOD_NOT_ALLOWED")["description"].startswith(
                f"{method} is not supported on {path}"
            )
    assert checked > 80


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", "/v1/teams/1/transfers/validations", {"POST"}),
        ("GET", "/v1/teams/1/transfers/validations", {"POST"}),
        ("DELETE", "/v1/teams/1/transfers/validations", {"POST"}),
        ("PUT", "/v1/teams/1/transfers/available-sources", {"GET"}),
        ("DELETE", "/v1/teams/1/transfers/available-options", {"GET"}),
        ("PUT", "/v1/teams/1/destinations/test-connection", {"POST"}),
        ("GET", "/v1/teams/1/destinations/test-connection", {"POST"}),
        ("DELETE", "/v1/teams/1/destinations/test-connection", {"POST"}),
        ("PATCH", "/v1/teams/1/transfers/1/backfills/latest", {"GET"}),
    ],
)
def test_literal_sub_routes_are_not_mistaken_for_an_id(
    client: TestClient, method: str, path: str, allowed: set[str]
) -> None:
    # Before: PUT /transfers/validations reached PUT /transfers/{transfer_id} and answered
    # 400 "'transfer_id' must be an integer".
    response = client.request(method, path)
    error_of(response, 405, "METHOD_NOT_ALLOWED")
    assert allow_of(response.headers["Allow"]) == expected_allow(allowed)


def test_methods_the_path_has_still_reach_their_routes(
    client: TestClient, account: Account
) -> None:
    team = account.team_id
    validation = client.post(
        f"/v1/teams/{team}/transfers/validations", headers=account.headers, json={}
    )
    assert validation.status_code == 200, validation.text
    assert validation.json()["is_valid"] is False
    sources = client.get(f"/v1/teams/{team}/transfers/available-sources", headers=account.headers)
    assert sources.status_code == 200 and "data_sources" in sources.json()
    bad_id = client.put(f"/v1/teams/{team}/transfers/x1", headers=account.headers, json={})
    assert "'transfer_id' must be an integer" in error_of(bad_id, 400)["description"]


def test_head_is_get_without_the_body(client: TestClient, account: Account) -> None:
    url = f"/v1/teams/{account.team_id}/backfills"
    get = client.get(url, headers=account.headers)
    head = client.head(url, headers=account.headers)
    assert head.status_code == get.status_code == 200
    assert head.content == b""
    assert head.headers["content-type"] == get.headers["content-type"]
    assert head.headers["content-length"] == get.headers["content-length"]
    assert head.headers["X-RateLimit-Limit"] == get.headers["X-RateLimit-Limit"]
    unauthenticated = client.head(url)
    assert unauthenticated.status_code == 401 and unauthenticated.content == b""


@pytest.mark.timeout(60)
def test_head_of_an_event_stream_ends_after_the_headers(
    client: TestClient, account: Account
) -> None:
    created = client.post(
        f"/v1/teams/{account.team_id}/transfers/{account.transfer_id}/backfills",
        headers=account.headers,
        json={"range_start": "2024-01-01", "range_end": "2024-01-02"},
    )
    backfill_id = envelope(created)["data"]["transfer_backfill_id"]
    # Nothing runs the backfill here: a GET would stream until it ends; HEAD must not wait.
    head = client.head(
        f"/v1/teams/{account.team_id}/backfills/{backfill_id}/events", headers=account.headers
    )
    assert head.status_code == 200
    assert head.headers["content-type"].startswith("text/event-stream")
    assert head.content == b""
