"""Credentials that rows saved by earlier versions hold in clear, sealed when the server starts.

Before credentials inside URLs, headers and parameters were recognised (and before sealed
credentials carried the place they are bound to), a transfer's ``config`` could hold an API key
in clear. ``seal_plain_credentials`` moves every such value into the row's sealed secrets, with
the place it goes, the way a save through the API would. It is idempotent and cheap once done.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from opendts.connectors import credentials, registry
from opendts.connectors.base import ConnectorSettings
from opendts.destinations.models import Destination
from opendts.kit.secrets import SecretBox, SecretKeyError
from opendts.transfers.models import Transfer

log = logging.getLogger("opendts.credentials")


def _model(find: Callable[[str], Any], name: str) -> type[ConnectorSettings] | None:
    try:
        model: type[ConnectorSettings] = find(name).Settings
    except registry.UnknownConnector:
        return None
    return model


def _resealed(
    model: type[ConnectorSettings], plain_json: str, sealed_text: str, box: SecretBox
) -> tuple[str, str] | None:
    """``(plain, sealed)`` to store instead, or ``None`` when the row is already right."""
    plain = json.loads(plain_json or "{}")
    sealed = box.open(sealed_text)
    if credentials.mask(model, plain) == plain and (not sealed or credentials.BOUND in sealed):
        return None
    new_plain, new_sealed = credentials.split(model, credentials.join(plain, sealed))
    return json.dumps(new_plain, sort_keys=True), box.seal(new_sealed)


def seal_plain_credentials(session: Session, box: SecretBox) -> int:
    """Seal what older rows hold in clear; returns how many rows changed."""
    changed = 0
    rows: list[tuple[Any, type[ConnectorSettings] | None, str, str]] = []
    for transfer in session.scalars(
        select(Transfer).where(
            Transfer.source.is_not(None), Transfer.data_source_connection_id.is_(None)
        )
    ):
        model = _model(registry.get_source, transfer.source or "")
        rows.append((transfer, model, "config", "source_secrets"))
    for destination in session.scalars(select(Destination)):
        rows.append(
            (destination, _model(registry.get_destination, destination.type), "fields", "secrets")
        )
    for row, model, plain_column, sealed_column in rows:
        if model is None:
            continue
        try:
            result = _resealed(model, getattr(row, plain_column), getattr(row, sealed_column), box)
        except SecretKeyError as exc:
            log.warning("credentials of %s %s not resealed: %s", type(row).__name__, row.id, exc)
            continue
        if result is not None:
            setattr(row, plain_column, result[0])
            setattr(row, sealed_column, result[1])
            changed += 1
    session.flush()
    if changed:
        log.info("sealed the credentials that %d older rows held in clear", changed)
    return changed
