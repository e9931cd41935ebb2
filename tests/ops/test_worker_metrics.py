"""``opendts worker --metrics-port``: the worker's own Prometheus endpoint."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import httpx

from opendts.kit.db import Database
from tests.engine.support import snapshot
from tests.factories import make_account, make_backfill
from tests.live import free_port, opendts, server_env
from tests.ops.support import value


def test_worker_serves_metrics_that_follow_its_runs(tmp_path: Path) -> None:
    env = server_env(tmp_path, OPENDTS_POLL_SECONDS="0.05", OPENDTS_SHUTDOWN_GRACE_SECONDS="0")
    opendts(env, "migrate")
    db = Database(f"sqlite:///{tmp_path / 'opendts.db'}")
    account = make_account(db)
    backfill = make_backfill(db, account, date(2024, 1, 1), date(2024, 1, 3))
    db.dispose()

    port = free_port()
    log = (tmp_path / "worker.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "opendts", "worker", "--metrics-port", str(port)],
        env={**env, "OPENDTS_LOG_FORMAT": "json"},
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        deadline = time.monotonic() + 60
        scraped = ""
        while True:
            assert process.poll() is None, (tmp_path / "worker.log").read_text()
            try:
                scraped = httpx.get(url, timeout=2).text
            except httpx.HTTPError:
                scraped = ""
            if value(scraped, "opendts_engine_runs_finished_total", outcome="completed") >= 3:
                break
            assert time.monotonic() < deadline, scraped or "metrics never answered"
            time.sleep(0.1)
        assert value(scraped, "opendts_run_duration_seconds_count", outcome="completed") == 3
        assert value(scraped, "opendts_queue_depth") == 0
        assert value(scraped, "opendts_runs", status="QUEUED") == 0
        assert value(scraped, "opendts_metrics_database_up") == 1
        # The API's request metrics are the API's: a worker has none.
        assert "opendts_http_request_duration_seconds" not in scraped
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log.close()
    output = (tmp_path / "worker.log").read_text()
    assert f"metrics on http://0.0.0.0:{port}/metrics" in output
    db = Database(f"sqlite:///{tmp_path / 'opendts.db'}")
    assert snapshot(db, backfill.id).status == "COMPLETED"
    db.dispose()
