"""Transfers: what a backfill re-loads."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from opendts.kit.clock import utcnow
from opendts.kit.db import Base
from opendts.kit.types import BigId, UtcDateTime


class TransferState(StrEnum):
    """Whether a transfer accepts new work."""

    ACTIVE = "active"
    PAUSED = "paused"


class Transfer(Base):
    """A configured data transfer of one team."""

    __tablename__ = "transfers"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    team_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("teams.id", ondelete="CASCADE"), index=True
    )
    display_name: Mapped[str] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(20), default=TransferState.ACTIVE.value)
    max_parallel_runs: Mapped[int] = mapped_column(Integer, default=1)
    #: What a run of this transfer does (``opendts.engine.kinds``), and its JSON settings.
    kind: Mapped[str] = mapped_column(String(40), default="noop")
    config: Mapped[str] = mapped_column(Text, default="{}")
    #: Data transfers (kind ``load``): the source connector (its settings are ``config``, its
    #: credentials sealed in ``source_secrets``), the destination and the table.
    source: Mapped[str | None] = mapped_column(String(60), nullable=True)
    source_secrets: Mapped[str] = mapped_column(Text, default="")
    destination_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("destinations.id"), nullable=True, index=True
    )
    #: The data-source connection whose settings and credentials the source reads with
    #: (``opendts.connections``); the transfer's own settings go on top.
    data_source_connection_id: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("data_source_connections.id"), nullable=True, index=True
    )
    table_name: Mapped[str | None] = mapped_column(String(63), nullable=True)
    date_column: Mapped[str] = mapped_column(String(63), default="date")
    refresh_mode: Mapped[str] = mapped_column(String(20), default="replace")
    #: The contract's TransferConfigurationRequest fields, kept as sent (JSON).
    schema_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    transfer_type: Mapped[int | None] = mapped_column(Integer, nullable=True)
    accounts: Mapped[str] = mapped_column(Text, default="[]")
    segments: Mapped[str] = mapped_column(Text, default="[]")
    notification_recipients: Mapped[str] = mapped_column(Text, default="[]")
    #: TransferSchedule entries (JSON list); recurring runs are due at ``next_run_at``.
    schedule: Mapped[str] = mapped_column(Text, default="[]")
    next_run_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True, index=True)
    last_scheduled_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    created_user_id: Mapped[int | None] = mapped_column(BigId, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
