"""The transfers API's use cases: TransferConfigurationRequest in, the contract's shapes out.

A data transfer (run kind ``load``) names a source connector (``data_source_id``), its
settings (the contract's ``data_source_settings`` list, and/or our ``source_config`` object),
a destination of the team and a table. Credentials among the source settings are stored
encrypted and never returned; leaving them out of an update keeps them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from opendts.backfills.models import Backfill
from opendts.connectors import registry
from opendts.connectors.base import RefreshMode, Source
from opendts.connectors.boundary import Boundary
from opendts.destinations.models import Destination
from opendts.kit.clock import isoformat_z, utcnow
from opendts.kit.errors import InvalidParameter, NotFound
from opendts.kit.secrets import SecretBox
from opendts.transfers import schedule as schedules
from opendts.transfers import service
from opendts.transfers import source as source_settings
from opendts.transfers.models import Transfer, TransferState

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
LOAD = "load"


@dataclass
class Parsed:
    """A valid TransferConfigurationRequest."""

    source: str = ""
    source_plain: dict[str, Any] = field(default_factory=dict)
    source_secrets: dict[str, Any] = field(default_factory=dict)
    connection_id: str | None = None
    destination_id: int = 0
    display_name: str = ""
    schema_id: int | None = None
    transfer_type: int | None = None
    schedule: list[schedules.Entry] = field(default_factory=list)
    accounts: list[dict[str, Any]] = field(default_factory=list)
    segments: list[dict[str, Any]] = field(default_factory=list)
    recipients: list[str] = field(default_factory=list)
    table: str = ""
    date_column: str = "date"
    refresh_mode: str = RefreshMode.REPLACE.value
    max_parallel_runs: int = 1


Problem = tuple[str, str, str]  # (field_id, error_code, message)


def _slug(name: str) -> str:
    slug = re.sub(r"[^a-z0-9_]+", "_", name.lower()).strip("_")[:63]
    if not slug or slug[0].isdigit():
        slug = ("t_" + slug)[:63] if slug else "transfer_data"
    return slug


def _objects(
    payload: dict[str, Any], key: str, allowed: dict[str, type], problems: list[Problem]
) -> list[dict[str, Any]]:
    value = payload.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        problems.append((key, "invalidType", "must be a JSON array"))
        return []
    out = []
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            problems.append((f"{key}[{i}]", "invalidType", "must be a JSON object"))
            continue
        for name, val in item.items():
            expected = allowed.get(name)
            if expected is None:
                problems.append((f"{key}[{i}].{name}", "unknown", "unknown field"))
            elif val is not None and (
                (isinstance(val, bool) and expected is not bool) or not isinstance(val, expected)
            ):
                problems.append(
                    (f"{key}[{i}].{name}", "invalidType", f"must be a {expected.__name__}")
                )
        out.append({k: v for k, v in item.items() if k in allowed})
    return out


def validate(
    session: Session,
    box: SecretBox,
    boundary: Boundary,
    payload: dict[str, Any],
    *,
    existing: Transfer | None = None,
) -> tuple[Parsed, list[Problem]]:
    """Every problem of a TransferConfigurationRequest, and the parsed request."""
    team_id = boundary.team_id
    problems: list[Problem] = []
    out = Parsed()

    def text(key: str, *, required: bool, max_length: int = 200) -> str | None:
        value = payload.get(key)
        if value is None or (isinstance(value, str) and not value.strip()):
            if required:
                problems.append((key, "isEmpty", "is required"))
            return None
        if not isinstance(value, str):
            problems.append((key, "invalidType", "must be a string"))
            return None
        if len(value.strip()) > max_length:
            problems.append((key, "invalidValue", f"must be at most {max_length} characters"))
            return None
        return value.strip()

    def integer(key: str, *, required: bool, low: int, high: int = 2**63 - 1) -> int | None:
        value = payload.get(key)
        if value is None:
            if required:
                problems.append((key, "isEmpty", "is required"))
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            problems.append((key, "invalidType", "must be an integer"))
            return None
        if not low <= value <= high:
            problems.append((key, "invalidValue", f"must be from {low} to {high}"))
            return None
        return value

    out.display_name = text("display_name", required=True) or ""
    out.schema_id = integer("schema_id", required=False, low=0)
    out.transfer_type = integer("transfer_type", required=False, low=0, high=2**31 - 1)
    out.max_parallel_runs = integer(
        "max_parallel_runs", required=False, low=1, high=service.MAX_PARALLEL_RUNS
    ) or (existing.max_parallel_runs if existing is not None else 1)
    destination_id = integer("destination_id", required=True, low=1)
    if destination_id is not None:
        row = session.get(Destination, destination_id)
        if row is None or row.team_id != team_id or row.deleted_at is not None:
            problems.append(
                (
                    "destination_id",
                    "notFound",
                    f"destination {destination_id} does not exist in this team",
                )
            )
        else:
            out.destination_id = destination_id
    entries, schedule_problems = schedules.parse(payload.get("schedule"))
    out.schedule = entries
    problems += schedule_problems
    out.accounts = _objects(
        payload,
        "accounts",
        {"data_source_username": str, "login_id": int, "account_id": str},
        problems,
    )
    out.segments = _objects(
        payload,
        "segments",
        {"data_source_username": str, "login_id": int, "segment_id": str, "segment_name": str},
        problems,
    )
    recipients = payload.get("notification_recipients")
    if recipients is not None:
        if not isinstance(recipients, list):
            problems.append(("notification_recipients", "invalidType", "must be a JSON array"))
        else:
            for i, email in enumerate(recipients):
                if not isinstance(email, str) or not _EMAIL.match(email):
                    problems.append(
                        (
                            f"notification_recipients[{i}]",
                            "invalidValue",
                            "must be an email address",
                        )
                    )
                else:
                    out.recipients.append(email)
    table = text("table", required=False, max_length=63)
    if table is not None and not _IDENT.match(table):
        problems.append(
            ("table", "invalidValue", "letters, digits and _, not starting with a digit")
        )
    out.table = table or (
        existing.table_name
        if existing is not None and existing.table_name
        else _slug(out.display_name)
    )
    date_column = text("date_column", required=False, max_length=63)
    if date_column is not None and not _IDENT.match(date_column):
        problems.append(
            ("date_column", "invalidValue", "letters, digits and _, not starting with a digit")
        )
    out.date_column = date_column or "date"
    mode = payload.get("refresh_mode")
    if mode is not None:
        if mode not in [m.value for m in RefreshMode]:
            problems.append(
                ("refresh_mode", "invalidValue", "must be one of replace, append, overwrite")
            )
        else:
            out.refresh_mode = mode
    # The source and its settings.
    source_name = text("data_source_id", required=True, max_length=60)
    if source_name is None:
        return out, problems
    try:
        source = registry.get_source(source_name.lower())
    except registry.UnknownConnector as exc:
        problems.append(("data_source_id", "invalidValue", str(exc)))
        return out, problems
    out.source = source.name
    config: dict[str, Any] = {}
    settings_list = payload.get("data_source_settings")
    if settings_list is not None:
        if not isinstance(settings_list, list):
            problems.append(("data_source_settings", "invalidType", "must be a JSON array"))
        else:
            for i, item in enumerate(settings_list):
                if not isinstance(item, dict) or not isinstance(item.get("field_id"), str):
                    problems.append(
                        (
                            f"data_source_settings[{i}].field_id",
                            "isEmpty",
                            "every setting needs a field_id",
                        )
                    )
                    continue
                config[item["field_id"]] = item.get("value")
    extra = payload.get("source_config")
    if extra is not None:
        if not isinstance(extra, dict):
            problems.append(("source_config", "invalidType", "must be a JSON object"))
        else:
            config.update(extra)
    settled, source_problems = source_settings.settle(
        session, box, boundary, source, config, payload, existing
    )
    problems += source_problems
    if settled is not None:
        out.source_plain = settled.plain
        out.source_secrets = settled.sealed
        out.connection_id = settled.connection_id
    return out, problems


def raise_first(problems: list[Problem]) -> None:
    """400 INVALID_PARAMETER naming the fields (create and update)."""
    if not problems:
        return
    described = "; ".join(f"'{f}' {m}" for f, _, m in problems[:5])
    more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
    raise InvalidParameter(f"Invalid transfer configuration: {described}{more}.")


def _apply(transfer: Transfer, parsed: Parsed, box: SecretBox, now: datetime) -> None:
    transfer.display_name = parsed.display_name
    transfer.kind = LOAD
    transfer.source = parsed.source
    transfer.config = json.dumps(parsed.source_plain, sort_keys=True)
    transfer.source_secrets = box.seal(parsed.source_secrets)
    transfer.data_source_connection_id = parsed.connection_id
    transfer.destination_id = parsed.destination_id
    transfer.table_name = parsed.table
    transfer.date_column = parsed.date_column
    transfer.refresh_mode = parsed.refresh_mode
    transfer.schema_id = parsed.schema_id
    transfer.transfer_type = parsed.transfer_type
    transfer.accounts = json.dumps(parsed.accounts)
    transfer.segments = json.dumps(parsed.segments)
    transfer.notification_recipients = json.dumps(parsed.recipients)
    transfer.schedule = json.dumps([e.wire() for e in parsed.schedule])
    transfer.max_parallel_runs = parsed.max_parallel_runs
    transfer.next_run_at = schedules.next_run(parsed.schedule, now)
    transfer.last_scheduled_at = now


def create(
    session: Session,
    box: SecretBox,
    boundary: Boundary,
    user_id: int | None,
    payload: dict[str, Any],
) -> Transfer:
    """A new data transfer (400 naming every bad field otherwise)."""
    parsed, problems = validate(session, box, boundary, payload)
    raise_first(problems)
    transfer = Transfer(
        team_id=boundary.team_id, state=TransferState.ACTIVE.value, created_user_id=user_id
    )
    _apply(transfer, parsed, box, utcnow())
    session.add(transfer)
    session.flush()
    return transfer


def get_live(session: Session, team_id: int, transfer_id: int) -> Transfer:
    """A transfer of the team that is not deleted, or 404."""
    transfer = session.get(Transfer, transfer_id)
    if transfer is None or transfer.team_id != team_id or transfer.deleted_at is not None:
        raise NotFound(
            f"Transfer {transfer_id} does not exist in team {team_id}.", code="TRANSFER_NOT_FOUND"
        )
    return transfer


def update(
    session: Session,
    box: SecretBox,
    boundary: Boundary,
    transfer_id: int,
    payload: dict[str, Any],
) -> Transfer:
    """Full replacement of a transfer's configuration (credentials left out are kept)."""
    transfer = get_live(session, boundary.team_id, transfer_id)
    parsed, problems = validate(session, box, boundary, payload, existing=transfer)
    raise_first(problems)
    _apply(transfer, parsed, box, utcnow())
    session.flush()
    return transfer


def set_state(session: Session, team_id: int, transfer_id: int, action: str) -> dict[str, Any]:
    """TransferStateUpdateResponse for ``pause`` / ``unpause``."""
    transfer = get_live(session, team_id, transfer_id)
    state = TransferState.PAUSED if action == "pause" else TransferState.ACTIVE
    service.set_state(session, transfer.id, state)
    return {"result": True, "state": state.value.upper()}


def delete(session: Session, team_id: int, transfer_id: int, user_id: int) -> None:
    """Soft delete: history stays readable, incomplete backfills are cancelled."""
    transfer = get_live(session, team_id, transfer_id)
    service.soft_delete(session, transfer.id, user_id=user_id)


def validation(
    session: Session,
    box: SecretBox,
    boundary: Boundary,
    payload: dict[str, Any],
    existing: Transfer | None = None,
) -> dict[str, Any]:
    """ValidationErrorsResponse (an invalid configuration is a 200, not an error)."""
    _, problems = validate(session, box, boundary, payload, existing=existing)
    return {
        "is_valid": not problems,
        "errors": [{"field_id": f, "error_code": c, "message": m} for f, c, m in problems],
    }


def _source_title(name: str | None) -> str:
    if name is None:
        return ""
    try:
        return registry.get_source(name).title
    except registry.UnknownConnector:
        return name


def _installed(name: str | None) -> Source | None:
    if name is None:
        return None
    try:
        return registry.get_source(name)
    except registry.UnknownConnector:
        return None


def configuration(session: Session, transfer: Transfer) -> dict[str, Any]:
    """TransferConfigurationResponse (plus our extensions); credentials masked."""
    plain = json.loads(transfer.config or "{}")
    if transfer.source:
        plain = source_settings.shown(_installed(transfer.source), plain)
    source_id = transfer.source or transfer.kind
    return {
        "transfer_id": transfer.id,
        "display_name": transfer.display_name,
        "schema_id": transfer.schema_id,
        "destination_id": transfer.destination_id,
        "accounts": json.loads(transfer.accounts or "[]"),
        "segments": json.loads(transfer.segments or "[]"),
        "schedule": json.loads(transfer.schedule or "[]"),
        "data_source": {
            "data_source_id": source_id,
            "service_name": _source_title(transfer.source) or transfer.kind,
            "service_provider": "opendts",
            "settings": [
                {"field_id": k, "value": _scalar(v), "group": None} for k, v in plain.items()
            ],
        },
        "notification_recipients": [
            {"email": e} for e in json.loads(transfer.notification_recipients or "[]")
        ],
        "external_url": None,
        # Extensions.
        "transfer_type": transfer.transfer_type,
        "state": transfer.state,
        "kind": transfer.kind,
        "source_config": plain if transfer.source else {},
        "data_source_connection_id": transfer.data_source_connection_id,
        "table": transfer.table_name,
        "date_column": transfer.date_column,
        "refresh_mode": transfer.refresh_mode,
        "max_parallel_runs": transfer.max_parallel_runs,
        "next_run_time": isoformat_z(transfer.next_run_at),
        "created_time": isoformat_z(transfer.created_at),
    }


def _scalar(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, bool, type(None))) else json.dumps(value)


def info_list(session: Session, team_id: int) -> list[dict[str, Any]]:
    """TransferInfoResponse items: the team's live transfers, oldest first."""
    transfers = list(
        session.scalars(
            select(Transfer)
            .where(Transfer.team_id == team_id, Transfer.deleted_at.is_(None))
            .order_by(Transfer.id)
        )
    )
    destinations = {
        d.id: d for d in session.scalars(select(Destination).where(Destination.team_id == team_id))
    }
    latest: dict[int, Backfill] = {}
    if transfers:
        for backfill in session.scalars(
            select(Backfill)
            .where(Backfill.transfer_id.in_([t.id for t in transfers]))
            .order_by(Backfill.id)
        ):
            latest[backfill.transfer_id] = backfill
    out = []
    for t in transfers:
        entries = json.loads(t.schedule or "[]")
        dest = destinations.get(t.destination_id) if t.destination_id else None
        last = latest.get(t.id)
        out.append(
            {
                "dwh_transfer_id": t.id,
                "display_name": t.display_name,
                "external_transfer_id": str(t.id),
                "status": "active",
                "state": t.state,
                "schedule": entries[0]["run_interval"] if entries else "manual",
                "run_date": isoformat_z(t.next_run_at),
                "data_source": {
                    "data_source_id": t.source or t.kind,
                    "title": _source_title(t.source) or t.kind,
                },
                "destination": (
                    {"id": dest.id, "display_name": dest.display_name, "type": dest.type}
                    if dest is not None
                    else None
                ),
                "backfill": (
                    {
                        "transfer_backfill_id": last.id,
                        "status": last.status,
                        "range_start_date": last.range_start.isoformat(),
                        "range_end_date": last.range_end.isoformat(),
                    }
                    if last is not None
                    else None
                ),
                "accounts": [
                    str(a.get("account_id"))
                    for a in json.loads(t.accounts or "[]")
                    if a.get("account_id")
                ],
                "transfer_id": t.id,
                "kind": t.kind,
                "table": t.table_name,
                "refresh_mode": t.refresh_mode,
                "max_parallel_runs": t.max_parallel_runs,
            }
        )
    return out
