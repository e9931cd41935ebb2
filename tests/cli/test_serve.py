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
    finally:
        output = stop(process)
    assert "odts_" not in output
