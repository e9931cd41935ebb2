"""Destinations: where a team's transfers load their data."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from opendts.kit.clock import utcnow
from opendts.kit.db import Base
from opendts.kit.types import BigId, UtcDateTime


class Destination(Base):
    """A configured warehouse of one team. Credentials live encrypted in ``secrets``."""

    __tablename__ = "destinations"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    team_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("teams.id", ondelete="CASCADE"), index=True
    )
    display_name: Mapped[str] = mapped_column(String(200))
    #: The destination connector's name (``duckdb``, ``postgresql``, ...).
    type: Mapped[str] = mapped_column(String(60))
    #: The connector's settings without credentials (JSON object).
    fields: Mapped[str] = mapped_column(Text, default="{}")
    #: The credentials, sealed by ``opendts.kit.secrets`` ("" when there are none).
    secrets: Mapped[str] = mapped_column(Text, default="")
    auth_method: Mapped[str | None] = mapped_column(String(60), nullable=True)
    created_user_id: Mapped[int | None] = mapped_column(BigId, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
