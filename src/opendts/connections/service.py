"""Data-source connection use cases: a source's credentials, sealed and bound to where they go.

The contract's ``transfers.create_datasource_connection`` sends ``data_source_id`` and
``destination_type``; opendts also takes ``display_name`` and ``fields``: any of the source's
settings, typically where and how it authenticates (an ``http`` source's ``url``, ``token``,
``headers``, ``params``; a ``sql`` source's ``url``). Credentials are sealed and never returned
(``***`` stands in their place). A transfer names a connection with ``data_source_connection_id``
and its own settings go on top of the connection's; the connection's credentials are only sent
where the connection points (``opendts.connectors.credentials``).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from sqlalchemy.orm import Session

from opendts.connections import repository
from opendts.connections.models import DataSourceConnection
from opendts.connectors import credentials, registry
from opendts.connectors.base import ConfigError, Source
from opendts.connectors.boundary import Boundary
from opendts.kit.clock import isoformat_z, utcnow
from opendts.kit.errors import ApiError, InvalidParameter, NotFound
from opendts.kit.requests import optional_object, optional_text, required_text
from opendts.kit.secrets import SecretBox

EXAMPLE = (
    '{"data_source_id": "http", "destination_type": "duckdb", "display_name": "Ads API", '
    '"fields": {"url": "https://api.example.com/ads?day={date}", "token": "..."}}'
)


class ConnectionInUse(ApiError):
    """A connection that transfers still read with cannot be deleted."""

    status_code = 409
    code = "DATA_SOURCE_CONNECTION_IN_USE"
    message = "Data-source connection in use"


def canonical_id(value: str) -> str:
    """A connection id in its canonical form; 400 if it is not a UUID."""
    try:
        return str(uuid.UUID(value.strip()))
    except (ValueError, AttributeError):
        raise InvalidParameter(
            "'connection_id' must be a UUID, e.g. 019461a0-0000-7000-8000-000000000000."
        ) from None


def get(session: Session, team_id: int, connection_id: str) -> DataSourceConnection:
    """A live connection of the team, or 404 (also for another team's)."""
    row = repository.get_live(session, team_id, canonical_id(connection_id))
    if row is None:
        raise NotFound(
            f"Data-source connection {connection_id} does not exist in team {team_id}.",
            code="DATA_SOURCE_CONNECTION_NOT_FOUND",
        )
    return row


def _source(name: str) -> Source:
    try:
        return registry.get_source(name.lower())
    except registry.UnknownConnector as exc:
        raise InvalidParameter(f"'data_source_id': {exc}.") from None


def _destination_type(name: str) -> str:
    try:
        return registry.get_destination(name).name
    except registry.UnknownConnector as exc:
        raise InvalidParameter(f"'destination_type': {exc}.") from None


def settings_of(row: DataSourceConnection, box: SecretBox) -> tuple[dict[str, Any], dict[str, Any]]:
    """(settings with credentials, the sealed credentials as stored) of a connection."""
    sealed = box.open(row.secrets)
    return credentials.join(json.loads(row.fields or "{}"), sealed), sealed


def _settle(
    source: Source,
    fields: dict[str, Any],
    stored: dict[str, Any] | None,
    boundary: Boundary,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(plain, sealed) of a connection's settings; 400 naming the field otherwise."""
    model = source.Settings
    try:
        values = credentials.settle(model, fields, stored, boundary, partial=True)
    except ConfigError as exc:
        field, problem = exc.problems[0]
        more = f" (and {len(exc.problems) - 1} more)" if len(exc.problems) > 1 else ""
        raise InvalidParameter(f"'fields.{field}': {problem}{more}.") from None
    plain, sealed = credentials.split(model, values)
    missing = credentials.unbound(model, values) if sealed else []
    if missing:
        raise InvalidParameter(
            f"'fields.{missing[0]}' is required with credentials: they are only sent to the "
            f"{credentials.describe_location(model)} the connection names."
        )
    return plain, sealed


def create(
    session: Session,
    box: SecretBox,
    boundary: Boundary,
    user_id: int | None,
    payload: dict[str, Any],
) -> DataSourceConnection:
    """A new connection (the contract's body, plus ``display_name`` and ``fields``)."""
    source = _source(required_text(payload, "data_source_id", max_length=60))
    destination_type = _destination_type(required_text(payload, "destination_type", max_length=60))
    api_key = payload.get("api_key")  # the contract's field; opendts has no use for it
    if api_key is not None and (not isinstance(api_key, str) or len(api_key) > 1000):
        raise InvalidParameter("'api_key' must be a string of at most 1000 characters, or null.")
    display_name = optional_text(payload, "display_name") or f"{source.title} connection"
    plain, sealed = _settle(source, optional_object(payload, "fields"), None, boundary)
    row = DataSourceConnection(
        id=str(uuid.uuid4()),
        team_id=boundary.team_id,
        data_source_id=source.name,
        destination_type=destination_type,
        display_name=display_name,
        fields=json.dumps(plain, sort_keys=True),
        secrets=box.seal(sealed),
        created_user_id=user_id,
    )
    session.add(row)
    session.flush()
    return row


def update(
    session: Session,
    box: SecretBox,
    boundary: Boundary,
    connection_id: str,
    payload: dict[str, Any],
) -> DataSourceConnection:
    """Change what the body names; ``fields`` replaces the settings, credentials left out (or
    sent back as ``***``) are kept unless the settings now point elsewhere (400)."""
    row = get(session, boundary.team_id, connection_id)
    if payload.get("data_source_id") is not None:
        source = _source(required_text(payload, "data_source_id", max_length=60))
        if source.name != row.data_source_id:
            raise InvalidParameter(
                f"'data_source_id' cannot change (this connection is for {row.data_source_id!r}):"
                " create a connection for the other source."
            )
    source = _source(row.data_source_id)
    if payload.get("destination_type") is not None:
        row.destination_type = _destination_type(
            required_text(payload, "destination_type", max_length=60)
        )
    display_name = optional_text(payload, "display_name")
    if display_name is not None:
        row.display_name = display_name
    if payload.get("fields") is not None:
        stored, _ = settings_of(row, box)
        plain, sealed = _settle(source, optional_object(payload, "fields"), stored, boundary)
        row.fields = json.dumps(plain, sort_keys=True)
        row.secrets = box.seal(sealed)
    row.updated_at = utcnow()
    session.flush()
    return row


def delete(session: Session, team_id: int, connection_id: str) -> None:
    """Soft-delete a connection no live transfer reads with (409 otherwise)."""
    row = get(session, team_id, connection_id)
    using = repository.users(session, row.id)
    if using:
        names = ", ".join(f"{t.id} ({t.display_name})" for t in using[:5])
        raise ConnectionInUse(
            f"Transfers still read with this connection: {names}. Delete them or give them "
            "another connection first."
        )
    row.deleted_at = utcnow()
    session.flush()


def list_of_team(session: Session, team_id: int) -> list[DataSourceConnection]:
    """The team's live connections, oldest first."""
    return repository.list_of_team(session, team_id)


def to_wire(row: DataSourceConnection, box: SecretBox) -> dict[str, Any]:
    """DataSourceConnection (plus our extensions; credentials masked, never included)."""
    try:
        model = registry.get_source(row.data_source_id).Settings
        fields = credentials.mask(model, json.loads(row.fields or "{}"))
    except registry.UnknownConnector:  # uninstalled since: nothing can tell what is secret
        fields = {}
    stored = sorted(set(box.open(row.secrets)) - {credentials.BOUND}) if row.secrets else []
    return {
        "connection_id": row.id,
        "login_url": None,
        "connect_url": None,
        "data_source_id": row.data_source_id,
        "destination_type": row.destination_type,
        "display_name": row.display_name,
        "fields": fields,
        "stored_credentials": stored,
        "created_time": isoformat_z(row.created_at),
        "updated_time": isoformat_z(row.updated_at),
    }
