"""Data-source connections: where a team's source credentials live, sealed."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from opendts.kit.clock import utcnow
from opendts.kit.db import Base
from opendts.kit.types import BigId, UtcDateTime


class DataSourceConnection(Base):
    """A source's credentials (and where they may be sent), used by the team's transfers.

    ``fields`` holds the source settings the connection sets, credentials masked or left out;
    ``secrets`` the credentials, sealed by ``opendts.kit.secrets`` with the location they are
    bound to (``opendts.connectors.credentials``).
    """

    __tablename__ = "data_source_connections"

    #: The contract's ``connection_id``: a UUID in its canonical lower-case text form.
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    team_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("teams.id", ondelete="CASCADE"), index=True
    )
    #: The source connector's name (``http``, ``sql``, ...).
    data_source_id: Mapped[str] = mapped_column(String(60))
    #: The destination type the contract ties the connection to, as a connector name.
    destination_type: Mapped[str] = mapped_column(String(60))
    display_name: Mapped[str] = mapped_column(String(200))
    fields: Mapped[str] = mapped_column(Text, default="{}")
    secrets: Mapped[str] = mapped_column(Text, default="")
    created_user_id: Mapped[int | None] = mapped_column(BigId, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
