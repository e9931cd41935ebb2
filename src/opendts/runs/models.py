"""Transfer runs: one per transfer and date. The table is also the engine's queue."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import Date, Float, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from opendts.kit.db import Base
from opendts.kit.types import BigId, UtcDateTime


class RunStatus(StrEnum):
    """Where a run is. QUEUED runs wait (``available_at`` delays retries)."""

    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


#: Statuses a run never leaves.
FINAL_RUN_STATUSES = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED})


class RunType(StrEnum):
    """Why a run exists, as the contract names it."""

    BACKFILL = "Backfill"
    RECURRING = "Recurring"


#: Queued recurring runs (no backfill): the claim's second queue, kept tiny by its index.
RECURRING_QUEUED_SQL = "status = 'QUEUED' AND backfill_id IS NULL"


def _partial(name: str, *columns: str, status: RunStatus) -> Index:
    # Partial indexes: the queue and the in-flight set stay small however long history grows.
    clause = text(f"status = '{status.value}'")
    return Index(name, *columns, sqlite_where=clause, postgresql_where=clause)


class TransferRun(Base):
    """One date of one transfer, with its lease while a worker executes it."""

    __tablename__ = "transfer_runs"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # Copied from the backfill when the run is planned, and never changed. No foreign keys on
    # this hot queue table (as in Oban's and GoodJob's job tables): their per-row checks cost
    # half of planning time on PostgreSQL, and teams, transfers and backfills are never deleted
    # (transfers only soft-deleted), so there is nothing for a cascade to do.
    team_id: Mapped[int] = mapped_column(BigId)
    transfer_id: Mapped[int] = mapped_column(BigId)
    backfill_id: Mapped[int | None] = mapped_column(BigId, nullable=True)
    type: Mapped[str] = mapped_column(String(20), default=RunType.BACKFILL.value)
    data_date: Mapped[date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(20), default=RunStatus.QUEUED.value)
    #: How many times a worker claimed the run; part of the fencing token.
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer)
    #: Not claimable before this time (retry back-off).
    available_at: Mapped[datetime] = mapped_column(UtcDateTime)
    lease_owner: Mapped[str | None] = mapped_column(String(100), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    created_time: Mapped[datetime] = mapped_column(UtcDateTime)
    queued_time: Mapped[datetime] = mapped_column(UtcDateTime)
    started_time: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    ended_time: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    total_rows: Mapped[int | None] = mapped_column(Integer, nullable=True)
    total_duration: Mapped[float | None] = mapped_column(Float, nullable=True)
    message: Mapped[str] = mapped_column(Text, default="")
    #: The last error, in words; set on failure and kept while retrying.
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: JSON array of earlier failed attempts: ``{attempt, status, error, duration, ended_time}``.
    history: Mapped[str] = mapped_column(Text, default="[]")
    #: The user who cancelled the backfill with ``"mode": "now"`` while this run executed:
    #: the engine holding it stops it and writes it CANCELLED (it stays RUNNING until then).
    cancel_requested_by: Mapped[int | None] = mapped_column(BigId, nullable=True)

    __table_args__ = (
        Index("uq_transfer_runs_backfill_date", "backfill_id", "data_date", unique=True),
        Index("ix_transfer_runs_transfer_date", "transfer_id", "data_date"),
        _partial("ix_transfer_runs_queued", "transfer_id", "data_date", status=RunStatus.QUEUED),
        _partial("ix_transfer_runs_running", "lease_expires_at", status=RunStatus.RUNNING),
        _partial("ix_transfer_runs_failed", "backfill_id", "data_date", status=RunStatus.FAILED),
        # A date is never written by two runs at once: claims look up running dates here.
        _partial(
            "ix_transfer_runs_running_date", "transfer_id", "data_date", status=RunStatus.RUNNING
        ),
        Index(
            "ix_transfer_runs_recurring_queued",
            "transfer_id",
            sqlite_where=text(RECURRING_QUEUED_SQL),
            postgresql_where=text(RECURRING_QUEUED_SQL),
        ),
    )
