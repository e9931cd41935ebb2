"""A real ``opendts serve`` process on a free port, for tests that speak HTTP over a socket."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def opendts(
    env: dict[str, str], *args: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run the ``opendts`` CLI in a subprocess with ``env``; with ``check``, a failure says why."""
    result = subprocess.run(
        [sys.executable, "-m", "opendts", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if check and result.returncode != 0:
        raise RuntimeError(
            f"opendts {' '.join(args)} exited {result.returncode}:\n"
            f"{result.stdout}\n{result.stderr}"
        )
    return result


def admin_json(env: dict[str, str], *args: str) -> dict[str, object]:
    """Run an ``opendts admin`` command with ``--json`` and parse its output."""
    result = opendts(env, "admin", *args, "--json")
    parsed: dict[str, object] = json.loads(result.stdout)
    return parsed


@dataclass
class LiveServer:
    """A running server and the demo account ``opendts admin demo`` made for it."""

    base_url: str  # ends with /v1
    env: dict[str, str]
    team_id: int
    user_id: int
    api_key: str
    transfer_id: int
    process: subprocess.Popen[str] = field(repr=False)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    def admin(self, *args: str) -> dict[str, object]:
        return admin_json(self.env, *args)


def server_env(data_dir: Path, database_url: str | None = None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENDTS_")}
    env["OPENDTS_DATA_DIR"] = str(data_dir)
    if database_url:
        env["OPENDTS_DATABASE_URL"] = database_url
    env.update(extra)
    return env


@contextmanager
def live_server(
    data_dir: Path, database_url: str | None = None, *, log_level: str = "warning", **settings: str
) -> Iterator[LiveServer]:
    """Start ``opendts serve`` and yield it once it answers; stop it afterwards."""
    # Runs still executing when a test ends are released at once, not waited for.
    env = server_env(data_dir, database_url, **{"OPENDTS_SHUTDOWN_GRACE_SECONDS": "0", **settings})
    if database_url:
        opendts(env, "migrate")
    account = admin_json(env, "demo")
    port = free_port()
    log = (data_dir / f"serve-{port}.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "opendts", "serve", "--port", str(port), "--log-level", log_level],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"opendts serve exited: {(data_dir / log.name).read_text()}")
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("opendts serve did not answer within 30 s")
            time.sleep(0.1)
        yield LiveServer(
            base_url=f"{base}/v1",
            env=env,
            team_id=int(account["team_id"]),  # type: ignore[call-overload]
            user_id=int(account["user_id"]),  # type: ignore[call-overload]
            api_key=str(account["api_key"]),
            transfer_id=int(account["transfer_id"]),  # type: ignore[call-overload]
            process=process,
        )
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
