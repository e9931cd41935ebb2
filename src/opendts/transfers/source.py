"""A transfer's source settings: its own on top of its data-source connection's, credentials bound.

A transfer may name a connection (``data_source_connection_id``): the connection's settings
come first and the transfer's own go on top (maps such as ``headers`` merge key by key). The
connection's credentials are only sent where the connection points, so the transfer's settings
may not point elsewhere. The transfer's own credentials (left out of an update, or sent back as
``***``) are kept only while the settings point where they did, and are sealed with that place
(``opendts.connectors.credentials``), which a run checks again.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from opendts.connections import repository as connections
from opendts.connections.models import DataSourceConnection
from opendts.connections.service import settings_of
from opendts.connectors import credentials
from opendts.connectors.base import ConfigError, Source
from opendts.connectors.boundary import Boundary
from opendts.kit.secrets import SecretBox
from opendts.transfers.models import Transfer

Problem = tuple[str, str, str]  # (field_id, error_code, message)

FIELD = "data_source_connection_id"


@dataclass(frozen=True, slots=True)
class SourceSettings:
    """What a transfer stores of its source: plain settings, sealed credentials, connection."""

    plain: dict[str, Any]
    sealed: dict[str, Any]
    connection_id: str | None


def _code(message: str) -> str:
    if message == "required":
        return "isEmpty"
    return "unknown" if message == "unknown field" else "invalidValue"


def _problems(exc: ConfigError) -> list[Problem]:
    return [(f"source_config.{name}", _code(message), message) for name, message in exc.problems]


def _connection(
    session: Session,
    team_id: int,
    source: Source,
    payload: dict[str, Any],
    existing: Transfer | None,
) -> tuple[DataSourceConnection | None, Problem | None]:
    """The connection the transfer names (an update that leaves it out keeps the old one)."""
    kept = existing.data_source_connection_id if existing is not None else None
    value = payload.get(FIELD, kept)
    if value is None:
        return None, None
    if not isinstance(value, str):
        return None, (FIELD, "invalidType", "must be a UUID string")
    try:
        connection_id = str(uuid.UUID(value.strip()))
    except ValueError:
        return None, (FIELD, "invalidValue", "must be a UUID")
    row = connections.get_live(session, team_id, connection_id)
    if row is None:
        return None, (FIELD, "notFound", f"data-source connection {value} does not exist")
    if row.data_source_id != source.name:
        return None, (
            FIELD,
            "invalidValue",
            f"data-source connection {value} is for the {row.data_source_id!r} source, "
            f"not {source.name!r}",
        )
    return row, None


def _before(
    session: Session, box: SecretBox, source: Source, existing: Transfer | None
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(the transfer's own stored settings, the settings its runs used) before this change."""
    if existing is None or existing.source != source.name:
        return None, None
    own = credentials.join(json.loads(existing.config or "{}"), box.open(existing.source_secrets))
    row = (
        connections.get(session, existing.data_source_connection_id)
        if existing.data_source_connection_id
        else None
    )
    base = settings_of(row, box)[0] if row is not None else {}
    return own, credentials.merge(source.Settings, base, own)


def settle(
    session: Session,
    box: SecretBox,
    boundary: Boundary,
    source: Source,
    config: dict[str, Any],
    payload: dict[str, Any],
    existing: Transfer | None,
) -> tuple[SourceSettings | None, list[Problem]]:
    """The source settings to store, or the problems that prevent it."""
    model = source.Settings
    connection, problem = _connection(session, boundary.team_id, source, payload, existing)
    if problem is not None:
        return None, [problem]
    stored, used = _before(session, box, source, existing)
    base, base_sealed = settings_of(connection, box) if connection is not None else ({}, {})
    try:
        restored, kept = credentials.restore(model, config, stored)
        own = credentials.settle(model, restored, None, boundary, partial=connection is not None)
        effective = (
            credentials.settle(model, credentials.merge(model, base, own), None, boundary)
            if connection is not None
            else own
        )
        credentials.check_kept(model, used or {}, effective, kept)
    except ConfigError as exc:
        return None, _problems(exc)
    moved = credentials.moved(model, base_sealed, effective)
    if connection is not None and moved:
        return None, [
            (
                f"source_config.{moved[0]}",
                "invalidValue",
                f"points elsewhere than data-source connection {connection.id} "
                f"({connection.display_name}): its credentials are only sent to the "
                f"{credentials.describe_location(model)} it names",
            )
        ]
    plain, sealed = credentials.split(model, own, bound=credentials.location(model, effective))
    return SourceSettings(plain, sealed, connection.id if connection is not None else None), []


def shown(source: Source | None, plain: dict[str, Any]) -> dict[str, Any]:
    """A transfer's own source settings as they may be shown (credentials masked)."""
    if source is None:  # the connector is not installed: nothing can tell what is secret
        return {}
    return credentials.mask(source.Settings, plain)
