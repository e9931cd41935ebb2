"""The per-key hourly budget: 429 with Retry-After, separate per key, shared by the processes
of a machine (a file in the data folder) or of several machines (Redis)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import redis
from starlette.testclient import TestClient

from opendts.api.app import create_app
from opendts.kit.db import Database
from opendts.kit.ratelimit import RateLimiter
from opendts.kit.ratelimit_sqlite import SQLiteStorage
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


def test_default_storage_is_shared_by_apps_of_one_data_folder(
    settings: Settings, db: Database, account: Account, tmp_path: Path
) -> None:
    # Two apps on one data folder stand for two API processes of one installation.
    first, second = limited_client(settings, db), limited_client(settings, db)
    url = f"/v1/teams/{account.team_id}/backfills"
    statuses = [
        c.get(url, headers=account.headers).status_code for c in (first, second, first, second)
    ]
    assert statuses == [200, 200, 200, 429]
    assert (settings.data_dir / "ratelimits.db").exists()
    # Another installation (data folder) counts on its own.
    elsewhere = limited_client(settings.model_copy(update={"data_dir": tmp_path / "other"}), db)
    assert elsewhere.get(url, headers=account.headers).status_code == 200


def test_memory_storage_stays_in_one_process(
    settings: Settings, db: Database, account: Account
) -> None:
    first = limited_client(settings, db, rate_limit_storage_url="memory://")
    second = limited_client(settings, db, rate_limit_storage_url="memory://")
    url = f"/v1/teams/{account.team_id}/backfills"
    statuses = [c.get(url, headers=account.headers).status_code for c in (first,) * 3 + (second,)]
    assert statuses == [200, 200, 200, 200]


def test_file_window_resets_after_its_period(tmp_path: Path) -> None:
    storage = SQLiteStorage(f"sqlite:///{tmp_path / 'budgets.db'}")
    assert [storage.spend("k", 0.3)[0] for _ in range(3)] == [1, 2, 3]
    assert storage.get("k") == 3 and storage.get("other") == 0
    resets_at = storage.get_expiry("k")
    assert time.time() < resets_at <= time.time() + 0.3
    time.sleep(0.35)
    assert storage.get("k") == 0
    assert storage.spend("k", 0.3)[0] == 1  # a new window
    storage.clear("k")
    assert storage.get("k") == 0


def test_limiter_reports_the_same_state_with_the_file_and_in_memory(tmp_path: Path) -> None:
    on_file = RateLimiter(2, f"sqlite:///{tmp_path / 'budgets.db'}")
    in_memory = RateLimiter(2, "memory://")
    for _ in range(3):
        a, b = on_file.hit("key"), in_memory.hit("key")
        assert (a.allowed, a.remaining, a.limit) == (b.allowed, b.remaining, b.limit)
        assert abs(a.retry_after - b.retry_after) <= 1
    assert not a.allowed and a.remaining == 0
