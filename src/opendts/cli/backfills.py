"""``opendts backfill create|list|get|latest|cancel|watch`` against any opendts server."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

from opendts.cli.remote import command, details, rows, show, when
from opendts.client import FINAL_BACKFILL_STATUSES, ApiError, Client, JsonObject

app = typer.Typer(help="Backfills on an opendts server (over HTTP).", no_args_is_help=True)

#: Exit codes of ``backfill watch`` by final status (several backfills: the worst one's).
WATCH_EXIT = {"COMPLETED": 0, "FAILED": 1, "CANCELLED": 2}

#: Statuses a watched backfill may still leave.
ACTIVE = ("CREATED", "SCHEDULED", "RUNNING")

Interval = Annotated[
    float, typer.Option(min=0.05, help="Seconds between polls.", show_default=True)
]


def _backfill_details(backfill: JsonObject) -> None:
    details(
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
        rows(
            f"Failed dates of backfill {backfill.get('transfer_backfill_id')}",
            ["date", "error"],
            [[item.get("transfer_run_date"), item.get("error")] for item in report],
            "",
        )


@command(app, "create")
def backfill_create(
    client: Client,
    as_json: bool,
    transfer: Annotated[int, typer.Option("--transfer", help="Transfer id.")],
    start: Annotated[str, typer.Option("--start", help="First date, YYYY-MM-DD.")],
    end: Annotated[str, typer.Option("--end", help="Last date (inclusive), YYYY-MM-DD.")],
    watch: Annotated[bool, typer.Option("--watch", help="Then watch it until it ends.")] = False,
    interval: Interval = 0.5,
) -> int | None:
    """Backfill a transfer over a date range: one run per date.

    With --watch, follows it like 'backfill watch' (and exits as it does).
    """
    backfill = client.create_backfill(transfer, start, end)
    if not watch:
        show(backfill, as_json=as_json, human=lambda: _backfill_details(backfill))
        return None
    if not as_json:
        typer.echo(
            f"created backfill {backfill['transfer_backfill_id']} "
            f"({backfill['transfer_runs_total']} runs)"
        )
    return _watch(client, [backfill], as_json=as_json, interval=interval)


@command(app, "list")
def backfill_list(
    client: Client,
    as_json: bool,
    status: Annotated[
        str | None,
        typer.Option(
            help="'all', or statuses separated by commas (CREATED, SCHEDULED, RUNNING, "
            "COMPLETED, FAILED, CANCELLED) (default: the incomplete ones).",
            show_default=False,
        ),
    ] = None,
    transfer: Annotated[
        int | None, typer.Option("--transfer", help="Only this transfer's.", show_default=False)
    ] = None,
    limit: Annotated[
        int | None,
        typer.Option(min=1, max=1000, help="At most this many (default 100).", show_default=False),
    ] = None,
) -> None:
    """The team's backfills, newest first: the incomplete ones (CREATED, SCHEDULED, RUNNING,
    FAILED) unless --status, --transfer or --limit asks for others."""
    if status is None and transfer is None and limit is None:
        backfills = client.list_incomplete_backfills()
        title, empty = "Incomplete backfills", "No incomplete backfills."
    else:
        backfills = client.list_backfills(status=status, transfer_id=transfer, limit=limit)
        title, empty = "Backfills", "No backfills match."
    show(
        backfills,
        as_json=as_json,
        human=lambda: rows(
            title,
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
                    when(b.get("created_time")),
                ]
                for b in backfills
            ],
            empty,
        ),
    )


BackfillId = Annotated[int, typer.Argument(help="Backfill id.")]


@command(app, "get")
def backfill_get(client: Client, as_json: bool, backfill_id: BackfillId) -> None:
    """One backfill, any status, with its error report."""
    backfill = client.get_backfill(backfill_id)
    show(backfill, as_json=as_json, human=lambda: _backfill_details(backfill))


@command(app, "latest")
def backfill_latest(
    client: Client,
    as_json: bool,
    transfer: Annotated[int, typer.Option("--transfer", help="Transfer id.")],
) -> None:
    """A transfer's most recent backfill."""
    backfill = client.latest_backfill(transfer)
    show(backfill, as_json=as_json, human=lambda: _backfill_details(backfill))


@command(app, "cancel")
def backfill_cancel(client: Client, as_json: bool, backfill_id: BackfillId) -> None:
    """Cancel a backfill: queued runs are cancelled, executing runs finish."""
    backfill = client.cancel_backfill(backfill_id)
    show(backfill, as_json=as_json, human=lambda: _backfill_details(backfill))


@command(app, "watch")
def backfill_watch(
    client: Client,
    as_json: bool,
    backfill_ids: Annotated[
        list[int] | None,
        typer.Argument(
            help="Backfill ids (default: every backfill of the team still running).",
            show_default=False,
        ),
    ] = None,
    interval: Interval = 0.5,
) -> int:
    """Follow backfills until they end, one progress bar each (done/failed/total, rate, ETA).

    Exits 0 if every one COMPLETED, 1 if any FAILED, else 2 if any was CANCELLED.
    With --json, prints a backfill as one JSON line each time it changes.
    """
    if backfill_ids:
        first = [_poll(client, backfill_id, retry=False) for backfill_id in backfill_ids]
    else:
        first = [b for b in client.list_incomplete_backfills() if b.get("status") in ACTIVE]
        if not first:
            if not as_json:
                typer.echo("No backfill is running.")
            return 0
    return _watch(client, first, as_json=as_json, interval=interval)


# Watching


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


@dataclass
class _Watched:
    """One backfill being watched: its latest state and what its rate is measured from."""

    backfill: JsonObject
    started: float = field(default_factory=time.monotonic)
    baseline: int = field(init=False)
    task: TaskID | None = None

    def __post_init__(self) -> None:
        self.baseline = _finished(self.backfill)

    @property
    def id(self) -> int:
        return int(self.backfill["transfer_backfill_id"])

    @property
    def status(self) -> str:
        return str(self.backfill.get("status"))

    @property
    def final(self) -> bool:
        return self.status in FINAL_BACKFILL_STATUSES

    def progress(self) -> dict[str, Any]:
        """The progress bar's fields: runs done of the total, failed, rate and ETA."""
        done = _finished(self.backfill)
        total = int(self.backfill.get("transfer_runs_total") or 0)
        elapsed = time.monotonic() - self.started
        rate = (done - self.baseline) / elapsed if elapsed > 0 else 0.0
        remaining = max(total - done, 0)
        if self.final or remaining == 0:
            eta = "0:00"
        elif rate > 0:
            eta = _duration(remaining / rate)
        else:
            eta = "?"
        return {
            "total": total,
            "completed": done,
            "status": self.status,
            "failed": self.backfill.get("transfer_runs_failed") or 0,
            "rate": f"{rate:.1f} runs/s",
            "eta": eta,
        }


def exit_code(statuses: list[str]) -> int:
    """1 if any backfill FAILED, else 2 if any was CANCELLED, else 0."""
    return max((WATCH_EXIT[s] for s in statuses), key=lambda code: (code == 1, code), default=0)


def _watch(client: Client, first: list[JsonObject], *, as_json: bool, interval: float) -> int:
    """Poll the backfills until every one is final; the exit code for how they ended."""
    watched = [_Watched(backfill) for backfill in first]
    try:
        if as_json:
            _watch_lines(client, watched, interval)
        else:
            _watch_progress(client, watched, interval)
    except KeyboardInterrupt:
        ids = ", ".join(str(w.id) for w in watched if not w.final) or "none"
        typer.echo(f"stopped watching; the backfills go on (still running: {ids})", err=True)
        return 130
    return exit_code([w.status for w in watched])


def _print_line(value: Any) -> None:
    sys.stdout.write(json.dumps(value) + "\n")
    sys.stdout.flush()


def _watch_lines(client: Client, watched: list[_Watched], interval: float) -> None:
    for item in watched:
        _print_line(item.backfill)
    while not all(item.final for item in watched):
        time.sleep(interval)
        for item in watched:
            if item.final:
                continue
            latest = _poll(client, item.id, retry=True)
            if latest != item.backfill:
                item.backfill = latest
                _print_line(latest)


def _watch_progress(client: Client, watched: list[_Watched], interval: float) -> None:
    progress = Progress(
        TextColumn("backfill {task.fields[backfill_id]}"),
        TextColumn("[bold]{task.fields[status]:<9}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[failed]} failed"),
        TextColumn("{task.fields[rate]}"),
        TextColumn("ETA {task.fields[eta]}"),
        console=Console(stderr=True, highlight=False),
    )
    with progress:
        for item in watched:
            item.task = progress.add_task("", backfill_id=item.id, **item.progress())
        while not all(item.final for item in watched):
            time.sleep(interval)
            for item in watched:
                if item.final:
                    continue
                item.backfill = _poll(client, item.id, retry=True)
                assert item.task is not None
                progress.update(item.task, **item.progress())
    for item in watched:
        backfill = item.backfill
        typer.echo(
            f"backfill {item.id} {item.status}: {backfill.get('transfer_runs_completed')} of "
            f"{backfill.get('transfer_runs_total')} runs completed, "
            f"{backfill.get('transfer_runs_failed')} failed "
            f"(watched {time.monotonic() - item.started:.1f} s)"
        )
    for item in watched:
        _error_report(item.backfill)
