"""API keys: stored only as a hash of their secret part."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from opendts.kit.clock import utcnow
from opendts.kit.db import Base
from opendts.kit.types import BigId, UtcDateTime


class ApiKey(Base):
    """A bearer key of one user, limited to a set of scopes."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # The public, non-secret part of the key, used to find the row before comparing hashes.
    lookup_id: Mapped[str] = mapped_column(String(32), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200), default="")
    scopes: Mapped[str] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)

    @property
    def scope_set(self) -> frozenset[str]:
        """The key's scopes as a set."""
        return frozenset(self.scopes.split())
