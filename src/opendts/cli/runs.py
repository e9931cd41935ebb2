"""``opendts run list|get``: a transfer's runs on any opendts server."""

from __future__ import annotations

from datetime import date, timedelta
from enum import StrEnum
from typing import Annotated, Literal

import typer

from opendts.cli.remote import command, details, rows, show
from opendts.client import Client

app = typer.Typer(help="Transfer runs on an opendts server (over HTTP).", no_args_is_help=True)


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


@command(app, "list")
def run_list(
    client: Client,
    as_json: bool,
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
) -> None:
    """A transfer's runs whose data date is within --start..--end."""
    last = end or date.today().isoformat()
    first = start
    if first is None:
        try:
            first = (date.fromisoformat(last) - timedelta(days=30)).isoformat()
        except ValueError:
            first = last  # the server names the bad date
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
    show(
        runs,
        as_json=as_json,
        human=lambda: rows(
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


@command(app, "get")
def run_get(
    client: Client,
    as_json: bool,
    run_id: Annotated[int, typer.Argument(help="Transfer run id.")],
) -> None:
    """One run, with one line per attempt."""
    run = client.get_run(run_id)

    def human() -> None:
        details(
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
        attempts = run.get("query_details") or []
        rows(
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
                for q in attempts
            ],
            "No attempts yet.",
        )

    show(run, as_json=as_json, human=human)
