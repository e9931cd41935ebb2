"""An ``http`` source end to end: pages of a local JSON API land in the warehouse; a 429 is
waited out; a terminal 4xx fails its date with a message that says what happened."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlparse

import pytest

from opendts.connectors import registry
from opendts.connectors.base import parse_settings
from opendts.connectors.boundary import Boundary
from opendts.destinations import service as destinations
from opendts.kit.db import Database
from opendts.kit.secrets import box_for
from opendts.settings import Settings
from opendts.transfers import api as transfers_api
from tests.boundaries import allow_local
from tests.engine.support import final, run_rows, running_engine
from tests.factories import Account, make_backfill

TOKEN = "api-token-123"
PAGES = 3
PER_PAGE = 4


class Api(BaseHTTPRequestHandler):
    throttled: ClassVar[set[str]] = set()

    def do_GET(self) -> None:
        query = parse_qs(urlparse(self.path).query)
        day, page = query["day"][0], int(query.get("page", ["1"])[0])
        if self.headers.get("Authorization") != f"Bearer {TOKEN}" or day == "2024-01-03":
            return self._send(401, {"error": "token expired"})
        if day == "2024-01-02" and day not in Api.throttled:
            Api.throttled.add(day)
            return self._send(429, {"error": "slow down"}, {"Retry-After": "1"})
        records = [
            {"day": day, "campaign": f"c{page}-{i}", "stats": {"clicks": i}}
            for i in range(PER_PAGE)
        ]
        following = f"/ads?day={day}&page={page + 1}" if page < PAGES else None
        self._send(200, {"data": records, "next": following})

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def api_base() -> Iterator[str]:
    Api.throttled = set()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Api)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_pages_load_a_429_is_waited_out_and_a_401_fails_its_date(
    db: Database, settings: Settings, account: Account, api_base: str
) -> None:
    settings = allow_local(settings)  # the API is on this machine
    box = box_for(settings.data_dir, settings.secret_key)
    with db.session(write=True) as session:
        destination = destinations.create(
            session,
            box,
            Boundary.for_team(settings, account.team_id),
            None,
            destinations.DestinationInput("duckdb", "W", {"path": "http.duckdb"}),
        )
        transfer = transfers_api.create(
            session,
            box,
            Boundary.for_team(settings, account.team_id),
            None,
            {
                "data_source_id": "http",
                "destination_id": destination.id,
                "display_name": "Ads API",
                "table": "ads",
                "date_column": "day",
                "source_config": {
                    "url": api_base + "/ads?day={date}",
                    "token": TOKEN,
                    "records_path": "data",
                    "pagination": "next_link",
                    "next_link_path": "next",
                    "backoff_seconds": 0.05,
                },
            },
        )
    backfill = make_backfill(db, account, date(2024, 1, 1), date(2024, 1, 3), transfer.id)
    with running_engine(db, settings, worker_concurrency=3):
        snap = final(db, backfill.id)
    assert snap.status == "FAILED" and (snap.completed, snap.failed) == (2, 1)
    failed = [r for r in run_rows(db, backfill.id) if r["status"] == "FAILED"]
    assert len(failed) == 1 and str(failed[0]["data_date"]) == "2024-01-03"
    assert "401" in failed[0]["error"] and TOKEN not in failed[0]["error"]
    assert failed[0]["attempt"] == 1  # a 401 is not retried
    duck = registry.get_destination("duckdb")
    table = duck.read_table(
        parse_settings(duck.Settings, {"path": "http.duckdb"}),
        "ads",
        Boundary.for_team(settings, account.team_id),
    )
    rows = sorted(table.to_pylist(), key=lambda r: (r["day"], r["campaign"]))
    assert len(rows) == 2 * PAGES * PER_PAGE
    assert {str(r["day"]) for r in rows} == {"2024-01-01", "2024-01-02"}
    assert json.loads(rows[0]["stats"]) == {"clicks": 0}
