"""The official ``supermetrics`` client's catalogue calls fill their typed fields.

``list_available_sources`` and ``get_available_options`` parse any JSON object: a server that
answers its own shape gives a client whose typed fields are all unset. These tests read the
typed attributes (and the ids' types), as a program built on the client would.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from supermetrics import SupermetricsClient, TransferAccount, TransferSchedule
from supermetrics.exceptions import SupermetricsAPIError

from tests.live import LiveServer


@pytest.fixture
def client(live: LiveServer) -> Iterator[SupermetricsClient]:
    with SupermetricsClient(api_key=live.api_key, base_url=live.base_url) as sdk:
        yield sdk


def extra(item: Any) -> dict[str, Any]:
    """The free-form part of a parsed item (what the client does not type)."""
    found: dict[str, Any] = item.additional_properties
    return found


def test_available_sources_fill_the_typed_fields(
    live: LiveServer, client: SupermetricsClient
) -> None:
    warehouse = client.destinations.create(
        live.team_id, "duckdb", "Catalogue warehouse", {"path": "catalogue.duckdb"}
    )
    secret = "catalogue-secret-pw"
    analytics = client.destinations.create(
        live.team_id,
        "postgresql",
        "Catalogue analytics",
        {"host": "db.example.com", "database": "analytics", "user": "loader", "password": secret},
    )
    available = client.transfers.list_available_sources(live.team_id)

    sources = {s.data_source_id: s for s in available.data_sources}
    assert {"demo", "http", "sql", "file"} <= set(sources)
    demo = sources["demo"]
    assert demo.service_name == "Demo ad metrics"
    assert demo.service_provider == "opendts"
    assert demo.is_released is True and demo.is_custom_connector is False
    assert {"duckdb", "postgresql", "sqlite", "parquet"} <= set(demo.applicable_destinations)
    # Our own fields stay beside the contract's.
    assert extra(demo)["name"] == "Demo ad metrics"
    assert any(s["id"] == "rows_per_day" for s in extra(demo)["settings"])

    destinations = {d.destination_id: d for d in available.destinations}
    assert all(type(d) is int for d in destinations)
    assert {warehouse.id, analytics.id} <= set(destinations)
    mine = destinations[warehouse.id]
    assert mine.destination_name == "Catalogue warehouse"
    assert mine.destination_type == "duckdb" and mine.destination_label
    assert any(extra(d) == {"id": "path", "value": "catalogue.duckdb"} for d in mine.details)
    assert destinations[analytics.id].destination_type == "postgresql"
    raw = httpx.get(
        f"{live.base_url}/teams/{live.team_id}/transfers/available-sources", headers=live.headers
    )
    assert raw.status_code == 200 and secret not in raw.text

    types = {t.type_: t for t in available.destination_types}
    assert {"duckdb", "postgresql", "sqlite", "parquet"} <= set(types)
    postgresql = types["postgresql"]
    assert postgresql.title and postgresql.is_internal is False
    assert postgresql.create_url == f"/v1/teams/{live.team_id}/destinations"
    assert (
        postgresql.connection_check_url == f"/v1/teams/{live.team_id}/destinations/test-connection"
    )
    assert any(extra(s)["id"] == "host" for s in postgresql.settings)
    assert any(extra(m)["id"] == "AUTH_METHOD_PASSWORD" for m in postgresql.auth_methods)


def test_available_options_fill_the_typed_fields_and_build_a_transfer(
    live: LiveServer, client: SupermetricsClient
) -> None:
    warehouse = client.destinations.create(
        live.team_id, "duckdb", "Options warehouse", {"path": "options.duckdb"}
    )
    options = client.transfers.get_available_options(live.team_id, "demo", warehouse.id)

    assert options.data_source.data_source_id == "demo"
    assert options.data_source.service_name == "Demo ad metrics"
    assert any(extra(s)["id"] == "rows_per_day" for s in options.data_source.settings)
    intervals = {extra(o)["run_interval"]: extra(o) for o in options.schedule_options}
    assert set(intervals) == {"daily", "hourly", "weekly", "monthly"}
    weekly = {f["id"]: f for f in intervals["weekly"]["fields"]}
    assert weekly["run_weekday"]["is_required"] is True and weekly["run_hour"]["maximum"] == 23
    schema_ids = [extra(s)["schema_id"] for s in options.schemas]
    assert schema_ids and all(type(i) is int for i in schema_ids)
    assert options.logins == [] and options.accounts == [] and options.segments == []
    assert type(extra(options.license_)["max_backfill_days"]) is int
    # Our own fields, with the destination id an integer (it was the string "1").
    ours = extra(options)
    assert ours["destination_id"] == warehouse.id and type(ours["destination_id"]) is int
    assert ours["source_id"] == "demo" and "replace" in ours["refresh_modes"]
    assert ours["destination"]["destination_name"] == "Options warehouse"

    # What the options offer is what a create accepts.
    daily = [TransferSchedule(run_interval="daily", run_hour=2, refresh_window=1)]
    created = client.transfers.create(
        live.team_id, "demo", schema_ids[0], warehouse.id, "From the options", daily,
        [TransferAccount(account_id="acc-1")],
    )  # fmt: skip
    assert created.transfer_name == "From the options"
    client.transfers.delete(live.team_id, created.transfer_id)


def test_available_options_refuse_a_destination_of_nobody(
    live: LiveServer, client: SupermetricsClient
) -> None:
    with pytest.raises(SupermetricsAPIError) as refused:
        client.transfers.get_available_options(live.team_id, "demo", 987654)
    assert refused.value.status_code == 400
    assert "destination_id" in refused.value.error_message
