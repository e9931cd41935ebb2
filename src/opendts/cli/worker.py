"""``opendts worker``: the engine alone, until SIGTERM or SIGINT."""

from __future__ import annotations

import signal

import typer

from opendts import __version__
from opendts.cli.runtime import STOP_SIGNALS, fail, open_database, safe_url
from opendts.engine.engine import Engine
from opendts.kit import logs
from opendts.kit.db import is_sqlite
from opendts.settings import Settings


def run_worker(
    settings: Settings, *, log_level: str = "info", metrics_port: int | None = None
) -> None:
    """Execute runs from the queue; on SIGTERM stop claiming, finish or release, exit 0.

    With ``metrics_port``, Prometheus metrics (the queue, this process's runs) are served on
    ``http://0.0.0.0:<port>/metrics``.
    """
    # Signals are taken synchronously (sigwait), not by a handler: blocked in this thread
    # before any other thread exists, so every thread inherits the mask and the kernel
    # keeps SIGTERM/SIGINT pending until the main thread takes them.
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    logs.configure(log_level)
    db = open_database(settings)
    if is_sqlite(db.url):
        typer.echo(
            "note: SQLite has no cross-process wake-ups; this worker polls every "
            f"{settings.poll_seconds:g}s. Use PostgreSQL to run workers at scale.",
            err=True,
        )
    if metrics_port:
        from prometheus_client import start_http_server

        from opendts.kit.metrics import worker_registry

        try:
            start_http_server(metrics_port, registry=worker_registry(db))
        except OSError as exc:
            fail(
                "ADDRESS_IN_USE",
                f"Cannot serve metrics on port {metrics_port} ({exc.strerror}). "
                "Pass another --metrics-port.",
                as_json=False,
            )
        typer.echo(f"metrics on http://0.0.0.0:{metrics_port}/metrics", err=True)
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
