"""Destination use cases: validate connector settings, keep credentials sealed."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from opendts.connectors import credentials, registry
from opendts.connectors.base import ConfigError, parse_settings, secret_fields
from opendts.connectors.boundary import Boundary
from opendts.connectors.describe import setup_settings
from opendts.destinations.models import Destination
from opendts.engine.errors import RunError, classify
from opendts.kit.clock import utcnow
from opendts.kit.errors import ApiError, InvalidParameter, NotFound
from opendts.kit.secrets import SecretBox
from opendts.transfers.models import Transfer


class DestinationInUse(ApiError):
    """A destination that transfers still load into cannot be deleted."""

    status_code = 409
    code = "DESTINATION_IN_USE"
    message = "Destination in use"


@dataclass(frozen=True, slots=True)
class DestinationInput:
    """A create/update/test-connection body, read."""

    type: str
    display_name: str
    fields: dict[str, Any]
    auth_method: str | None = None
    new_password: str | None = None


def parse_input(payload: dict[str, Any], *, display_name_required: bool = True) -> DestinationInput:
    """The body's fields, with 400s naming the field."""
    from opendts.kit.requests import optional_object, optional_text, required_text

    kind = required_text(payload, "type", max_length=60)
    name = (
        required_text(payload, "display_name")
        if display_name_required
        else optional_text(payload, "display_name") or kind
    )
    if "fields" not in payload or payload["fields"] is None:
        raise InvalidParameter("'fields' is required: a JSON object of the destination's settings.")
    return DestinationInput(
        kind,
        name,
        optional_object(payload, "fields"),
        optional_text(payload, "auth_method", max_length=60),
        optional_text(payload, "new_password", max_length=1000),
    )


def _connector(kind: str) -> Any:
    try:
        return registry.get_destination(kind)
    except registry.UnknownConnector as exc:
        raise InvalidParameter(f"'type': {exc}.") from None


def _settings(
    connector: Any, fields: dict[str, Any], stored: dict[str, Any] | None, boundary: Boundary
) -> dict[str, Any]:
    """Validated settings; credentials left out are kept if they still go where they went."""
    try:
        return credentials.settle(connector.Settings, fields, stored, boundary)
    except ConfigError as exc:
        field, problem = exc.problems[0]
        raise InvalidParameter(
            f"'fields.{field}': {problem}"
            + (f" (and {len(exc.problems) - 1} more)" if len(exc.problems) > 1 else "")
            + "."
        ) from None


def _stored(row: Destination, box: SecretBox) -> dict[str, Any]:
    """A saved destination's settings, credentials included."""
    return credentials.join(json.loads(row.fields or "{}"), box.open(row.secrets))


def get(session: Session, team_id: int, destination_id: int) -> Destination:
    """A live destination of the team, or 404."""
    row = session.get(Destination, destination_id)
    if row is None or row.team_id != team_id or row.deleted_at is not None:
        raise NotFound(
            f"Destination {destination_id} does not exist in team {team_id}.",
            code="DESTINATION_NOT_FOUND",
        )
    return row


def list_of_team(session: Session, team_id: int) -> list[Destination]:
    """The team's live destinations, oldest first."""
    return list(
        session.scalars(
            select(Destination)
            .where(Destination.team_id == team_id, Destination.deleted_at.is_(None))
            .order_by(Destination.id)
        )
    )


def create(
    session: Session,
    box: SecretBox,
    boundary: Boundary,
    user_id: int | None,
    spec: DestinationInput,
) -> Destination:
    """A new destination of the team."""
    connector = _connector(spec.type)
    fields = dict(spec.fields)
    if spec.new_password and "password" in secret_fields(connector.Settings):
        fields["password"] = spec.new_password
    plain, secrets = credentials.split(
        connector.Settings, _settings(connector, fields, None, boundary)
    )
    row = Destination(
        team_id=boundary.team_id,
        display_name=spec.display_name,
        type=connector.name,
        fields=json.dumps(plain, sort_keys=True),
        secrets=box.seal(secrets),
        auth_method=spec.auth_method,
        created_user_id=user_id,
    )
    session.add(row)
    session.flush()
    return row


def update(
    session: Session,
    box: SecretBox,
    boundary: Boundary,
    destination_id: int,
    spec: DestinationInput,
) -> Destination:
    """Replace a destination's settings; credentials left out (or blank) are kept, unless the
    settings now say to send them elsewhere (400 naming the field and the credential)."""
    row = get(session, boundary.team_id, destination_id)
    connector = _connector(spec.type)
    stored = _stored(row, box) if connector.name == row.type else None
    fields = dict(spec.fields)
    if spec.new_password and "password" in secret_fields(connector.Settings):
        fields["password"] = spec.new_password
    plain, secrets = credentials.split(
        connector.Settings, _settings(connector, fields, stored, boundary)
    )
    row.type = connector.name
    row.display_name = spec.display_name
    row.fields = json.dumps(plain, sort_keys=True)
    row.secrets = box.seal(secrets)
    row.auth_method = spec.auth_method
    row.updated_at = utcnow()
    session.flush()
    return row


def users(session: Session, destination_id: int) -> list[Transfer]:
    """Live transfers loading into the destination."""
    return list(
        session.scalars(
            select(Transfer)
            .where(Transfer.destination_id == destination_id, Transfer.deleted_at.is_(None))
            .order_by(Transfer.id)
        )
    )


def delete(session: Session, team_id: int, destination_id: int) -> None:
    """Soft-delete a destination no live transfer uses (409 otherwise)."""
    row = get(session, team_id, destination_id)
    using = users(session, destination_id)
    if using:
        names = ", ".join(f"{t.id} ({t.display_name})" for t in using[:5])
        raise DestinationInUse(
            f"Transfers still load into this destination: {names}. Delete them or point "
            "them at another destination first."
        )
    row.deleted_at = utcnow()
    session.flush()


def usage(session: Session, team_id: int, destination_id: int) -> dict[str, Any]:
    """DestinationUsage: whether live transfers use the destination, and which."""
    get(session, team_id, destination_id)
    using = users(session, destination_id)
    return {
        "is_used": bool(using),
        "transfers": [{"transfer_id": t.id, "transfer_name": t.display_name} for t in using],
    }


def test_connection(
    session: Session,
    box: SecretBox,
    boundary: Boundary,
    spec: DestinationInput,
    destination_id: int | None,
) -> dict[str, Any]:
    """TestConnectionResult: ``{success, error}`` (a failed check is not an HTTP error)."""
    connector = _connector(spec.type)
    stored: dict[str, Any] | None = None
    fields = dict(spec.fields)
    if destination_id is not None:
        row = get(session, boundary.team_id, destination_id)
        if connector.name == row.type:
            stored = _stored(row, box)
            fields = {**json.loads(row.fields or "{}"), **fields}
    if spec.new_password and "password" in secret_fields(connector.Settings):
        fields["password"] = spec.new_password
    # A saved password goes only where it was saved for: a new host without it is a 400.
    values = _settings(connector, fields, stored, boundary)
    settings = parse_settings(connector.Settings, values, boundary)
    try:
        connector.test_connection(settings, boundary)
    except RunError as exc:
        return {"success": False, "error": str(exc)}
    except Exception as exc:  # a connector bug or driver error: report it, don't 500
        return {"success": False, "error": classify(exc).message}
    return {"success": True, "error": None}


def destination_type(kind: str) -> dict[str, Any]:
    """DestinationType of a connector."""
    connector = registry.get_destination(kind)
    secret = secret_fields(connector.Settings)
    return {
        "type": connector.name,
        "title": connector.title,
        "icon_url": "",
        "is_internal": False,
        "settings": setup_settings(connector.Settings),
        "auth_methods": (
            [{"id": "AUTH_METHOD_PASSWORD", "title": "Password", "is_default": True}]
            if "password" in secret
            else []
        ),
    }


def to_wire(row: Destination, box: SecretBox) -> dict[str, Any]:
    """DestinationInfo (plus our ``type``, ``fields`` and timestamps)."""
    connector = registry.get_destination(row.type)
    fields = credentials.mask(connector.Settings, json.loads(row.fields or "{}"))
    present = frozenset(box.open(row.secrets)) - {credentials.BOUND} if row.secrets else frozenset()
    return {
        "id": row.id,
        "display_name": row.display_name,
        "destination_type": destination_type(row.type),
        "edit_settings": setup_settings(connector.Settings, fields, present),
        "type": row.type,
        "fields": fields,
        "auth_method": row.auth_method,
        "created_time": row.created_at.isoformat().replace("+00:00", "Z"),
        "updated_time": row.updated_at.isoformat().replace("+00:00", "Z"),
    }


def list_item(row: Destination) -> dict[str, Any]:
    """DestinationListItem."""
    return {"id": row.id, "display_name": row.display_name, "type": row.type}
