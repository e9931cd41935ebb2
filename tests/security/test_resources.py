"""Issue 11 §4, resources: a team cannot hold every slot.

Reproduced as an editor would: a transfer whose source answers slowly (here, not until the test
ends) with ``max_parallel_runs`` 16 and a month's backfill fills every slot of the engine; before
fair share, another team's one-day backfill waited for one of those runs to end (9 min 56 s in
the report). Now it starts at the next claim, in a spare slot, while the slow runs go on.
"""

from __future__ import annotations

import threading
from datetime import date
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from opendts.auth.permissions import Role
from opendts.connectors.destinations import duckdb as duck
from opendts.kit.db import Database
from opendts.settings import Settings
from tests.engine.support import final, running_engine, snapshot, wait_for
from tests.factories import Account, make_account
from tests.security.test_network import duckdb_destination, http_transfer, site


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    # The slow API is on this machine: the operator allowed loopback (a laptop setup).
    return Settings(data_dir=tmp_path, database_url=database_url, allowed_networks="127.0.0.1/32")


def backfill(client: TestClient, account: Account, transfer_id: int, first: date) -> int:
    created = client.post(
        f"/v1/teams/{account.team_id}/transfers/{transfer_id}/backfills",
        json={"range_start": first.isoformat(), "range_end": "2024-01-31"},
        headers=account.headers,
    )
    assert created.status_code == 200, created.text
    return int(created.json()["data"]["transfer_backfill_id"])


def test_a_team_with_slow_runs_cannot_hold_every_slot(
    client: TestClient, db: Database, settings: Settings
) -> None:
    hog, other = make_account(db, role=Role.EDITOR), make_account(db, role=Role.EDITOR)
    release = threading.Event()

    def answer(path: str) -> tuple[int, dict[str, str], object]:
        if path.startswith("/slow"):
            release.wait(120)
        return 200, {}, [{"clicks": 1}]

    with site("127.0.0.1", answer) as api:
        slow = client.post(
            f"/v1/teams/{hog.team_id}/transfers",
            json={
                "data_source_id": "http",
                "destination_id": duckdb_destination(client, hog),
                "display_name": "Slow ads",
                "table": "ads",
                "max_parallel_runs": 16,
                "source_config": {"url": f"{api.base}/slow?day={{date}}", "timeout_seconds": 600},
            },
            headers=hog.headers,
        )
        assert slow.status_code == 201, slow.text
        slow_id = int(slow.json()["data"]["transfer_id"])
        quick = http_transfer(
            client, other, duckdb_destination(client, other), url=f"{api.base}/ads?day={{date}}"
        )
        assert quick.status_code == 201, quick.text
        hogging = backfill(client, hog, slow_id, date(2024, 1, 1))
        with running_engine(db, settings, worker_concurrency=4):
            try:
                wait_for(lambda: snapshot(db, hogging).runs_running == 4, what="every slot")
                quick_id = int(quick.json()["data"]["transfer_id"])
                one_day = backfill(client, other, quick_id, date(2024, 1, 31))
                assert final(db, one_day, timeout=30).status == "COMPLETED"
                held = snapshot(db, hogging)
                assert held.runs_running == 4 and held.completed == 0
            finally:
                release.set()
    duck.close_all()
