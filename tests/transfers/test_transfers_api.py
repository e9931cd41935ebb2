"""Destinations and transfers through the HTTP API: shapes, status codes, validation, secrets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text
from starlette.testclient import TestClient

from opendts.api.app import create_app
from opendts.auth.permissions import Role
from opendts.kit.db import Database
from opendts.settings import Settings
from tests.boundaries import allow_local
from tests.factories import Account, make_account

PASSWORD = "s3cret-Pa55word-never-shown"
TOKEN = "tok-9f8e7d6c5b4a-never-shown"


def dest_url(account: Account, suffix: str = "") -> str:
    return f"/v1/teams/{account.team_id}/destinations{suffix}"


def transfers_url(account: Account, suffix: str = "") -> str:
    return f"/v1/teams/{account.team_id}/transfers{suffix}"


def make_destination(client: TestClient, account: Account, **fields: Any) -> dict[str, Any]:
    body = {"type": "duckdb", "display_name": "Warehouse", "fields": fields or {"path": "w.duckdb"}}
    response = client.post(dest_url(account), json=body, headers=account.headers)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def transfer_body(destination_id: int, **extra: Any) -> dict[str, Any]:
    body = {
        "data_source_id": "demo",
        "schema_id": 1,
        "destination_id": destination_id,
        "display_name": "Ad metrics",
        "schedule": [{"run_interval": "daily", "run_hour": 3, "refresh_window": 2}],
        "accounts": [{"account_id": "acc-1"}, {"account_id": "acc-2"}],
        "data_source_settings": [{"field_id": "rows_per_day", "value": 50}],
    }
    body.update(extra)
    return body


def test_destination_lifecycle_and_shapes(client: TestClient, account: Account) -> None:
    created = make_destination(client, account, path="wh.duckdb")
    assert created["display_name"] == "Warehouse"
    assert created["destination_type"]["type"] == "duckdb"
    assert {"type", "title", "icon_url"} <= set(created["destination_type"])
    path_setting = next(s for s in created["edit_settings"] if s["id"] == "path")
    assert path_setting["value"] == "wh.duckdb" and path_setting["is_required"] is False
    destination_id = created["id"]

    listed = client.get(dest_url(account), headers=account.headers).json()["data"]
    assert {"id": destination_id, "display_name": "Warehouse", "type": "duckdb"} in listed

    got = client.get(dest_url(account, f"/{destination_id}"), headers=account.headers)
    assert got.status_code == 200 and got.json()["data"]["id"] == destination_id

    updated = client.put(
        dest_url(account, f"/{destination_id}"),
        json={"type": "duckdb", "display_name": "Renamed", "fields": {"path": "other.duckdb"}},
        headers=account.headers,
    )
    assert updated.status_code == 200, updated.text
    assert updated.json()["data"]["display_name"] == "Renamed"
    assert updated.json()["data"]["fields"]["path"] == "other.duckdb"

    usage = client.get(dest_url(account, f"/{destination_id}/usage"), headers=account.headers)
    assert usage.json()["data"] == {"is_used": False, "transfers": []}
    deleted = client.delete(dest_url(account, f"/{destination_id}"), headers=account.headers)
    assert deleted.status_code == 204 and deleted.content == b""
    gone = client.get(dest_url(account, f"/{destination_id}"), headers=account.headers)
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "DESTINATION_NOT_FOUND"


@pytest.mark.parametrize(
    ("body", "names"),
    [
        ({"display_name": "x", "fields": {}}, "'type'"),
        ({"type": "duckdb", "fields": {}}, "'display_name'"),
        ({"type": "duckdb", "display_name": "x"}, "'fields'"),
        ({"type": "nosuch", "display_name": "x", "fields": {}}, "nosuch"),
        ({"type": "duckdb", "display_name": "x", "fields": {"bogus": 1}}, "fields.bogus"),
        ({"type": "postgresql", "display_name": "x", "fields": {"port": "many"}}, "fields."),
        ({"type": "duckdb", "display_name": "x", "fields": []}, "'fields'"),
    ],
)
def test_bad_destination_bodies_are_400_naming_the_field(
    client: TestClient, account: Account, body: dict[str, Any], names: str
) -> None:
    response = client.post(dest_url(account), json=body, headers=account.headers)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "INVALID_PARAMETER" and names in error["description"]


def test_destination_credentials_are_never_returned_nor_stored_in_plain_text(
    client: TestClient, account: Account, db: Database
) -> None:
    body = {
        "type": "DWH_POSTGRESQL",
        "display_name": "PG",
        "fields": {
            "host": "db.example.com",
            "database": "analytics",
            "user": "loader",
            "password": PASSWORD,
        },
    }
    created = client.post(dest_url(account), json=body, headers=account.headers)
    assert created.status_code == 201, created.text
    assert PASSWORD not in created.text
    destination_id = created.json()["data"]["id"]
    password = next(s for s in created.json()["data"]["edit_settings"] if s["id"] == "password")
    assert password["value"] is None and password["input_type"] == "password"
    assert password["note"] == "set"
    for url in (dest_url(account), dest_url(account, f"/{destination_id}")):
        assert PASSWORD not in client.get(url, headers=account.headers).text
    # An update without the password keeps it; new_password replaces it.
    kept = client.put(
        dest_url(account, f"/{destination_id}"),
        json={
            **body,
            "fields": {"host": "db.example.com", "database": "analytics", "user": "loader"},
        },
        headers=account.headers,
    )
    assert kept.status_code == 200 and PASSWORD not in kept.text
    with db.session() as session:
        stored = session.execute(text("SELECT fields, secrets FROM destinations")).one()
    assert PASSWORD not in stored.fields and PASSWORD not in stored.secrets
    assert stored.secrets.startswith("fernet:")
    replaced = client.put(
        dest_url(account, f"/{destination_id}"),
        json={**body, "new_password": "another-one"},
        headers=account.headers,
    )
    assert replaced.status_code == 200
    with db.session() as session:
        sealed = session.execute(text("SELECT secrets FROM destinations")).scalar_one()
    assert sealed != stored.secrets and "another-one" not in sealed


def test_test_connection_reports_success_and_failure_as_200(
    settings: Settings, db: Database, account: Account
) -> None:
    # The failing PostgreSQL is on this machine, which the operator allows here.
    with TestClient(create_app(allow_local(settings), db)) as client:
        _test_connection_reports_success_and_failure_as_200(client, account)


def _test_connection_reports_success_and_failure_as_200(
    client: TestClient, account: Account
) -> None:
    ok = client.post(
        dest_url(account, "/test-connection"),
        json={"type": "duckdb", "display_name": "x", "fields": {"path": "t.duckdb"}},
        headers=account.headers,
    )
    assert ok.status_code == 200 and ok.json()["data"] == {"success": True, "error": None}
    bad = client.post(
        dest_url(account, "/test-connection"),
        json={
            "type": "postgresql",
            "display_name": "x",
            "fields": {"port": 1, "database": "nope", "password": PASSWORD},
        },
        headers=account.headers,
    )
    assert bad.status_code == 200, bad.text
    result = bad.json()["data"]
    assert result["success"] is False and result["error"]
    assert PASSWORD not in bad.text


def test_transfer_lifecycle_and_contract_shapes(client: TestClient, account: Account) -> None:
    destination = make_destination(client, account)
    created = client.post(
        transfers_url(account), json=transfer_body(destination["id"]), headers=account.headers
    )
    assert created.status_code == 201, created.text
    envelope = created.json()
    assert envelope["meta"]["request_id"]
    transfer_id = envelope["data"]["transfer_id"]
    assert envelope["data"]["transfer_name"] == "Ad metrics"

    # get: a plain (not enveloped) TransferConfigurationResponse
    got = client.get(transfers_url(account, f"/{transfer_id}"), headers=account.headers).json()
    assert "meta" not in got and got["transfer_id"] == transfer_id
    assert got["destination_id"] == destination["id"] and got["schema_id"] == 1
    assert got["data_source"]["data_source_id"] == "demo"
    assert {"field_id": "rows_per_day", "value": 50, "group": None} in got["data_source"][
        "settings"
    ]
    assert got["schedule"] == [{"run_interval": "daily", "run_hour": 3, "refresh_window": 2}]
    assert got["accounts"] == [{"account_id": "acc-1"}, {"account_id": "acc-2"}]
    assert got["table"] == "ad_metrics" and got["refresh_mode"] == "replace"
    next_run = datetime.fromisoformat(got["next_run_time"])
    assert (next_run.hour, next_run.minute, next_run.utcoffset()) == (3, 0, timedelta(0))
    assert timedelta(0) < next_run - datetime.now(UTC) <= timedelta(days=1)

    listed = client.get(transfers_url(account), headers=account.headers).json()["data"]
    item = next(t for t in listed if t["dwh_transfer_id"] == transfer_id)
    assert item["state"] == "active" and item["schedule"] == "daily"
    assert item["accounts"] == ["acc-1", "acc-2"]
    assert item["destination"]["id"] == destination["id"]

    updated = client.put(
        transfers_url(account, f"/{transfer_id}"),
        json=transfer_body(destination["id"], display_name="Renamed", table="ads_v2"),
        headers=account.headers,
    )
    assert updated.status_code == 200 and updated.json() == {
        "transfer_id": transfer_id,
        "transfer_name": "Renamed",
    }
    got = client.get(transfers_url(account, f"/{transfer_id}"), headers=account.headers).json()
    assert got["table"] == "ads_v2" and got["display_name"] == "Renamed"

    paused = client.put(
        transfers_url(account, f"/{transfer_id}/state"),
        json={"transfer_state": "pause"},
        headers=account.headers,
    )
    assert paused.status_code == 200 and paused.json() == {"result": True, "state": "PAUSED"}
    backfill = client.post(
        transfers_url(account, f"/{transfer_id}/backfills"),
        json={"range_start": "2024-01-01", "range_end": "2024-01-02"},
        headers=account.headers,
    )
    assert backfill.status_code == 422 and backfill.json()["error"]["code"] == "TRANSFER_PAUSED"
    unpaused = client.put(
        transfers_url(account, f"/{transfer_id}/state"),
        json={"transfer_state": "unpause"},
        headers=account.headers,
    )
    assert unpaused.json() == {"result": True, "state": "ACTIVE"}
    bad_state = client.put(
        transfers_url(account, f"/{transfer_id}/state"),
        json={"transfer_state": "sleep"},
        headers=account.headers,
    )
    assert bad_state.status_code == 400

    # In use: the destination cannot go.
    in_use = client.delete(dest_url(account, f"/{destination['id']}"), headers=account.headers)
    assert in_use.status_code == 409 and in_use.json()["error"]["code"] == "DESTINATION_IN_USE"
    usage = client.get(dest_url(account, f"/{destination['id']}/usage"), headers=account.headers)
    assert usage.json()["data"] == {
        "is_used": True,
        "transfers": [{"transfer_id": transfer_id, "transfer_name": "Renamed"}],
    }

    deleted = client.delete(transfers_url(account, f"/{transfer_id}"), headers=account.headers)
    assert deleted.status_code == 204 and deleted.content == b""
    assert (
        client.get(transfers_url(account, f"/{transfer_id}"), headers=account.headers).status_code
        == 404
    )
    assert all(
        t["dwh_transfer_id"] != transfer_id
        for t in client.get(transfers_url(account), headers=account.headers).json()["data"]
    )
    assert (
        client.delete(dest_url(account, f"/{destination['id']}"), headers=account.headers)
    ).status_code == 204


def test_validations_list_every_problem_with_200(client: TestClient, account: Account) -> None:
    body = {
        "data_source_id": "demo",
        "destination_id": 999999,
        "display_name": "",
        "schedule": [{"run_interval": "yearly"}, {"run_interval": "weekly"}],
        "accounts": [{"account_id": 5}],
        "data_source_settings": [{"field_id": "rows_per_day", "value": -1}],
        "notification_recipients": ["not-an-email"],
        "table": "1bad name",
        "refresh_mode": "merge",
    }
    response = client.post(
        transfers_url(account, "/validations"), json=body, headers=account.headers
    )
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["is_valid"] is False
    fields = {e["field_id"] for e in result["errors"]}
    assert {
        "display_name",
        "destination_id",
        "schedule[0].run_interval",
        "schedule[1].run_weekday",
        "accounts[0].account_id",
        "source_config.rows_per_day",
        "notification_recipients[0]",
        "table",
        "refresh_mode",
    } <= fields
    assert all(e["error_code"] for e in result["errors"])
    created = client.post(transfers_url(account), json=body, headers=account.headers)
    assert created.status_code == 400 and "display_name" in created.json()["error"]["description"]

    destination = make_destination(client, account)
    good = client.post(
        transfers_url(account, "/validations"),
        json=transfer_body(destination["id"]),
        headers=account.headers,
    )
    assert good.json() == {"is_valid": True, "errors": []}


def test_source_credentials_stay_secret(client: TestClient, account: Account, db: Database) -> None:
    destination = make_destination(client, account)
    body = transfer_body(
        destination["id"],
        data_source_id="http",
        data_source_settings=None,
        source_config={"url": "https://api.example.com/ads?day={date}", "token": TOKEN},
    )
    created = client.post(transfers_url(account), json=body, headers=account.headers)
    assert created.status_code == 201, created.text
    transfer_id = created.json()["data"]["transfer_id"]
    for url in (transfers_url(account), transfers_url(account, f"/{transfer_id}")):
        assert TOKEN not in client.get(url, headers=account.headers).text
    with db.session() as session:
        row = session.execute(
            text("SELECT config, source_secrets FROM transfers WHERE id = :id"), {"id": transfer_id}
        ).one()
    assert TOKEN not in row.config and TOKEN not in row.source_secrets
    # An update without the token keeps it.
    body["source_config"] = {"url": "https://api.example.com/v2?day={date}"}
    assert (
        client.put(transfers_url(account, f"/{transfer_id}"), json=body, headers=account.headers)
    ).status_code == 200
    with db.session() as session:
        sealed = session.execute(
            text("SELECT source_secrets FROM transfers WHERE id = :id"), {"id": transfer_id}
        ).scalar_one()
    assert sealed.startswith("fernet:")


def test_other_teams_and_readers(client: TestClient, account: Account, db: Database) -> None:
    destination = make_destination(client, account)
    stranger = make_account(db)
    assert client.get(dest_url(stranger, "")).status_code == 401
    other_team = client.get(
        f"/v1/teams/{stranger.team_id}/destinations/{destination['id']}", headers=stranger.headers
    )
    assert other_team.status_code == 404
    foreign = client.post(
        transfers_url(stranger), json=transfer_body(destination["id"]), headers=stranger.headers
    )
    assert foreign.status_code == 400 and "destination_id" in foreign.text
    viewer = make_account(db, role=Role.VIEWER, team_id=account.team_id)
    assert client.get(dest_url(viewer), headers=viewer.headers).status_code == 200
    forbidden = client.post(
        dest_url(viewer),
        json={"type": "duckdb", "display_name": "x", "fields": {}},
        headers=viewer.headers,
    )
    assert forbidden.status_code == 403


def test_catalogue_endpoints(client: TestClient, account: Account) -> None:
    destination = make_destination(client, account)
    sources = client.get(transfers_url(account, "/available-sources"), headers=account.headers)
    assert sources.status_code == 200
    names = {s["data_source_id"] for s in sources.json()["data_sources"]}
    assert {"demo", "http", "sql", "file"} <= names
    assert [d["destination_id"] for d in sources.json()["destinations"]] == [destination["id"]]
    options = client.get(
        transfers_url(
            account, f"/available-options?source_id=demo&destination_id={destination['id']}"
        ),
        headers=account.headers,
    )
    assert options.status_code == 200
    assert any(s["id"] == "rows_per_day" for s in options.json()["settings"])
    assert options.json()["destination_id"] == destination["id"]
    without = client.get(
        transfers_url(account, "/available-options?source_id=demo"), headers=account.headers
    )
    assert without.status_code == 200 and without.json()["destination_id"] is None
    missing = client.get(transfers_url(account, "/available-options"), headers=account.headers)
    assert missing.status_code == 400


@pytest.mark.parametrize(
    ("entry", "field"),
    [
        ({"run_interval": "weekly", "run_weekday": None}, "schedule[0].run_weekday"),
        ({"run_interval": "monthly", "run_day": None}, "schedule[0].run_day"),
        ({"run_interval": ""}, "schedule[0].run_interval"),
        ({"run_interval": False}, "schedule[0].run_interval"),
    ],
)
def test_a_schedule_that_says_nothing_is_refused_not_guessed(
    client: TestClient, account: Account, entry: dict[str, Any], field: str
) -> None:
    # Found by schemathesis over /v1/openapi.json: a weekly schedule with "run_weekday": null
    # passed validation, and computing its next run looped to an internal error; "" and false
    # were read as "daily".
    destination = make_destination(client, account)
    body = transfer_body(destination["id"], schedule=[entry])
    checked = client.post(
        transfers_url(account, "/validations"), json=body, headers=account.headers
    )
    assert checked.status_code == 200, checked.text
    assert field in {e["field_id"] for e in checked.json()["errors"]}
    created = client.post(transfers_url(account), json=body, headers=account.headers)
    assert created.status_code == 400, created.text
    assert field in created.json()["error"]["description"]


@pytest.mark.parametrize("value", ["abc", "0", "-1", "01", "1.0", "", "99999999999999999999"])
def test_available_options_refuse_a_destination_id_that_is_no_id(
    client: TestClient, account: Account, value: str
) -> None:
    response = client.get(
        transfers_url(account, f"/available-options?source_id=demo&destination_id={value}"),
        headers=account.headers,
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "INVALID_PARAMETER" and "destination_id" in error["description"]


def test_catalogue_shows_no_destination_of_another_team(
    client: TestClient, db: Database, account: Account
) -> None:
    stranger = make_account(db)
    theirs = make_destination(client, stranger, path="theirs.duckdb")
    sources = client.get(transfers_url(account, "/available-sources"), headers=account.headers)
    assert sources.json()["destinations"] == []
    assert "theirs.duckdb" not in sources.text
    options = client.get(
        transfers_url(account, f"/available-options?source_id=demo&destination_id={theirs['id']}"),
        headers=account.headers,
    )
    assert options.status_code == 400 and "theirs.duckdb" not in options.text
    assert "does not exist" in options.json()["error"]["description"]


def test_catalogue_lists_a_destination_whose_connector_is_gone(
    client: TestClient, db: Database, account: Account
) -> None:
    destination = make_destination(client, account)
    with db.session(write=True) as session:
        session.execute(
            text("UPDATE destinations SET type = 'uninstalled' WHERE id = :id"),
            {"id": destination["id"]},
        )
    sources = client.get(transfers_url(account, "/available-sources"), headers=account.headers)
    assert sources.status_code == 200, sources.text
    listed = sources.json()["destinations"]
    assert [(d["destination_id"], d["destination_label"]) for d in listed] == [
        (destination["id"], "uninstalled")
    ]
