"""The ``opendts`` command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from opendts import __version__
from opendts.cli import admin, backfills, destinations, remote, runs, transfers
from opendts.cli.runtime import connect, fail, settings_from
from opendts.kit import logs

app = typer.Typer(
    help="opendts: self-hosted Data Warehouse Transfer Service.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(admin.app, name="admin")
app.add_typer(backfills.app, name="backfill")
app.add_typer(runs.app, name="run")
app.add_typer(transfers.app, name="transfer")
app.add_typer(destinations.app, name="destination")
app.command("login")(remote.login)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"opendts {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            help="Folder for embedded state (env OPENDTS_DATA_DIR; default ./opendts-data)."
        ),
    ] = None,
    database_url: Annotated[
        str | None,
        typer.Option(help="Metadata database URL (env OPENDTS_DATABASE_URL; default SQLite)."),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print version.")
    ] = False,
) -> None:
    """Global options shared by every command."""
    ctx.obj = {"data_dir": data_dir, "database_url": database_url}


@app.command()
def serve(
    ctx: typer.Context,
    host: Annotated[
        str | None, typer.Option(help="Bind address (env OPENDTS_HOST; default 127.0.0.1).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port (env OPENDTS_PORT; default 8080).")] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error.")] = "info",
    processes: Annotated[
        int | None,
        typer.Option(
            "--workers",
            min=1,
            max=64,
            help="API processes serving the port (env OPENDTS_API_PROCESSES; default 1). "
            "The engine still runs once, in the process that supervises them.",
        ),
    ] = None,
    no_workers: Annotated[
        bool,
        typer.Option(
            "--no-workers",
            help="Serve the API only: backfills wait for `opendts worker` processes "
            "(env OPENDTS_WORKERS=false).",
        ),
    ] = False,
    concurrency: Annotated[
        int | None,
        typer.Option(
            min=1, help="Runs executed at once (env OPENDTS_WORKER_CONCURRENCY; default 8)."
        ),
    ] = None,
) -> None:
    """Start the API server (and its workers) with embedded defaults (SQLite in ./opendts-data)."""
    # Imported here so admin commands do not pay for loading the web stack.
    from opendts.cli.serve import serve as run_server

    ctx.find_root().obj.update(
        {
            "host": host,
            "port": port,
            "api_processes": processes,
            "workers": False if no_workers else None,
            "worker_concurrency": concurrency,
        }
    )
    run_server(settings_from(ctx), log_level=log_level)


@app.command()
def worker(
    ctx: typer.Context,
    concurrency: Annotated[
        int | None,
        typer.Option(
            min=1, help="Runs executed at once (env OPENDTS_WORKER_CONCURRENCY; default 8)."
        ),
    ] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error.")] = "info",
    metrics_port: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=65535,
            help="Serve Prometheus metrics on this port at /metrics (default: off).",
        ),
    ] = None,
) -> None:
    """Run backfills without serving the API: start any number, on any number of machines."""
    from opendts.cli.worker import run_worker

    ctx.find_root().obj.update({"worker_concurrency": concurrency})
    run_worker(settings_from(ctx), log_level=log_level, metrics_port=metrics_port)


@app.command()
def migrate(ctx: typer.Context) -> None:
    """Bring the metadata database schema up to date (Alembic)."""
    from opendts.kit import migrate as migrations

    logs.configure("info")  # data migrations log what they did (files they copied)
    settings = settings_from(ctx)
    db = connect(settings)
    before = migrations.current_revision(db)
    try:
        migrations.upgrade(db, data_dir=settings.data_dir)
    except migrations.UpgradeBlocked as exc:
        db.dispose()
        fail("UPGRADE_BLOCKED", str(exc), as_json=False)
    after = migrations.current_revision(db)
    db.dispose()
    typer.echo(f"database at revision {after} (was {before or 'empty'})")
