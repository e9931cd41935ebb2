"""Data-source connections through the HTTP API: the contract's create, our list, get, update
and delete, sealed credentials, and transfers that read with a connection."""

from __future__ import annotations

import json
import uuid
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from starlette.testclient import TestClient

from opendts.auth.permissions import Role, Scope
from opendts.connectors.boundary import Boundary
from opendts.connectors.load import LoadKind
from opendts.engine.errors import TerminalRunError
from opendts.engine.kinds import RunContext
from opendts.kit.db import Database
from opendts.kit.secrets import box_for
from opendts.settings import Settings
from tests.boundaries import LOCAL_NETWORKS
from tests.factories import Account, make_account
from tests.security.traps import http_trap

TOKEN = "conn-token-4e1d-never-shown"
HEADER = "conn-header-77b0-never-shown"


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(
        data_dir=tmp_path, database_url=database_url, allowed_networks=",".join(LOCAL_NETWORKS)
    )


def url(account: Account, suffix: str = "") -> str:
    return f"/v1/teams/{account.team_id}/data-source-connections{suffix}"


def create(client: TestClient, account: Account, **body: Any) -> Any:
    payload = {"data_source_id": "http", "destination_type": "DWH_DUCKDB", **body}
    return client.post(url(account), json=payload, headers=account.headers)


def api_connection(
    client: TestClient, account: Account, base: str = "https://api.example.com"
) -> dict[str, Any]:
    created = create(
        client,
        account,
        display_name="Ads API",
        fields={
            "url": base + "/ads?day={date}",
            "token": TOKEN,
            "headers": {"X-Api-Key": HEADER, "Accept": "application/json"},
            "records_path": "data",
        },
    )
    assert created.status_code == 201, created.text
    data: dict[str, Any] = created.json()["data"]
    return data


def test_the_contracts_create_answers_201_with_a_uuid(client: TestClient, account: Account) -> None:
    created = create(client, account)  # exactly what the official client sends
    assert created.status_code == 201, created.text
    body = created.json()
    assert set(body) == {"meta", "data"}
    data = body["data"]
    assert str(uuid.UUID(data["connection_id"])) == data["connection_id"]
    assert data["login_url"] is None and data["connect_url"] is None
    assert data["data_source_id"] == "http" and data["destination_type"] == "duckdb"
    assert data["fields"] == {} and data["stored_credentials"] == []
    assert data["display_name"] == "HTTP JSON API connection"


def test_lifecycle_with_credentials_sealed_and_masked(
    client: TestClient, account: Account, db: Database
) -> None:
    created = api_connection(client, account)
    connection_id = created["connection_id"]
    assert created["fields"]["url"] == "https://api.example.com/ads?day={date}"
    assert created["fields"]["headers"] == {"X-Api-Key": "***", "Accept": "***"}
    assert "token" not in created["fields"]
    assert created["stored_credentials"] == ["headers", "token"]
    viewer = make_account(db, role=Role.VIEWER, team_id=account.team_id)
    for who in (account, viewer):
        listed = client.get(url(account), headers=who.headers)
        got = client.get(url(account, f"/{connection_id}"), headers=who.headers)
        assert listed.status_code == 200 and got.status_code == 200
        assert [c["connection_id"] for c in listed.json()["data"]] == [connection_id]
        assert got.json()["data"]["display_name"] == "Ads API"
        for response in (listed, got):
            assert TOKEN not in response.text and HEADER not in response.text
    with db.session() as session:
        row = session.execute(text("SELECT fields, secrets FROM data_source_connections")).one()
    assert TOKEN not in row.fields + row.secrets and HEADER not in row.fields + row.secrets
    assert row.secrets.startswith("fernet:")

    renamed = client.patch(
        url(account, f"/{connection_id}"), json={"display_name": "Renamed"}, headers=account.headers
    )
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["data"]["display_name"] == "Renamed"
    assert renamed.json()["data"]["stored_credentials"] == ["headers", "token"]
    deleted = client.delete(url(account, f"/{connection_id}"), headers=account.headers)
    assert deleted.status_code == 204 and deleted.content == b""
    gone = client.get(url(account, f"/{connection_id}"), headers=account.headers)
    assert gone.status_code == 404
    assert gone.json()["error"]["code"] == "DATA_SOURCE_CONNECTION_NOT_FOUND"


def test_an_update_keeps_credentials_only_while_they_go_to_the_same_site(
    client: TestClient, account: Account
) -> None:
    connection_id = api_connection(client, account)["connection_id"]
    path = url(account, f"/{connection_id}")
    same_site = {"url": "https://api.example.com/v2/ads", "headers": {"X-Api-Key": "***"}}
    kept = client.patch(path, json={"fields": same_site}, headers=account.headers)
    assert kept.status_code == 200, kept.text
    assert kept.json()["data"]["stored_credentials"] == ["headers", "token"]
    moved = client.patch(
        path, json={"fields": {"url": "https://evil.example.com/"}}, headers=account.headers
    )
    assert moved.status_code == 400
    assert "'fields.url'" in moved.json()["error"]["description"]
    assert "send 'token' again" in moved.json()["error"]["description"]
    typed = {"url": "https://new.example.com/", "token": "typed-now"}
    assert client.patch(path, json={"fields": typed}, headers=account.headers).status_code == 200


@pytest.mark.parametrize(
    ("body", "names"),
    [
        ({"destination_type": "duckdb"}, "'data_source_id'"),
        ({"data_source_id": "http"}, "'destination_type'"),
        ({"data_source_id": "GA", "destination_type": "duckdb"}, "unknown source 'ga'"),
        ({"data_source_id": "http", "destination_type": "SQL_BQ"}, "'destination_type'"),
        ({"data_source_id": "http", "destination_type": "duckdb", "fields": []}, "'fields'"),
        (
            {"data_source_id": "http", "destination_type": "duckdb", "fields": {"bogus": 1}},
            "fields.bogus",
        ),
        (
            {"data_source_id": "http", "destination_type": "duckdb", "fields": {"url": "ftp://x"}},
            "fields.url",
        ),
        (  # credentials must say where they go
            {"data_source_id": "http", "destination_type": "duckdb", "fields": {"token": "t"}},
            "'fields.url' is required",
        ),
        (
            {"data_source_id": "http", "destination_type": "duckdb", "fields": {"token": "***"}},
            "fields.token",
        ),
        (  # the contract types api_key as a string, unused but still checked
            {"data_source_id": "demo", "destination_type": "duckdb", "api_key": 7},
            "'api_key'",
        ),
    ],
)
def test_bad_bodies_are_400_naming_the_field(
    client: TestClient, account: Account, body: dict[str, Any], names: str
) -> None:
    response = client.post(url(account), json=body, headers=account.headers)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "INVALID_PARAMETER" and names in error["description"]


def test_access_rules_and_other_teams(client: TestClient, account: Account, db: Database) -> None:
    connection_id = api_connection(client, account)["connection_id"]
    stranger = make_account(db)
    for method in ("get", "patch", "delete"):
        response = client.request(
            method,
            f"/v1/teams/{stranger.team_id}/data-source-connections/{connection_id}",
            json={"display_name": "x"} if method == "patch" else None,
            headers=stranger.headers,
        )
        assert response.status_code == 404, (method, response.text)
    foreign = client.get(url(account, f"/{connection_id}"), headers=stranger.headers)
    assert foreign.status_code == 403
    assert client.get(url(account)).status_code == 401
    malformed = client.get(url(account, "/not-a-uuid"), headers=account.headers)
    assert malformed.status_code == 400 and "UUID" in malformed.json()["error"]["description"]
    viewer = make_account(db, role=Role.VIEWER, team_id=account.team_id)
    assert create(client, viewer).status_code == 403
    reader = make_account(db, team_id=account.team_id, scopes=(Scope.READ.value,))
    refused = create(client, reader)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "INSUFFICIENT_SCOPE"
    assert client.get(url(account), headers=reader.headers).status_code == 200


def destination(client: TestClient, account: Account) -> int:
    created = client.post(
        f"/v1/teams/{account.team_id}/destinations",
        json={"type": "duckdb", "display_name": "W", "fields": {"path": "conn.duckdb"}},
        headers=account.headers,
    )
    destination_id: int = created.json()["data"]["id"]
    return destination_id


def transfer_body(destination_id: int, **extra: Any) -> dict[str, Any]:
    return {
        "data_source_id": "http",
        "destination_id": destination_id,
        "display_name": "Ads",
        "table": "ads",
        **extra,
    }


def test_a_transfer_reads_with_the_connections_credentials(
    client: TestClient, account: Account, db: Database, settings: Settings
) -> None:
    with http_trap() as trap:
        trap.body = json.dumps({"data": [{"campaign": "c1", "clicks": 3}]}).encode()
        connection_id = api_connection(client, account, base=trap.base)["connection_id"]
        created = client.post(
            f"/v1/teams/{account.team_id}/transfers",
            json=transfer_body(
                destination(client, account),
                data_source_connection_id=connection_id.upper(),
                source_config={"params": {"day": "{date}"}},
            ),
            headers=account.headers,
        )
        assert created.status_code == 201, created.text
        transfer_id = created.json()["data"]["transfer_id"]
        got = client.get(
            f"/v1/teams/{account.team_id}/transfers/{transfer_id}", headers=account.headers
        ).json()
        assert got["data_source_connection_id"] == connection_id
        assert got["source_config"] == {"params": {"day": "{date}"}}
        with db.session() as session:
            sealed = session.execute(
                text("SELECT source_secrets FROM transfers WHERE id = :id"), {"id": transfer_id}
            ).scalar_one()
        assert sealed == ""  # the credentials live in the connection, not in the transfer
        kind = LoadKind(
            db,
            lambda: box_for(settings.data_dir, settings.secret_key),
            lambda team_id: Boundary.for_team(settings, team_id),
        )
        result = kind.execute(
            RunContext(1, account.team_id, transfer_id, date(2024, 1, 31), 1, 1), {}
        )
        assert result.rows == 1
        seen = trap.seen[0]
        assert seen.path == "/ads?day=2024-01-31"
        assert seen.headers["Authorization"] == f"Bearer {TOKEN}"
        assert seen.headers["X-Api-Key"] == HEADER

        in_use = client.delete(url(account, f"/{connection_id}"), headers=account.headers)
        assert in_use.status_code == 409
        assert in_use.json()["error"]["code"] == "DATA_SOURCE_CONNECTION_IN_USE"
        # An update that leaves the connection out keeps it; null takes it away.
        kept = client.put(
            f"/v1/teams/{account.team_id}/transfers/{transfer_id}",
            json=transfer_body(destination(client, account), source_config={}),
            headers=account.headers,
        )
        assert kept.status_code == 200, kept.text
        detached = client.put(
            f"/v1/teams/{account.team_id}/transfers/{transfer_id}",
            json=transfer_body(
                destination(client, account),
                data_source_connection_id=None,
                source_config={"url": "https://api.example.com/"},
            ),
            headers=account.headers,
        )
        assert detached.status_code == 200, detached.text
        free = client.delete(url(account, f"/{connection_id}"), headers=account.headers)
        assert free.status_code == 204


def test_a_transfer_names_a_connection_of_its_team_and_source(
    client: TestClient, account: Account, db: Database
) -> None:
    connection_id = api_connection(client, account)["connection_id"]
    sql = create(client, account, data_source_id="sql").json()["data"]["connection_id"]
    stranger = make_account(db)
    foreign = api_connection(client, stranger)["connection_id"]
    destination_id = destination(client, account)
    for value, problem in (
        (sql, "is for the 'sql' source"),
        (foreign, "does not exist"),
        (str(uuid.uuid4()), "does not exist"),
        ("nope", "must be a UUID"),
        (7, "must be a UUID string"),
    ):
        response = client.post(
            f"/v1/teams/{account.team_id}/transfers",
            json=transfer_body(destination_id, data_source_connection_id=value),
            headers=account.headers,
        )
        assert response.status_code == 400, response.text
        assert problem in response.json()["error"]["description"]
    good = client.post(
        f"/v1/teams/{account.team_id}/transfers/validations",
        json=transfer_body(destination_id, data_source_connection_id=connection_id),
        headers=account.headers,
    )
    assert good.json() == {"is_valid": True, "errors": []}


def test_a_connection_moved_away_from_its_transfers_url_fails_their_runs(
    client: TestClient, account: Account, db: Database, settings: Settings
) -> None:
    connection_id = api_connection(client, account)["connection_id"]
    created = client.post(
        f"/v1/teams/{account.team_id}/transfers",
        json=transfer_body(
            destination(client, account),
            data_source_connection_id=connection_id,
            source_config={"url": "https://api.example.com/v2/ads?day={date}"},
        ),
        headers=account.headers,
    )
    assert created.status_code == 201, created.text
    moved = client.patch(
        url(account, f"/{connection_id}"),
        json={"fields": {"url": "https://new.example.com/ads", "token": "new-token"}},
        headers=account.headers,
    )
    assert moved.status_code == 200
    kind = LoadKind(
        db,
        lambda: box_for(settings.data_dir, settings.secret_key),
        lambda team_id: Boundary.for_team(settings, team_id),
    )
    context = RunContext(
        1, account.team_id, created.json()["data"]["transfer_id"], date.today(), 1, 1
    )
    with pytest.raises(TerminalRunError, match="where its data-source connection points"):
        kind.execute(context, {})
