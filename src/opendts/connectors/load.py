"""The ``load`` run kind: read one date from a transfer's source, write it to its destination.

The transfer row names the source (settings in ``config``, credentials sealed in
``source_secrets``), the destination, the table, the date column and the refresh mode. They
are read at every run, so an edited transfer or destination takes effect at the next run.

A day flows in bounded batches: the source's batches are checked and kept by a ``DaySpool``
(in memory up to a bound, beyond it in a private spool in the team's folder), then handed to
the destination as one ``pa.RecordBatchReader`` with the day's unified schema.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from opendts.connections.models import DataSourceConnection as ConnectionRow
from opendts.connectors import credentials, registry
from opendts.connectors.base import (
    ConfigError,
    Destination,
    ReadRequest,
    RefreshMode,
    Source,
    WriteRequest,
    parse_settings,
)
from opendts.connectors.boundary import Boundary
from opendts.connectors.spool import DaySpool
from opendts.destinations.models import Destination as DestinationRow
from opendts.engine.errors import TerminalRunError, TransientRunError
from opendts.engine.kinds import RunContext, RunResult
from opendts.engine.processes import Job, RunProcesses, without_secret
from opendts.kit.db import Database
from opendts.kit.secrets import SecretBox, SecretKeyError
from opendts.transfers.models import Transfer

KIND = "load"


@dataclass(frozen=True, slots=True)
class LoadSpec:
    """Everything a run of a data transfer needs, parsed and decrypted."""

    source: Source
    source_settings: Any
    destination: Destination
    destination_settings: Any
    destination_name: str
    table: str
    date_column: str
    mode: RefreshMode
    accounts: tuple[str, ...]


def account_ids(accounts_json: str) -> tuple[str, ...]:
    """``TransferAccount.account_id`` values of a transfer's stored accounts."""
    out = []
    for item in json.loads(accounts_json or "[]"):
        if isinstance(item, dict) and item.get("account_id") not in (None, ""):
            out.append(str(item["account_id"]))
    return tuple(out)


class LoadKind:
    """Reads a day from the source and replaces it in the destination."""

    name = KIND

    def __init__(
        self,
        db: Database,
        box: Callable[[], SecretBox],
        boundary: Callable[[int], Boundary],
        processes: RunProcesses | None = None,
    ) -> None:
        self._db = db
        self._box = box
        self._boundary = boundary
        #: Where the day is loaded: in run processes (the engine's), or in this thread.
        self._processes = processes
        self._cache: dict[tuple[Any, ...], LoadSpec] = {}

    def prepare(self, config: dict[str, Any]) -> Any:
        return config  # the API validates a data transfer's settings when it is saved

    def _spec(self, transfer_id: int, boundary: Boundary) -> LoadSpec:
        with self._db.session() as session:
            row = session.execute(
                select(
                    Transfer.source,
                    Transfer.config,
                    Transfer.source_secrets,
                    Transfer.accounts,
                    Transfer.table_name,
                    Transfer.date_column,
                    Transfer.refresh_mode,
                    Transfer.data_source_connection_id,
                    ConnectionRow.fields.label("connection_fields"),
                    ConnectionRow.secrets.label("connection_secrets"),
                    ConnectionRow.deleted_at.label("connection_deleted_at"),
                    DestinationRow.type,
                    DestinationRow.fields,
                    DestinationRow.secrets,
                    DestinationRow.deleted_at,
                    DestinationRow.display_name,
                )
                .join(DestinationRow, DestinationRow.id == Transfer.destination_id, isouter=True)
                .join(
                    ConnectionRow,
                    ConnectionRow.id == Transfer.data_source_connection_id,
                    isouter=True,
                )
                .where(Transfer.id == transfer_id)
            ).one_or_none()
        if row is None:
            raise TerminalRunError("The transfer no longer exists.")
        if row.source is None or row.type is None or row.table_name is None:
            raise TerminalRunError(
                "This transfer has no source, destination or table: set them on the transfer."
            )
        if row.deleted_at is not None:
            raise TerminalRunError(
                f"The destination {row.display_name!r} was deleted: point the transfer at "
                "another destination."
            )
        key = (*tuple(row), boundary)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        try:
            source = registry.get_source(row.source)
            destination = registry.get_destination(row.type)
        except registry.UnknownConnector as exc:
            raise TerminalRunError(f"{exc}. Install the connector or edit the transfer.") from None
        if row.data_source_connection_id is not None and (
            row.connection_secrets is None or row.connection_deleted_at is not None
        ):
            raise TerminalRunError(
                "The transfer's data-source connection was deleted: give it another connection."
            )
        try:
            box = self._box()
            own_sealed = box.open(row.source_secrets)
            source_config = credentials.join(json.loads(row.config or "{}"), own_sealed)
            connection_sealed: dict[str, Any] = {}
            if row.data_source_connection_id is not None:
                connection_sealed = box.open(row.connection_secrets)
                base = credentials.join(json.loads(row.connection_fields), connection_sealed)
                source_config = credentials.merge(source.Settings, base, source_config)
            destination_sealed = box.open(row.secrets)
            destination_config = credentials.join(
                json.loads(row.fields or "{}"), destination_sealed
            )
        except SecretKeyError as exc:
            raise TerminalRunError(str(exc)) from None
        # Stored credentials go only where they were saved for, whatever changed since.
        for model, sealed, config, fix in (
            (source.Settings, own_sealed, source_config, "save the transfer again with them"),
            (
                source.Settings,
                connection_sealed,
                source_config,
                "point the transfer where its data-source connection points",
            ),
            (
                destination.Settings,
                destination_sealed,
                destination_config,
                "save the destination again with them",
            ),
        ):
            moved = credentials.moved(model, sealed, config)
            if moved:
                raise TerminalRunError(
                    f"Stored credentials were saved for another {moved[0]} than the settings "
                    f"now name, so they are not sent: {fix}."
                )
        try:
            source_settings = parse_settings(source.Settings, source_config, boundary)
        except ConfigError as exc:
            raise TerminalRunError(
                f"The transfer's {source.name} source settings are invalid ({exc}): fix them."
            ) from None
        try:
            destination_settings = parse_settings(
                destination.Settings, destination_config, boundary
            )
        except ConfigError as exc:
            raise TerminalRunError(
                f"The destination {row.display_name!r} has invalid settings ({exc}): fix them."
            ) from None
        spec = LoadSpec(
            source,
            source_settings,
            destination,
            destination_settings,
            row.display_name,
            row.table_name,
            row.date_column,
            RefreshMode(row.refresh_mode),
            account_ids(row.accounts),
        )
        if len(self._cache) > 256:
            self._cache.clear()
        self._cache[key] = spec
        return spec

    def execute(self, ctx: RunContext, settings: Any) -> RunResult:
        boundary = self._boundary(ctx.team_id)
        spec = self._spec(ctx.transfer_id, boundary)
        if self._processes is None:
            return load_day(spec, ctx, boundary)
        # The spec is resolved here (database, secret key); the day is loaded in a run
        # process, which gets the spec and the boundary, without the metadata URL's password.
        identity = None
        if boundary.metadata_url:
            from opendts.connectors import postgres_target

            identity = postgres_target._metadata_identity(boundary.metadata_url)
        job = Job(
            spec,
            without_secret(boundary),
            ctx.run_id,
            ctx.team_id,
            ctx.transfer_id,
            ctx.data_date,
            ctx.attempt,
            ctx.max_attempts,
            identity,
        )
        result: RunResult = self._processes.run(job, ctx.cancelled, _relog)
        return result


def _relog(level: int, name: str, message: str) -> None:
    """A run process's log record, logged here with the run's ids."""
    logging.getLogger(name).log(level, "%s", message)


def load_day(spec: LoadSpec, ctx: RunContext, boundary: Boundary) -> RunResult:
    """Read ``ctx.data_date`` from the spec's source and replace it in its destination.

    Needs neither the metadata database nor the secret key: ``spec`` carries everything.
    """
    began = time.perf_counter()
    request = ReadRequest(
        ctx.data_date, spec.accounts, ctx.attempt, ctx.cancelled, boundary=boundary
    )
    with DaySpool(boundary, spec.date_column, ctx.data_date) as day:
        batches = spec.source.read(spec.source_settings, request)
        try:
            for batch in batches:
                if ctx.cancelled.is_set():
                    raise TransientRunError("The run was interrupted while reading the source.")
                day.add(batch)
        finally:
            close = getattr(batches, "close", None)
            if close is not None:
                close()
        day.finish()
        read_seconds = time.perf_counter() - began
        if ctx.cancelled.is_set():
            raise TransientRunError("The run was interrupted before writing.")
        rows = spec.destination.write(
            spec.destination_settings,
            WriteRequest(
                spec.table,
                ctx.data_date,
                spec.date_column,
                spec.mode,
                ctx.cancelled,
                boundary=boundary,
            ),
            day.reader(),
        )
    write_seconds = time.perf_counter() - began - read_seconds
    verb = {
        RefreshMode.REPLACE: f"replaced {ctx.data_date} in",
        RefreshMode.APPEND: "appended to",
        RefreshMode.OVERWRITE: "overwrote",
    }[spec.mode]
    return RunResult(
        rows,
        f"Loaded {rows:,} rows from {spec.source.title}: {verb} table {spec.table!r} of "
        f"destination {spec.destination_name!r} (read {read_seconds:.2f} s, "
        f"write {write_seconds:.2f} s).",
    )
