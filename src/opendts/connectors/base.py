"""The data plane's two interfaces: a source reads one date, a destination replaces it.

A source yields ``pyarrow.RecordBatch``es for one date, of bounded size, without holding the
whole day. The loader (``connectors.load``) checks or adds the date column of each batch,
unifies their schemas and keeps them in bounded memory (``connectors.spool``), then hands the
day to a destination as one ``pyarrow.RecordBatchReader``, which the destination writes batch
by batch in one transaction according to the refresh mode. A day need not fit in memory.
Rows stay in Arrow end to end.

Connector settings are pydantic models (``extra="forbid"``): a bad config is rejected
when a transfer or destination is created, with the field named. Fields typed
``SecretStr`` are credentials: stored encrypted, never returned by the API, never logged.

Failures are ``TransientRunError`` (retried: timeouts, 5xx, 429, a locked file) or
``TerminalRunError`` (not retried: bad credentials, a 4xx, a type conflict), both from
``opendts.engine.errors``; anything else is classified by its exception class.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError, ValidationInfo

from opendts.connectors.boundary import Boundary
from opendts.engine.errors import TerminalRunError

if TYPE_CHECKING:  # pyarrow loads with the connectors, not with the API or the engine
    import pyarrow as pa


class ConnectorSettings(BaseModel):
    """Base of every connector's settings: unknown keys are errors, not silently dropped.

    Credentials are fields typed ``SecretStr``, plus what the class variables below declare
    (``opendts.connectors.credentials`` seals, masks and binds them).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Fields that say where the credentials are sent (host, port, ...): changing one needs the
    #: credentials again. ``None``: every field that is not a credential (the safe default).
    credential_location: ClassVar[tuple[str, ...] | None] = None
    #: URL fields with credentials inside, by kind: ``"http"`` (userinfo and query values; bound
    #: to scheme, host and port) or ``"database"`` (password and query values; bound to the rest).
    credential_urls: ClassVar[Mapping[str, str]] = {}
    #: String maps whose every value is a credential (request headers, query parameters).
    credential_maps: ClassVar[tuple[str, ...]] = ()


class ConfigError(ValueError):
    """A connector config that cannot work; ``problems`` are ``(field, message)`` pairs."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{name}: {message}" for name, message in problems))


def parse_settings(
    model: type[ConnectorSettings], config: dict[str, Any], boundary: Boundary | None = None
) -> Any:
    """``config`` validated by ``model``; ``ConfigError`` naming each bad field otherwise.

    ``boundary`` is the team's (``settings_boundary(info)`` in a validator): fields that name a
    path or a host are checked against it. Without one, only the shape is checked.
    """
    if not isinstance(config, dict):
        raise ConfigError([("config", "must be a JSON object")])
    try:
        return model.model_validate(config, context={"boundary": boundary})
    except ValidationError as exc:
        problems = [
            (".".join(str(p) for p in err["loc"]) or "config", _message(err))
            for err in exc.errors()
        ]
        raise ConfigError(problems) from None


def _message(err: Any) -> str:
    if err["type"] == "extra_forbidden":
        return "unknown field"
    if err["type"] == "missing":
        return "required"
    return str(err["msg"])


def settings_boundary(info: ValidationInfo) -> Boundary | None:
    """The boundary ``parse_settings`` validates against, inside a field validator."""
    context = info.context
    found = context.get("boundary") if isinstance(context, dict) else None
    return found if isinstance(found, Boundary) else None


def secret_fields(model: type[BaseModel]) -> frozenset[str]:
    """Names of the fields of ``model`` that hold credentials (typed ``SecretStr``)."""
    names = set()
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if annotation is SecretStr or (
            getattr(annotation, "__args__", None) and SecretStr in annotation.__args__  # type: ignore[union-attr]
        ):
            names.add(name)
    return frozenset(names)


def reveal(settings: BaseModel) -> dict[str, Any]:
    """A settings object as plain JSON values, secrets included (for storage, encrypted)."""
    out: dict[str, Any] = {}
    for name, value in settings.model_dump(mode="python").items():
        if isinstance(value, SecretStr):
            out[name] = value.get_secret_value()
        else:
            out[name] = value
    revealed: dict[str, Any] = _jsonable(out)
    return revealed


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, StrEnum):
        return value.value
    return value


class RefreshMode(StrEnum):
    """How a destination writes a date's rows."""

    #: Delete the date's rows, insert the new ones, in one transaction (idempotent).
    REPLACE = "replace"
    #: Insert only (an event log; re-running a date adds its rows again).
    APPEND = "append"
    #: Replace the whole table with the date's rows (a snapshot source).
    OVERWRITE = "overwrite"


@dataclass(frozen=True, slots=True)
class ReadRequest:
    """What a source is asked for."""

    data_date: date
    #: What the team's source may reach (paths, addresses).
    boundary: Boundary = field(kw_only=True)
    #: The transfer's accounts (``TransferAccount.account_id``); a source may ignore them.
    accounts: tuple[str, ...] = ()
    attempt: int = 1
    #: Set when the run must stop (timeout, shutdown): long reads should check it.
    cancelled: threading.Event = field(default_factory=threading.Event)


@dataclass(frozen=True, slots=True)
class WriteRequest:
    """What a destination is asked to do with one date's rows."""

    table: str
    data_date: date
    #: What the team's destination may reach (paths, addresses).
    boundary: Boundary = field(kw_only=True)
    #: The column that holds the date (present in every row written, of Arrow type date32).
    date_column: str = "date"
    mode: RefreshMode = RefreshMode.REPLACE
    cancelled: threading.Event = field(default_factory=threading.Event)


class Source(Protocol):
    """Reads one date. ``Settings`` validates the config; ``read`` yields record batches."""

    name: ClassVar[str]
    title: ClassVar[str]
    Settings: ClassVar[type[ConnectorSettings]]

    def read(self, settings: Any, request: ReadRequest) -> Iterator[pa.RecordBatch]:
        """The date's rows, in batches (an empty day yields nothing)."""
        ...


class Destination(Protocol):
    """Writes one date's rows into a table, atomically, per the refresh mode."""

    name: ClassVar[str]
    title: ClassVar[str]
    Settings: ClassVar[type[ConnectorSettings]]

    def write(self, settings: Any, request: WriteRequest, data: pa.RecordBatchReader) -> int:
        """Write the rows of ``data`` (already carrying the date column); returns their count.

        ``data.schema`` is the whole day's (every batch has it), known before the first batch
        is read; the batches are read once, one at a time, and must not be gathered. All of
        them are written in one transaction, or none: an exception raised while reading them
        (a cancelled run, a broken spool) rolls the write back. Creates the table on first
        load and adds new columns; raises ``TerminalRunError`` naming the column on a type
        conflict, ``TransientRunError`` when the store is busy. (The built-in destinations
        also accept a ``pa.Table``, see ``as_reader``.)
        """
        ...

    def test_connection(self, settings: Any, boundary: Boundary) -> None:
        """Raise ``TerminalRunError`` or ``TransientRunError`` saying what is wrong.

        Creates nothing and reveals nothing outside ``boundary``.
        """
        ...

    def read_table(self, settings: Any, table: str, boundary: Boundary) -> pa.Table:
        """Every row of ``table`` (tests, previews); an empty table if it does not exist."""
        ...


_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def check_identifier(value: str, what: str = "table") -> str:
    """A table or column name every destination can quote safely."""
    if not _IDENTIFIER.match(value):
        raise ValueError(
            f"{what} name {value!r} must start with a letter or _ and hold only letters, "
            "digits and _ (at most 63 characters)"
        )
    return value


def quote(identifier: str) -> str:
    """An SQL identifier, double-quoted."""
    return '"' + identifier.replace('"', '""') + '"'


class SchemaConflict(TerminalRunError):
    """The table's column has a type the source's values cannot be stored in."""

    def __init__(self, table: str, column: str, existing: str, incoming: str) -> None:
        super().__init__(
            f"Column {column!r} of table {table!r} is {existing}, but the source now sends "
            f"{incoming} values. Change the column's type in the warehouse (or point the "
            "transfer at a new table), then backfill again."
        )
        self.table = table
        self.column = column


#: Rows per batch when a table is written through ``as_reader``.
TABLE_BATCH_ROWS = 65_536


def as_reader(data: pa.RecordBatchReader | pa.Table) -> pa.RecordBatchReader:
    """``data`` as a reader; a table is read in slices of ``TABLE_BATCH_ROWS`` rows."""
    import pyarrow as pa

    if isinstance(data, pa.Table):
        return data.to_reader(max_chunksize=TABLE_BATCH_ROWS)
    return data


def write_names(request: WriteRequest, schema: pa.Schema) -> tuple[str, str]:
    """``(table, date column)`` of a write, after checking every name it will use.

    Raises ``TerminalRunError``: a bad table or column name, two columns that differ only
    in letter case (SQL folds them together), or rows without the date column.
    """
    try:
        table = check_identifier(request.table)
        date_column = check_identifier(request.date_column, "date column")
    except ValueError as exc:
        raise TerminalRunError(str(exc)) from None
    seen: dict[str, str] = {}
    for name in schema.names:
        if not name:
            raise TerminalRunError("The source sends a column without a name.")
        other = seen.setdefault(name.lower(), name)
        if other != name:
            raise TerminalRunError(
                f"The source sends both {other!r} and {name!r}: column names must differ in "
                "more than letter case."
            )
    if date_column not in schema.names:
        raise TerminalRunError(f"The rows to write have no date column {date_column!r}.")
    return table, date_column
