"""``opendts worker``: the engine alone, until SIGTERM or SIGINT."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

import typer

from opendts import __version__
from opendts.cli.runtime import open_database, safe_url
from opendts.engine.engine import Engine
from opendts.kit.db import is_sqlite
from opendts.settings import Settings


def run_worker(settings: Settings, *, log_level: str = "info") -> None:
    """Execute runs from the queue; on SIGTERM stop claiming, finish or release, exit 0."""
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    db = open_database(settings)
    if is_sqlite(db.url):
        typer.echo(
            "note: SQLite has no cross-process wake-ups; this worker polls every "
            f"{settings.poll_seconds:g}s. Use PostgreSQL to run workers at scale.",
            err=True,
        )
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    engine = Engine(db, settings)
    engine.start()
    typer.echo(
        f"opendts {__version__} worker {engine.owner}: {settings.worker_concurrency} slots "
        f"on {safe_url(db.url)}",
        err=True,
    )
    while not stop.wait(3600):
        pass
    typer.echo(
        f"stopping: finishing runs in flight (up to {settings.shutdown_grace_seconds:g}s)",
        err=True,
    )
    engine.stop()
    db.dispose()
    typer.echo(
        f"worker stopped: {engine.stats.completed} completed, {engine.stats.failed} failed, "
        f"{engine.stats.released} released",
        err=True,
    )
