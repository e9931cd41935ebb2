"""``opendts transfer …``: transfers on any opendts server."""

from __future__ import annotations

from typing import Annotated, Literal

import typer

from opendts.cli.remote import JsonFile, Yes, command, confirm, details, read_body, rows, show, when
from opendts.client import Client, JsonObject

app = typer.Typer(help="Transfers on an opendts server (over HTTP).", no_args_is_help=True)

TransferId = Annotated[int, typer.Argument(help="Transfer id.")]
TransferState = Literal["pause", "unpause"]


@command(app, "list")
def transfer_list(client: Client, as_json: bool) -> None:
    """The team's transfers."""
    transfers = client.list_transfers()

    def latest(t: JsonObject) -> str | None:
        backfill = t.get("backfill")
        if not isinstance(backfill, dict):
            return None
        return f"{backfill.get('transfer_backfill_id')} {backfill.get('status')}"

    show(
        transfers,
        as_json=as_json,
        human=lambda: rows(
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
                    when(t.get("run_date")),
                    latest(t),
                ]
                for t in transfers
            ],
            "No transfers.",
        ),
    )


@command(app, "get")
def transfer_get(
    client: Client,
    as_json: bool,
    transfer_id: TransferId,
) -> None:
    """One transfer's configuration."""
    transfer = client.get_transfer(transfer_id)
    source = transfer.get("data_source") or {}
    show(
        transfer,
        as_json=as_json,
        human=lambda: details(
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


def _set_state(client: Client, as_json: bool, transfer_id: int, state: TransferState) -> None:
    answer = client.set_transfer_state(transfer_id, state)
    payload = {"transfer_id": transfer_id, **answer}
    show(
        payload,
        as_json=as_json,
        human=lambda: typer.echo(f"transfer {transfer_id} is {answer.get('state')}"),
    )


@command(app, "pause")
def transfer_pause(
    client: Client,
    as_json: bool,
    transfer_id: TransferId,
) -> None:
    """Pause a transfer: its runs wait and new backfills are refused."""
    _set_state(client, as_json, transfer_id, "pause")


@command(app, "unpause")
def transfer_unpause(
    client: Client,
    as_json: bool,
    transfer_id: TransferId,
) -> None:
    """Make a paused transfer active again."""
    _set_state(client, as_json, transfer_id, "unpause")


@command(app, "delete")
def transfer_delete(
    client: Client,
    as_json: bool,
    transfer_id: TransferId,
    yes: Yes = False,
) -> None:
    """Soft-delete a transfer: unfinished backfills are cancelled, history stays readable."""
    confirm(f"Delete transfer {transfer_id}?", yes)
    client.delete_transfer(transfer_id)
    payload = {"transfer_id": transfer_id, "deleted": True}
    show(payload, as_json=as_json, human=lambda: typer.echo(f"deleted transfer {transfer_id}"))


# Destinations


@command(app, "create")
def transfer_create(client: Client, as_json: bool, file: JsonFile) -> None:
    """Create a transfer from a JSON file (the API's TransferConfigurationRequest).

    Example: {"display_name": "Ads", "data_source_id": "demo", "destination_id": 1,
    "table": "ads", "source_config": {"rows_per_day": 100}}
    """
    created = client.create_transfer(read_body(file, as_json=as_json))
    show(
        created,
        as_json=as_json,
        human=lambda: typer.echo(
            f"created transfer {created.get('transfer_id')} ({created.get('transfer_name')})"
        ),
    )


@command(app, "update")
def transfer_update(client: Client, as_json: bool, transfer_id: TransferId, file: JsonFile) -> None:
    """Replace a transfer's configuration with a JSON file's (saved credentials are kept)."""
    updated = client.update_transfer(transfer_id, read_body(file, as_json=as_json))
    show(updated, as_json=as_json, human=lambda: typer.echo(f"updated transfer {transfer_id}"))


@command(app, "validate")
def transfer_validate(
    client: Client,
    as_json: bool,
    file: JsonFile,
    transfer: Annotated[
        int | None,
        typer.Option(
            "--transfer", help="Validate as an update of this transfer.", show_default=False
        ),
    ] = None,
) -> int:
    """Check a transfer configuration without saving it; exit 1 if it is not valid."""
    answer = client.validate_transfer(read_body(file, as_json=as_json), transfer_id=transfer)
    errors: list[JsonObject] = answer.get("errors") or []

    def human() -> None:
        if answer.get("is_valid"):
            typer.echo("valid")
            return
        rows(
            "Not valid",
            ["field", "code", "message"],
            [[e.get("field_id"), e.get("error_code"), e.get("message")] for e in errors],
            "",
        )

    show(answer, as_json=as_json, human=human)
    return 0 if answer.get("is_valid") else 1


@command(app, "sources")
def transfer_sources(client: Client, as_json: bool) -> None:
    """The source connectors installed on the server."""
    answer = client.available_sources()
    sources: list[JsonObject] = answer.get("data_sources") or []
    show(
        answer,
        as_json=as_json,
        human=lambda: rows(
            "Sources",
            ["source", "settings", "name"],
            [
                [
                    s.get("data_source_id"),
                    ", ".join(str(x.get("id")) for x in s.get("settings") or []),
                    s.get("name"),
                ]
                for s in sources
            ],
            "No sources installed.",
        ),
    )
