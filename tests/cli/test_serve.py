"""The front door: the first start of ``opendts serve`` on an empty data folder."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.live import free_port, server_env


def start(env: dict[str, str], port: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "opendts", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_ready(base: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError("server did not start")


def stop(process: subprocess.Popen[str]) -> str:
    process.terminate()
    output, _ = process.communicate(timeout=20)
    return output


def test_first_start_creates_demo_and_prints_a_working_key(tmp_path: Path) -> None:
    env = server_env(tmp_path / "data")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process = start(env, port)
    try:
        wait_ready(base)
    finally:
        output = stop(process)
    assert (tmp_path / "data" / "opendts.db").exists()
    key = re.search(r"odts_[A-Za-z0-9]{12}_[A-Za-z0-9_-]{43}", output)
    assert key, output
    assert f"curl -s -X POST {base}/v1/teams/1/transfers/1/backfills" in output
    assert "SupermetricsClient(" in output
    # The query command points at team 1's own warehouse.
    warehouse = re.search(r"duckdb\.connect\('([^']+)'", output)
    assert warehouse, output
    assert Path(warehouse.group(1)) == tmp_path / "data" / "teams" / "1" / "warehouse.duckdb"

    # Second start: same data, no second demo team, and the printed key still works.
    process = start(env, port)
    try:
        wait_ready(base)
        headers = {"Authorization": f"Bearer {key.group(0)}"}
        created = httpx.post(
            f"{base}/v1/teams/1/transfers/1/backfills",
            json={"range_start": "2024-01-01", "range_end": "2024-01-31"},
            headers=headers,
        )
        assert created.status_code == 200, created.text
        assert created.json()["data"]["transfer_runs_total"] == 31
        assert httpx.get(f"{base}/v1/teams/2/backfills", headers=headers).status_code == 403
        backfill = f"{base}/v1/teams/1/backfills/{created.json()['data']['transfer_backfill_id']}"
        deadline = time.monotonic() + 60
        while httpx.get(backfill, headers=headers).json()["data"]["status"] != "COMPLETED":
            assert time.monotonic() < deadline, "the demo backfill did not complete"
            time.sleep(0.2)
        # The banner's command reads the loaded month (the file is free 2 s after a load).
        query = (
            f"import duckdb; print(duckdb.connect({warehouse.group(1)!r}, read_only=True)"
            ".sql('SELECT count(DISTINCT date), count(*) FROM demo_ad_metrics').fetchall())"
        )
        while True:
            done = subprocess.run(
                [sys.executable, "-c", query], capture_output=True, text=True, check=False
            )
            if done.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert done.stdout.strip() == "[(31, 31000)]", done.stderr
    finally:
        output = stop(process)
    assert "odts_" not in output


def test_no_workers_serves_the_api_and_leaves_backfills_to_worker_processes(
    tmp_path: Path,
) -> None:
    env = server_env(tmp_path / "data", OPENDTS_POLL_SECONDS="0.1")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [sys.executable, "-m", "opendts", "serve", "--port", str(port), "--no-workers"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        wait_ready(base)
        output_key, said_no_workers = None, False
        deadline = time.monotonic() + 10
        while not (output_key and said_no_workers) and time.monotonic() < deadline:
            line = process.stdout.readline() if process.stdout else ""
            match = re.search(r"odts_[A-Za-z0-9]{12}_[A-Za-z0-9_-]{43}", line)
            output_key = match.group(0) if match else output_key
            said_no_workers = said_no_workers or "--no-workers" in line
        assert output_key and said_no_workers
        headers = {"Authorization": f"Bearer {output_key}"}
        created = httpx.post(
            f"{base}/v1/teams/1/transfers/1/backfills", headers=headers,
            json={"range_start": "2024-01-01", "range_end": "2024-01-03"},
        )  # fmt: skip
        backfill = created.json()["data"]["transfer_backfill_id"]
        time.sleep(1.0)
        body = httpx.get(f"{base}/v1/teams/1/backfills/{backfill}", headers=headers).json()
        assert body["data"]["status"] == "CREATED"  # nobody plans or runs it
        worker = subprocess.Popen(
            [sys.executable, "-m", "opendts", "worker", "--concurrency", "2"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                body = httpx.get(f"{base}/v1/teams/1/backfills/{backfill}", headers=headers).json()
                if body["data"]["status"] == "COMPLETED":
                    break
                time.sleep(0.1)
            assert body["data"]["status"] == "COMPLETED"
        finally:
            worker.terminate()
            assert worker.wait(timeout=30) == 0
    finally:
        stop(process)
