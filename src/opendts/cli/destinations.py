"""``opendts destination …``: destinations on any opendts server."""

from __future__ import annotations

from typing import Annotated

import typer

from opendts.cli.remote import JsonFile, Yes, command, confirm, details, read_body, rows, show
from opendts.client import Client

app = typer.Typer(help="Destinations on an opendts server (over HTTP).", no_args_is_help=True)

DestinationId = Annotated[int, typer.Argument(help="Destination id.")]


@command(app, "list")
def destination_list(client: Client, as_json: bool) -> None:
    """The team's destinations."""
    destinations = client.list_destinations()
    show(
        destinations,
        as_json=as_json,
        human=lambda: rows(
            "Destinations",
            ["id", "name", "type"],
            [[d.get("id"), d.get("display_name"), d.get("type")] for d in destinations],
            "No destinations.",
        ),
    )


@command(app, "get")
def destination_get(
    client: Client,
    as_json: bool,
    destination_id: DestinationId,
) -> None:
    """One destination and its settings (passwords are never shown)."""
    destination = client.get_destination(destination_id)
    show(
        destination,
        as_json=as_json,
        human=lambda: details(
            f"Destination {destination.get('id', destination_id)}",
            [
                ("name", destination.get("display_name")),
                ("type", destination.get("type")),
                *[(f"fields.{k}", v) for k, v in (destination.get("fields") or {}).items()],
            ],
        ),
    )


@command(app, "usage")
def destination_usage(
    client: Client,
    as_json: bool,
    destination_id: DestinationId,
) -> None:
    """The transfers that load into a destination."""
    usage = client.destination_usage(destination_id)
    show(
        usage,
        as_json=as_json,
        human=lambda: rows(
            f"Transfers loading into destination {destination_id}",
            ["transfer", "name"],
            [[t.get("transfer_id"), t.get("transfer_name")] for t in usage.get("transfers") or []],
            f"Destination {destination_id} is not used by any transfer.",
        ),
    )


@command(app, "delete")
def destination_delete(
    client: Client,
    as_json: bool,
    destination_id: DestinationId,
    yes: Yes = False,
) -> None:
    """Delete a destination (refused while a transfer loads into it)."""
    confirm(f"Delete destination {destination_id}?", yes)
    client.delete_destination(destination_id)
    payload = {"destination_id": destination_id, "deleted": True}
    show(
        payload, as_json=as_json, human=lambda: typer.echo(f"deleted destination {destination_id}")
    )


@command(app, "create")
def destination_create(client: Client, as_json: bool, file: JsonFile) -> None:
    """Create a destination from a JSON file: {"type", "display_name", "fields"}.

    Example: {"type": "postgresql", "display_name": "Warehouse", "fields": {"host":
    "db.example.com", "database": "analytics", "user": "loader", "password": "..."}}
    """
    created = client.create_destination(read_body(file, as_json=as_json))
    show(
        created,
        as_json=as_json,
        human=lambda: typer.echo(
            f"created destination {created.get('id')} ({created.get('display_name')})"
        ),
    )


@command(app, "update")
def destination_update(
    client: Client, as_json: bool, destination_id: DestinationId, file: JsonFile
) -> None:
    """Change a destination's name or settings (a password left out is kept)."""
    updated = client.update_destination(destination_id, read_body(file, as_json=as_json))
    show(
        updated, as_json=as_json, human=lambda: typer.echo(f"updated destination {destination_id}")
    )


@command(app, "test")
def destination_test(client: Client, as_json: bool, file: JsonFile) -> int:
    """Try to connect with a destination's settings, without saving them; exit 1 if it fails.

    The file holds {"type", "fields"}, or {"destination_id", ...} to test a saved destination
    with its stored password.
    """
    answer = client.test_destination_connection(read_body(file, as_json=as_json))
    ok = bool(answer.get("success"))
    show(
        answer,
        as_json=as_json,
        human=lambda: typer.echo(
            "connection succeeded" if ok else f"connection failed: {answer.get('error')}"
        ),
    )
    return 0 if ok else 1
