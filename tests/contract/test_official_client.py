"""The official ``supermetrics`` client, unchanged, against a live opendts server."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path

import pytest
from supermetrics import SupermetricsClient
from supermetrics.exceptions import (
    SupermetricsAuthError,
    SupermetricsForbiddenError,
    SupermetricsNotFoundError,
    SupermetricsRateLimitError,
    SupermetricsValidationError,
)

from tests.live import LiveServer, live_server

REQUEST_ID = re.compile(r"^[A-Za-z0-9_-]{8,50}$")


@pytest.fixture
def client(live: LiveServer) -> Iterator[SupermetricsClient]:
    with SupermetricsClient(api_key=live.api_key, base_url=live.base_url) as sdk:
        yield sdk


def fresh_transfer(live: LiveServer) -> int:
    """A transfer whose runs take a minute each: backfills stay cancellable during a test."""
    created = live.admin(
        "transfer",
        "create",
        "--team",
        str(live.team_id),
        "--name",
        "sdk",
        "--kind",
        "fault",
        "--config",
        '{"latency_ms": 60000}',
    )
    return int(created["transfer_id"])  # type: ignore[call-overload]


def status_of(backfill: object) -> str:
    status = backfill.status  # type: ignore[attr-defined]
    return str(getattr(status, "value", status))


def test_create_list_get_latest_cancel(live: LiveServer, client: SupermetricsClient) -> None:
    transfer_id = fresh_transfer(live)
    created = client.backfills.create(
        live.team_id, transfer_id, date(2024, 1, 1), date(2024, 1, 31)
    )
    assert status_of(created) == "CREATED"
    assert created.transfer_runs_total == 31
    assert created.transfer_runs_created == 0
    assert created.range_start_date == date(2024, 1, 1)
    assert isinstance(created.created_time, datetime)
    assert created.created_user_id == live.user_id
    assert list(created.error_report) == []
    backfill_id = created.transfer_backfill_id
    assert isinstance(backfill_id, int)

    listed = client.backfills.list_incomplete(live.team_id)
    assert backfill_id in [b.transfer_backfill_id for b in listed]

    fetched = client.backfills.get(live.team_id, backfill_id)
    assert fetched.transfer_backfill_id == backfill_id
    assert fetched.range_end_date == date(2024, 1, 31)

    latest = client.backfills.get_latest(live.team_id, transfer_id)
    assert latest.transfer_backfill_id == backfill_id

    cancelled = client.backfills.cancel(live.team_id, backfill_id)
    assert status_of(cancelled) == "CANCELLED"
    assert cancelled.removed_user_id == live.user_id
    assert isinstance(cancelled.removed_time, datetime)
    assert isinstance(cancelled.end_time, datetime)
    assert backfill_id not in [
        b.transfer_backfill_id for b in client.backfills.list_incomplete(live.team_id)
    ]
    # Still the latest, whatever its status.
    assert (
        client.backfills.get_latest(live.team_id, transfer_id).transfer_backfill_id == backfill_id
    )


def test_400_invalid_path_id(client: SupermetricsClient) -> None:
    with pytest.raises(SupermetricsValidationError) as caught:
        client.backfills.get(0, 1)
    assert caught.value.status_code == 400
    assert caught.value.error_code == "INVALID_PARAMETER"
    assert caught.value.request_id and REQUEST_ID.match(caught.value.request_id)


def test_401_unknown_key(live: LiveServer) -> None:
    sdk = SupermetricsClient(api_key="odts_nope", base_url=live.base_url)
    with sdk, pytest.raises(SupermetricsAuthError) as caught:
        sdk.backfills.list_incomplete(live.team_id)
    assert caught.value.status_code == 401
    assert caught.value.error_code == "API_KEY_INVALID"


def test_403_other_team(live: LiveServer, client: SupermetricsClient) -> None:
    other = live.admin("team", "create", "--name", "Not mine")
    with pytest.raises(SupermetricsForbiddenError) as caught:
        client.backfills.list_incomplete(int(other["team_id"]))  # type: ignore[call-overload]
    assert caught.value.status_code == 403


def test_404_unknown_backfill_and_no_latest(live: LiveServer, client: SupermetricsClient) -> None:
    with pytest.raises(SupermetricsNotFoundError) as caught:
        client.backfills.get(live.team_id, 987654321)
    assert caught.value.error_code == "BACKFILL_NOT_FOUND"
    with pytest.raises(SupermetricsNotFoundError):
        client.backfills.get_latest(live.team_id, fresh_transfer(live))


def test_422_range_rules_and_final_cancel(live: LiveServer, client: SupermetricsClient) -> None:
    transfer_id = fresh_transfer(live)
    with pytest.raises(SupermetricsValidationError) as caught:
        client.backfills.create(live.team_id, transfer_id, date(2024, 2, 1), date(2024, 1, 1))
    assert (caught.value.status_code, caught.value.error_code) == (422, "INVALID_DATE_RANGE")
    created = client.backfills.create(live.team_id, transfer_id, date(2024, 3, 1), date(2024, 3, 2))
    with pytest.raises(SupermetricsValidationError) as overlap:
        client.backfills.create(live.team_id, transfer_id, date(2024, 3, 2), date(2024, 3, 9))
    assert overlap.value.error_code == "BACKFILL_OVERLAP"
    client.backfills.cancel(live.team_id, created.transfer_backfill_id)
    with pytest.raises(SupermetricsValidationError) as final:
        client.backfills.cancel(live.team_id, created.transfer_backfill_id)
    assert (final.value.status_code, final.value.error_code) == (422, "BACKFILL_NOT_CANCELLABLE")


def test_429_with_retry_after(tmp_path: Path) -> None:
    with live_server(tmp_path, OPENDTS_RATE_LIMIT_PER_HOUR="2") as server:
        sdk = SupermetricsClient(api_key=server.api_key, base_url=server.base_url)
        with sdk:
            sdk.backfills.list_incomplete(server.team_id)
            sdk.backfills.list_incomplete(server.team_id)
            with pytest.raises(SupermetricsRateLimitError) as caught:
                sdk.backfills.list_incomplete(server.team_id)
    assert caught.value.status_code == 429
    assert caught.value.retry_after is not None and 1 <= caught.value.retry_after <= 3600
    assert caught.value.error_code == "TOO_MANY_REQUESTS"


def test_the_demo_transfer_completes_a_backfill_and_its_runs_parse(
    live: LiveServer, client: SupermetricsClient
) -> None:
    created = client.backfills.create(
        live.team_id, live.transfer_id, date(2023, 6, 1), date(2023, 6, 10)
    )
    backfill_id = created.transfer_backfill_id
    deadline = time.monotonic() + 60
    while True:
        backfill = client.backfills.get(live.team_id, backfill_id)
        if status_of(backfill) in ("COMPLETED", "FAILED", "CANCELLED"):
            break
        assert time.monotonic() < deadline, "the demo backfill did not finish in 60 s"
        time.sleep(0.1)
    assert status_of(backfill) == "COMPLETED"
    assert backfill.transfer_runs_completed == backfill.transfer_runs_total == 10
    assert backfill.start_time is not None and backfill.end_time is not None
    runs = client.transfers.list_runs(
        live.team_id,
        live.transfer_id,
        datetime(2023, 6, 1),
        datetime(2023, 6, 30),
        filter_issues_only=False,
        sort_field="data_date",
        sort_direction="ASC",
        limit=5,
        offset=2,
    )
    items = list(getattr(runs, "data", runs))
    assert [str(item.data_date) for item in items] == [f"2023-06-{d:02d}" for d in range(3, 8)]
    assert {str(getattr(item.type_, "value", item.type_)) for item in items} == {"Backfill"}
    assert {item.status for item in items} == {"COMPLETED"}
    detail = client.transfer_runs.get(live.team_id, items[0].id)
    assert detail.status == "COMPLETED" and detail.total_rows == 1000
    assert detail.query_details[0].rows == 1000
    assert (
        client.transfers.list_runs(
            live.team_id,
            live.transfer_id,
            datetime(2023, 6, 1),
            datetime(2023, 6, 30),
            filter_issues_only=True,
        )
        is not None
    )
    with pytest.raises(SupermetricsNotFoundError):
        client.transfer_runs.get(live.team_id, 999_999_999)
