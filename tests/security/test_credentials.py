"""Issue 11 §3, tried as an editor would: a stored secret goes only where it was stored for;
credentials hidden in URLs, query parameters and headers are sealed and masked (viewers too)
and never logged; run messages say what went wrong without echoing data.

Every trap listens on loopback, which these tests allow on purpose (``OPENDTS_ALLOWED_NETWORKS``),
so a refusal below is the credentials rule's, not the network rule's.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text, update
from starlette.testclient import TestClient

from opendts.auth.permissions import Role
from opendts.connectors import credentials
from opendts.connectors.base import ReadRequest, parse_settings
from opendts.connectors.boundary import Boundary
from opendts.connectors.load import LoadKind
from opendts.connectors.sources.file import FileSettings, FileSource
from opendts.connectors.sources.http import HttpSettings, HttpSource
from opendts.connectors.sources.sql import SqlSettings, SqlSource
from opendts.engine.errors import RunError, TerminalRunError
from opendts.engine.kinds import RunContext
from opendts.kit import logs
from opendts.kit.db import Database
from opendts.kit.secrets import box_for
from opendts.settings import Settings
from opendts.transfers.models import Transfer
from tests.boundaries import LOCAL_NETWORKS, boundary
from tests.databases import PG_ADMIN_DSN, require_pg
from tests.factories import Account, make_account
from tests.security.traps import http_trap, postgres_trap

PASSWORD = "pw-Stored-7c1f-admin-only"
TOKEN = "tok-Stored-93ab-admin-only"
URL_PASSWORD = "userinfo-Pw-55e1"
URL_KEY = "query-Key-0d4c"
PARAM_KEY = "param-Key-8b27"
HEADER_KEY = "header-Key-f3a9"
ALL_SECRETS = (TOKEN, URL_PASSWORD, URL_KEY, PARAM_KEY, HEADER_KEY)
DAY = date(2024, 1, 31)


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(
        data_dir=tmp_path, database_url=database_url, allowed_networks=",".join(LOCAL_NETWORKS)
    )


def post(client: TestClient, account: Account, path: str, body: dict[str, Any]) -> Any:
    return client.post(f"/v1/teams/{account.team_id}{path}", json=body, headers=account.headers)


def put(client: TestClient, account: Account, path: str, body: dict[str, Any]) -> Any:
    return client.put(f"/v1/teams/{account.team_id}{path}", json=body, headers=account.headers)


def get(client: TestClient, account: Account, path: str) -> Any:
    return client.get(f"/v1/teams/{account.team_id}{path}", headers=account.headers)


def saved_postgres(client: TestClient, account: Account) -> tuple[int, dict[str, Any]]:
    """An admin's PostgreSQL destination with a saved password."""
    fields = {"host": "127.0.0.2", "database": "analytics", "user": "loader", "password": PASSWORD}
    created = post(
        client,
        account,
        "/destinations",
        {"type": "postgresql", "display_name": "Analytics", "fields": fields},
    )
    assert created.status_code == 201, created.text
    return created.json()["data"]["id"], {k: v for k, v in fields.items() if k != "password"}


def refused_for(response: Any, field: str, secret: str) -> None:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "INVALID_PARAMETER"
    assert field in error["description"] and f"send '{secret}' again" in error["description"]


# --- a stored secret goes only where it was stored for ------------------------------------


def test_test_connection_never_sends_the_saved_password_to_a_new_host(
    client: TestClient, account: Account
) -> None:
    destination_id, _ = saved_postgres(client, account)
    with postgres_trap() as trap:
        probe = post(
            client,
            account,
            "/destinations/test-connection",
            {
                "type": "postgresql",
                "destination_id": destination_id,
                "fields": {"host": "127.0.0.1", "port": trap.port},
            },
        )
        refused_for(probe, "fields.host", "password")
        assert trap.passwords == [] and trap.connections == 0
        # Typed again, the password is the caller's own, and it goes where they say.
        typed = post(
            client,
            account,
            "/destinations/test-connection",
            {
                "type": "postgresql",
                "destination_id": destination_id,
                "fields": {"host": "127.0.0.1", "port": trap.port, "password": "typed-now"},
            },
        )
        assert typed.status_code == 200 and typed.json()["data"]["success"] is False
        assert trap.passwords == ["typed-now"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"port": 6543}, "fields.port"),
        ({"database": "postgres"}, "fields.database"),
        ({"user": "postgres"}, "fields.user"),
        ({"sslmode": "disable"}, "fields.sslmode"),
    ],
)
def test_any_change_of_where_the_password_goes_needs_it_again(
    client: TestClient, account: Account, change: dict[str, Any], field: str
) -> None:
    destination_id, fields = saved_postgres(client, account)
    body = {"type": "postgresql", "display_name": "Analytics", "fields": {**fields, **change}}
    probe = post(
        client, account, "/destinations/test-connection", {**body, "destination_id": destination_id}
    )
    refused_for(probe, field, "password")
    refused_for(put(client, account, f"/destinations/{destination_id}", body), field, "password")
    again = {**body, "fields": {**body["fields"], "password": "typed-now"}}
    assert put(client, account, f"/destinations/{destination_id}", again).status_code == 200


def test_a_destination_update_that_stays_put_keeps_the_password(
    client: TestClient, account: Account, db: Database, settings: Settings
) -> None:
    destination_id, fields = saved_postgres(client, account)
    body = {
        "type": "postgresql",
        "display_name": "Renamed",
        "fields": {**fields, "schema_name": "x"},
    }
    assert put(client, account, f"/destinations/{destination_id}", body).status_code == 200
    with db.session() as session:
        sealed = session.execute(text("SELECT secrets FROM destinations")).scalar_one()
    assert box_for(settings.data_dir, settings.secret_key).open(sealed)["password"] == PASSWORD


def http_transfer(client: TestClient, account: Account, **config: Any) -> int:
    destination = post(
        client,
        account,
        "/destinations",
        {"type": "duckdb", "display_name": "W", "fields": {"path": "w.duckdb"}},
    ).json()["data"]["id"]
    created = post(
        client,
        account,
        "/transfers",
        {
            "data_source_id": "http",
            "destination_id": destination,
            "display_name": "Ads API",
            "source_config": config,
        },
    )
    assert created.status_code == 201, created.text
    transfer_id: int = created.json()["data"]["transfer_id"]
    return transfer_id


def transfer_update(transfer_id: int, destination_id: int, **config: Any) -> dict[str, Any]:
    return {
        "data_source_id": "http",
        "destination_id": destination_id,
        "display_name": "Ads API",
        "source_config": config,
    }


def test_a_transfer_update_never_carries_the_token_to_another_site(
    client: TestClient, account: Account
) -> None:
    transfer_id = http_transfer(
        client, account, url="https://api.example.com/ads?day={date}", token=TOKEN
    )
    destination_id = get(client, account, f"/transfers/{transfer_id}").json()["destination_id"]
    path = f"/transfers/{transfer_id}"
    with http_trap() as trap:
        for elsewhere in (
            trap.base + "/ads?day={date}",  # another host
            "http://api.example.com/ads?day={date}",  # the same host in clear
            "https://api.example.com:8443/ads?day={date}",  # another port
        ):
            moved = put(client, account, path, transfer_update(0, destination_id, url=elsewhere))
            refused_for(moved, "source_config.url", "token")
        validation = post(
            client,
            account,
            f"{path}/validations",
            transfer_update(0, destination_id, url=trap.base + "/ads"),
        )
        assert validation.json()["is_valid"] is False
        assert "'token'" in validation.json()["errors"][0]["message"]
        assert (
            get(client, account, path)
            .json()["source_config"]["url"]
            .startswith("https://api.example.com/")
        )
        assert trap.seen == []
    # The same site, another path: the token stays. Another site with a token typed now: fine.
    same = put(
        client, account, path, transfer_update(0, destination_id, url="https://api.example.com/v2")
    )
    assert same.status_code == 200, same.text
    typed = transfer_update(0, destination_id, url="https://other.example.com/", token="typed")
    assert put(client, account, path, typed).status_code == 200


def test_a_transfer_cannot_point_a_connections_token_at_another_site(
    client: TestClient, account: Account
) -> None:
    connection = post(
        client,
        account,
        "/data-source-connections",
        {
            "data_source_id": "http",
            "destination_type": "duckdb",
            "fields": {"url": "https://api.example.com/ads?day={date}", "token": TOKEN},
        },
    )
    assert connection.status_code == 201, connection.text
    connection_id = connection.json()["data"]["connection_id"]
    destination = post(
        client,
        account,
        "/destinations",
        {"type": "duckdb", "display_name": "W", "fields": {"path": "w.duckdb"}},
    ).json()["data"]["id"]
    with http_trap() as trap:
        created = post(
            client,
            account,
            "/transfers",
            {
                "data_source_id": "http",
                "destination_id": destination,
                "display_name": "Borrowed token",
                "data_source_connection_id": connection_id,
                "source_config": {"url": trap.base + "/steal?day={date}"},
            },
        )
        assert created.status_code == 400, created.text
        assert "source_config.url" in created.json()["error"]["description"]
        assert trap.seen == []


def load_kind(db: Database, settings: Settings) -> LoadKind:
    return LoadKind(
        db,
        lambda: box_for(settings.data_dir, settings.secret_key),
        lambda team_id: Boundary.for_team(settings, team_id),
    )


def test_moving_a_connection_does_not_take_a_transfers_own_credentials_along(
    client: TestClient, account: Account, db: Database, settings: Settings
) -> None:
    connection = post(
        client,
        account,
        "/data-source-connections",
        {
            "data_source_id": "http",
            "destination_type": "duckdb",
            "fields": {"url": "https://api.example.com/ads?day={date}", "token": TOKEN},
        },
    ).json()["data"]["connection_id"]
    destination = post(
        client,
        account,
        "/destinations",
        {"type": "duckdb", "display_name": "W", "fields": {"path": "w.duckdb"}},
    ).json()["data"]["id"]
    created = post(
        client,
        account,
        "/transfers",
        {
            "data_source_id": "http",
            "destination_id": destination,
            "display_name": "Own key too",
            "data_source_connection_id": connection,
            "source_config": {"headers": {"X-Api-Key": HEADER_KEY}},
        },
    )
    assert created.status_code == 201, created.text
    with http_trap() as trap:
        # An editor moves the connection, typing a token of their own: that much is allowed...
        moved = client.patch(
            f"/v1/teams/{account.team_id}/data-source-connections/{connection}",
            json={"fields": {"url": trap.base + "/ads?day={date}", "token": "editors-own"}},
            headers=account.headers,
        )
        assert moved.status_code == 200, moved.text
        # ...but the transfer's own key, saved for the old site, does not follow.
        context = RunContext(1, account.team_id, created.json()["data"]["transfer_id"], DAY, 1, 1)
        with pytest.raises(TerminalRunError, match="save the transfer again"):
            load_kind(db, settings).execute(context, {})
        assert trap.seen == []


def test_a_run_refuses_credentials_whose_settings_moved_behind_the_apis_back(
    client: TestClient, account: Account, db: Database, settings: Settings
) -> None:
    """Checked where used: a transfer row pointed elsewhere without the API (a restored
    backup, a hand-edited row) still does not send the token there."""
    with http_trap() as trap:
        transfer_id = http_transfer(
            client, account, url="https://api.example.com/ads?day={date}", token=TOKEN
        )
        with db.session(write=True) as session:
            row = session.get(Transfer, transfer_id)
            assert row is not None
            config = json.loads(row.config)
            session.execute(
                update(Transfer)
                .where(Transfer.id == transfer_id)
                .values(config=json.dumps({**config, "url": trap.base + "/ads?day={date}"}))
            )
        context = RunContext(1, account.team_id, transfer_id, DAY, 1, 1)
        with pytest.raises(TerminalRunError, match="saved for another url"):
            load_kind(db, settings).execute(context, {})
        assert trap.seen == []


# --- credentials inside URLs, parameters and headers ----------------------------------------


def test_credentials_in_the_url_params_and_headers_are_sealed_and_masked_for_everyone(
    client: TestClient, account: Account, db: Database, settings: Settings
) -> None:
    url = f"https://reader:{URL_PASSWORD}@api.example.com/ads?day={{date}}&api_key={URL_KEY}"
    transfer_id = http_transfer(
        client,
        account,
        url=url,
        params={"key": PARAM_KEY, "since": "{date:%Y%m%d}"},
        headers={"X-Api-Key": HEADER_KEY},
        token=TOKEN,
    )
    viewer = make_account(db, role=Role.VIEWER, team_id=account.team_id)
    for who in (viewer, account):
        for path in (f"/transfers/{transfer_id}", "/transfers"):
            shown = get(client, who, path)
            assert shown.status_code == 200
            assert not [s for s in ALL_SECRETS if s in shown.text], path
    config = get(client, viewer, f"/transfers/{transfer_id}").json()
    assert config["source_config"]["url"] == (
        "https://***:***@api.example.com/ads?day={date}&api_key=***"
    )
    assert config["source_config"]["params"] == {"key": "***", "since": "{date:%Y%m%d}"}
    assert config["source_config"]["headers"] == {"X-Api-Key": "***"}
    assert "token" not in config["source_config"]
    settings_list = {s["field_id"]: s["value"] for s in config["data_source"]["settings"]}
    assert HEADER_KEY not in json.dumps(settings_list) and "***" in settings_list["headers"]
    with db.session() as session:
        stored = session.execute(
            text("SELECT config, source_secrets FROM transfers WHERE id = :id"),
            {"id": transfer_id},
        ).one()
    assert not [s for s in ALL_SECRETS if s in stored.config or s in stored.source_secrets]
    # What a reader sees can be sent back as it is: the masked values keep the stored ones.
    back = {
        "data_source_id": "http",
        "destination_id": config["destination_id"],
        "display_name": "Ads API",
        "source_config": config["source_config"],
    }
    assert put(client, account, f"/transfers/{transfer_id}", back).status_code == 200
    with db.session() as session:
        row = session.get(Transfer, transfer_id)
        assert row is not None
        box = box_for(settings.data_dir, settings.secret_key)
        values = credentials.join(json.loads(row.config), box.open(row.source_secrets))
    assert values["url"] == url and values["token"] == TOKEN
    assert values["params"]["key"] == PARAM_KEY and values["headers"]["X-Api-Key"] == HEADER_KEY


def test_a_masked_value_with_nothing_stored_is_refused(
    client: TestClient, account: Account
) -> None:
    destination = post(
        client,
        account,
        "/destinations",
        {"type": "duckdb", "display_name": "W", "fields": {"path": "w.duckdb"}},
    ).json()["data"]["id"]
    created = post(
        client,
        account,
        "/transfers",
        transfer_update(0, destination, url="https://api.example.com/", headers={"X-Key": "***"}),
    )
    assert created.status_code == 400
    assert "source_config.headers.X-Key" in created.json()["error"]["description"]


@pytest.fixture
def json_logs_to_stderr(capfd: pytest.CaptureFixture[str]) -> Iterator[None]:
    """``opendts serve``'s logging (debug level) into the captured stderr, put back after."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    levels = {name: logging.getLogger(name).level for name in ("httpx", "httpcore")}
    logs.configure("debug", json=True)
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    for name, value in levels.items():
        logging.getLogger(name).setLevel(value)


def test_source_urls_with_credentials_are_not_logged(
    json_logs_to_stderr: None, capfd: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    with http_trap() as trap:
        config = parse_settings(
            HttpSettings,
            {
                "url": trap.base + f"/ads?day={{date}}&api_key={URL_KEY}",
                "params": {"k": PARAM_KEY},
                "records_path": "data",
            },
        )
        list(HttpSource().read(config, ReadRequest(DAY, boundary=boundary(data_dir=tmp_path))))
        assert len(trap.seen) == 1 and URL_KEY in trap.seen[0].path  # it was sent, to the API
    logged = capfd.readouterr().err
    assert URL_KEY not in logged and PARAM_KEY not in logged


# --- run messages say what went wrong without echoing data ------------------------------------


def failure(read: Any) -> str:
    with pytest.raises(RunError) as caught:
        list(read())
    return str(caught.value)


def test_a_file_parse_error_names_the_problem_not_the_lines(tmp_path: Path) -> None:
    shadow = "root:$6$S3cretHash$abcdefgh:19000:0:99999:7:::\ndaemon:$6$0therHash:19000,x\n"
    folder = tmp_path / "teams" / "1" / "files"  # the team's file folder
    folder.mkdir(parents=True)
    (folder / "export.csv").write_text(shadow)
    config = parse_settings(FileSettings, {"path": "export.csv"})
    message = failure(
        lambda: FileSource().read(config, ReadRequest(DAY, boundary=boundary(data_dir=tmp_path)))
    )
    assert "not valid CSV" in message and "Expected 1 columns, got 2" in message
    assert "Hash" not in message and "daemon" not in message and "19000" not in message


@pytest.mark.parametrize(
    ("status", "content_type", "body", "shown"),
    [
        (403, "text/html", b"<html>internal admin page SECRET-PAGE</html>", "403 Forbidden"),
        (200, "text/plain", b"# HELP process_secret SECRET-PAGE\n", "not JSON (text/plain"),
        (
            404,
            "application/json",
            b'{"error": "no such report", "dump": "' + b"x" * 500 + b'"}',
            "no such report",
        ),
    ],
)
def test_an_http_answer_is_not_echoed_beyond_a_short_masked_excerpt(
    tmp_path: Path, status: int, content_type: str, body: bytes, shown: str
) -> None:
    with http_trap() as trap:
        trap.status, trap.content_type, trap.body = status, content_type, body
        config = parse_settings(HttpSettings, {"url": trap.base + "/ads", "token": TOKEN})
        message = failure(
            lambda: HttpSource().read(
                config, ReadRequest(DAY, boundary=boundary(data_dir=tmp_path))
            )
        )
    assert shown in message
    assert "SECRET-PAGE" not in message and "x" * 130 not in message


def test_an_http_error_excerpt_masks_every_credential(tmp_path: Path) -> None:
    with http_trap() as trap:
        echo = {"error": f"bad key {HEADER_KEY} and {PARAM_KEY} for {URL_KEY}"}
        trap.status, trap.body = 401, json.dumps(echo).encode()
        config = parse_settings(
            HttpSettings,
            {
                "url": trap.base + f"/ads?api_key={URL_KEY}",
                "params": {"key": PARAM_KEY},
                "headers": {"X-Api-Key": HEADER_KEY},
            },
        )
        message = failure(
            lambda: HttpSource().read(
                config, ReadRequest(DAY, boundary=boundary(data_dir=tmp_path))
            )
        )
    assert "401" in message and "bad key ***" in message
    assert not [s for s in (HEADER_KEY, PARAM_KEY, URL_KEY) if s in message]


def test_a_database_error_does_not_echo_the_rejected_value(tmp_path: Path) -> None:
    require_pg()
    base = PG_ADMIN_DSN.rsplit("/", 1)[0]
    config = parse_settings(
        SqlSettings,
        {
            "url": f"{base}/postgres",
            "query": "SELECT CAST('root:$6$S3cretHash:19000' AS integer) AS x, "
            "CAST(:date AS date) AS d",
        },
    )
    message = failure(
        lambda: SqlSource().read(config, ReadRequest(DAY, boundary=boundary(data_dir=tmp_path)))
    )
    assert "invalid input syntax for type integer" in message
    assert "S3cretHash" not in message
