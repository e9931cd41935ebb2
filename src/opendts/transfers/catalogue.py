"""The transfer catalogue: what a team can build a transfer from, in the contract's shapes.

``available-sources`` answers an AvailableSourcesResponse (``data_sources``, the team's
``destinations``, the installed ``destination_types``) and ``available-options`` a
TransferOptionsResponse (``data_source``, ``schedule_options``, ``schemas``, ``logins``,
``accounts``, ``segments``, ``license``), so the official client fills its typed fields. Our own
fields (``name`` and ``settings`` of a source; ``source_id``, ``settings``, ``refresh_modes``
and ``schedule_intervals`` of the options) stay beside them for existing callers. Ids are
integers on the wire, as the contract types them.
"""

from __future__ import annotations

import json
import re
from typing import Any

from sqlalchemy.orm import Session

from opendts.connectors import registry
from opendts.connectors.base import RefreshMode
from opendts.connectors.describe import setup_settings
from opendts.destinations import service as destinations
from opendts.destinations.models import Destination
from opendts.kit.errors import InvalidParameter
from opendts.settings import Settings
from opendts.transfers import schedule as schedules
from opendts.transfers.service import MAX_PARALLEL_RUNS

_ID = re.compile(r"^[1-9][0-9]{0,18}$")
MAX_ID = 2**63 - 1
#: opendts has one schema: the columns the source sends, in one table per transfer.
DEFAULT_SCHEMA_ID = 1


def _source_info(name: str, title: str) -> dict[str, Any]:
    builtin = name in registry.BUILTIN_SOURCES
    return {
        "data_source_id": name,
        "service_name": title,
        "service_provider": "opendts" if builtin else "plugin",
        "logo_url": None,
        "has_custom_fields": False,
        "is_custom_connector": not builtin,
        "is_public_beta": False,
        "is_released": True,
        "is_internal": False,
        "applicable_destinations": sorted(registry.destinations()),
    }


def transfer_destination(row: Destination) -> dict[str, Any]:
    """TransferDestination: one of the team's destinations (credentials never included)."""
    try:
        label = registry.get_destination(row.type).title
    except registry.UnknownConnector:  # its plugin was uninstalled: still list it
        label = row.type
    fields = json.loads(row.fields or "{}")
    return {
        "destination_id": row.id,
        "destination_name": row.display_name,
        "destination_type": row.type,
        "destination_label": label,
        "destination_icon_url": "",
        "is_internal": False,
        "details": [{"id": key, "value": value} for key, value in sorted(fields.items())],
    }


def _destination_type(kind: str, team_id: int) -> dict[str, Any]:
    base = f"/v1/teams/{team_id}/destinations"
    return {
        **destinations.destination_type(kind),
        "connection_check_url": f"{base}/test-connection",
        "create_url": base,
        "update_url_template": f"{base}/{{destination_id}}",
    }


def available_sources(session: Session, team_id: int) -> dict[str, Any]:
    """AvailableSourcesResponse: installed sources, the team's destinations, destination types."""
    return {
        "data_sources": [
            {
                **_source_info(name, source.title),
                "name": source.title,
                "settings": setup_settings(source.Settings),
            }
            for name, source in sorted(registry.sources().items())
        ],
        "destinations": [
            transfer_destination(row) for row in destinations.list_of_team(session, team_id)
        ],
        "destination_types": [
            _destination_type(kind, team_id) for kind in sorted(registry.destinations())
        ],
    }


def _destination_id(raw: str | None) -> int | None:
    if raw is None:
        return None
    if not _ID.fullmatch(raw) or int(raw) > MAX_ID:
        raise InvalidParameter(f"'destination_id' must be an integer from 1 to {MAX_ID}.")
    return int(raw)


def _schedule_options() -> list[dict[str, Any]]:
    def field(name: str, low: int, high: int, *, required: bool, default: int | None) -> Any:
        return {
            "id": name,
            "minimum": low,
            "maximum": high,
            "is_required": required,
            "default": default,
        }

    common = [
        field("run_hour", 0, 23, required=False, default=0),
        field("refresh_window", 1, schedules.MAX_REFRESH_WINDOW, required=False, default=1),
    ]
    extra = {
        "weekly": [field("run_weekday", 1, 7, required=True, default=None)],
        "monthly": [field("run_day", 1, 31, required=True, default=None)],
    }
    return [
        {
            "run_interval": interval,
            "label": interval.capitalize(),
            "fields": common + extra.get(interval, []),
        }
        for interval in schedules.INTERVALS
    ]


def available_options(
    session: Session,
    settings: Settings,
    team_id: int,
    source_id: str | None,
    destination_id: str | None,
) -> dict[str, Any]:
    """TransferOptionsResponse for a source (and, if given, one of the team's destinations)."""
    if not source_id:
        raise InvalidParameter("'source_id' is required: a source name, e.g. demo.")
    try:
        source = registry.get_source(source_id.lower())
    except registry.UnknownConnector as exc:
        raise InvalidParameter(f"'source_id': {exc}.") from None
    dest_id = _destination_id(destination_id)
    destination = None
    if dest_id is not None:
        row = session.get(Destination, dest_id)
        if row is None or row.team_id != team_id or row.deleted_at is not None:
            raise InvalidParameter(
                f"'destination_id': destination {dest_id} does not exist in team {team_id}."
            )
        destination = transfer_destination(row)
    source_settings = setup_settings(source.Settings)
    return {
        "data_source": {
            "data_source_id": source.name,
            "service_name": source.title,
            "settings": source_settings,
        },
        "schedule_options": _schedule_options(),
        "schemas": [
            {
                "schema_id": DEFAULT_SCHEMA_ID,
                "schema_name": "Source columns",
                "description": "The columns the source sends, loaded into the transfer's table "
                "(created from the first load; new columns are added).",
            }
        ],
        # Sources authenticate with their own settings: no logins, accounts or segments to pick
        # from here (a transfer's accounts are handed to its source as given).
        "logins": [],
        "accounts": [],
        "segments": [],
        "license": {
            "name": "opendts",
            "license": "Apache-2.0",
            "max_backfill_days": settings.max_backfill_days,
            "max_parallel_runs": MAX_PARALLEL_RUNS,
            "rate_limit_per_hour": settings.rate_limit_per_hour,
        },
        # Our extensions.
        "source_id": source.name,
        "destination_id": dest_id,
        "destination": destination,
        "settings": source_settings,
        "refresh_modes": [mode.value for mode in RefreshMode],
        "schedule_intervals": list(schedules.INTERVALS),
    }
