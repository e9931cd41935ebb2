"""The backfill wire format (the contract's Backfill schema), and its request bodies."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from opendts.backfills.models import Backfill
from opendts.backfills.status import BackfillStatus
from opendts.kit.clock import isoformat_z
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


def parse_status_update(body: bytes, content_type: str | None) -> BackfillStatus:
    """The target status of a PATCH body (only CANCELLED is supported)."""
    payload = json_object(body, content_type, CANCEL_EXAMPLE)
    return BackfillStatus(required_choice(payload, "status", (BackfillStatus.CANCELLED.value,)))


# Models below only describe the wire format in the generated OpenAPI document.


class Meta(BaseModel):
    request_id: str = Field(pattern=r"^[A-Za-z0-9_-]+$", min_length=8, max_length=50)


class RunError(BaseModel):
    transfer_run_date: date
    error: str


class BackfillOut(BaseModel):
    transfer_backfill_id: int
    transfer_id: int
    range_start_date: date
    range_end_date: date
    created_time: datetime
    created_user_id: int
    removed_time: datetime | None = None
    removed_user_id: int | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    status: BackfillStatus
    transfer_runs_total: int
    transfer_runs_created: int
    transfer_runs_completed: int
    transfer_runs_failed: int
    error_report: list[RunError] = Field(default_factory=list)


class BackfillEnvelope(BaseModel):
    meta: Meta
    data: BackfillOut


class BackfillListEnvelope(BaseModel):
    meta: Meta
    data: list[BackfillOut] = Field(max_length=100)


class ErrorDetail(BaseModel):
    code: str
    message: str
    description: str | None = None


class ErrorEnvelope(BaseModel):
    meta: Meta
    error: ErrorDetail


class CreateBackfillRequest(BaseModel):
    range_start: date
    range_end: date


class UpdateBackfillStatusBody(BaseModel):
    status: Literal["CANCELLED"]
