"""``opendts serve``: the API (and, from the engine issue on, the workers) in one process."""

from __future__ import annotations

import signal
import socket

import typer
import uvicorn

from opendts import __version__
from opendts.api.app import create_app
from opendts.cli.api_processes import serve_processes, uvicorn_config
from opendts.cli.runtime import fail, open_database, stop_signals_for_main_thread
from opendts.connections.sealing import seal_plain_credentials
from opendts.kit import logs
from opendts.kit.db import is_sqlite
from opendts.kit.secrets import box_for
from opendts.settings import Settings
from opendts.teams import service as teams
from opendts.teams.demo import DEMO_TABLE, DemoAccount, create_demo


def first_start_banner(account: DemoAccount, base: str) -> str:
    """What a new user needs to make their first call, ready to paste."""
    key, team, transfer = account.api_key, account.team_id, account.transfer_id
    warehouse = account.warehouse
    return f"""
  opendts {__version__}: first start, demo account created.

  Team {team}, user {account.user_id}, transfer {transfer} (the demo ad metrics source into
  the DuckDB warehouse {warehouse}, table {DEMO_TABLE}).
  API key (shown only now, copy it):

      {key}

  Create a backfill and list what is incomplete:

      curl -s -X POST {base}/v1/teams/{team}/transfers/{transfer}/backfills \\
        -H "Authorization: Bearer {key}" -H "Content-Type: application/json" \\
        -d '{{"range_start": "2024-01-01", "range_end": "2024-01-31"}}'
      curl -s {base}/v1/teams/{team}/backfills -H "Authorization: Bearer {key}"

  This server also runs the backfills (one run per date, newest first). Follow the runs:

      curl -s -G {base}/v1/teams/{team}/transfers/{transfer}/runs \\
        -d start_date=2024-01-01 -d end_date=2024-01-31 -H "Authorization: Bearer {key}"

  Or from Python with the official client (pip install supermetrics):

      from datetime import date
      from supermetrics import SupermetricsClient
      client = SupermetricsClient(api_key="{key}", base_url="{base}/v1")
      backfill = client.backfills.create({team}, {transfer}, date(2024, 1, 1), date(2024, 1, 31))
      print(backfill.status, backfill.transfer_runs_total)

  Then look at the data (DuckDB's CLI or Python; the file is free 2 s after a load):

      .venv/bin/python -c "import duckdb; print(duckdb.connect('{warehouse}', \\
        read_only=True).sql('SELECT date, count(*) FROM {DEMO_TABLE} GROUP BY 1'))"

  Lost the key? 'opendts admin demo' makes a new demo team and key.
"""


def ensure_port_free(host: str, port: int) -> None:
    """Fail with advice, not a traceback, when the port is taken."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            fail(
                "ADDRESS_IN_USE",
                f"Cannot listen on {host}:{port} ({exc.strerror}). "
                "Stop the other process or pass --port (or set OPENDTS_PORT).",
                as_json=False,
            )


def serve(settings: Settings, *, log_level: str = "info") -> None:
    """Migrate (embedded DB), create the demo account on first start, then serve."""
    logs.configure(log_level)
    ensure_port_free(settings.host, settings.port)
    db = open_database(settings)
    base = f"http://{settings.host}:{settings.port}"
    with db.session(write=True) as session:
        account = None if teams.any_team_exists(session) else create_demo(session, settings)
        seal_plain_credentials(session, box_for(settings.data_dir, settings.secret_key))
    if account is not None:
        typer.echo(first_start_banner(account, base))
    else:
        where = settings.data_dir.resolve() if is_sqlite(db.url) else "PostgreSQL"
        typer.echo(f"opendts {__version__}: serving {base}/v1 (state in {where})")
    engine = None
    if settings.workers:
        from opendts.engine.engine import Engine

        engine = Engine(db, settings)
        with stop_signals_for_main_thread():
            engine.start()
    else:
        typer.echo("workers off (--no-workers): backfills wait for `opendts worker` processes")
    if settings.api_processes > 1:
        try:
            serve_processes(
                settings,
                log_level,
                wake=engine.wake if engine else None,
                stop_runs=engine.check_stops if engine else None,
            )
        finally:
            if engine is not None:
                engine.stop()
            db.dispose()
        return
    app = create_app(
        settings,
        db,
        wake=engine.wake if engine is not None else None,
        stop_runs=engine.check_stops if engine is not None else None,
    )
    config = uvicorn_config(app, settings, log_level)
    # uvicorn re-raises the signal that stopped it once it has drained requests; with these
    # handlers in place that re-raise is caught here, so the engine can finish or release its
    # runs and the process exits 0.
    stopped: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, _frame: stopped.append(signum))
    try:
        uvicorn.Server(config).run()
    finally:
        # uvicorn returns after SIGTERM/SIGINT once requests drained: now the runs.
        if engine is not None:
            engine.stop()
        db.dispose()
