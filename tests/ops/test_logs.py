"""Structured logs: JSON lines with request and run context; text on a terminal."""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient

from opendts.engine.kinds import RunContext, RunResult, register
from opendts.kit import logs
from opendts.kit.db import Database
from opendts.settings import Settings
from tests.engine.support import final, make_transfer, running_engine
from tests.factories import Account, make_backfill
from tests.live import live_server


class LoggingKind:
    """A run kind that logs one line per run, from the run's thread."""

    name = "ops-logging"

    def prepare(self, config: dict[str, Any]) -> Any:
        return config

    def execute(self, ctx: RunContext, settings: Any) -> RunResult:
        logging.getLogger("opendts.test.run").info("loading %s", ctx.data_date)
        return RunResult(0, f"Completed {ctx.data_date}.")


register(LoggingKind())


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """JSON lines of every ``opendts`` record, as ``configure`` would write them."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    handler.addFilter(logs.ContextFilter())
    logger = logging.getLogger("opendts")
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_api_request_records_carry_request_id_and_team_id(
    app: FastAPI, captured: io.StringIO
) -> None:
    log = logging.getLogger("opendts.test.api")

    @app.get("/v1/teams/{team_id}/ops-sync")
    def in_a_thread(team_id: int) -> dict[str, str]:
        log.info("sync endpoint")
        return {}

    @app.get("/v1/teams/{team_id}/ops-async")
    async def on_the_loop(team_id: int) -> dict[str, str]:
        log.info("async endpoint")
        return {}

    with TestClient(app) as client:
        first = client.get("/v1/teams/42/ops-sync", headers={"X-Request-Id": "ops-request-1"})
        second = client.get("/v1/teams/43/ops-async")
    log.info("outside any request")

    records = {r["message"]: r for r in lines(captured)}
    sync, async_ = records["sync endpoint"], records["async endpoint"]
    assert sync["request_id"] == "ops-request-1" == first.headers["X-Request-Id"]
    assert sync["team_id"] == 42
    assert async_["request_id"] == second.headers["X-Request-Id"]
    assert async_["team_id"] == 43
    assert sync["level"] == "info" and sync["logger"] == "opendts.test.api"
    assert sync["time"].endswith("Z")
    outside = records["outside any request"]
    assert "request_id" not in outside and "team_id" not in outside


def test_run_records_carry_run_id_backfill_id_and_team_id(
    db: Database, settings: Settings, account: Account, captured: io.StringIO
) -> None:
    transfer = make_transfer(db, account.team_id, kind="ops-logging", parallel=2)
    backfill = make_backfill(db, account, date(2024, 1, 1), date(2024, 1, 3), transfer)
    with running_engine(db, settings):
        assert final(db, backfill.id).status == "COMPLETED"
    runs = [r for r in lines(captured) if r["message"].startswith("loading ")]
    assert len(runs) == 3
    assert {r["backfill_id"] for r in runs} == {backfill.id}
    assert {r["team_id"] for r in runs} == {account.team_id}
    assert len({r["run_id"] for r in runs}) == 3
    assert all(isinstance(r["run_id"], int) and "request_id" not in r for r in runs)


def test_text_on_a_terminal_json_otherwise_and_the_variable_wins(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("OPENDTS_LOG_FORMAT", raising=False)
    assert logs.wants_json(io.StringIO()) is True
    assert logs.wants_json(Tty()) is False
    monkeypatch.setenv("OPENDTS_LOG_FORMAT", "json")
    assert logs.wants_json(Tty()) is True
    monkeypatch.setenv("OPENDTS_LOG_FORMAT", "text")
    assert logs.wants_json(io.StringIO()) is False


@pytest.fixture
def root_logging() -> Iterator[None]:
    """Restore the root logger after a test that calls ``configure``."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)


@pytest.mark.usefixtures("root_logging")
def test_configure_writes_json_or_text_to_stderr(monkeypatch: pytest.MonkeyPatch) -> None:
    stderr = io.StringIO()
    monkeypatch.setattr("sys.stderr", stderr)
    logs.configure("info", json=True)
    with logs.context(run_id=7, backfill_id=3):
        logging.getLogger("opendts.engine").info("hello %s", "world")
    record = json.loads(stderr.getvalue().splitlines()[-1])
    assert record["message"] == "hello world"
    assert (record["run_id"], record["backfill_id"]) == (7, 3)

    logs.configure("info", json=False)
    with logs.context(request_id="abcdefgh12"):
        logging.getLogger("opendts.api").warning("plain")
    last = stderr.getvalue().splitlines()[-1]
    assert "WARNING opendts.api: plain [request_id=abcdefgh12]" in last


def test_opendts_serve_writes_json_lines_when_told(tmp_path: Path) -> None:
    with live_server(tmp_path, log_level="info", OPENDTS_LOG_FORMAT="json") as server:
        created = httpx.post(
            f"{server.base_url}/teams/{server.team_id}/transfers/{server.transfer_id}/backfills",
            json={"range_start": "2024-01-01", "range_end": "2024-01-02"},
            headers=server.headers,
        )
        assert created.status_code == 200, created.text
        backfill_id = created.json()["data"]["transfer_backfill_id"]
        deadline = time.monotonic() + 60
        while True:
            got = httpx.get(
                f"{server.base_url}/teams/{server.team_id}/backfills/{backfill_id}",
                headers=server.headers,
            ).json()["data"]
            if got["status"] == "COMPLETED":
                break
            assert time.monotonic() < deadline, got
            time.sleep(0.1)
        time.sleep(0.5)  # the engine logs the backfill's end right after writing it
        api_key = server.api_key
    (log_file,) = tmp_path.glob("serve-*.log")
    output = log_file.read_text()
    # stdout's one line names the server; everything on stderr is a JSON line, uvicorn's too.
    lines = [line for line in output.splitlines() if line and " serving http" not in line]
    assert all(line.startswith("{") for line in lines), output
    records = [json.loads(line) for line in lines]
    assert any(r["logger"].startswith("uvicorn") for r in records), output
    assert "\x1b[" not in output  # no terminal colours in JSON lines
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
    messages = [r["message"] for r in records if r["logger"] == "opendts.engine"]
    assert any(m.startswith("engine ") and "started" in m for m in messages), output
    assert f"backfill {backfill_id} COMPLETED" in messages, output
    assert api_key not in output
