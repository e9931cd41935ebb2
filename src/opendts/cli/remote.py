"""What every command that talks to an opendts server over HTTP shares.

The server, API key and team come from ``--server``/``--api-key``/``--team``, else from
``OPENDTS_SERVER``/``OPENDTS_API_KEY``/``OPENDTS_TEAM``, else from the config file written by
``opendts login`` (``$OPENDTS_CONFIG`` or ``~/.config/opendts/config.json``, mode 0600).

Commands are registered with :func:`command`, which adds those three options and ``--json`` to
the command's own, opens the :class:`~opendts.client.Client` and turns every
:class:`~opendts.client.ApiError` into one line naming the server's code (exit 1).
"""

from __future__ import annotations

import inspect
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from opendts.client import DEFAULT_SERVER, ApiError, Client, JsonObject

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
JsonFile = Annotated[
    Path,
    typer.Option(
        "--file", "-f", help="A JSON file with the request body ('-' reads standard input)."
    ),
]

#: The options :func:`command` adds to every command, after the command's own.
_CONNECTION_OPTIONS = (
    inspect.Parameter("server", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Server),
    inspect.Parameter("api_key", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=ApiKey),
    inspect.Parameter("team", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Team),
    inspect.Parameter("as_json", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=Json),
)

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
        raise cli_error("CONFIG_INVALID", f"Cannot read the config file {path}: {exc}.") from exc
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise cli_error(
            "CONFIG_INVALID",
            f"The config file {path} is not valid JSON ({exc}). Fix it or run 'opendts login'.",
        ) from exc
    if not isinstance(value, dict):
        raise cli_error("CONFIG_INVALID", f"The config file {path} must hold a JSON object.")
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
    """Flags, else environment, else the config file, else defaults.

    The config file is read only for what flags and environment leave open, so a broken file
    does not stand in the way of a command that names everything itself.
    """
    server = server or os.environ.get("OPENDTS_SERVER") or None
    api_key = api_key or os.environ.get("OPENDTS_API_KEY") or None
    env_team = os.environ.get("OPENDTS_TEAM") or None
    team_value: Any = team if team is not None else env_team
    config: JsonObject = {}
    if server is None or api_key is None or team_value is None:
        config = read_config(config_path())
    if team_value is None:
        team_value = config.get("team")
    if team_value is not None:
        try:
            team_value = int(team_value)
        except (TypeError, ValueError):
            source = "OPENDTS_TEAM" if env_team is not None else f"'team' in {config_path()}"
            raise cli_error(
                "INVALID_SETTING", f"{source} must be an integer team id, got {team_value!r}."
            ) from None
    return Connection(
        server=server or str(config.get("server") or "") or DEFAULT_SERVER,
        api_key=api_key or config.get("api_key") or None,
        team=team_value,
    )


def cli_error(code: str, description: str) -> ApiError:
    return ApiError(0, code, code.replace("_", " ").capitalize(), description)


# Output


def fail(error: ApiError, *, as_json: bool) -> NoReturn:
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
def client_for(
    server: str | None, api_key: str | None, team: int | None, *, as_json: bool
) -> Iterator[Client]:
    """A client for the resolved connection; API errors become a clean exit 1."""
    try:
        conn = resolve(server, api_key, team)
        if not conn.api_key:
            raise cli_error(
                "API_KEY_REQUIRED",
                "No API key: pass --api-key, set OPENDTS_API_KEY or run 'opendts login'.",
            )
        if conn.team is None:
            raise cli_error(
                "TEAM_REQUIRED", "No team: pass --team, set OPENDTS_TEAM or run 'opendts login'."
            )
        with Client(conn.server, conn.api_key, team=conn.team) as client:
            yield client
    except ApiError as exc:
        fail(exc, as_json=as_json)


def console() -> Console:
    # Piped output is not cut at 80 columns; a terminal's own width is used as it is.
    wide = not sys.stdout.isatty() and "COLUMNS" not in os.environ
    return Console(highlight=False, width=160 if wide else None)


def when(value: Any) -> str | None:
    """An ISO timestamp to the second, for tables: ``2024-01-31 06:00:00``."""
    if not isinstance(value, str):
        return None
    return value.replace("T", " ").removesuffix("Z").split(".")[0]


def print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2))


def show(value: Any, *, as_json: bool, human: Callable[[], None]) -> None:
    if as_json:
        print_json(value)
    else:
        human()


def text_of(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def details(title: str, pairs: list[tuple[str, Any]]) -> None:
    table = Table(title=title, show_header=False, box=None, title_justify="left")
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key, value in pairs:
        table.add_row(key, escape(text_of(value)))
    console().print(table)


def rows(title: str, columns: list[str], cells: list[list[Any]], empty: str) -> None:
    """A table of ``cells`` (one list per row), or ``empty`` when there is none."""
    if not cells:
        console().print(empty)
        return
    table = Table(title=title, title_justify="left")
    texts = [[text_of(cell) for cell in row] for row in cells]
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
    console().print(table)


def confirm(question: str, yes: bool) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        raise cli_error("CONFIRMATION_REQUIRED", f"{question} Pass --yes to confirm.")
    if not typer.confirm(question, default=False):
        raise typer.Exit(1)


# Commands

#: A command's body: the connected client, whether to print JSON, then its own options.
Body = Callable[..., int | None]


def command(app: typer.Typer, name: str) -> Callable[[Body], Body]:
    """Register ``body(client, as_json, **options)`` as ``name`` on ``app``.

    The command takes ``body``'s own options (every parameter after ``client`` and ``as_json``,
    declared as typer would read them) plus ``--server``, ``--api-key``, ``--team`` and
    ``--json``. A body may return an exit code.
    """

    def register(body: Body) -> Body:
        signature = inspect.signature(body, eval_str=True)
        own = [p for p in signature.parameters.values() if p.name not in ("client", "as_json")]
        parameters = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own]
        parameters += _CONNECTION_OPTIONS

        def run(**options: Any) -> None:
            server, api_key, team = (
                options.pop("server"),
                options.pop("api_key"),
                options.pop("team"),
            )
            as_json = bool(options.pop("as_json"))
            with client_for(server, api_key, team, as_json=as_json) as client:
                code = body(client, as_json, **options)
            if code:
                raise typer.Exit(code)

        run.__name__ = body.__name__
        run.__doc__ = body.__doc__
        run.__signature__ = signature.replace(  # type: ignore[attr-defined]
            parameters=parameters, return_annotation=None
        )
        run.__annotations__ = {p.name: p.annotation for p in parameters}
        app.command(name)(run)
        return body

    return register


def read_body(path: Path, *, as_json: bool) -> JsonObject:
    """The JSON object in ``path`` (``-``: standard input); a clean error otherwise."""
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8")
    except OSError as exc:
        fail(
            cli_error("INVALID_FILE", f"Cannot read {path}: {exc.strerror or exc}."),
            as_json=as_json,
        )
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        fail(cli_error("INVALID_FILE", f"{path} is not valid JSON: {exc}."), as_json=as_json)
    if not isinstance(value, dict):
        fail(cli_error("INVALID_FILE", f"{path} must hold a JSON object."), as_json=as_json)
    return value


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
                raise cli_error(
                    "API_KEY_REQUIRED", "Pass --api-key (or set OPENDTS_API_KEY) to log in."
                )
            key = typer.prompt("API key", hide_input=True)
        if conn.team is None:
            raise cli_error("TEAM_REQUIRED", "Pass --team (or set OPENDTS_TEAM) to log in.")
        if verify:
            with Client(conn.server, key, team=conn.team) as client:
                client.list_incomplete_backfills()
        try:
            kept = read_config(path)  # other settings of the file survive a new login
        except ApiError:
            kept = {}  # a broken file is what login replaces
        settings = {**kept, "server": conn.server, "api_key": key, "team": conn.team}
        try:
            write_config(path, settings)
        except OSError as exc:
            raise cli_error("CONFIG_INVALID", f"Cannot write {path}: {exc}.") from exc
    except ApiError as exc:
        fail(exc, as_json=as_json)
    payload = {"server": conn.server, "team": conn.team, "config": str(path)}
    show(
        payload,
        as_json=as_json,
        human=lambda: typer.echo(
            f"logged in to {conn.server} as team {conn.team}; saved to {path}"
        ),
    )
