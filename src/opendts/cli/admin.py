"""``opendts admin``: scriptable administration (every command prints JSON with ``--json``)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer

from opendts.auth.permissions import ALL_SCOPES, Role
from opendts.cli.runtime import admin_session, emit, fail, settings_from

if TYPE_CHECKING:
    from opendts.transfers.models import Transfer, TransferState

# The domain (SQLAlchemy models and services) is imported by each command, not here: every
# ``opendts`` command loads this module, and the remote ones never touch the database.

app = typer.Typer(help="Administer teams, users, API keys and transfers.", no_args_is_help=True)
team_app = typer.Typer(help="Teams.", no_args_is_help=True)
user_app = typer.Typer(help="Users and their roles.", no_args_is_help=True)
key_app = typer.Typer(help="API keys.", no_args_is_help=True)
transfer_app = typer.Typer(help="Transfers (until the transfers API lands).", no_args_is_help=True)
app.add_typer(team_app, name="team")
app.add_typer(user_app, name="user")
app.add_typer(key_app, name="key")
app.add_typer(transfer_app, name="transfer")

Json = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
ALL_SCOPE_NAMES = [scope.value for scope in ALL_SCOPES]


@app.command()
def demo(ctx: typer.Context, as_json: Json = False) -> None:
    """Create a demo team with an admin user, an all-scopes API key and a demo transfer."""
    from opendts.teams.demo import create_demo

    with admin_session(ctx, as_json=as_json) as session:
        account = create_demo(session, settings_from(ctx))
    emit(
        account.as_dict(),
        as_json=as_json,
        human=lambda: (
            f"team {account.team_id}, user {account.user_id}, transfer {account.transfer_id}\n"
            f"API key (shown once): {account.api_key}\n"
            f"DuckDB warehouse (its own file): {account.warehouse}"
        ),
    )


@team_app.command("create")
def team_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Option(help="Team name.")],
    as_json: Json = False,
) -> None:
    """Create a team."""
    from opendts.teams import service as teams

    with admin_session(ctx, as_json=as_json) as session:
        team = teams.create_team(session, name)
        payload = {"team_id": team.id, "name": team.name}
    emit(payload, as_json=as_json, human=lambda: f"created team {payload['team_id']}")


@user_app.command("create")
def user_create(
    ctx: typer.Context,
    email: Annotated[str, typer.Option(help="Unique email address.")],
    team: Annotated[int | None, typer.Option(help="Add the user to this team.")] = None,
    role: Annotated[Role, typer.Option(help="Role in --team.")] = Role.VIEWER,
    name: Annotated[str, typer.Option(help="Display name.")] = "",
    as_json: Json = False,
) -> None:
    """Create a user, optionally as a member of a team with a role."""
    from opendts.teams import service as teams

    with admin_session(ctx, as_json=as_json) as session:
        user = teams.create_user(session, email, name)
        if team is not None:
            teams.set_role(session, team, user.id, role)
        payload = {
            "user_id": user.id,
            "email": user.email,
            "team_id": team,
            "role": role.value if team is not None else None,
        }
    emit(payload, as_json=as_json, human=lambda: f"created user {payload['user_id']}")


@user_app.command("set-role")
def user_set_role(
    ctx: typer.Context,
    user: Annotated[int, typer.Option(help="User id.")],
    team: Annotated[int, typer.Option(help="Team id.")],
    role: Annotated[Role, typer.Option(help="New role.")],
    as_json: Json = False,
) -> None:
    """Add a user to a team, or change their role there."""
    from opendts.teams import service as teams

    with admin_session(ctx, as_json=as_json) as session:
        teams.set_role(session, team, user, role)
    payload = {"user_id": user, "team_id": team, "role": role.value}
    emit(payload, as_json=as_json, human=lambda: f"user {user} is {role.value} in team {team}")


@key_app.command("create")
def key_create(
    ctx: typer.Context,
    user: Annotated[int, typer.Option(help="Owner's user id.")],
    scope: Annotated[
        list[str] | None,
        typer.Option(help=f"Scope (repeatable): {', '.join(ALL_SCOPE_NAMES)}. Default: all."),
    ] = None,
    name: Annotated[str, typer.Option(help="A label for the key.")] = "",
    as_json: Json = False,
) -> None:
    """Create an API key; the key is printed once and stored only as a hash."""
    from opendts.auth.service import issue_key

    # Accept both `--scope a --scope b` and `--scope a,b`.
    scopes = tuple(part.strip() for item in (scope or ALL_SCOPE_NAMES) for part in item.split(","))
    with admin_session(ctx, as_json=as_json) as session:
        issued = issue_key(session, user, scopes, name)
    payload = {
        "key_id": issued.id,
        "user_id": issued.user_id,
        "scopes": list(issued.scopes),
        "api_key": issued.plaintext,
    }
    emit(payload, as_json=as_json, human=lambda: f"API key (shown once): {issued.plaintext}")


@key_app.command("revoke")
def key_revoke(
    ctx: typer.Context,
    key_id: Annotated[int, typer.Argument(help="The key's id (from 'key create').")],
    as_json: Json = False,
) -> None:
    """Revoke an API key; it stops working at once."""
    from opendts.auth.service import revoke_key

    with admin_session(ctx, as_json=as_json) as session:
        key = revoke_key(session, key_id)
        payload = {"key_id": key.id, "revoked": True}
    emit(payload, as_json=as_json, human=lambda: f"revoked key {key_id}")


@transfer_app.command("create")
def transfer_create(
    ctx: typer.Context,
    team: Annotated[int, typer.Option(help="Team id.")],
    name: Annotated[str, typer.Option(help="Display name.")],
    max_parallel_runs: Annotated[int, typer.Option(min=1, help="Runs at a time.")] = 1,
    kind: Annotated[str, typer.Option(help="Run kind: noop or fault.")] = "noop",
    config: Annotated[
        str | None, typer.Option(help="Run kind settings as JSON, e.g. '{\"latency_ms\": 50}'.")
    ] = None,
    as_json: Json = False,
) -> None:
    """Create a transfer in a team."""
    from opendts.transfers import service as transfers

    settings = _json_config(config, as_json)
    with admin_session(ctx, as_json=as_json) as session:
        transfer = transfers.create(
            session, team, name, max_parallel_runs=max_parallel_runs, kind=kind, config=settings
        )
        payload = _transfer_payload(transfer)
    emit(payload, as_json=as_json, human=lambda: f"created transfer {payload['transfer_id']}")


@transfer_app.command("update")
def transfer_update(
    ctx: typer.Context,
    transfer_id: Annotated[int, typer.Argument()],
    max_parallel_runs: Annotated[
        int | None, typer.Option(min=1, help="Runs of this transfer at a time.")
    ] = None,
    kind: Annotated[str | None, typer.Option(help="Run kind: noop or fault.")] = None,
    config: Annotated[str | None, typer.Option(help="Run kind settings as JSON.")] = None,
    as_json: Json = False,
) -> None:
    """Change a transfer's parallelism, run kind or settings."""
    from opendts.transfers import service as transfers

    settings = _json_config(config, as_json) if config is not None else None
    with admin_session(ctx, as_json=as_json) as session:
        transfer = transfers.update(
            session, transfer_id, max_parallel_runs=max_parallel_runs, kind=kind, config=settings
        )
        payload = _transfer_payload(transfer)
    emit(payload, as_json=as_json, human=lambda: f"updated transfer {transfer_id}")


def _json_config(text: str | None, as_json: bool) -> dict[str, Any]:
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        fail("INVALID_PARAMETER", f"--config is not valid JSON: {exc}", as_json=as_json)
    if not isinstance(value, dict):
        fail("INVALID_PARAMETER", "--config must be a JSON object.", as_json=as_json)
    return value


def _transfer_payload(transfer: Transfer) -> dict[str, Any]:
    return {
        "transfer_id": transfer.id,
        "team_id": transfer.team_id,
        "state": transfer.state,
        "kind": transfer.kind,
        "config": json.loads(transfer.config),
        "max_parallel_runs": transfer.max_parallel_runs,
    }


def _set_state(ctx: typer.Context, transfer_id: int, state: TransferState, as_json: bool) -> None:
    from opendts.transfers import service as transfers

    with admin_session(ctx, as_json=as_json) as session:
        transfers.set_state(session, transfer_id, state)
    payload = {"transfer_id": transfer_id, "state": state.value}
    emit(payload, as_json=as_json, human=lambda: f"transfer {transfer_id} is {state.value}")


@transfer_app.command("pause")
def transfer_pause(
    ctx: typer.Context, transfer_id: Annotated[int, typer.Argument()], as_json: Json = False
) -> None:
    """Pause a transfer: new backfills are refused."""
    from opendts.transfers.models import TransferState

    _set_state(ctx, transfer_id, TransferState.PAUSED, as_json)


@transfer_app.command("unpause")
def transfer_unpause(
    ctx: typer.Context, transfer_id: Annotated[int, typer.Argument()], as_json: Json = False
) -> None:
    """Make a paused transfer active again."""
    from opendts.transfers.models import TransferState

    _set_state(ctx, transfer_id, TransferState.ACTIVE, as_json)


@transfer_app.command("delete")
def transfer_delete(
    ctx: typer.Context, transfer_id: Annotated[int, typer.Argument()], as_json: Json = False
) -> None:
    """Soft-delete a transfer: unfinished backfills are cancelled, history stays."""
    from opendts.transfers import service as transfers

    with admin_session(ctx, as_json=as_json) as session:
        transfers.soft_delete(session, transfer_id)
    payload = {"transfer_id": transfer_id, "deleted": True}
    emit(payload, as_json=as_json, human=lambda: f"deleted transfer {transfer_id}")
