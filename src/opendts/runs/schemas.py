"""The transfer run wire format (TransferRunItem, TransferRunDetail) and the list's query."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from opendts.kit.clock import isoformat_z
from opendts.kit.errors import InvalidParameter
from opendts.kit.openapi import Meta
from opendts.runs.models import RunStatus, TransferRun

MAX_LIMIT = 10_000
SORT_FIELDS = ("created_time", "data_date", "ended_time")
_DATE_ONLY = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
_DATE_TIME = re.compile(
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?"
    r"(Z|[+-][0-9]{2}:?[0-9]{2})?$"
)


def _common(run: TransferRun) -> dict[str, Any]:
    return {
        "id": run.id,
        "status": run.status,
        "type": run.type,
        "message": run.message,
        "created_time": isoformat_z(run.created_time),
        "ended_time": isoformat_z(run.ended_time),
        "total_duration": run.total_duration,
        "total_rows": run.total_rows,
        "data_date": run.data_date.isoformat(),
        # Our extensions: where the run comes from and how far its retries went.
        "transfer_id": run.transfer_id,
        "transfer_backfill_id": run.backfill_id,
        "attempt": run.attempt,
        "max_attempts": run.max_attempts,
        "queued_time": isoformat_z(run.queued_time),
        "started_time": isoformat_z(run.started_time),
        "next_attempt_time": (
            isoformat_z(run.available_at)
            if run.status == RunStatus.QUEUED.value and run.attempt > 0
            else None
        ),
        "error": run.error,
    }


def item_to_wire(run: TransferRun) -> dict[str, Any]:
    """A run as the contract's TransferRunItem (plus our extension fields)."""
    return _common(run)


def query_details(run: TransferRun) -> list[dict[str, Any]]:
    """One entry per attempt: earlier failures from the history, then the current attempt."""
    details = [
        {
            "status": entry.get("status", "FAILED"),
            "rows": 0,
            "duration": entry.get("duration"),
            "error_description": entry.get("error"),
            "attempt": entry.get("attempt"),
        }
        for entry in json.loads(run.history or "[]")
    ]
    if run.status == RunStatus.COMPLETED.value:
        details.append(
            {
                "status": RunStatus.COMPLETED.value,
                "rows": run.total_rows or 0,
                "duration": run.total_duration,
                "error_description": None,
                "attempt": run.attempt,
            }
        )
    elif run.status == RunStatus.RUNNING.value:
        details.append(
            {
                "status": RunStatus.RUNNING.value,
                "rows": 0,
                "duration": None,
                "error_description": None,
                "attempt": run.attempt,
            }
        )
    return details


def detail_to_wire(run: TransferRun) -> dict[str, Any]:
    """A run as the contract's TransferRunDetail (plus our extension fields)."""
    details = query_details(run)
    return {
        **_common(run),
        "external_id": f"opendts-run-{run.id}",
        "query_details": details,
        "query_amount": len(details),
        "failed_query_amount": sum(1 for d in details if d["status"] == RunStatus.FAILED.value),
    }


@dataclass(frozen=True, slots=True)
class RunsQuery:
    """The list's query string, validated."""

    first: date
    last: date
    issues_only: bool
    sort_field: str
    descending: bool
    limit: int
    offset: int


def _day(params: dict[str, str], name: str) -> date:
    value = params.get(name)
    example = "2024-01-31 or 2024-01-31T00:00:00"
    if value is None or not value.strip():
        raise InvalidParameter(f"'{name}' is required: a date or date-time, e.g. {example}.")
    text = value.strip()
    if not (_DATE_ONLY.fullmatch(text) or _DATE_TIME.fullmatch(text)):
        raise InvalidParameter(f"'{name}' must be a date or ISO 8601 date-time, e.g. {example}.")
    try:
        # The calendar date as written: an offset says where the caller is, not another day.
        return datetime.fromisoformat(text).date() if len(text) > 10 else date.fromisoformat(text)
    except ValueError:
        raise InvalidParameter(f"'{name}' is not a real date or time: {text}.") from None


def _integer(params: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    value = params.get(name)
    if value is None:
        return default
    if not re.fullmatch(r"[0-9]{1,19}", value.strip()):
        raise InvalidParameter(f"'{name}' must be an integer from {low} to {high}.")
    number = int(value.strip())
    if not low <= number <= high:
        raise InvalidParameter(f"'{name}' must be an integer from {low} to {high}; got {number}.")
    return number


def parse_query(params: dict[str, str]) -> RunsQuery:
    """Read the list's query string, or raise 400 naming the parameter."""
    first, last = _day(params, "start_date"), _day(params, "end_date")
    if last < first:
        raise InvalidParameter(f"'end_date' ({last}) is before 'start_date' ({first}). Swap them.")
    issues = params.get("filter_issues_only", "false").strip().lower()
    if issues not in ("true", "false", "1", "0"):
        raise InvalidParameter("'filter_issues_only' must be true or false.")
    sort_field = params.get("sort_field", "data_date")
    if sort_field not in SORT_FIELDS:
        allowed = ", ".join(SORT_FIELDS)
        raise InvalidParameter(f"'sort_field' must be one of {allowed}.")
    direction = params.get("sort_direction", "DESC").upper()
    if direction not in ("ASC", "DESC"):
        raise InvalidParameter("'sort_direction' must be ASC or DESC.")
    return RunsQuery(
        first=first,
        last=last,
        issues_only=issues in ("true", "1"),
        sort_field=sort_field,
        descending=direction == "DESC",
        limit=_integer(params, "limit", 100, 1, MAX_LIMIT),
        offset=_integer(params, "offset", 0, 0, 2**62),
    )


# Models below only describe the wire format in the generated OpenAPI document.


class TransferRunItem(BaseModel):
    """The contract's TransferRunItem, plus our extensions from ``transfer_id`` on."""

    id: int
    status: Literal["QUEUED", "RUNNING", "COMPLETED", "FAILED", "CANCELLED"]
    type: Literal["Backfill", "Recurring"]
    message: str
    created_time: datetime | None = None
    ended_time: datetime | None = None
    total_duration: float | None = None
    total_rows: int | None = None
    data_date: date | None = None
    transfer_id: int
    transfer_backfill_id: int | None = None
    attempt: int
    max_attempts: int
    queued_time: datetime | None = None
    started_time: datetime | None = None
    next_attempt_time: datetime | None = None
    error: str | None = None


class QueryDetail(BaseModel):
    status: str
    rows: int
    duration: float | None = None
    error_description: str | None = None
    attempt: int | None = None


class TransferRunDetail(TransferRunItem):
    external_id: str
    query_details: list[QueryDetail]
    query_amount: int
    failed_query_amount: int


class TransferRunListEnvelope(BaseModel):
    meta: Meta
    data: list[TransferRunItem] = Field(max_length=MAX_LIMIT)


class TransferRunEnvelope(BaseModel):
    meta: Meta
    data: TransferRunDetail


class ListRunsQuery(BaseModel):
    """The list's query string."""

    start_date: date | datetime = Field(
        description="First data date (inclusive): a date, or a date-time whose calendar date "
        "is used.",
        examples=["2024-01-01"],
    )
    end_date: date | datetime = Field(
        description="Last data date (inclusive), not before start_date.", examples=["2024-01-31"]
    )
    filter_issues_only: bool | None = Field(
        None, description="Only runs that failed, were cancelled or needed a retry."
    )
    sort_field: Literal["created_time", "data_date", "ended_time"] | None = Field(
        None, description="data_date by default."
    )
    sort_direction: Literal["ASC", "DESC"] | None = Field(None, description="DESC by default.")
    limit: int | None = Field(None, ge=1, le=MAX_LIMIT, description="A page of at most (100).")
    offset: int | None = Field(None, ge=0, le=2**62, description="Runs to skip (0).")
