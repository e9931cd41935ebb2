"""``opendts serve --workers N``: one port, N API processes, rules that hold across them.

Real processes: a test opens keep-alive connections until each API process holds its share
(which process holds a connection is read from ``/proc``), then sends requests on all of them
at once. So "spread over 4 processes" is a fact the test checks, not a hope.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from opendts.auth.service import revoke_key
from opendts.kit.db import Database
from opendts.settings import Settings
from tests import databases
from tests.engine.support import make_transfer, run_rows, snapshot, wait_for
from tests.live import admin_json, free_port, server_env

PROCESSES = 4
PER_HOUR = 30


def api_pids(supervisor: int) -> list[int]:
    """The API processes ``serve`` started (its spawned children)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == supervisor and b"spawn_main" in cmdline:
            pids.append(int(entry.name))
    return sorted(pids)


def client_ports(pid: int, server_port: int) -> set[int]:
    """Client-side ports of the connections process ``pid`` has accepted on ``server_port``."""
    inodes = set()
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    except OSError:
        return set()
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, remote, inode = fields[1], fields[2], fields[9]
            if inode in inodes and int(local.rsplit(":", 1)[1], 16) == server_port:
                ports.add(int(remote.rsplit(":", 1)[1], 16))
    return ports


@dataclass
class Server:
    process: subprocess.Popen[str]
    port: int
    env: dict[str, str]
    log: Path
    account: dict[str, object]

    @property
    def database_url(self) -> str:
        settings = Settings(
            data_dir=Path(self.env["OPENDTS_DATA_DIR"]),
            database_url=self.env.get("OPENDTS_DATABASE_URL"),
        )
        return settings.resolved_database_url

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def pids(self) -> list[int]:
        return api_pids(self.process.pid)

    def wait_for_processes(self, count: int = PROCESSES) -> list[int]:
        deadline = time.monotonic() + 60
        while len(pids := self.pids()) != count:
            assert time.monotonic() < deadline, f"API processes: {pids}\n{self.log.read_text()}"
            time.sleep(0.1)
        return pids

    def spread(self, per_process: int) -> list[http.client.HTTPConnection]:
        """Keep-alive connections, ``per_process`` held by each API process."""
        pids = self.wait_for_processes()
        held: dict[int, list[http.client.HTTPConnection]] = {pid: [] for pid in pids}
        deadline = time.monotonic() + 90
        refreshed = time.monotonic()
        while any(len(conns) < per_process for conns in held.values()):
            assert time.monotonic() < deadline, {p: len(c) for p, c in held.items()}
            if time.monotonic() - refreshed > 2:
                # uvicorn closes a connection idle for 5 s.
                for conns in held.values():
                    for kept in conns:
                        kept.request("GET", "/healthz")
                        kept.getresponse().read()
                refreshed = time.monotonic()
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            conn.request("GET", "/healthz")
            assert conn.getresponse().read()
            assert conn.sock is not None
            mine = conn.sock.getsockname()[1]
            owner = next((p for p in pids if mine in client_ports(p, self.port)), None)
            if owner is not None and len(held[owner]) < per_process:
                held[owner].append(conn)
            else:
                conn.close()
        return [conn for conns in held.values() for conn in conns]

    def key(self, *scopes: str) -> tuple[int, dict[str, str]]:
        """A new key of the demo user: its id and its headers."""
        args = [arg for scope in scopes for arg in ("--scope", scope)]
        issued = admin_json(
            self.env, "key", "create", "--user", str(self.account["user_id"]), *args
        )
        return int(issued["key_id"]), {"Authorization": f"Bearer {issued['api_key']}"}  # type: ignore[call-overload]


def start_server(data_dir: Path, database_url: str | None, *args: str, **env: str) -> Server:
    environment = server_env(data_dir, database_url, **env)
    account = admin_json(environment, "demo")
    port = free_port()
    log = data_dir / f"serve-{port}.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "opendts", "serve", "--port", str(port), *args],
        env=environment,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        text=True,
    )
    server = Server(process, port, environment, log, account)
    deadline = time.monotonic() + 60
    while True:
        assert process.poll() is None, log.read_text()
        try:
            if httpx.get(f"{server.base}/healthz", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)


def stop(server: Server) -> int:
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
    try:
        return server.process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()
        raise


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """``serve --workers 4`` (engine on), with a small hourly budget per key."""
    data_dir = tmp_path_factory.mktemp("processes")
    settings = {
        "OPENDTS_RATE_LIMIT_PER_HOUR": str(PER_HOUR),
        "OPENDTS_SHUTDOWN_GRACE_SECONDS": "0",
        # Longer than the test waits: a backfill that starts at once was woken, not polled.
        "OPENDTS_POLL_SECONDS": "60",
        # A heartbeat every 100 s: a run stopped at once by a cancel "now" was woken too.
        "OPENDTS_LEASE_SECONDS": "300",
    }
    if request.param == "sqlite":
        running = start_server(data_dir, None, "--workers", str(PROCESSES), **settings)
        yield running
        stop(running)
        return
    databases.require_pg()
    with databases.pg_database() as url:
        running = start_server(data_dir, url, "--workers", str(PROCESSES), **settings)
        yield running
        stop(running)


def all_at_once(
    connections: list[http.client.HTTPConnection],
    method: str,
    path: str,
    headers: dict[str, str],
    body: bytes | None = None,
) -> list[tuple[int, dict[str, object], dict[str, str]]]:
    """Send one request on every connection at the same moment; (status, body, headers)."""
    barrier = threading.Barrier(len(connections))
    results: list[tuple[int, dict[str, object], dict[str, str]] | None] = [None] * len(connections)

    def send(index: int, conn: http.client.HTTPConnection) -> None:
        barrier.wait()
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        lowered = {name.lower(): value for name, value in response.getheaders()}
        results[index] = (response.status, json.loads(response.read()), lowered)

    threads = [threading.Thread(target=send, args=(i, conn)) for i, conn in enumerate(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert all(result is not None for result in results)
    return [result for result in results if result is not None]


def test_twenty_overlapping_creates_over_four_processes_give_one_backfill(
    server: Server,
) -> None:
    transfer = server.account["transfer_id"]
    team = server.account["team_id"]
    _, headers = server.key()
    connections = server.spread(per_process=5)
    assert len(connections) == 20
    body = json.dumps({"range_start": "2023-03-01", "range_end": "2023-03-31"}).encode()
    results = all_at_once(
        connections,
        "POST",
        f"/v1/teams/{team}/transfers/{transfer}/backfills",
        {**headers, "Content-Type": "application/json"},
        body,
    )
    statuses = sorted(status for status, _, _ in results)
    assert statuses == [200] + [422] * 19, results
    refused = [body for status, body, _ in results if status == 422]
    assert {b["error"]["code"] for b in refused} == {"BACKFILL_OVERLAP"}  # type: ignore[index]
    listed = httpx.get(f"{server.base}/v1/teams/{team}/backfills?status=all", headers=headers)
    in_march = [b for b in listed.json()["data"] if b["range_start_date"] == "2023-03-01"]
    assert len(in_march) == 1
    for conn in connections:
        conn.close()


def test_a_keys_hourly_budget_is_shared_by_every_process(server: Server) -> None:
    team = server.account["team_id"]
    _, headers = server.key()
    connections = server.spread(per_process=5)
    results = [
        *all_at_once(connections, "GET", f"/v1/teams/{team}/backfills", headers),
        *all_at_once(connections, "GET", f"/v1/teams/{team}/backfills", headers),
    ]
    statuses = [status for status, _, _ in results]
    # 40 requests over 4 processes: each process saw 10, under the budget of 30 on its own.
    assert statuses.count(200) == PER_HOUR and statuses.count(429) == 40 - PER_HOUR
    remaining = sorted(int(h["x-ratelimit-remaining"]) for s, _, h in results if s == 200)
    assert remaining == list(range(PER_HOUR))
    for conn in connections:
        conn.close()


def test_a_revoked_key_is_refused_by_every_process_at_once(server: Server) -> None:
    team = server.account["team_id"]
    key_id, headers = server.key()
    connections = server.spread(per_process=5)
    before = all_at_once(connections, "GET", f"/v1/teams/{team}/backfills", headers)
    assert [status for status, _, _ in before] == [200] * 20
    # The admin command's use case, in-process: a CLI start would outlast keep-alive.
    db = Database(server.database_url)
    try:
        with db.session(write=True) as session:
            revoke_key(session, key_id)
    finally:
        db.dispose()
    after = all_at_once(connections, "GET", f"/v1/teams/{team}/backfills", headers)
    assert [status for status, _, _ in after] == [401] * 20
    assert {body["error"]["code"] for _, body, _ in after} == {"API_KEY_INVALID"}  # type: ignore[index]
    for conn in connections:
        conn.close()


def test_one_engine_runs_and_api_processes_wake_it(server: Server) -> None:
    team, transfer = server.account["team_id"], server.account["transfer_id"]
    _, headers = server.key()
    created = httpx.post(
        f"{server.base}/v1/teams/{team}/transfers/{transfer}/backfills",
        json={"range_start": "2023-06-01", "range_end": "2023-06-03"},
        headers=headers,
    )
    assert created.status_code == 200, created.text
    url = (
        f"{server.base}/v1/teams/{team}/backfills/{created.json()['data']['transfer_backfill_id']}"
    )
    deadline = time.monotonic() + 30
    while (status := httpx.get(url, headers=headers).json()["data"]["status"]) != "COMPLETED":
        assert time.monotonic() < deadline, status
        time.sleep(0.1)
    engines = re.findall(r"engine (\S+) started", server.log.read_text())
    assert len(engines) == 1, engines
    assert engines[0].split(":")[1] == str(server.process.pid)  # the supervisor's, no other


def test_a_cancel_now_in_an_api_process_stops_the_engines_run_at_once(server: Server) -> None:
    team = int(server.account["team_id"])  # type: ignore[call-overload]
    _, headers = server.key()
    db = Database(server.database_url)
    try:
        hung = make_transfer(db, team, kind="fault", hang_dates=["2023-07-01"])
        created = httpx.post(
            f"{server.base}/v1/teams/{team}/transfers/{hung}/backfills",
            json={"range_start": "2023-07-01", "range_end": "2023-07-01"},
            headers=headers,
        )
        assert created.status_code == 200, created.text
        backfill = int(created.json()["data"]["transfer_backfill_id"])

        def status_of_run() -> str:
            rows = run_rows(db, backfill)  # read here: polling the API would use up the budget
            return str(rows[0]["status"]) if rows else ""

        wait_for(lambda: status_of_run() == "RUNNING", what="the hung run")
        cancelled = httpx.patch(
            f"{server.base}/v1/teams/{team}/backfills/{backfill}",
            json={"status": "CANCELLED", "mode": "now"},
            headers=headers,
        )
        assert cancelled.status_code == 200, cancelled.text
        wait_for(lambda: status_of_run() == "CANCELLED", timeout=20, what="the run stopped")
    finally:
        db.dispose()


KEY = re.compile(r"odts_[A-Za-z0-9]{12}_[A-Za-z0-9_-]{43}")


def answers(base: str) -> bool:
    try:
        return httpx.get(f"{base}/healthz", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_first_start_once_a_dead_process_comes_back_and_sigterm_stops_all(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    env = server_env(data_dir, OPENDTS_SHUTDOWN_GRACE_SECONDS="0", OPENDTS_POLL_SECONDS="0.2")
    port = free_port()
    log = tmp_path / "serve.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "opendts", "serve", "--port", str(port), "--workers", "3"],
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        text=True,
    )
    server = Server(process, port, env, log, {})
    db = Database(f"sqlite:///{data_dir / 'opendts.db'}")
    try:
        pids = server.wait_for_processes(3)
        wait_for(lambda: answers(server.base), timeout=60, what="the server to answer")
        output = log.read_text()
        # The first start (migrations, demo account, banner) happened once, not per process.
        assert output.count("first start, demo account created") == 1, output
        keys = set(KEY.findall(output))
        assert len(keys) == 1
        headers = {"Authorization": f"Bearer {keys.pop()}"}
        # Runs that take a minute, so they are in flight when the server is stopped.
        transfer = make_transfer(db, 1, kind="fault", parallel=2, latency_ms=60_000)
        created = httpx.post(
            f"{server.base}/v1/teams/1/transfers/{transfer}/backfills",
            json={"range_start": "2023-01-01", "range_end": "2023-01-05"},
            headers=headers,
        )
        assert created.status_code == 200, created.text
        backfill = created.json()["data"]["transfer_backfill_id"]
        wait_for(lambda: snapshot(db, backfill).runs_running == 2, what="two runs in flight")

        os.kill(pids[0], signal.SIGKILL)
        wait_for(
            lambda: len(now := server.pids()) == 3 and pids[0] not in now,
            timeout=60,
            what="a new API process in place of the killed one",
        )
        assert "exited with code -9; starting it again" in log.read_text()
        listed = httpx.get(f"{server.base}/v1/teams/1/backfills", headers=headers)
        assert listed.status_code == 200

        serving = server.pids()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0, log.read_text()
        assert not any(alive(pid) for pid in serving)
        # The engine released its runs (grace 0): back in the queue, no attempt spent.
        rows = run_rows(db, backfill)
        assert {r["status"] for r in rows} == {"QUEUED"}
        assert {r["attempt"] for r in rows} == {0}
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        db.dispose()


def test_api_processes_stop_when_their_supervisor_is_killed(tmp_path: Path) -> None:
    server = start_server(tmp_path, None, "--workers", "2", "--no-workers")
    pids = server.wait_for_processes(2)
    server.process.kill()
    server.process.wait()
    wait_for(lambda: not any(alive(pid) for pid in pids), what="orphaned API processes to exit")
    assert not answers(server.base)
