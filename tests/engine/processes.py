"""Worker and server processes for crash tests."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.live import server_env

#: Short leases so a killed worker's runs come back within a test's patience.
CRASH_ENV = {
    "OPENDTS_LEASE_SECONDS": "1.5",
    "OPENDTS_POLL_SECONDS": "0.1",
    "OPENDTS_RETRY_BASE_SECONDS": "0.05",
    "OPENDTS_RETRY_MAX_SECONDS": "0.2",
}


class Workers:
    """``opendts worker`` processes started by a test; all are killed when it ends."""

    def __init__(self, data_dir: Path, database_url: str, **env: str) -> None:
        self.env = server_env(data_dir, database_url, **{**CRASH_ENV, **env})
        self.data_dir = data_dir
        self.processes: list[subprocess.Popen[str]] = []

    def start(self, concurrency: int = 4) -> subprocess.Popen[str]:
        index = len(self.processes)
        log = (self.data_dir / f"worker-{index}.log").open("w")
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "opendts",
                "worker",
                "--concurrency",
                str(concurrency),
                "--log-level",
                "warning",
            ],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.processes.append(process)
        return process

    def log(self, index: int) -> str:
        return (self.data_dir / f"worker-{index}.log").read_text()

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextmanager
def workers(data_dir: Path, database_url: str, **env: str) -> Iterator[Workers]:
    group = Workers(data_dir, database_url, **env)
    try:
        yield group
    finally:
        group.stop_all()
