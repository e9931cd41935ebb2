"""Issue 11 §2: a team editor cannot use the server for SSRF or reach its databases.

Each test replays an attack through the API (and the engine where the attack needs a run)
on SQLite and PostgreSQL metadata: the ``http`` source at the server's own ``/metrics``,
``[::1]``, ``2130706433`` and the cloud metadata address; a redirect from an allowed host
to loopback; DNS rebinding; credentials following a redirect to another origin; an
environment proxy; the ``sql`` source and the ``postgresql`` destination at loopback, at a
Unix socket and at the metadata database itself.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from starlette.testclient import TestClient

from opendts.api.app import create_app
from opendts.auth.permissions import Role
from opendts.connectors import postgres_target
from opendts.connectors.base import ReadRequest, parse_settings
from opendts.connectors.boundary import Boundary
from opendts.connectors.destinations.postgresql import PostgreSQLDestination, PostgreSQLSettings
from opendts.connectors.network import AddressRefused
from opendts.connectors.sources.http import HttpSettings, HttpSource
from opendts.destinations import service as destinations
from opendts.kit.db import Database
from opendts.kit.secrets import box_for
from opendts.settings import Settings
from opendts.transfers import api as transfers_api
from tests.databases import PG_ADMIN_DSN
from tests.engine.support import final, run_rows, running_engine
from tests.factories import Account, make_account
from tests.live import LiveServer

DAY = date(2024, 1, 31)
TOKEN = "tok-never-leaves-its-origin"
ALLOW_HINT = "OPENDTS_ALLOWED_NETWORKS"


# --- helpers ------------------------------------------------------------------------------


@dataclass
class Seen:
    path: str
    headers: dict[str, str]


@dataclass
class Site:
    """A local HTTP server that records what it was asked."""

    base: str
    seen: list[Seen] = field(default_factory=list)


@contextmanager
def site(host: str, answer: Callable[[str], tuple[int, dict[str, str], Any]]) -> Iterator[Site]:
    """A server on ``host`` answering ``answer(path) -> (status, headers, json body)``."""
    record = Site("")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            record.seen.append(Seen(self.path, {k.lower(): v for k, v in self.headers.items()}))
            status, headers, body = answer(self.path)
            raw = json.dumps(body).encode()
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        do_POST = do_GET

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((host, 0), Handler)
    record.base = f"http://{host}:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield record
    finally:
        server.shutdown()
        server.server_close()


SECRET_ROWS = [{"secret": "internal-only"}]


def secret_site(path: str) -> tuple[int, dict[str, str], Any]:
    return 200, {}, SECRET_ROWS


def allowing(settings: Settings, networks: str) -> Settings:
    return settings.model_copy(update={"allowed_networks": networks})


def editor(db: Database) -> Account:
    """An editor of a fresh team (the attacker: may configure transfers, not administer)."""
    return make_account(db, role=Role.EDITOR)


def duckdb_destination(client: TestClient, account: Account) -> int:
    response = client.post(
        f"/v1/teams/{account.team_id}/destinations",
        json={"type": "duckdb", "display_name": "W", "fields": {"path": "w.duckdb"}},
        headers=account.headers,
    )
    assert response.status_code == 201, response.text
    return int(response.json()["data"]["id"])


def http_transfer(
    client: TestClient, account: Account, destination_id: int, **config: Any
) -> httpx.Response:
    return client.post(
        f"/v1/teams/{account.team_id}/transfers",
        json={
            "data_source_id": "http",
            "destination_id": destination_id,
            "display_name": "Ads",
            "table": "ads",
            "source_config": {"max_retries": 1, "backoff_seconds": 0.01, **config},
        },
        headers=account.headers,
    )


def backfill_errors(
    client: TestClient, db: Database, account: Account, transfer_id: int
) -> list[str]:
    """Run a one-day backfill of the transfer; the errors of its failed runs."""
    created = client.post(
        f"/v1/teams/{account.team_id}/transfers/{transfer_id}/backfills",
        json={"range_start": DAY.isoformat(), "range_end": DAY.isoformat()},
        headers=account.headers,
    )
    assert created.status_code == 200, created.text
    backfill_id = created.json()["data"]["transfer_backfill_id"]
    snap = final(db, backfill_id)
    assert snap.status in ("FAILED", "COMPLETED")
    return [str(r["error"]) for r in run_rows(db, backfill_id) if r["status"] == "FAILED"]


def assert_refused(response: httpx.Response, field_name: str, *words: str) -> None:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "INVALID_PARAMETER"
    assert field_name in error["description"], error
    for word in words:
        assert word in error["description"], error


@contextmanager
def fake_dns(answers: dict[str, Callable[[], list[str]]]) -> Iterator[None]:
    """Python's resolver answering ``answers[name]()`` for the given names."""
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(host, str) and host in answers:
            out = []
            for address in answers[host]():
                family = socket.AF_INET6 if ":" in address else socket.AF_INET
                sockaddr = (
                    (address, int(port or 0), 0, 0)
                    if ":" in address
                    else (
                        address,
                        int(port or 0),
                    )
                )
                out.append((family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", sockaddr))
            return out
        return real(host, port, *args, **kwargs)

    socket.getaddrinfo = getaddrinfo
    try:
        yield
    finally:
        socket.getaddrinfo = real


# --- http: the server's own network ----------------------------------------------------------


def test_the_http_source_cannot_read_the_servers_own_metrics(live: LiveServer) -> None:
    """The issue's headline: ``/metrics`` of the server itself came back in a run message."""
    api = httpx.Client(base_url=live.base_url, headers=live.headers, timeout=30)
    metrics = live.base_url.removesuffix("/v1") + "/metrics"
    response = api.post(
        f"/teams/{live.team_id}/transfers",
        json={
            "data_source_id": "http",
            "destination_id": 1,
            "display_name": "Own metrics",
            "source_config": {"url": metrics},
        },
    )
    assert_refused(
        response,
        "'source_config.url'",
        "127.0.0.1 is a loopback address",
        f"set {ALLOW_HINT}=127.0.0.1/32 (docs/security.md)",
    )


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://127.0.0.1:8080/metrics", "127.0.0.1 is a loopback address"),
        ("http://[::1]:8080/metrics", "is a loopback address"),
        ("http://2130706433:8080/metrics", "2130706433 is 127.0.0.1, a loopback address"),
        ("http://0x7f.1/metrics", "0x7f.1 is 127.0.0.1"),
        ("http://[::ffff:127.0.0.1]/", "IPv4-mapped form of 127.0.0.1"),
        ("http://localhost./metrics", "a name for this machine"),
        ("http://169.254.169.254/latest/meta-data/iam/", "cloud metadata service"),
        ("http://[fd00:ec2::254]/latest/meta-data/", "cloud metadata service"),
        ("http://metadata.google.internal/computeMetadata/v1/", "cloud metadata name"),
        ("http://10.0.0.1/admin", "private address"),
    ],
)
def test_http_urls_at_this_machine_or_its_network_are_400_naming_the_field(
    client: TestClient, db: Database, url: str, words: str
) -> None:
    attacker = editor(db)
    destination_id = duckdb_destination(client, attacker)
    response = http_transfer(client, attacker, destination_id, url=url)
    assert_refused(response, "'source_config.url'", words, ALLOW_HINT)
    validation = client.post(
        f"/v1/teams/{attacker.team_id}/transfers/validations",
        json={
            "data_source_id": "http",
            "destination_id": destination_id,
            "display_name": "x",
            "source_config": {"url": url},
        },
        headers=attacker.headers,
    )
    assert validation.status_code == 200
    assert validation.json()["is_valid"] is False
    assert [e["field_id"] for e in validation.json()["errors"]] == ["source_config.url"]


def test_an_update_to_a_loopback_url_is_400(client: TestClient, db: Database) -> None:
    attacker = editor(db)
    destination_id = duckdb_destination(client, attacker)
    created = http_transfer(client, attacker, destination_id, url="https://api.example.com/x")
    assert created.status_code == 201, created.text
    transfer_id = created.json()["data"]["transfer_id"]
    updated = client.put(
        f"/v1/teams/{attacker.team_id}/transfers/{transfer_id}",
        json={
            "data_source_id": "http",
            "destination_id": destination_id,
            "display_name": "Ads",
            "source_config": {"url": "http://127.0.0.1:8080/metrics"},
        },
        headers=attacker.headers,
    )
    assert_refused(updated, "'source_config.url'", "loopback")


def test_a_stored_url_the_operator_no_longer_allows_fails_its_run(
    db: Database, settings: Settings
) -> None:
    """Settings are checked again where they are used: a transfer saved while loopback was
    allowed fails, terminally, once the operator takes the allowance back."""
    attacker = editor(db)
    with site("127.0.0.1", secret_site) as internal:
        box = box_for(settings.data_dir, settings.secret_key)
        earlier = Boundary.for_team(allowing(settings, "127.0.0.1/32"), attacker.team_id)
        with db.session(write=True) as session:
            destination = destinations.create(
                session,
                box,
                earlier,
                None,
                destinations.DestinationInput("duckdb", "W", {"path": "w.duckdb"}),
            )
            transfer = transfers_api.create(
                session,
                box,
                earlier,
                None,
                {
                    "data_source_id": "http",
                    "destination_id": destination.id,
                    "display_name": "Ads",
                    "source_config": {"url": internal.base + "/rows"},
                },
            )
        with running_engine(db, settings), TestClient(create_app(settings, db)) as client:
            errors = backfill_errors(client, db, attacker, transfer.id)
    assert len(errors) == 1 and "127.0.0.1 is a loopback address" in errors[0]
    assert internal.seen == []


# --- http: redirects, DNS rebinding, proxies -------------------------------------------------


def test_a_redirect_from_an_allowed_host_to_loopback_is_refused(
    db: Database, settings: Settings
) -> None:
    """The operator allows one outside host (127.0.0.2 stands in for it); its 302 to
    127.0.0.1 is a hop the boundary refuses."""
    settings = allowing(settings, "127.0.0.2/32")
    attacker = editor(db)
    with site("127.0.0.1", secret_site) as internal:

        def redirect(path: str) -> tuple[int, dict[str, str], Any]:
            return 302, {"Location": internal.base + "/latest/secrets"}, {}

        with (
            site("127.0.0.2", redirect) as outside,
            TestClient(create_app(settings, db)) as client,
            running_engine(db, settings),
        ):
            destination_id = duckdb_destination(client, attacker)
            created = http_transfer(client, attacker, destination_id, url=outside.base + "/ads")
            assert created.status_code == 201, created.text
            errors = backfill_errors(client, db, attacker, created.json()["data"]["transfer_id"])
    assert len(outside.seen) == 1 and internal.seen == []
    assert len(errors) == 1
    assert f"redirected to {internal.base}/latest/secrets" in errors[0]
    assert "127.0.0.1 is a loopback address" in errors[0] and ALLOW_HINT in errors[0]


def test_dns_rebinding_cannot_reach_loopback(db: Database, settings: Settings) -> None:
    """The name answers a public address first and loopback afterwards: the connection goes
    to the address that was checked, and the loopback answer is refused."""
    attacker = editor(db)
    calls: list[int] = []

    def rebinding() -> list[str]:
        calls.append(1)
        return ["93.184.216.34"] if len(calls) == 1 else ["127.0.0.1"]

    with site("127.0.0.1", secret_site) as internal:
        port = internal.base.rsplit(":", 1)[1]
        with (
            fake_dns({"rebind.attacker.example": rebinding}),
            TestClient(create_app(settings, db)) as client,
            # The fake resolver is this process's: the run executes here, not in a child.
            running_engine(db, settings, run_processes=False),
        ):
            destination_id = duckdb_destination(client, attacker)
            created = http_transfer(
                client,
                attacker,
                destination_id,
                url=f"http://rebind.attacker.example:{port}/rows",
                timeout_seconds=1,
                max_retries=2,
            )
            assert created.status_code == 201, created.text
            errors = backfill_errors(client, db, attacker, created.json()["data"]["transfer_id"])
    assert internal.seen == []
    assert len(errors) == 1
    assert "rebind.attacker.example resolves to 127.0.0.1, a loopback address" in errors[0]


def read(config: dict[str, Any], boundary: Boundary) -> list[dict[str, Any]]:
    settings = parse_settings(HttpSettings, config)
    batches = HttpSource().read(settings, ReadRequest(DAY, boundary=boundary))
    return [row for batch in batches for row in batch.to_pylist()]


def local(*networks: str) -> Boundary:
    return Boundary(team_id=1, data_dir=Path("/nonexistent"), allowed_networks=networks)


def test_credentials_do_not_follow_a_redirect_to_another_origin() -> None:
    """Token (in a custom header), Authorization, Cookie and custom headers stay with the
    origin; a redirect within the origin keeps them."""
    with site("127.0.0.1", secret_site) as other:

        def origin_answer(path: str) -> tuple[int, dict[str, str], Any]:
            if path.startswith("/first"):
                return 302, {"Location": "/second"}, {}
            return 307, {"Location": other.base + "/elsewhere"}, {}

        with site("127.0.0.1", origin_answer) as origin:
            rows = read(
                {
                    "url": origin.base + "/first",
                    "token": TOKEN,
                    "auth_header": "X-Api-Key",
                    "auth_prefix": "",
                    "headers": {
                        "Authorization": "Basic c2VjcmV0",
                        "Cookie": "session=abc",
                        "X-Tenant-Secret": "s3",
                        "Accept-Language": "en",
                    },
                },
                local("127.0.0.1/32"),
            )
    assert rows == SECRET_ROWS
    assert [s.path for s in origin.seen] == ["/first", "/second"]
    for seen in origin.seen:  # the origin gets everything, on every hop
        assert seen.headers["x-api-key"] == TOKEN and seen.headers["cookie"] == "session=abc"
    leaked = other.seen[0].headers
    for name in ("x-api-key", "authorization", "cookie", "x-tenant-secret"):
        assert name not in leaked, leaked
    assert leaked["accept-language"] == "en"


def test_a_post_body_does_not_follow_a_redirect_to_another_origin() -> None:
    """A 307 keeps the method and the body, which may carry an API key as headers do."""
    with site("127.0.0.1", secret_site) as other:

        def origin_answer(path: str) -> tuple[int, dict[str, str], Any]:
            return 307, {"Location": other.base + "/elsewhere"}, {}

        with site("127.0.0.1", origin_answer) as origin, pytest.raises(Exception) as caught:
            read(
                {"url": origin.base + "/q", "method": "POST", "body": {"api_key": TOKEN}},
                local("127.0.0.1/32"),
            )
    assert other.seen == [] and "does not send the body" in str(caught.value)


def test_a_next_page_link_to_loopback_is_refused() -> None:
    """Pagination is another hop the API controls: its links are checked like redirects."""
    with site("127.0.0.1", secret_site) as internal:

        def first_page(path: str) -> tuple[int, dict[str, str], Any]:
            return 200, {}, {"data": [{"n": 1}], "next": internal.base + "/page2"}

        with site("127.0.0.2", first_page) as outside, pytest.raises(AddressRefused) as caught:
            read(
                {"url": outside.base + "/ads", "records_path": "data", "pagination": "next_link"},
                local("127.0.0.2/32"),
            )
    assert internal.seen == [] and len(outside.seen) == 1
    assert "127.0.0.1 is a loopback address" in str(caught.value)


def test_an_environment_proxy_does_not_bypass_the_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """An operator's ``HTTP_PROXY`` would connect to the metadata service on the team's
    behalf: teams' requests never go through it."""
    with site("127.0.0.1", secret_site) as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.base)
        monkeypatch.setenv("http_proxy", proxy.base)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        with pytest.raises(AddressRefused, match="cloud metadata service"):
            read({"url": "http://169.254.169.254/latest/meta-data/"}, local("127.0.0.1/32"))
    assert proxy.seen == []


def test_httpx_does_not_log_urls_or_their_secrets(caplog: pytest.LogCaptureFixture) -> None:
    secret = "key-in-the-query-string"
    with site("127.0.0.1", secret_site) as api:
        caplog.set_level(logging.DEBUG)  # everything the operator could turn on, at the root
        read({"url": api.base + f"/rows?api_key={secret}"}, local("127.0.0.1/32"))
        assert not [r for r in caplog.records if r.name == "httpx" and r.levelno <= logging.INFO]
        caplog.set_level(logging.DEBUG, logger="httpx")  # even httpx's own debug level
        read({"url": api.base + f"/rows?api_key={secret}"}, local("127.0.0.1/32"))
    requests = [r.getMessage() for r in caplog.records if r.name == "httpx"]
    assert any("HTTP Request" in m for m in requests)
    assert not any(secret in m for m in requests), requests


# --- databases: loopback, sockets, dialects ------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "field_name", "words"),
    [
        ({"host": "127.0.0.1"}, "'fields.host'", "127.0.0.1 is a loopback address"),
        ({}, "'fields.host'", "127.0.0.1 is a loopback address"),  # the default host
        ({"host": "localhost"}, "'fields.host'", "a name for this machine"),
        ({"host": "[::1]"}, "'fields.host'", "loopback"),
        ({"host": "0"}, "'fields.host'", "0.0.0.0, the unspecified address"),
        ({"host": "/var/run/postgresql"}, "'fields.host'", "Unix socket"),
        ({"host": "@abstract"}, "'fields.host'", "Unix socket"),
        ({"host": "169.254.169.254"}, "'fields.host'", "cloud metadata"),
    ],
)
def test_a_postgresql_destination_on_this_machine_is_400_at_create_and_test(
    client: TestClient, db: Database, fields: dict[str, Any], field_name: str, words: str
) -> None:
    attacker = editor(db)
    body = {
        "type": "postgresql",
        "display_name": "Mine",
        "fields": {"database": "postgres", "user": "postgres", **fields},
    }
    for path in ("", "/test-connection"):
        response = client.post(
            f"/v1/teams/{attacker.team_id}/destinations{path}", json=body, headers=attacker.headers
        )
        assert_refused(response, field_name, words)


def test_a_name_resolving_to_loopback_fails_test_connection_with_the_reason(
    client: TestClient, db: Database
) -> None:
    attacker = editor(db)
    body = {
        "type": "postgresql",
        "display_name": "Mine",
        "fields": {"host": "pg.attacker.example", "database": "postgres", "user": "postgres"},
    }
    with fake_dns({"pg.attacker.example": lambda: ["127.0.0.1"]}):
        response = client.post(
            f"/v1/teams/{attacker.team_id}/destinations/test-connection",
            json=body,
            headers=attacker.headers,
        )
    assert response.status_code == 200, response.text
    result = response.json()["data"]
    assert result["success"] is False
    assert "pg.attacker.example resolves to 127.0.0.1, a loopback address" in result["error"]
    assert f"{ALLOW_HINT}=pg.attacker.example (or 127.0.0.1/32)" in result["error"]


SQL_QUERY = "SELECT 1 AS n WHERE :date IS NOT NULL"


def sql_transfer(client: TestClient, account: Account, url: str) -> httpx.Response:
    return client.post(
        f"/v1/teams/{account.team_id}/transfers",
        json={
            "data_source_id": "sql",
            "destination_id": duckdb_destination(client, account),
            "display_name": "Rows",
            "table": "rows",
            "source_config": {"url": url, "query": SQL_QUERY},
        },
        headers=account.headers,
    )


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("postgresql://postgres@127.0.0.1:5432/postgres", "127.0.0.1 is a loopback address"),
        ("postgresql://postgres@[::1]/postgres", "::1 is a loopback address"),
        ("postgresql://postgres@localhost/postgres", "a name for this machine"),
        ("postgresql://postgres@2130706433/postgres", "2130706433 is 127.0.0.1"),
        ("postgresql+psycopg://postgres@10.1.2.3/postgres", "private address"),
        ("postgresql:///postgres", "must name the database server's host"),
        ("postgresql://postgres@/postgres?host=/var/run/postgresql", "'host' is not allowed"),
        ("postgresql://postgres@%2Fvar%2Frun%2Fpostgresql/postgres", "not a valid host"),
        ("postgresql://postgres@db.example.com/postgres?hostaddr=127.0.0.1", "'hostaddr'"),
        ("postgresql://postgres@db.example.com/postgres?service=prod", "'service'"),
        ("postgresql://postgres@db.example.com/postgres?passfile=/root/.pgpass", "'passfile'"),
        ("postgresql://postgres@db.example.com/postgres?sslkey=/etc/ssl/key", "'sslkey'"),
        ("postgresql://postgres@db.example.com,127.0.0.1/postgres", "not a valid host"),
        ("mysql+pymysql://u@db.example.com/db?unix_socket=/run/mysqld.sock", "'unix_socket'"),
        ("mysql+pymysql://u@127.0.0.1/db", "loopback"),
    ],
)
def test_a_sql_source_on_this_machine_or_a_socket_is_400_naming_the_field(
    client: TestClient, db: Database, url: str, words: str
) -> None:
    assert_refused(sql_transfer(client, editor(db), url), "'source_config.url'", words)


def test_only_the_operators_sql_dialects_are_accepted(db: Database, settings: Settings) -> None:
    settings = settings.model_copy(update={"sql_dialects": "postgresql"})
    with TestClient(create_app(settings, db)) as client:
        response = sql_transfer(client, editor(db), "sqlite:///shop.db")
    assert_refused(
        response, "'source_config.url'", "sqlite databases are not allowed", "OPENDTS_SQL_DIALECTS"
    )


# --- the metadata database -------------------------------------------------------------------


@pytest.fixture
def metadata_pg(database_url: str) -> str:
    """The metadata database's name, on PostgreSQL metadata."""
    url = make_url(database_url)
    if url.get_backend_name() != "postgresql":
        pytest.skip("the metadata database is SQLite here (the file boundary's case)")
    return str(url.database)


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_the_metadata_database_is_never_a_destination_or_source_even_when_allowed(
    db: Database, settings: Settings, metadata_pg: str
) -> None:
    """A laptop operator allowed 127.0.0.1 for their own PostgreSQL, which also holds the
    metadata database: a team still cannot point a destination or a source at it."""
    settings = allowing(settings, "127.0.0.1/32")
    attacker = editor(db)
    fields = {"host": "127.0.0.1", "database": metadata_pg, "user": "postgres"}
    with TestClient(create_app(settings, db)) as client:
        for path in ("", "/test-connection"):
            response = client.post(
                f"/v1/teams/{attacker.team_id}/destinations{path}",
                json={"type": "postgresql", "display_name": "Meta", "fields": fields},
                headers=attacker.headers,
            )
            assert_refused(response, "'fields.database'", "opendts's own metadata database")
        response = sql_transfer(
            client, attacker, f"postgresql://postgres@127.0.0.1:5432/{metadata_pg}"
        )
        assert_refused(response, "'source_config.url'", "opendts's own metadata database")
        # Another database on the same server is the operator's to allow.
        other = sql_transfer(client, attacker, "postgresql://postgres@127.0.0.1:5432/postgres")
        assert other.status_code == 201, other.text


@contextmanager
def source_database() -> Iterator[str]:
    name = f"opendts_src_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_an_editor_cannot_make_themselves_admin_of_another_team_through_the_metadata_database(
    db: Database, settings: Settings, metadata_pg: str
) -> None:
    """The issue's first row, replayed with settings saved before the boundary existed: a
    ``postgresql`` destination at the metadata database, a ``sql`` source that selects a
    membership row, table ``memberships``, mode ``append``. The run is refused."""
    settings = allowing(settings, "127.0.0.1/32,localhost")
    attacker = editor(db)
    victim = make_account(db)
    box = box_for(settings.data_dir, settings.secret_key)
    # Saved with a boundary that knew nothing of the metadata database (an older install).
    earlier = Boundary.for_team(settings, attacker.team_id)
    earlier = Boundary(
        team_id=earlier.team_id,
        data_dir=earlier.data_dir,
        allowed_networks=earlier.allowed_networks,
        sql_dialects=earlier.sql_dialects,
    )
    query = (
        f"SELECT {victim.team_id} AS team_id, {attacker.user_id} AS user_id, "
        "'admin' AS role, now() AS created_at WHERE CAST(:date AS date) IS NOT NULL"
    )
    with source_database() as source_db:
        with db.session(write=True) as session:
            destination = destinations.create(
                session,
                box,
                earlier,
                None,
                destinations.DestinationInput(
                    "postgresql",
                    "Meta",
                    {"host": "localhost", "database": metadata_pg, "user": "postgres"},
                ),
            )
            transfer = transfers_api.create(
                session,
                box,
                earlier,
                None,
                {
                    "data_source_id": "sql",
                    "destination_id": destination.id,
                    "display_name": "Promote",
                    "table": "memberships",
                    "refresh_mode": "append",
                    "source_config": {
                        "url": f"postgresql://postgres@127.0.0.1:5432/{source_db}",
                        "query": query,
                    },
                },
            )
        with running_engine(db, settings), TestClient(create_app(settings, db)) as client:
            errors = backfill_errors(client, db, attacker, transfer.id)
    assert len(errors) == 1 and "opendts's own metadata database" in errors[0], errors
    with db.session() as session:
        roles = session.execute(
            text("SELECT role FROM memberships WHERE team_id = :t AND user_id = :u"),
            {"t": victim.team_id, "u": attacker.user_id},
        ).all()
    assert roles == []


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_an_alias_of_the_metadata_server_is_caught_by_its_identity(
    database_url: str, metadata_pg: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An address the pre-connect comparison cannot know (the machine's LAN address, a
    proxy in front): the connected server's cluster and database give it away."""
    # Blind the address comparison: the metadata database seems to be somewhere else.
    monkeypatch.setattr(
        postgres_target,
        "_metadata",
        lambda url: postgres_target._Metadata(frozenset(), False, 1, "elsewhere"),
    )
    boundary = Boundary(
        team_id=1,
        data_dir=Path("/nonexistent"),
        allowed_networks=("127.0.0.1/32",),
        metadata_url=database_url,
    )
    target = parse_settings(
        PostgreSQLSettings, {"host": "127.0.0.1", "database": metadata_pg, "user": "postgres"}
    )
    with pytest.raises(AddressRefused, match="opendts's own metadata database"):
        PostgreSQLDestination().test_connection(target, boundary)
    elsewhere = parse_settings(
        PostgreSQLSettings, {"host": "127.0.0.1", "database": "postgres", "user": "postgres"}
    )
    PostgreSQLDestination().test_connection(elsewhere, boundary)
