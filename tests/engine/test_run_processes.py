"""The pool of run processes on its own: a run process that dies is replaced, its run's error
is transient and says what happened; a healthy one is reused."""

from __future__ import annotations

import os
import signal
import threading
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from opendts.connectors import registry
from opendts.connectors.base import RefreshMode, parse_settings
from opendts.connectors.boundary import Boundary
from opendts.connectors.load import LoadSpec
from opendts.engine.errors import TransientRunError
from opendts.engine.processes import Job, RunProcesses
from tests.engine.support import wait_for
from tests.security.resource_sources import SleepSettings, SleepSource

DAY = date(2024, 3, 1)


def job(tmp_path: Path, **source: Any) -> Job:
    boundary = Boundary(team_id=1, data_dir=tmp_path)
    destination = registry.get_destination("duckdb")
    spec = LoadSpec(
        SleepSource(),
        SleepSettings(**source),
        destination,
        parse_settings(destination.Settings, {"path": "w.duckdb"}, boundary),
        "Warehouse",
        "slept",
        "date",
        RefreshMode.REPLACE,
        (),
    )
    return Job(spec, boundary, 1, 1, 1, DAY, 1, 3)


@pytest.fixture
def pool() -> Any:
    processes = RunProcesses(2, 512)
    yield processes
    processes.close()


def test_a_run_process_killed_from_outside_is_a_transient_error_and_is_replaced(
    pool: RunProcesses, tmp_path: Path
) -> None:
    pid_file = tmp_path / "pid"
    errors: list[BaseException] = []

    def hung() -> None:
        try:
            pool.run(job(tmp_path, seconds=600, pid_file=str(pid_file)), threading.Event())
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=hung)
    thread.start()
    wait_for(pid_file.exists, what="the run to start")
    os.kill(int(pid_file.read_text()), signal.SIGKILL)  # as the kernel's OOM killer would
    thread.join(30)
    [error] = errors
    assert isinstance(error, TransientRunError)
    assert "was killed by signal SIGKILL" in str(error)
    # The next run gets a new process, which is kept and reused.
    result = pool.run(job(tmp_path, seconds=0), threading.Event())
    assert result.rows == 1
    [first] = pool.pids()
    pool.run(job(tmp_path, seconds=0), threading.Event())
    assert pool.pids() == [first] and pool.started == 2


def test_a_cancelled_run_returns_at_once_and_its_process_is_gone(
    pool: RunProcesses, tmp_path: Path
) -> None:
    pid_file = tmp_path / "pid"
    cancelled = threading.Event()
    errors: list[BaseException] = []

    def hung() -> None:
        try:
            pool.run(job(tmp_path, seconds=600, pid_file=str(pid_file)), cancelled)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=hung)
    thread.start()
    wait_for(pid_file.exists, what="the run to start")
    cancelled.set()
    thread.join(10)
    assert not thread.is_alive() and isinstance(errors[0], TransientRunError)
    assert not Path(f"/proc/{pid_file.read_text()}").exists()
    assert pool.killed == 1 and pool.pids() == []
