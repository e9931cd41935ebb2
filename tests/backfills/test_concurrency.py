"""The overlap rule under concurrency: 20 simultaneous overlapping creates, exactly one wins."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from pathlib import Path

import httpx
import pytest

from opendts.backfills import service
from opendts.kit.db import Database
from opendts.kit.errors import Unprocessable
from tests import databases
from tests.factories import make_account
from tests.live import LiveServer, live_server

CALLERS = 20


def overlapping_ranges() -> list[tuple[str, str]]:
    # Every range contains 2024-03-15, so any two overlap, but no two are identical.
    base = date(2024, 3, 15)
    return [
        ((base - timedelta(days=i)).isoformat(), (base + timedelta(days=i % 3)).isoformat())
        for i in range(CALLERS)
    ]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_twenty_simultaneous_http_creates_one_wins(backend: str, tmp_path: Path) -> None:
    if backend == "postgresql":
        databases.require_pg()
        with databases.pg_database() as url, live_server(tmp_path, url) as server:
            outcomes = race(server.base_url, server.team_id, slow_transfer(server), server.api_key)
            check_one_winner(server.base_url, server.team_id, server.api_key, outcomes)
    else:
        with live_server(tmp_path) as server:
            outcomes = race(server.base_url, server.team_id, slow_transfer(server), server.api_key)
            check_one_winner(server.base_url, server.team_id, server.api_key, outcomes)


def slow_transfer(server: LiveServer) -> int:
    """A transfer whose runs take a minute: the winner stays incomplete while we look."""
    created = server.admin(
        "transfer", "create", "--team", str(server.team_id), "--name", "slow",
        "--kind", "fault", "--config", '{"latency_ms": 60000}',
    )  # fmt: skip
    return int(created["transfer_id"])  # type: ignore[call-overload]


def race(base: str, team: int, transfer: int, key: str) -> list[tuple[int, str]]:
    barrier = threading.Barrier(CALLERS)
    url = f"{base}/teams/{team}/transfers/{transfer}/backfills"
    headers = {"Authorization": f"Bearer {key}"}

    def create(bounds: tuple[str, str]) -> tuple[int, str]:
        with httpx.Client(timeout=60) as client:
            client.get(f"{base}/teams/{team}/backfills", headers=headers)  # warm connection
            barrier.wait()
            response = client.post(
                url, json={"range_start": bounds[0], "range_end": bounds[1]}, headers=headers
            )
        body = response.json()
        return response.status_code, body.get("error", {}).get("code", "")

    with ThreadPoolExecutor(CALLERS) as pool:
        return list(pool.map(create, overlapping_ranges()))


def check_one_winner(base: str, team: int, key: str, outcomes: list[tuple[int, str]]) -> None:
    assert Counter(outcomes) == {(200, ""): 1, (422, "BACKFILL_OVERLAP"): CALLERS - 1}
    listed = httpx.get(f"{base}/teams/{team}/backfills", headers={"Authorization": f"Bearer {key}"})
    assert len(listed.json()["data"]) == 1


def test_twenty_simultaneous_service_calls_one_wins(db: Database) -> None:
    account = make_account(db)
    barrier = threading.Barrier(CALLERS)

    def create(bounds: tuple[str, str]) -> str:
        barrier.wait()
        try:
            with db.session(write=True) as session:
                service.create(
                    session,
                    team_id=account.team_id,
                    transfer_id=account.transfer_id,
                    user_id=account.user_id,
                    range_start=date.fromisoformat(bounds[0]),
                    range_end=date.fromisoformat(bounds[1]),
                    rules=service.RangeRules(max_days=3660),
                )
            return "created"
        except Unprocessable as exc:
            return exc.code

    with ThreadPoolExecutor(CALLERS) as pool:
        outcomes = Counter(pool.map(create, overlapping_ranges()))
    assert outcomes == {"created": 1, "BACKFILL_OVERLAP": CALLERS - 1}
