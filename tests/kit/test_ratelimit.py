"""The per-key hourly budget: 429 with Retry-After, separate per key, shareable through Redis."""

from __future__ import annotations

import os

import pytest
import redis
from starlette.testclient import TestClient

from opendts.api.app import create_app
from opendts.kit.db import Database
from opendts.settings import Settings
from tests.databases import ON_CI
from tests.factories import Account, make_account

REDIS_URL = os.environ.get("OPENDTS_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def limited_client(settings: Settings, db: Database, **overrides: object) -> TestClient:
    return TestClient(
        create_app(settings.model_copy(update={"rate_limit_per_hour": 3, **overrides}), db)
    )


def test_fourth_request_in_the_hour_is_429(
    settings: Settings, db: Database, account: Account
) -> None:
    client = limited_client(settings, db)
    url = f"/v1/teams/{account.team_id}/backfills"
    remaining = [
        client.get(url, headers=account.headers).headers["X-RateLimit-Remaining"] for _ in range(3)
    ]
    assert remaining == ["2", "1", "0"]
    refused = client.get(url, headers=account.headers)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "TOO_MANY_REQUESTS"
    retry_after = refused.headers["Retry-After"]
    assert retry_after.isdigit() and 1 <= int(retry_after) <= 3600
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    assert refused.headers["X-RateLimit-Limit"] == "3"
    # Another key of the same team has its own budget.
    other = make_account(db, team_id=account.team_id, transfer_id=account.transfer_id)
    assert client.get(url, headers=other.headers).status_code == 200


def test_refused_writes_write_nothing(settings: Settings, db: Database, account: Account) -> None:
    client = limited_client(settings, db)
    url = f"/v1/teams/{account.team_id}/transfers/{account.transfer_id}/backfills"
    for day in range(1, 5):
        body = {"range_start": f"2024-01-0{day}", "range_end": f"2024-01-0{day}"}
        last = client.post(url, json=body, headers=account.headers)
    assert last.status_code == 429
    listed = client.get(
        f"/v1/teams/{account.team_id}/backfills",
        headers=make_account(db, team_id=account.team_id).headers,
    )
    assert len(listed.json()["data"]) == 3


def test_redis_storage_shares_the_budget_between_api_processes(
    settings: Settings, db: Database, account: Account
) -> None:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        message = f"Redis at {REDIS_URL} unreachable: {exc}"
        if ON_CI:
            pytest.fail(f"{message} (CI=true: must run)", pytrace=False)
        pytest.skip(message)
    storage = REDIS_URL
    first = limited_client(settings, db, rate_limit_storage_url=storage)
    second = limited_client(settings, db, rate_limit_storage_url=storage)
    url = f"/v1/teams/{account.team_id}/backfills"
    statuses = [
        c.get(url, headers=account.headers).status_code for c in (first, second, first, second)
    ]
    assert statuses == [200, 200, 200, 429]


def test_budgets_above_the_contract_cap_are_enforced_but_reported_capped(
    settings: Settings, db: Database, account: Account
) -> None:
    client = TestClient(create_app(settings.model_copy(update={"rate_limit_per_hour": 50_000}), db))
    response = client.get(f"/v1/teams/{account.team_id}/backfills", headers=account.headers)
    assert response.status_code == 200
    assert response.headers["X-RateLimit-Limit"] == "10000"
    assert response.headers["X-RateLimit-Remaining"] == "10000"
