"""Live progress: server-sent events of a backfill until it ends."""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from opendts.kit.db import Database
from opendts.settings import Settings
from tests.engine.support import make_transfer, running_engine
from tests.factories import Account, make_account, make_backfill, revoke
from tests.live import LiveServer, live_server


def events_url(account: Account, backfill_id: int) -> str:
    return f"/v1/teams/{account.team_id}/backfills/{backfill_id}/events"


def read_events(
    client: TestClient,
    url: str,
    headers: dict[str, str],
    opened: threading.Event | None = None,
) -> list[tuple[str, Any]]:
    """The stream's events until it ends; ``opened`` is set once the first one arrived."""
    events: list[tuple[str, Any]] = []
    with client.stream("GET", url, headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        name = ""
        for line in response.iter_lines():
            if line.startswith("event: "):
                name = line[len("event: ") :]
            elif line.startswith("data: "):
                events.append((name, json.loads(line[len("data: ") :])))
                if opened is not None:
                    opened.set()
    return events


def test_events_follow_a_backfill_to_its_end(
    client: TestClient, db: Database, settings: Settings, account: Account
) -> None:
    transfer = make_transfer(db, account.team_id, kind="fault", parallel=2, latency_ms=40)
    backfill = make_backfill(db, account, date(2024, 1, 1), date(2024, 1, 12), transfer)
    with running_engine(db, settings):
        events = read_events(client, events_url(account, backfill.id), account.headers)
    names = [name for name, _ in events]
    assert names[-1] == "end" and set(names[:-1]) == {"backfill"}
    assert len(events) >= 3  # the start, some progress, the end
    final = events[-1][1]
    assert final["status"] == "COMPLETED" and final["transfer_runs_completed"] == 12
    assert final["transfer_backfill_id"] == backfill.id and final["error_report"] == []
    done = [data["transfer_runs_completed"] for _, data in events]
    assert done == sorted(done)  # progress never goes back
    assert events[-2][1] == final  # the last change, then the end


def test_a_finished_backfill_streams_its_state_and_ends_at_once(
    client: TestClient, db: Database, settings: Settings, account: Account
) -> None:
    transfer = make_transfer(
        db, account.team_id, kind="fault", fail_dates=["2024-01-02"], failure="terminal"
    )
    backfill = make_backfill(db, account, date(2024, 1, 1), date(2024, 1, 3), transfer)
    with running_engine(db, settings):
        events = read_events(client, events_url(account, backfill.id), account.headers)
    assert events[-1][0] == "end" and events[-1][1]["status"] == "FAILED"
    assert events[-1][1]["error_report"][0]["transfer_run_date"] == "2024-01-02"
    again = read_events(client, events_url(account, backfill.id), account.headers)
    assert [name for name, _ in again] == ["backfill", "end"]


def test_events_need_the_same_access_as_reads(
    client: TestClient, db: Database, account: Account
) -> None:
    backfill = make_backfill(db, account, date(2024, 1, 1), date(2024, 1, 2))
    assert client.get(events_url(account, backfill.id)).status_code == 401
    missing = client.get(events_url(account, 999_999), headers=account.headers)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "BACKFILL_NOT_FOUND"
    stranger = make_account(db)
    foreign = client.get(
        f"/v1/teams/{stranger.team_id}/backfills/{backfill.id}/events", headers=stranger.headers
    )
    assert foreign.status_code == 404
    outsider = client.get(events_url(account, backfill.id), headers=stranger.headers)
    assert outsider.status_code == 403


def test_a_revoked_key_ends_the_stream(
    client: TestClient, db: Database, settings: Settings, account: Account
) -> None:
    transfer = make_transfer(db, account.team_id, kind="fault", latency_ms=60_000)
    backfill = make_backfill(db, account, date(2024, 1, 1), date(2024, 1, 2), transfer)
    result: list[list[tuple[str, Any]]] = []
    opened = threading.Event()
    reader = threading.Thread(
        target=lambda: result.append(
            read_events(client, events_url(account, backfill.id), account.headers, opened)
        )
    )
    reader.start()
    # Revoked once the stream is open (revoking before would be a plain 401).
    assert opened.wait(30), "the stream sent no first event"
    revoke(db, account.key_id)
    reader.join(timeout=10)
    assert not reader.is_alive(), "the stream did not end after the key was revoked"
    assert result and all(name == "backfill" for name, _ in result[0])


def open_raw_stream(server: LiveServer, backfill_id: int) -> socket.socket:
    """A live-event stream over a plain socket, read up to its first event."""
    host, port = server.base_url.removeprefix("http://").removesuffix("/v1").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    path = f"/v1/teams/{server.team_id}/backfills/{backfill_id}/events"
    sock.sendall(
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {server.api_key}\r\n"
        "Accept: text/event-stream\r\n\r\n".encode()
    )
    received = b""
    while b"event: backfill" not in received:
        chunk = sock.recv(65536)
        assert chunk, received
        received += chunk
    assert received.startswith(b"HTTP/1.1 200"), received[:200]
    return sock


@pytest.mark.live
def test_a_client_that_disappears_frees_its_stream_place(tmp_path: Path) -> None:
    # No engine: the backfill stays CREATED, so its streams never end by themselves.
    with live_server(
        tmp_path, OPENDTS_WORKERS="false", OPENDTS_MAX_EVENT_STREAMS_PER_KEY="1"
    ) as server:
        created = httpx.post(
            f"{server.base_url}/teams/{server.team_id}/transfers/{server.transfer_id}/backfills",
            json={"range_start": "2024-01-01", "range_end": "2024-01-02"},
            headers=server.headers,
        )
        backfill_id = created.json()["data"]["transfer_backfill_id"]
        url = f"{server.base_url}/teams/{server.team_id}/backfills/{backfill_id}/events"
        sock = open_raw_stream(server, backfill_id)
        refused = httpx.get(url, headers=server.headers, timeout=10)
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "TOO_MANY_STREAMS"
        # The client vanishes without a word (a reset, not a polite close).
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
        deadline = time.monotonic() + 10
        while True:
            with httpx.stream("GET", url, headers=server.headers, timeout=10) as response:
                if response.status_code == 200:
                    break
                assert response.status_code == 429
            assert time.monotonic() < deadline, "the place was not freed within 10 s"
            time.sleep(0.2)
