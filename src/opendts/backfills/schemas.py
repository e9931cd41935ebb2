"""The backfill wire format (the contract's Backfill schema), and its request bodies."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from opendts.backfills.models import Backfill
from opendts.backfills.status import BackfillStatus
from opendts.kit.clock import isoformat_z
from opendts.kit.openapi import ErrorDetail, ErrorEnvelope, Meta
from opendts.kit.requests import json_object, required_choice, required_date

CREATE_EXAMPLE = '{"range_start": "2024-01-01", "range_end": "2024-01-31"}'
CANCEL_EXAMPLE = '{"status": "CANCELLED"}'


def to_wire(backfill: Backfill, error_report: list[dict[str, str]] | None = None) -> dict[str, Any]:
    """A backfill as the contract's JSON object."""
    return {
        "transfer_backfill_id": backfill.id,
        "transfer_id": backfill.transfer_id,
        "range_start_date": backfill.range_start.isoformat(),
        "range_end_date": backfill.range_end.isoformat(),
        "created_time": isoformat_z(backfill.created_time),
        "created_user_id": backfill.created_user_id,
        "removed_time": isoformat_z(backfill.removed_time),
        "removed_user_id": backfill.removed_user_id,
        "start_time": isoformat_z(backfill.start_time),
        "end_time": isoformat_z(backfill.end_time),
        "status": backfill.status,
        "transfer_runs_total": backfill.runs_total,
        "transfer_runs_created": backfill.runs_created,
        "transfer_runs_completed": backfill.runs_completed,
        "transfer_runs_failed": backfill.runs_failed,
        "error_report": error_report or [],
    }


def parse_create(body: bytes, content_type: str | None) -> tuple[date, date]:
    """``(range_start, range_end)`` from a create request body."""
    payload = json_object(body, content_type, CREATE_EXAMPLE)
    return required_date(payload, "range_start"), required_date(payload, "range_end")


#: ``mode`` of a cancel (an opendts extension): ``finish`` lets running runs finish (the
#: contract's behaviour, the default); ``now`` stops them too.
CANCEL_MODES = ("finish", "now")


def parse_status_update(body: bytes, content_type: str | None) -> tuple[BackfillStatus, str]:
    """The target status of a PATCH body (only CANCELLED is supported) and the cancel's
    ``mode`` (``finish`` unless the body says ``now``)."""
    payload = json_object(body, content_type, CANCEL_EXAMPLE)
    status = BackfillStatus(required_choice(payload, "status", (BackfillStatus.CANCELLED.value,)))
    mode = "finish"
    if payload.get("mode") is not None:
        mode = required_choice(payload, "mode", CANCEL_MODES)
    return status, mode


# Models below only describe the wire format in the OpenAPI document.


class RunError(BaseModel):
    """One failed date of a backfill."""

    transfer_run_date: date
    error: str


class BackfillOut(BaseModel):
    """The contract's Backfill, field for field."""

    transfer_backfill_id: int = Field(ge=1, examples=[12345])
    transfer_id: int = Field(ge=1)
    range_start_date: date
    range_end_date: date
    created_time: datetime
    created_user_id: int
    removed_time: datetime | None = None
    removed_user_id: int | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    status: BackfillStatus
    transfer_runs_total: int = Field(ge=0)
    transfer_runs_created: int = Field(ge=0)
    transfer_runs_completed: int = Field(ge=0)
    transfer_runs_failed: int = Field(ge=0)
    error_report: list[RunError] = Field(
        default_factory=list, description="One entry per failed date; empty if none failed."
    )


class BackfillEnvelope(BaseModel):
    meta: Meta
    data: BackfillOut


class BackfillListEnvelope(BaseModel):
    meta: Meta
    data: list[BackfillOut] = Field(max_length=1000)


class CreateBackfillRequest(BaseModel):
    """An inclusive range of data dates, at most OPENDTS_MAX_BACKFILL_DAYS long, ending today
    (UTC) or earlier."""

    range_start: date = Field(description="First data date, YYYY-MM-DD.")
    range_end: date = Field(description="Last data date (inclusive), YYYY-MM-DD.")


class UpdateBackfillStatusBody(BaseModel):
    """The only supported change: cancelling."""

    status: Literal["CANCELLED"]
    mode: Literal["finish", "now"] = Field(
        "finish",
        description="An opendts extension. 'finish' (the default, as in the contract): queued "
        "runs are cancelled, running runs finish and are counted. 'now': running runs are "
        "stopped too (their processes killed within a heartbeat, a third of "
        "OPENDTS_LEASE_SECONDS) and end CANCELLED; a stopped date keeps the rows it had "
        "before.",
    )


def _any_case(word: str) -> str:
    return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else c for c in word)


_STATUS = "(?:" + "|".join(_any_case(s.value) for s in BackfillStatus) + ")"
#: ``status`` of the list's extension: ``all`` or statuses separated by commas, any case. The
#: server checks this pattern and the document declares it.
STATUS_FILTER = rf"^ *(?:{_any_case('all')}|{_STATUS}(?: *, *{_STATUS})*) *$"


class ListBackfillsQuery(BaseModel):
    """An opendts extension of the list: any of these lists backfills of every status."""

    status: str | None = Field(
        None,
        pattern=STATUS_FILTER,
        description="'all' (the default once any parameter is given), or statuses separated "
        "by commas, e.g. COMPLETED,FAILED.",
    )
    transfer_id: int | None = Field(
        None, ge=1, le=9223372036854775807, description="Only this transfer."
    )
    limit: int | None = Field(
        None, ge=1, le=1000, description="At most this many, newest first (100)."
    )


__all__ = ["ErrorDetail", "ErrorEnvelope", "Meta"]
