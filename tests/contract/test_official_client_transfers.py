"""The official ``supermetrics`` client's transfers and destinations calls, unchanged, against
a live opendts server."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import date
from uuid import UUID

import httpx
import pytest
from supermetrics import (
    SupermetricsClient,
    TransferAccount,
    TransferDataSourceSetting,
    TransferSchedule,
)
from supermetrics._generated.supermetrics_api_client.models.data_source_connection import (
    DataSourceConnection,
)
from supermetrics.exceptions import (
    SupermetricsAPIError,
    SupermetricsNotFoundError,
    SupermetricsValidationError,
)

from tests.live import LiveServer


@pytest.fixture
def client(live: LiveServer) -> Iterator[SupermetricsClient]:
    with SupermetricsClient(api_key=live.api_key, base_url=live.base_url) as sdk:
        yield sdk


def value(obj: object) -> str:
    return str(getattr(obj, "value", obj))


def test_destinations_round_trip(live: LiveServer, client: SupermetricsClient) -> None:
    created = client.destinations.create(
        live.team_id, "duckdb", "SDK warehouse", {"path": "sdk.duckdb"}
    )
    assert created.id and created.display_name == "SDK warehouse"
    assert created.destination_type.type_ == "duckdb"
    assert any(s.id == "path" for s in created.edit_settings)
    listed = client.destinations.list(live.team_id)
    assert any(d.id == created.id for d in getattr(listed, "data", listed))
    got = client.destinations.get(live.team_id, created.id)
    assert got.display_name == "SDK warehouse"
    updated = client.destinations.update(
        live.team_id, created.id, "duckdb", "Renamed", {"path": "sdk2.duckdb"}
    )
    assert updated.display_name == "Renamed"
    tested = client.destinations.test_connection(
        live.team_id, "duckdb", "x", {"path": "probe.duckdb"}
    )
    assert tested.success is True
    usage = client.destinations.get_usage(live.team_id, created.id)
    assert usage.is_used is False and list(usage.transfers) == []
    client.destinations.delete(live.team_id, created.id)
    with pytest.raises(SupermetricsNotFoundError):
        client.destinations.get(live.team_id, created.id)


def test_transfers_round_trip_and_a_backfill_loads_data(
    live: LiveServer, client: SupermetricsClient
) -> None:
    destination = client.destinations.create(
        live.team_id, "duckdb", "SDK loads", {"path": "sdk-loads.duckdb"}
    )
    schedule = [TransferSchedule(run_interval="daily", run_hour=4, refresh_window=2)]
    accounts = [TransferAccount(account_id="sdk-1")]
    settings = [TransferDataSourceSetting(field_id="rows_per_day", value=25)]
    validation = client.transfers.validate(
        live.team_id, "demo", 1, destination.id, "SDK transfer", schedule, accounts,
        data_source_settings=settings,
    )  # fmt: skip
    assert validation.is_valid is True
    created = client.transfers.create(
        live.team_id, "demo", 1, destination.id, "SDK transfer", schedule, accounts,
        data_source_settings=settings,
    )  # fmt: skip
    transfer_id = created.transfer_id
    assert created.transfer_name == "SDK transfer"
    got = client.transfers.get(live.team_id, transfer_id)
    assert got.transfer_id == transfer_id and got.destination_id == destination.id
    assert value(got.schedule[0].run_interval) == "daily" and got.schedule[0].run_hour == 4
    listed = client.transfers.list(live.team_id)
    assert any(t.dwh_transfer_id == transfer_id for t in getattr(listed, "data", listed))

    backfill = client.backfills.create(
        live.team_id, transfer_id, date(2024, 3, 1), date(2024, 3, 5)
    )
    deadline = time.monotonic() + 60
    while value(client.backfills.get(live.team_id, backfill.transfer_backfill_id).status) not in (
        "COMPLETED",
        "FAILED",
    ):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    done = client.backfills.get(live.team_id, backfill.transfer_backfill_id)
    assert value(done.status) == "COMPLETED" and done.transfer_runs_completed == 5

    with pytest.raises(SupermetricsAPIError) as in_use:
        client.destinations.delete(live.team_id, destination.id)
    assert in_use.value.status_code == 409
    usage = client.destinations.get_usage(live.team_id, destination.id)
    assert usage.is_used is True

    paused = client.transfers.set_state(live.team_id, transfer_id, "pause")
    assert paused.result is True and paused.state == "PAUSED"
    unpaused = client.transfers.set_state(live.team_id, transfer_id, "unpause")
    assert unpaused.state == "ACTIVE"
    updated = client.transfers.update(
        live.team_id, transfer_id, "demo", 1, destination.id, "SDK renamed", schedule, accounts,
        data_source_settings=settings,
    )  # fmt: skip
    assert updated.transfer_name == "SDK renamed"
    still_valid = client.transfers.validate_update(
        live.team_id, transfer_id, "demo", 1, destination.id, "SDK renamed", schedule, accounts,
        data_source_settings=settings,
    )  # fmt: skip
    assert still_valid.is_valid is True and list(still_valid.errors) == []
    invalid = client.transfers.validate_update(
        live.team_id, transfer_id, "demo", 1, destination.id, "SDK renamed",
        [TransferSchedule(run_interval="daily", run_hour=25)], accounts,
    )  # fmt: skip
    assert invalid.is_valid is False
    assert any("run_hour" in problem.field_id for problem in invalid.errors)
    client.transfers.delete(live.team_id, transfer_id)
    with pytest.raises(SupermetricsNotFoundError):
        client.transfers.get(live.team_id, transfer_id)
    client.destinations.delete(live.team_id, destination.id)


def test_create_datasource_connection_answers_the_typed_model(
    live: LiveServer, client: SupermetricsClient
) -> None:
    connection = client.transfers.create_datasource_connection(live.team_id, "http", "DWH_DUCKDB")
    assert isinstance(connection, DataSourceConnection)
    assert isinstance(connection.connection_id, UUID)
    assert connection.login_url is None and connection.connect_url is None
    with httpx.Client(base_url=live.base_url, headers=live.headers) as api:
        got = api.get(f"/teams/{live.team_id}/data-source-connections/{connection.connection_id}")
    assert got.status_code == 200 and got.json()["data"]["data_source_id"] == "http"
    with pytest.raises(SupermetricsValidationError):
        client.transfers.create_datasource_connection(live.team_id, "no-such-source", "duckdb")
