"""Commands that talk to any opendts server over HTTP: backfills, runs, transfers, destinations.

The server, API key and team come from ``--server``/``--api-key``/``--team``, else from
``OPENDTS_SERVER``/``OPENDTS_API_KEY``/``OPENDTS_TEAM``, else from the config file written by
``opendts login`` (``$OPENDTS_CONFIG`` or ``~/.config/opendts/config.json``, mode 0600).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from opendts.client import (
    DEFAULT_SERVER,
    FINAL_BACKFILL_STATUSES,
    ApiError,
    Client,
    JsonObject,
)

backfill_app = typer.Typer(help="Backfills on an opendts server (over HTTP).", no_args_is_help=True)
run_app = typer.Typer(help="Transfer runs on an opendts server (over HTTP).", no_args_is_help=True)
transfer_app = typer.Typer(help="Transfers on an opendts server (over HTTP).", no_args_is_help=True)
destination_app = typer.Typer(
    help="Destinations on an opendts server (over HTTP).", no_args_is_help=True
)

#: Exit codes of ``backfill watch`` by final status.
WATCH_EXIT = {"COMPLETED": 0, "FAILED": 1, "CANCELLED": 2}

Server = Annotated[
    str | None,
    typer.Option(
        "--server",
        help=f"Server URL (env OPENDTS_SERVER, else config, else {DEFAULT_SERVER}).",
        show_default=False,
    ),
]
ApiKey = Annotated[
    str | None,
    typer.Option(
        "--api-key", help="API key (env OPENDTS_API_KEY, else config).", show_default=False
    ),
]
Team = Annotated[
    int | None,
    typer.Option("--team", help="Team id (env OPENDTS_TEAM, else config).", show_default=False),
]
Json = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]


class SortField(StrEnum):
    data_date = "data_date"
    created_time = "created_time"
    ended_time = "ended_time"


class SortDirection(StrEnum):
    ASC = "ASC"
    DESC = "DESC"


_SORT_FIELDS: dict[SortField, Literal["data_date", "created_time", "ended_time"]] = {
    SortField.data_date: "data_date",
    SortField.created_time: "created_time",
    SortField.ended_time: "ended_time",
}


# Connection settings


def config_path() -> Path:
    """``$OPENDTS_CONFIG`` or ``~/.config/opendts/config.json``."""
    configured = os.environ.get("OPENDTS_CONFIG")
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".config" / "opendts" / "config.json"


def read_config(path: Path) -> JsonObject:
    """The config file's settings; an absent file is an empty config."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise _cli_error("CONFIG_INVALID", f"Cannot read the config file {path}: {exc}.") from exc
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _cli_error(
            "CONFIG_INVALID",
            f"The config file {path} is not valid JSON ({exc}). Fix it or run 'opendts login'.",
        ) from exc
    if not isinstance(value, dict):
        raise _cli_error("CONFIG_INVALID", f"The config file {path} must hold a JSON object.")
    return value


def write_config(path: Path, settings: JsonObject) -> None:
    """Write the config atomically, readable only by its owner (mode 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, temporary = tempfile.mkstemp(prefix=".config-", dir=path.parent)  # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(settings, handle, indent=2)
            handle.write("\n")
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class Connection:
    server: str
    api_key: str | None
    team: int | None


def resolve(server: str | None, api_key: str | None, team: int | None) -> Connection:
    """Flags, else environment, else the config file, else defaults."""
    config = read_config(config_path())
    env_team = os.environ.get("OPENDTS_TEAM") or None
    team_value: Any = team
    if team_value is None:
        team_value = env_team if env_team is not None else config.get("team")
    if team_value is not None:
        try:
            team_value = int(team_value)
        except (TypeError, ValueError):
            source = "OPENDTS_TEAM" if env_team is not None else f"'team' in {config_path()}"
            raise _cli_error(
                "INVALID_SETTING", f"{source} must be an integer team id, got {team_value!r}."
            ) from None
    return Connection(
        server=server
        or os.environ.get("OPENDTS_SERVER")
        or str(config.get("server") or "")
        or DEFAULT_SERVER,
        api_key=api_key or os.environ.get("OPENDTS_API_KEY") or config.get("api_key") or None,
        team=team_value,
    )


def _cli_error(code: str, description: str) -> ApiError:
    return ApiError(0, code, code.replace("_", " ").capitalize(), description)


# Output


def _fail(error: ApiError, *, as_json: bool) -> NoReturn:
    """One line (or one JSON object) naming the code and what to do, then exit 1."""
    if as_json:
        typer.echo(json.dumps({"error": error.as_dict()}))
    else:
        where = []
        if error.status:
            where.append(f"HTTP {error.status}")
        if error.request_id:
            where.append(f"request {error.request_id}")
        suffix = f" ({', '.join(where)})" if where else ""
        text = error.description or error.message
        typer.secho(f"error: {error.code}: {text}{suffix}", fg=typer.colors.RED, err=True)
    raise typer.Exit(1)


@contextmanager
def _client(
    server: str | None, api_key: str | None, team: int | None, *, as_json: bool
) -> Iterator[Client]:
    """A client for the resolved connection; API errors become a clean exit 1."""
    try:
        conn = resolve(server, api_key, team)
        if not conn.api_key:
            raise _cli_error(
                "API_KEY_REQUIRED",
                "No API key: pass --api-key, set OPENDTS_API_KEY or run 'opendts login'.",
            )
        if conn.team is None:
            raise _cli_error(
                "TEAM_REQUIRED", "No team: pass --team, set OPENDTS_TEAM or run 'opendts login'."
            )
        with Client(conn.server, conn.api_key, team=conn.team) as client:
            yield client
    except ApiError as exc:
        _fail(exc, as_json=as_json)


def _console() -> Console:
    # Piped output is not cut at 80 columns; a terminal's own width is used as it is.
    wide = not sys.stdout.isatty() and "COLUMNS" not in os.environ
    return Console(highlight=False, width=160 if wide else None)


def _when(value: Any) -> str | None:
    """An ISO timestamp to the second, for tables: ``2024-01-31 06:00:00``."""
    if not isinstance(value, str):
        return None
    return value.replace("T", " ").removesuffix("Z").split(".")[0]


def _print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2))


def _show(value: Any, *, as_json: bool, human: Callable[[], None]) -> None:
    if as_json:
        _print_json(value)
    else:
        human()


def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def _details(title: str, pairs: list[tuple[str, Any]]) -> None:
    table = Table(title=title, show_header=False, box=None, title_justify="left")
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key, value in pairs:
        table.add_row(key, escape(_text(value)))
    _console().print(table)


def _rows(title: str, columns: list[str], rows: list[list[Any]], empty: str) -> None:
    if not rows:
        _console().print(empty)
        return
    table = Table(title=title, title_justify="left")
    texts = [[_text(cell) for cell in row] for row in rows]
    for index, column in enumerate(columns):
        if index == len(columns) - 1:
            # The last column (a name, a message) gives way: one line, cut with an ellipsis.
            table.add_column(column, no_wrap=True, overflow="ellipsis", max_width=60)
        else:
            # Ids, dates and statuses keep their width (up to 30 characters).
            widest = max([len(column), *(len(row[index]) for row in texts)])
            table.add_column(column, min_width=min(widest, 30), overflow="fold")
    for row in texts:
        table.add_row(*(escape(cell) for cell in row))
    _console().print(table)


def _confirm(question: str, yes: bool) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        raise _cli_error("CONFIRMATION_REQUIRED", f"{question} Pass --yes to confirm.")
    if not typer.confirm(question, default=False):
        raise typer.Exit(1)


# Backfills


def _backfill_details(backfill: JsonObject) -> None:
    _details(
        f"Backfill {backfill.get('transfer_backfill_id')}",
        [
            ("status", backfill.get("status")),
            ("transfer", backfill.get("transfer_id")),
            ("range", f"{backfill.get('range_start_date')} .. {backfill.get('range_end_date')}"),
            (
                "runs",
                f"{backfill.get('transfer_runs_completed')} completed, "
                f"{backfill.get('transfer_runs_failed')} failed, "
                f"{backfill.get('transfer_runs_created')} created, "
                f"{backfill.get('transfer_runs_total')} total",
            ),
            ("created", backfill.get("created_time")),
            ("started", backfill.get("start_time")),
            ("ended", backfill.get("end_time")),
            ("cancelled", backfill.get("removed_time")),
        ],
    )
    _error_report(backfill)


def _error_report(backfill: JsonObject) -> None:
    report = backfill.get("error_report") or []
    if report:
        _rows(
            "Failed dates",
            ["date", "error"],
            [[item.get("transfer_run_date"), item.get("error")] for item in report],
            "",
        )


@backfill_app.command("create")
def backfill_create(
    transfer: Annotated[int, typer.Option("--transfer", help="Transfer id.")],
    start: Annotated[str, typer.Option("--start", help="First date, YYYY-MM-DD.")],
    end: Annotated[str, typer.Option("--end", help="Last date (inclusive), YYYY-MM-DD.")],
    watch: Annotated[bool, typer.Option("--watch", help="Then watch it until it ends.")] = False,
    server: Server = None,
    api_key: ApiKey = None,
    team: Team = None,
    as_json: Json = False,
) -> None:
    """Backfill a transfer over a date range: one run per date."""
    with _client(server, api_key, team, as_json=as_json) as client:
        backfill = client.create_backfill(transfer, start, end)
        if not watch:
            _show(backfill, as_json=as_json, human=lambda: _backfill_details(backfill))
            return
        if as_json:
            _print_line(backfill)
        else:
            typer.echo(
                f"created backfill {backfill['transfer_backfill_id']} "
                f"({backfill['transfer_runs_total']} runs)"
            )
        code = _watch(client, int(backfill["transfer_backfill_id"]), as_json=as_json, seen=backfill)
    raise typer.Exit(code)


@backfill_app.command("list")
def backfill_list(
    server: Server = None, api_key: ApiKey = None, team: Team = None, as_json: Json = False
) -> None:
    """The team's incomplete backfills (CREATED, SCHEDULED, RUNNING, FAILED), newest first."""
    with _client(server, api_key, team, as_json=as_json) as client:
        backfills = client.list_incomplete_backfills()
    _show(
        backfills,
        as_json=as_json,
        human=lambda: _rows(
            "Incomplete backfills",
            ["id", "transfer", "range", "status", "done", "failed", "total", "created"],
            [
                [
                    b.get("transfer_backfill_id"),
                    b.get("transfer_id"),
                    f"{b.get('range_start_date')}..{b.get('range_end_date')}",
                    b.get("status"),
                    b.get("transfer_runs_completed"),
                    b.get("transfer_runs_failed"),
                    b.get("transfer_runs_total"),
                    _when(b.get("created_time")),
                ]
                for b in backfills
            ],
            "No incomplete backfills.",
        ),
    )


@backfill_app.command("get")
def backfill_get(
    backfill_id: Annotated[int, typer.Argument(help="Backfill id.")],
    server: Server = None,
    api_key: ApiKey = None,
    team: Team = None,
    as_json: Json = False,
) -> None:
    """One backfill, any status."""
    with _client(server, api_key, team, as_json=as_json) as client:
        backfill = client.get_backfill(backfill_id)
    _show(backfill, as_json=as_json, human=lambda: _backfill_details(backfill))


@backfill_app.command("latest")
def backfill_latest(
    transfer: Annotated[int, typer.Option("--transfer", help="Transfer id.")],
    server: Server = None,
    api_key: ApiKey = None,
    team: Team = None,
    as_json: Json = False,
) -> None:
    """A transfer's most recent backfill."""
    with _client(server, api_key, team, as_json=as_json) as client:
        backfill = client.latest_backfill(transfer)
    _show(backfill, as_json=as_json, human=lambda: _backfill_details(backfill))


@backfill_app.command("cancel")
def backfill_cancel(
    backfill_id: Annotated[int, typer.Argument(help="Backfill id.")],
    server: Server = None,
    api_key: ApiKey = None,
    team: Team = None,
    as_json: Json = False,
) -> None:
    """Cancel a backfill: queued runs are cancelled, executing runs finish."""
    with _client(server, api_key, team, as_json=as_json) as client:
        backfill = client.cancel_backfill(backfill_id)
    _show(backfill, as_json=as_json, human=lambda: _backfill_details(backfill))


@backfill_app.command("watch")
def backfill_watch(
    backfill_id: Annotated[int, typer.Argument(help="Backfill id.")],
    interval: Annotated[
        float, typer.Option(min=0.05, help="Seconds between polls.", show_default=True)
    ] = 0.5,
    server: Server = None,
    api_key: ApiKey = None,
    team: Team = None,
    as_json: Json = False,
) -> None:
    """Follow a backfill until it ends; exit 0 if COMPLETED, 1 if FAILED, 2 if CANCELLED.

    With --json, prints the backfill as one JSON line each time it changes.
    """
    with _client(server, api_key, team, as_json=as_json) as client:
        code = _watch(client, backfill_id, as_json=as_json, interval=interval)
    raise typer.Exit(code)


def _print_line(value: Any) -> None:
    sys.stdout.write(json.dumps(value) + "\n")
    sys.stdout.flush()


def _poll(client: Client, backfill_id: int, *, retry: bool) -> JsonObject:
    """The backfill; once watching, a server that is briefly away is retried for ~30 s."""
    delay = 0.5
    deadline = time.monotonic() + 30
    while True:
        try:
            return client.get_backfill(backfill_id)
        except ApiError as exc:
            transient = exc.code == "CONNECTION_FAILED" or exc.status in (429, 502, 503, 504)
            if not (retry and transient) or time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 5)


def _finished(backfill: JsonObject) -> int:
    return int(backfill.get("transfer_runs_completed") or 0) + int(
        backfill.get("transfer_runs_failed") or 0
    )


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02}:{secs:02}" if hours else f"{minutes}:{secs:02}"


def _watch(
    client: Client,
    backfill_id: int,
    *,
    as_json: bool,
    interval: float = 0.5,
    seen: JsonObject | None = None,
) -> int:
    """Poll until the backfill's status is final; the exit code for that status."""
    try:
        if as_json:
            return _watch_lines(client, backfill_id, interval, seen)
        return _watch_progress(client, backfill_id, interval)
    except KeyboardInterrupt:
        typer.echo(f"stopped watching; backfill {backfill_id} goes on", err=True)
        return 130


def _watch_lines(client: Client, backfill_id: int, interval: float, last: JsonObject | None) -> int:
    first = True
    while True:
        backfill = _poll(client, backfill_id, retry=not first)
        first = False
        if backfill != last:
            _print_line(backfill)
            last = backfill
        status = str(backfill.get("status"))
        if status in FINAL_BACKFILL_STATUSES:
            return WATCH_EXIT[status]
        time.sleep(interval)


def _watch_progress(client: Client, backfill_id: int, interval: float) -> int:
    backfill = _poll(client, backfill_id, retry=False)
    started = time.monotonic()
    baseline = _finished(backfill)
    progress = Progress(
        TextColumn(f"backfill {backfill_id}"),
        TextColumn("[bold]{task.fields[status]:<9}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[failed]} failed"),
        TextColumn("{task.fields[rate]}"),
        TextColumn("ETA {task.fields[eta]}"),
        console=Console(stderr=True, highlight=False),
    )

    def update() -> None:
        done = _finished(backfill)
        total = int(backfill.get("transfer_runs_total") or 0)
        elapsed = time.monotonic() - started
        rate = (done - baseline) / elapsed if elapsed > 0 else 0.0
        remaining = max(total - done, 0)
        if str(backfill.get("status")) in FINAL_BACKFILL_STATUSES or remaining == 0:
            eta = "0:00"
        elif rate > 0:
            eta = _duration(remaining / rate)
        else:
            eta = "?"
        progress.update(
            task,
            total=total,
            completed=done,
            status=backfill.get("status"),
            failed=backfill.get("transfer_runs_failed") or 0,
            rate=f"{rate:.1f} runs/s",
            eta=eta,
        )

    with progress:
        task = progress.add_task("", total=None, status="", failed=0, rate="", eta="?")
        update()
        while str(backfill.get("status")) not in FINAL_BACKFILL_STATUSES:
            time.sleep(interval)
            backfill = _poll(client, backfill_id, retry=True)
            update()
    status = str(backfill["status"])
    elapsed = time.monotonic() - started
    typer.echo(
        f"backfill {backfill_id} {status}: {backfill.get('transfer_runs_completed')} of "
        f"{backfill.get('transfer_runs_total')} runs completed, "
        f"{backfill.get('transfer_runs_failed')} failed (watched {elapsed:.1f} s)"
    )
    _error_report(backfill)
    return WATCH_EXIT[status]


# Transfer runs


@run_app.command("list")
def run_list(
    transfer: Annotated[int, typer.Option("--transfer", help="Transfer id.")],
    start: Annotated[
        str | None, typer.Option("--start", help="First data date (default: 30 days before --end).")
    ] = None,
    end: Annotated[
        str | None, typer.Option("--end", help="Last data date (default: today).")
    ] = None,
    issues_only: Annotated[
        bool, typer.Option("--issues-only", help="Only failed, cancelled and retried runs.")
    ] = False,
    sort: Annotated[SortField, typer.Option("--sort", help="Sort field.")] = SortField.data_date,
    direction: Annotated[
        SortDirection, typer.Option("--direction", help="Sort direction.")
    ] = SortDirection.DESC,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="Runs per page.")] = 100,
    offset: Annotated[int, typer.Option(min=0, help="Runs to skip.")] = 0,
    server: Server = None,
    api_key: ApiKey = None,
    team: Team = None,
    as_json: Json = False,
) -> None:
    """A transfer's runs whose data date is within --start..--end."""
    last = end or date.today().isoformat()
    first = start
    if first is None:
        try:
            first = (date.fromisoformat(last) - timedelta(days=30)).isoformat()
        except ValueError:
            first = last  # the server names the bad date
    with _client(server, api_key, team, as_json=as_json) as client:
        runs = client.list_runs(
            transfer,
            first,
            last,
            filter_issues_only=issues_only,
            sort_field=_SORT_FIELDS[sort],
            sort_direction="ASC" if direction is SortDirection.ASC else "DESC",
            limit=limit,
            offset=offset,
        )
    _show(
        runs,
        as_json=as_json,
        human=lambda: _rows(
            f"Runs of transfer {transfer}, {first}..{last}",
            ["id", "date", "status", "type", "attempt", "rows", "seconds", "message"],
            [
                [
                    r.get("id"),
                    r.get("data_date"),
                    r.get("status"),
                    r.get("type"),
                    f"{r.get('attempt')}/{r.get('max_attempts')}",
                    r.get("total_rows"),
                    None if r.get("total_duration") is None else f"{r['total_duration']:.2f}",
                    r.get("error") or r.get("message"),
                ]
                for r in runs
            ],
            "No runs in this range.",
        ),
    )


@run_app.command("get")
def run_get(
    run_id: Annotated[int, typer.Argument(help="Transfer run id.")],
    server: Server = None,
    api_key: ApiKey = None,
    team: Team = None,
    as_json: Json = False,
) -> None:
    """One run, with one line per attempt."""
    with _client(server, api_key, team, as_json=as_json) as client:
        run = client.get_run(run_id)

    def human() -> None:
        _details(
            f"Run {run.get('id')}",
            [
                (key, run.get(key))
                for key in (
                    "status",
                    "type",
                    "data_date",
                    "transfer_id",
                    "transfer_backfill_id",
                    "attempt",
                    "max_attempts",
                    "total_rows",
                    "total_duration",
                    "created_time",
                    "started_time",
                    "ended_time",
                    "next_attempt_time",
                    "message",
                    "error",
                )
            ],
        )
        details = run.get("query_details") or []
        _rows(
            "Attempts",
            ["attempt", "status", "rows", "seconds", "error"],
            [
                [
                    q.get("attempt"),
                    q.get("status"),
                    q.get("rows"),
                    q.get("duration"),
                    q.get("error_description"),
                ]
                for q in details
            ],
            "No attempts yet.",
        )

    _show(run, as_json=as_json, human=human)


# Transfers


@transfer_app.command("list")
def transfer_list(
    server: Server = None, api_key: ApiKey = None, team: Team = None, as_json: Json = False
) -> None:
    """The team's transfers."""
    with _client(server, api_key, team, as_json=as_json) as client:
        transfers = client.list_transfers()

    def latest(t: JsonObject) -> str | None:
        backfill = t.get("backfill")
        if not isinstance(backfill, dict):
            return None
        return f"{backfill.get('transfer_backfill_id')} {backfill.get('status')}"

    _show(
        transfers,
        as_json=as_json,
        human=lambda: _rows(
            "Transfers",
            ["id", "name", "state", "source", "destination", "schedule", "next run", "backfill"],
            [
                [
                    t.get("dwh_transfer_id", t.get("transfer_id")),
                    t.get("display_name"),
                    t.get("state"),
                    (t.get("data_source") or {}).get("data_source_id"),
                    (t.get("destination") or {}).get("display_name"),
                    t.get("schedule"),
                    _when(t.get("run_date")),
                    latest(t),
                ]
                for t in transfers
            ],
            "No transfers.",
        ),
    )


@transfer_app.command("get")
def transfer_get(
    transfer_id: Annotated[int, typer.Argument(help="Transfer id.")],
    server: Server = None,
    api_key: ApiKey = None,
    team: Team = None,
    as_json: Json = False,
) -> None:
    """One transfer's configuration."""
    with _client(server, api_key, team, as_json=as_json) as client:
        transfer = client.get_transfer(transfer_id)
    source = transfer.get("data_source") or {}
    _show(
        transfer,
        as_json=as_json,
        human=lambda: _details(
            f"Transfer {transfer.get('transfer_id')}",
            [
                ("name", transfer.get("display_name")),
                ("state", transfer.get("state")),
                ("source", source.get("data_source_id") if isinstance(source, dict) else source),
                ("source config", transfer.get("source_config")),
                ("destination", transfer.get("destination_id")),
                ("table", transfer.get("table")),
                ("refresh mode", transfer.get("refresh_mode")),
                ("schedule", transfer.get("schedule")),
                ("next run", transfer.get("next_run_time")),
                ("max parallel runs", transfer.get("max_parallel_runs")),
                ("created", transfer.get("created_time")),
            ],
        ),
    )


def _transfer_state(
    transfer_id: int,
    state: str,
    server: str | None,
    api_key: str | None,
    team: int | None,
    as_json: bool,
) -> None:
    with _client(server, api_key, team, as_json=as_json) as client:
        answer = client.set_transfer_state(transfer_id, "pause" if state == "pause" else "unpause")
    payload = {"transfer_id": transfer_id, **answer}
    _show(
        payload,
        as_json=as_json,
        human=lambda: typer.echo(f"transfer {transfer_id} is {answer.get('state')}"),
    )


@transfer_app.command("pause")
def transfer_pause(
    transfer_id: Annotated[int, typer.Argument(help="Transfer id.")],
    server: Server = None,
    api_key: ApiKey = None,
    team: Team = None,
    as_json: Json = False,
) -> None:
    """Pause a transfer: its runs wait and new backfills are refused."""
    _transfer_state(transfer_id, "pause", server, api_key, team, as_json)


@transfer_app.command("unpause")
def transfer_unpause(
    transfer_id: Annotated[int, typer.Argument(help="Transfer id.")],
    server: Server = None,
    api_key: ApiKey = None,
    team: Team = None,
    as_json: Json = False,
) -> None:
    """Make a paused transfer active again."""
    _transfer_state(transfer_id, "unpause", server, api_key, team, as_json)


@transfer_app.command("delete")
def transfer_delete(
    transfer_id: Annotated[int, typer.Argument(help="Transfer id.")],
    yes: Yes = False,
    server: Server = None,
    api_key: ApiKey = None,
    team: Team = None,
    as_json: Json = False,
) -> None:
    """Soft-delete a transfer: unfinished backfills are cancelled, history stays readable."""
    with _client(server, api_key, team, as_json=as_json) as client:
        _confirm(f"Delete transfer {transfer_id}?", yes)
        client.delete_transfer(transfer_id)
    payload = {"transfer_id": transfer_id, "deleted": True}
    _show(payload, as_json=as_json, human=lambda: typer.echo(f"deleted transfer {transfer_id}"))


# Destinations


@destination_app.command("list")
def destination_list(
    server: Server = None, api_key: ApiKey = None, team: Team = None, as_json: Json = False
) -> None:
    """The team's destinations."""
    with _client(server, api_key, team, as_json=as_json) as client:
        destinations = client.list_destinations()
    _show(
        destinations,
        as_json=as_json,
        human=lambda: _rows(
            "Destinations",
            ["id", "name", "type"],
            [[d.get("id"), d.get("display_name"), d.get("type")] for d in destinations],
            "No destinations.",
        ),
    )


@destination_app.command("get")
def destination_get(
    destination_id: Annotated[int, typer.Argument(help="Destination id.")],
    server: Server = None,
    api_key: ApiKey = None,
    team: Team = None,
    as_json: Json = False,
) -> None:
    """One destination and its settings (passwords are never shown)."""
    with _client(server, api_key, team, as_json=as_json) as client:
        destination = client.get_destination(destination_id)
    _show(
        destination,
        as_json=as_json,
        human=lambda: _details(
            f"Destination {destination.get('id', destination_id)}",
            [
                ("name", destination.get("display_name")),
                ("type", destination.get("type")),
                *[(f"fields.{k}", v) for k, v in (destination.get("fields") or {}).items()],
            ],
        ),
    )


@destination_app.command("usage")
def destination_usage(
    destination_id: Annotated[int, typer.Argument(help="Destination id.")],
    server: Server = None,
    api_key: ApiKey = None,
    team: Team = None,
    as_json: Json = False,
) -> None:
    """The transfers that load into a destination."""
    with _client(server, api_key, team, as_json=as_json) as client:
        usage = client.destination_usage(destination_id)
    _show(
        usage,
        as_json=as_json,
        human=lambda: _rows(
            f"Transfers loading into destination {destination_id}",
            ["transfer", "name"],
            [[t.get("transfer_id"), t.get("transfer_name")] for t in usage.get("transfers") or []],
            f"Destination {destination_id} is not used by any transfer.",
        ),
    )


@destination_app.command("delete")
def destination_delete(
    destination_id: Annotated[int, typer.Argument(help="Destination id.")],
    yes: Yes = False,
    server: Server = None,
    api_key: ApiKey = None,
    team: Team = None,
    as_json: Json = False,
) -> None:
    """Delete a destination (refused while a transfer loads into it)."""
    with _client(server, api_key, team, as_json=as_json) as client:
        _confirm(f"Delete destination {destination_id}?", yes)
        client.delete_destination(destination_id)
    payload = {"destination_id": destination_id, "deleted": True}
    _show(
        payload, as_json=as_json, human=lambda: typer.echo(f"deleted destination {destination_id}")
    )


# Login


def login(
    server: Server = None,
    api_key: ApiKey = None,
    team: Team = None,
    verify: Annotated[
        bool,
        typer.Option("--verify/--no-verify", help="Check the key and team with the server."),
    ] = True,
    as_json: Json = False,
) -> None:
    """Save the server, API key and team for later commands (config file, mode 0600)."""
    path = config_path()
    try:
        conn = resolve(server, api_key, team)
        key = conn.api_key
        if not key:
            if not sys.stdin.isatty():
                raise _cli_error(
                    "API_KEY_REQUIRED", "Pass --api-key (or set OPENDTS_API_KEY) to log in."
                )
            key = typer.prompt("API key", hide_input=True)
        if conn.team is None:
            raise _cli_error("TEAM_REQUIRED", "Pass --team (or set OPENDTS_TEAM) to log in.")
        if verify:
            with Client(conn.server, key, team=conn.team) as client:
                client.list_incomplete_backfills()
        settings = {**read_config(path), "server": conn.server, "api_key": key, "team": conn.team}
        try:
            write_config(path, settings)
        except OSError as exc:
            raise _cli_error("CONFIG_INVALID", f"Cannot write {path}: {exc}.") from exc
    except ApiError as exc:
        _fail(exc, as_json=as_json)
    payload = {"server": conn.server, "team": conn.team, "config": str(path)}
    _show(
        payload,
        as_json=as_json,
        human=lambda: typer.echo(
            f"logged in to {conn.server} as team {conn.team}; saved to {path}"
        ),
    )
