"""The front of the server (issue 11, §5): what a client can send, and what it gets back.

Each test reproduces a finding of the issue against the HTTP API, on SQLite and PostgreSQL
metadata where the database matters, and fails on the code before the hardening.
"""

from __future__ import annotations

import logging
import re
import threading
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from datetime import UTC, date, datetime
from typing import Any

import httpx
import pytest
import redis
from fastapi import FastAPI
from sqlalchemy import func, select, text
from sqlalchemy.exc import SQLAlchemyError
from starlette.testclient import TestClient

from opendts.api.app import create_app
from opendts.api.context import Runtime
from opendts.api.headers import API_POLICY, policy_for
from opendts.backfills import service as backfills
from opendts.destinations.models import Destination
from opendts.kit.db import Database
from opendts.kit.errors import InvalidParameter, Unprocessable
from opendts.kit.requests import MAX_JSON_DEPTH, MAX_JSON_STRING, check_json_value
from opendts.runs.models import RunStatus, RunType, TransferRun
from opendts.settings import Settings
from opendts.transfers.models import Transfer
from opendts.web.session import STATIC
from tests.api.support import error_of
from tests.databases import ON_CI
from tests.factories import Account, make_account, make_backfill, make_transfer, revoke
from tests.kit.test_ratelimit import REDIS_URL

JSON = {"Content-Type": "application/json"}


def make_destination(client: TestClient, account: Account) -> int:
    body = {"type": "duckdb", "display_name": "Warehouse", "fields": {"path": "w.duckdb"}}
    response = client.post(
        f"/v1/teams/{account.team_id}/destinations", json=body, headers=account.headers
    )
    assert response.status_code == 201, response.text
    destination_id: int = response.json()["data"]["id"]
    return destination_id


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def http_transfer(destination_id: int, body_json: str) -> str:
    """A transfer of the ``http`` source whose request body holds ``body_json`` (raw JSON)."""
    head = (
        f'{{"data_source_id": "http", "destination_id": {destination_id}, "display_name": "Ads", '
        '"source_config": {"url": "https://api.example.com/ads?day={date}", "method": "POST", '
    )
    return head + '"body": {"filter": ' + body_json + "}}}"


def count(db: Database, model: type[Any]) -> int:
    with db.session() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


# --- Bad JSON is 400, never 500 or 503 ------------------------------------------------------


@pytest.mark.parametrize("depth", [900, 10_000])
def test_deeply_nested_json_is_400_naming_the_limit(
    client: TestClient, db: Database, account: Account, depth: int
) -> None:
    destination_id = make_destination(client, account)
    before = count(db, Transfer)
    for url in (
        f"/v1/teams/{account.team_id}/transfers",
        f"/v1/teams/{account.team_id}/transfers/validations",
    ):
        response = client.post(
            url,
            content=http_transfer(destination_id, nested(depth)),
            headers={**account.headers, **JSON},
        )
        error = error_of(response, 400, "INVALID_PARAMETER")
        assert f"more than {MAX_JSON_DEPTH} levels deep" in error["description"]
    assert count(db, Transfer) == before


def test_nesting_up_to_the_limit_is_accepted(
    client: TestClient, db: Database, account: Account
) -> None:
    destination_id = make_destination(client, account)
    # The body object is level 1, source_config 2, body 3, filter's array 4.
    body = http_transfer(destination_id, nested(MAX_JSON_DEPTH - 3))
    response = client.post(
        f"/v1/teams/{account.team_id}/transfers", content=body, headers={**account.headers, **JSON}
    )
    assert response.status_code == 201, response.text
    deeper = http_transfer(destination_id, nested(MAX_JSON_DEPTH - 2))
    refused = client.post(
        f"/v1/teams/{account.team_id}/transfers",
        content=deeper,
        headers={**account.headers, **JSON},
    )
    description = error_of(refused, 400, "INVALID_PARAMETER")["description"]
    assert "'source_config.body.filter[0]" in description


def test_the_rule_checks_values_without_recursion() -> None:
    value: Any = []
    for _ in range(100_000):  # far deeper than Python's recursion limit
        value = [value]
    with pytest.raises(InvalidParameter, match="levels deep"):
        check_json_value({"a": value})
    check_json_value({"a": [[{"b": "c"}]], "n": 1, "x": None, "t": True})


def test_nul_characters_are_400_on_both_databases_and_nothing_is_stored(
    client: TestClient, db: Database, account: Account, caplog: pytest.LogCaptureFixture
) -> None:
    destination_id = make_destination(client, account)
    team = account.team_id
    transfers, destinations = count(db, Transfer), count(db, Destination)
    attempts: list[tuple[str, dict[str, Any], str]] = [
        (
            f"/v1/teams/{team}/transfers",
            {"data_source_id": "demo", "destination_id": destination_id, "display_name": "a\0b"},
            "'display_name'",
        ),
        (
            f"/v1/teams/{team}/transfers",
            {
                "data_source_id": "demo",
                "destination_id": destination_id,
                "display_name": "Ads",
                "accounts": [{"account_id": "acc\0"}],
            },
            "'accounts[0].account_id'",
        ),
        (
            f"/v1/teams/{team}/destinations",
            {"type": "duckdb", "display_name": "W\0", "fields": {"path": "w.duckdb"}},
            "'display_name'",
        ),
        (
            f"/v1/teams/{team}/destinations",
            {"type": "duckdb", "display_name": "W", "fields": {"pa\0th": "w.duckdb"}},
            "'fields.pa?th'",
        ),
        (
            f"/v1/teams/{team}/transfers/{account.transfer_id}/backfills",
            {"range_start": "2024-01-01", "range_end": "2024-01-01", "note\0": 1},
            "'note?'",
        ),
    ]
    with caplog.at_level(logging.INFO):
        for url, body, field in attempts:
            error = error_of(client.post(url, json=body, headers=account.headers), 400)
            assert error["code"] == "INVALID_PARAMETER"
            assert "NUL character" in error["description"] and field in error["description"]
        signed_in = client.post("/ui/session", json={"api_key": "odts_\0"})
        assert "NUL character" in error_of(signed_in, 400)["description"]
    assert (count(db, Transfer), count(db, Destination)) == (transfers, destinations)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_very_long_strings_are_400_naming_the_limit(
    client: TestClient, db: Database, account: Account
) -> None:
    destination_id = make_destination(client, account)
    before = count(db, Transfer)
    body = {
        "data_source_id": "demo",
        "destination_id": destination_id,
        "display_name": "Ads",
        "accounts": [{"account_id": "a" * (MAX_JSON_STRING + 1)}],
    }
    response = client.post(
        f"/v1/teams/{account.team_id}/transfers", json=body, headers=account.headers
    )
    description = error_of(response, 400, "INVALID_PARAMETER")["description"]
    assert "'accounts[0].account_id'" in description and str(MAX_JSON_STRING) in description
    assert count(db, Transfer) == before


# --- SQL parameters never reach the log -------------------------------------------------------

SECRET = "s3cret-parameter-value-never-logged"


def test_a_failing_statement_logs_no_parameters(
    app: FastAPI, client: TestClient, account: Account, caplog: pytest.LogCaptureFixture
) -> None:
    runtime: Runtime = app.state.runtime

    def failing_write() -> None:
        # A duplicate primary key: the statement fails with a secret among its parameters.
        with runtime.db.session(write=True) as session:
            session.execute(
                text("INSERT INTO teams (id, name, created_at) VALUES (:id, :name, :at)"),
                {"id": account.team_id, "name": SECRET, "at": datetime.now(UTC)},
            )

    app.add_api_route("/test-failing-statement", failing_write, methods=["POST"])
    with caplog.at_level(logging.DEBUG):
        response = client.post("/test-failing-statement")
    assert response.status_code in (500, 503)
    logged = "\n".join(
        record.getMessage()
        + (logging.Formatter().formatException(record.exc_info) if record.exc_info else "")
        for record in caplog.records
    )
    assert "INSERT INTO teams" in logged  # the failure is logged...
    assert SECRET not in logged  # ...without its parameters
    assert SECRET not in response.text


def test_every_engine_hides_parameters(db: Database) -> None:
    assert db.engine.hide_parameters and db.write_engine.hide_parameters
    with pytest.raises(SQLAlchemyError) as failure, db.session(write=True) as session:
        session.execute(text("SELECT * FROM no_such_table WHERE name = :name"), {"name": SECRET})
    assert SECRET not in str(failure.value)


# --- Security headers ---------------------------------------------------------------------


def directives(policy: str) -> dict[str, str]:
    parts = (part.strip().split(" ", 1) for part in policy.split(";") if part.strip())
    return {name: (rest[0] if rest else "") for name, *rest in parts}


def assert_common_headers(response: httpx.Response) -> dict[str, str]:
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    policy = directives(response.headers["Content-Security-Policy"])
    assert policy["frame-ancestors"] == "'none'" and policy["object-src"] == "'none'"
    return policy


def test_the_dashboard_runs_only_its_own_files(client: TestClient) -> None:
    for path in ("/", "/static/app.js", "/static/app.css", "/ui/session"):
        policy = assert_common_headers(client.get(path))
        assert policy["default-src"] == "'self'"
        assert policy["script-src"] == "'self'" and policy["style-src"] == "'self'", path
        assert "unsafe" not in str(policy), path


def test_the_dashboard_page_has_no_inline_script_or_style() -> None:
    page = (STATIC / "index.html").read_text()
    scripts = re.findall(r"<script\b[^>]*>", page)
    assert scripts and all(re.search(r'\bsrc="/static/[^"]+"', tag) for tag in scripts)
    assert "<style" not in page and not re.search(r"\sstyle=", page)
    assert not re.search(r"\son[a-z]+=", page)  # no inline event handlers
    script = (STATIC / "app.js").read_text()
    assert "innerHTML" not in script and "eval(" not in script
    assert not re.search(r'setAttribute\(\s*"style"|"style":|\bstyle:', script)


def test_api_answers_are_never_rendered_or_framed(client: TestClient, account: Account) -> None:
    responses = [
        client.get(f"/v1/teams/{account.team_id}/backfills", headers=account.headers),
        client.get(f"/v1/teams/{account.team_id}/backfills"),  # 401
        client.get("/v1/no-such-route"),  # 404
        client.post(
            f"/v1/teams/{account.team_id}/transfers/{account.transfer_id}/backfills",
            content=b"x" * 100_000,
            headers={**account.headers, **JSON},
        ),  # 413, answered by the envelope middleware itself
        client.get("/healthz"),
        client.get("/metrics"),
    ]
    assert [r.status_code for r in responses] == [200, 401, 404, 413, 200, 200]
    for response in responses:
        assert assert_common_headers(response)["default-src"] == "'none'"


def test_the_api_reference_page_may_load_swagger_ui_from_this_server() -> None:
    policy = directives(policy_for("/docs"))
    assert policy["script-src"] == "'self'"  # its files, never a CDN, never inline
    assert policy["style-src"] == "'self' 'unsafe-inline'" and "data:" in policy["img-src"]
    assert policy["frame-ancestors"] == "'none'"
    assert policy_for("/docs/swagger-ui.css") == policy_for("/docs")
    assert policy_for("/docsx") == API_POLICY and policy_for("/v1/openapi.json") == API_POLICY


# --- Dashboard sessions -----------------------------------------------------------------------


def test_the_dashboard_cookie_is_not_the_key_and_sign_out_ends_it(
    client: TestClient, account: Account
) -> None:
    signed_in = client.post("/ui/session", json={"api_key": account.api_key})
    assert signed_in.status_code == 200
    cookie = client.cookies.get("opendts_session")
    # Never the key: its secret (odts_<lookup>_<secret>; the secret may itself hold "_").
    assert cookie and account.api_key.split("_", 2)[2] not in cookie
    url = f"/v1/teams/{account.team_id}/backfills"
    assert client.get(url).status_code == 200
    assert client.delete("/ui/session").status_code == 204
    # A copy of the cookie taken before sign-out (a stolen one) no longer opens anything.
    client.cookies.set("opendts_session", cookie)
    assert client.get(url).status_code == 401
    assert client.get("/ui/session").status_code == 401
    # And the raw key, planted as the cookie, never did.
    client.cookies.set("opendts_session", account.api_key)
    assert client.get(url).status_code == 401


# --- Rate limits for the unauthenticated ----------------------------------------------------


def from_address(app: FastAPI, address: str) -> TestClient:
    return TestClient(app, client=(address, 40000), raise_server_exceptions=False)


def limited_app(settings: Settings, db: Database, **overrides: object) -> FastAPI:
    return create_app(settings.model_copy(update=overrides), db)


def test_bad_and_revoked_keys_are_rate_limited_per_client_address(
    settings: Settings, db: Database, account: Account
) -> None:
    app = limited_app(settings, db, failed_auth_per_minute=3)
    attacker, neighbour = from_address(app, "203.0.113.7"), from_address(app, "203.0.113.8")
    url = f"/v1/teams/{account.team_id}/backfills"
    revoked = make_account(db, team_id=account.team_id, transfer_id=account.transfer_id)
    revoke(db, revoked.key_id)
    forged = {"Authorization": f"Bearer odts_{'A' * 12}_{'B' * 43}"}
    attempts = [forged, revoked.headers, {"Authorization": "Bearer nonsense"}]
    assert [attacker.get(url, headers=h).status_code for h in attempts] == [401, 401, 401]
    refused = attacker.get(url, headers=forged)
    error = error_of(refused, 429, "TOO_MANY_REQUESTS")  # the envelope, with Retry-After
    assert "failed authentications" in error["description"] and "3 a minute" in error["description"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    # Writes are refused the same way, before any body is looked at.
    created = attacker.post(
        f"/v1/teams/{account.team_id}/transfers/{account.transfer_id}/backfills",
        json={"range_start": "2024-01-01", "range_end": "2024-01-01"},
        headers=forged,
    )
    assert created.status_code == 429
    # A valid key from the same address keeps its own per-key budget...
    ok = attacker.get(url, headers=account.headers)
    assert ok.status_code == 200 and ok.headers["X-RateLimit-Limit"] == "5000"
    # ...and another address is not punished for this one.
    assert neighbour.get(url, headers=forged).status_code == 401


def test_requests_without_credentials_are_no_failed_attempts(
    settings: Settings, db: Database, account: Account
) -> None:
    client = from_address(limited_app(settings, db, failed_auth_per_minute=2), "203.0.113.9")
    url = f"/v1/teams/{account.team_id}/backfills"
    assert {client.get(url).status_code for _ in range(5)} == {401}


def test_dashboard_sign_ins_are_rate_limited_per_client_address(
    settings: Settings, db: Database, account: Account
) -> None:
    app = limited_app(settings, db, sign_ins_per_minute=3)
    browser = from_address(app, "198.51.100.4")
    statuses = [
        browser.post("/ui/session", json={"api_key": key}).status_code
        for key in ("odts_wrong", account.api_key, "odts_wrong_again")
    ]
    assert statuses == [401, 200, 401]
    refused = browser.post("/ui/session", json={"api_key": account.api_key})
    error = error_of(refused, 429, "TOO_MANY_REQUESTS")
    assert "sign-ins" in error["description"] and "set-cookie" not in refused.headers
    other = from_address(app, "198.51.100.5")
    assert other.post("/ui/session", json={"api_key": account.api_key}).status_code == 200


def test_failed_authentications_are_counted_across_api_processes_with_redis(
    settings: Settings, db: Database, account: Account
) -> None:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        message = f"Redis at {REDIS_URL} unreachable: {exc}"
        if ON_CI:
            pytest.fail(f"{message} (CI=true: must run)", pytrace=False)
        pytest.skip(message)
    # A fresh address per run: counters in Redis outlive the test.
    address = f"192.0.2.{uuid.uuid4().int % 250 + 1}-{uuid.uuid4().hex[:8]}"
    overrides = {"rate_limit_storage_url": REDIS_URL, "failed_auth_per_minute": 2}
    first = from_address(limited_app(settings, db, **overrides), address)
    second = from_address(limited_app(settings, db, **overrides), address)
    url = f"/v1/teams/{account.team_id}/backfills"
    forged = {"Authorization": "Bearer odts_forged"}
    statuses = [c.get(url, headers=forged).status_code for c in (first, second, first)]
    assert statuses == [401, 401, 429]


# --- Live-event streams are capped per key ------------------------------------------------


def test_live_event_streams_are_capped_per_key(
    settings: Settings, db: Database, account: Account
) -> None:
    app = limited_app(settings, db, max_event_streams_per_key=2)
    backfill = make_backfill(db, account, date(2024, 1, 1), date(2024, 1, 3))  # never runs
    url = f"/v1/teams/{account.team_id}/backfills/{backfill.id}/events"
    with TestClient(app, raise_server_exceptions=False) as client, ExitStack() as streams:
        for _ in range(2):
            response = streams.enter_context(client.stream("GET", url, headers=account.headers))
            assert response.status_code == 200
            assert next(response.iter_lines()).startswith("id: ")  # the stream is live
        with client.stream("GET", url, headers=account.headers) as refused:
            assert refused.status_code == 429  # (before reading: a stream would never end)
            refused.read()
        error = error_of(refused, 429, "TOO_MANY_STREAMS")
        assert "2 live-event streams open" in error["description"]
        assert refused.headers["Retry-After"].isdigit()
        # Another key of the same team has its own places.
        other = make_account(db, team_id=account.team_id, transfer_id=account.transfer_id)
        with client.stream("GET", url, headers=other.headers) as theirs:
            assert theirs.status_code == 200
        # Closing a stream frees its place.
        streams.close()
        with client.stream("GET", url, headers=account.headers) as again:
            assert again.status_code == 200


# --- A quota on queued runs per team --------------------------------------------------------


def create_backfill(
    client: TestClient, account: Account, transfer_id: int, start: str, end: str
) -> httpx.Response:
    return client.post(
        f"/v1/teams/{account.team_id}/transfers/{transfer_id}/backfills",
        json={"range_start": start, "range_end": end},
        headers=account.headers,
    )


def queue_recurring_run(db: Database, account: Account) -> None:
    now = datetime.now(UTC)
    with db.session(write=True) as session:
        session.add(
            TransferRun(
                team_id=account.team_id,
                transfer_id=account.transfer_id,
                type=RunType.RECURRING.value,
                data_date=date(2023, 12, 31),
                status=RunStatus.QUEUED.value,
                max_attempts=3,
                available_at=now,
                created_time=now,
                queued_time=now,
            )
        )


def test_backfills_past_the_teams_queued_runs_quota_are_refused(
    settings: Settings, db: Database, account: Account
) -> None:
    client = TestClient(limited_app(settings, db, max_queued_runs_per_team=10))
    second = make_transfer(db, account.team_id)
    third = make_transfer(db, account.team_id)
    assert create_backfill(
        client, account, account.transfer_id, "2024-01-01", "2024-01-07"
    ).is_success
    queue_recurring_run(db, account)  # recurring runs count too: 8 queued
    refused = create_backfill(client, account, second, "2024-01-01", "2024-01-03")
    error = error_of(refused, 422, "QUEUED_RUNS_QUOTA")
    for words in ("8 runs queued or running", "adds 3", "limit of 10", "room for 2"):
        assert words in error["description"], error
    # What fits is still accepted, up to the limit exactly; another team has its own quota.
    first_fit = create_backfill(client, account, second, "2024-01-01", "2024-01-02")
    assert first_fit.is_success
    error_of(create_backfill(client, account, third, "2024-01-01", "2024-01-01"), 422)
    stranger = make_account(db)
    assert create_backfill(
        client, stranger, stranger.transfer_id, "2024-01-01", "2024-01-10"
    ).is_success
    # Cancelling a backfill gives its queued runs back.
    backfill_id = first_fit.json()["data"]["transfer_backfill_id"]
    cancelled = client.patch(
        f"/v1/teams/{account.team_id}/backfills/{backfill_id}",
        json={"status": "CANCELLED"},
        headers=account.headers,
    )
    assert cancelled.status_code == 200
    assert create_backfill(client, account, third, "2024-01-01", "2024-01-02").is_success


def test_the_quota_holds_under_concurrent_creates(db: Database, account: Account) -> None:
    callers = 8
    transfers = [make_transfer(db, account.team_id) for _ in range(callers)]
    barrier = threading.Barrier(callers)
    rules = backfills.RangeRules(max_days=3660, max_queued_runs=10)

    def create(transfer_id: int) -> str:
        barrier.wait()
        try:
            with db.session(write=True) as session:
                backfills.create(
                    session,
                    team_id=account.team_id,
                    transfer_id=transfer_id,
                    user_id=account.user_id,
                    range_start=date(2024, 1, 1),
                    range_end=date(2024, 1, 4),
                    rules=rules,
                )
            return "created"
        except Unprocessable as exc:
            return exc.code

    with ThreadPoolExecutor(callers) as pool:
        outcomes = Counter(pool.map(create, transfers))
    assert outcomes == {"created": 2, "QUEUED_RUNS_QUOTA": callers - 2}  # 2 x 4 <= 10 < 3 x 4
