"""``GET /metrics``: runs by status, queue depth and age, run durations, API latency."""

from __future__ import annotations

import time
from datetime import date, timedelta

from sqlalchemy import text
from starlette.testclient import TestClient

from opendts.api.app import create_app
from opendts.engine import queue
from opendts.kit.clock import utcnow
from opendts.kit.db import Database
from opendts.kit.metrics import FINAL_COUNTS_TTL
from opendts.settings import Settings
from tests.engine.support import final, make_transfer, running_engine, wait_for
from tests.factories import Account, make_backfill
from tests.ops.support import names, value

JAN_1, JAN_5 = date(2024, 1, 1), date(2024, 1, 5)


def scrape(client: TestClient) -> str:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


def test_metrics_need_no_key_and_declare_every_metric(client: TestClient) -> None:
    response = client.get("/metrics")
    assert response.status_code == 200
    # Not rate limited, not authenticated: no budget headers.
    assert "X-RateLimit-Limit" not in response.headers
    assert {
        "opendts_runs",
        "opendts_queue_depth",
        "opendts_queue_oldest_age_seconds",
        "opendts_run_duration_seconds",
        "opendts_engine_runs_finished",
        "opendts_http_request_duration_seconds",
        "opendts_metrics_database_up",
    } <= names(response.text)
    assert value(response.text, "opendts_metrics_database_up") == 1


def test_many_apps_in_one_process_each_have_their_own_registry(
    settings: Settings, db: Database
) -> None:
    for _ in range(3):
        with TestClient(create_app(settings, db)) as client:
            client.get("/healthz")
            text_ = scrape(client)
            # Each app counts its own requests only.
            assert (
                value(
                    text_,
                    "opendts_http_request_duration_seconds_count",
                    method="GET",
                    route="/healthz",
                    status="200",
                )
                == 1
            )


def test_runs_and_durations_move_when_a_backfill_runs(
    db: Database, settings: Settings, account: Account, client: TestClient
) -> None:
    before = scrape(client)
    first_scrape = time.monotonic()
    assert value(before, "opendts_runs", status="COMPLETED") == 0
    completed_before = value(before, "opendts_engine_runs_finished_total", outcome="completed")
    durations_before = value(before, "opendts_run_duration_seconds_count", outcome="completed")

    created = client.post(
        f"/v1/teams/{account.team_id}/transfers/{account.transfer_id}/backfills",
        json={"range_start": str(JAN_1), "range_end": str(JAN_5)},
        headers=account.headers,
    )
    assert created.status_code == 200, created.text
    backfill_id = created.json()["data"]["transfer_backfill_id"]
    with running_engine(db, settings):
        assert final(db, backfill_id).status == "COMPLETED"

    after = scrape(client)
    assert value(after, "opendts_engine_runs_finished_total", outcome="completed") == (
        completed_before + 5
    )
    assert value(after, "opendts_run_duration_seconds_count", outcome="completed") == (
        durations_before + 5
    )
    assert value(after, "opendts_run_duration_seconds_sum", outcome="completed") >= 0
    assert value(after, "opendts_runs", status="QUEUED") == 0
    assert value(after, "opendts_runs", status="RUNNING") == 0
    # The history-sized counts are cached for 10 s: this app still shows its first reading,
    # a new app (a new cache) counts the five completed runs.
    if time.monotonic() - first_scrape < FINAL_COUNTS_TTL:
        assert value(after, "opendts_runs", status="COMPLETED") == 0
    with TestClient(create_app(settings, db)) as fresh:
        assert value(scrape(fresh), "opendts_runs", status="COMPLETED") == 5


def test_runs_released_at_shutdown_are_counted(
    db: Database, settings: Settings, account: Account, client: TestClient
) -> None:
    hanging = make_transfer(
        db, account.team_id, kind="fault", parallel=2, hang_dates=[str(JAN_1), str(JAN_5)]
    )
    before = scrape(client)
    released_before = value(before, "opendts_engine_runs_finished_total", outcome="released")
    backfill = make_backfill(db, account, JAN_1, JAN_5, transfer_id=hanging)

    def hanging_runs() -> bool:
        # The three other dates completed, the two hanging ones are executing.
        query = "SELECT status, count(*) FROM transfer_runs WHERE backfill_id = :b GROUP BY status"
        with db.session() as session:
            counts = {str(s): n for s, n in session.execute(text(query), {"b": backfill.id})}
        return counts == {"COMPLETED": 3, "RUNNING": 2}

    with running_engine(db, settings):
        wait_for(hanging_runs, what="the two hanging dates to be running")
    # Leaving the block stops the engine with no grace: the two hanging runs are released.
    after = scrape(client)
    assert value(after, "opendts_engine_runs_finished_total", outcome="released") == (
        released_before + 2
    )
    assert value(after, "opendts_runs", status="RUNNING") == 0
    assert value(after, "opendts_runs", status="QUEUED") == 2


def test_queue_depth_and_oldest_age_reflect_queued_runs(
    db: Database, account: Account, client: TestClient
) -> None:
    empty = scrape(client)
    assert value(empty, "opendts_queue_depth") == 0
    assert value(empty, "opendts_queue_oldest_age_seconds") == 0

    backfill = make_backfill(db, account, JAN_1, JAN_5)
    queued_at = utcnow() - timedelta(seconds=120)
    with db.session(write=True) as session:
        planned = queue.plan_step(session, batch_size=100, max_attempts=3, now=queued_at)
    assert planned is not None and planned.created == 5
    # One run waits for its retry: queued, but not claimable yet.
    with db.session(write=True) as session:
        session.execute(
            text(
                "UPDATE transfer_runs SET available_at = :later "
                "WHERE backfill_id = :id AND data_date = :day"
            ),
            {"later": utcnow() + timedelta(hours=1), "id": backfill.id, "day": JAN_1},
        )

    scraped = scrape(client)
    assert value(scraped, "opendts_runs", status="QUEUED") == 5
    assert value(scraped, "opendts_queue_depth") == 4
    age = value(scraped, "opendts_queue_oldest_age_seconds")
    assert 119 <= age < 180

    # A paused transfer's runs wait on purpose: queued, but neither depth nor age.
    with db.session(write=True) as session:
        session.execute(
            text("UPDATE transfers SET state = 'paused' WHERE id = :id"),
            {"id": account.transfer_id},
        )
    paused = scrape(client)
    assert value(paused, "opendts_runs", status="QUEUED") == 5
    assert value(paused, "opendts_queue_depth") == 0
    assert value(paused, "opendts_queue_oldest_age_seconds") == 0


def test_api_latency_is_labelled_by_route_template_and_status(
    account: Account, client: TestClient
) -> None:
    team = account.team_id
    assert client.get(f"/v1/teams/{team}/backfills", headers=account.headers).status_code == 200
    assert client.get(f"/v1/teams/{team}/backfills").status_code == 401
    missing = client.get(f"/v1/teams/{team}/backfills/987654", headers=account.headers)
    assert missing.status_code == 404
    assert client.get("/no/such/route/123").status_code == 404

    scraped = scrape(client)

    def requests(route: str, status: str) -> float:
        return value(
            scraped,
            "opendts_http_request_duration_seconds_count",
            method="GET",
            route=route,
            status=status,
        )

    assert requests("/v1/teams/{team_id}/backfills", "200") == 1
    assert requests("/v1/teams/{team_id}/backfills", "401") == 1
    assert requests("unmatched", "404") == 1
    assert requests("/v1/teams/{team_id}/backfills/{backfill_id}", "404") == 1
    # Never a raw path: no id of a request appears in a label.
    latency_lines = [
        line for line in scraped.splitlines() if line.startswith("opendts_http_request_")
    ]
    assert latency_lines
    assert not [line for line in latency_lines if f"/teams/{team}" in line or "987654" in line]
    assert not [line for line in latency_lines if "/no/such" in line]
