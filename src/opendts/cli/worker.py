"""``opendts worker``: the engine alone, until SIGTERM or SIGINT."""

from __future__ import annotations

import logging
import signal

import typer

from opendts import __version__
from opendts.cli.runtime import STOP_SIGNALS, open_database, safe_url
from opendts.engine.engine import Engine
from opendts.kit.db import is_sqlite
from opendts.settings import Settings


def run_worker(settings: Settings, *, log_level: str = "info") -> None:
    """Execute runs from the queue; on SIGTERM stop claiming, finish or release, exit 0."""
    # Signals are taken synchronously (sigwait), not by a handler: blocked in this thread
    # before any other thread exists, so every thread inherits the mask and the kernel
    # keeps SIGTERM/SIGINT pending until the main thread takes them.
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    db = open_database(settings)
    if is_sqlite(db.url):
        typer.echo(
            "note: SQLite has no cross-process wake-ups; this worker polls every "
            f"{settings.poll_seconds:g}s. Use PostgreSQL to run workers at scale.",
            err=True,
        )
    engine = Engine(db, settings)
    engine.start()
    typer.echo(
        f"opendts {__version__} worker {engine.owner}: {settings.worker_concurrency} slots "
        f"on {safe_url(db.url)}",
        err=True,
    )
    signal.sigwait(STOP_SIGNALS)
    # A second signal stops the process at once (its runs come back when their leases expire).
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    typer.echo(
        f"stopping: finishing runs in flight (up to {settings.shutdown_grace_seconds:g}s; "
        "signal again to stop at once)",
        err=True,
    )
    engine.stop()
    db.dispose()
    typer.echo(
        f"worker stopped: {engine.stats.completed} completed, {engine.stats.failed} failed, "
        f"{engine.stats.released} released",
        err=True,
    )
