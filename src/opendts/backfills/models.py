"""Backfills: one transfer re-loaded over an inclusive date range."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Date, ForeignKey, Index, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column

from opendts.backfills.status import ACTIVE, INCOMPLETE, BackfillStatus
from opendts.kit.clock import utcnow
from opendts.kit.db import Base
from opendts.kit.types import BigId, UtcDateTime

#: The partial-index predicate. Queries must repeat it verbatim (not as bound parameters) for
#: SQLite and PostgreSQL to prove the index applies.
INCOMPLETE_SQL = "status IN ({})".format(", ".join(f"'{s.value}'" for s in sorted(INCOMPLETE)))
#: The engine's partial-index predicate: backfills being planned or executed.
ACTIVE_SQL = "status IN ({})".format(", ".join(f"'{s.value}'" for s in sorted(ACTIVE)))


class Backfill(Base):
    """The contract's Backfill, field for field (counters kept next to the runs they count)."""

    __tablename__ = "backfills"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    team_id: Mapped[int] = mapped_column(BigId, ForeignKey("teams.id", ondelete="CASCADE"))
    transfer_id: Mapped[int] = mapped_column(BigId, ForeignKey("transfers.id", ondelete="CASCADE"))
    range_start: Mapped[date] = mapped_column(Date)
    range_end: Mapped[date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(20), default=BackfillStatus.CREATED.value)
    created_time: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    created_user_id: Mapped[int] = mapped_column(BigId)
    removed_time: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    removed_user_id: Mapped[int | None] = mapped_column(BigId, nullable=True)
    start_time: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    end_time: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    runs_total: Mapped[int] = mapped_column(Integer)
    runs_created: Mapped[int] = mapped_column(Integer, default=0)
    runs_completed: Mapped[int] = mapped_column(Integer, default=0)
    runs_failed: Mapped[int] = mapped_column(Integer, default=0)

    __table_args__ = (
        # The incomplete list: newest first, per team, skipping finished backfills.
        Index(
            "ix_backfills_team_incomplete",
            "team_id",
            "created_time",
            "id",
            sqlite_where=text(INCOMPLETE_SQL),
            postgresql_where=text(INCOMPLETE_SQL),
        ),
        # The engine's view: backfills to plan or to run, a handful however long history grows.
        Index(
            "ix_backfills_active",
            "status",
            "id",
            sqlite_where=text(ACTIVE_SQL),
            postgresql_where=text(ACTIVE_SQL),
        ),
        # Latest per transfer, and the overlap check.
        Index("ix_backfills_transfer_created", "transfer_id", "created_time", "id"),
    )
