"""Dashboard sessions: the cookie holds a random session id, the table only its SHA-256.

A session belongs to one API key and acts for it: revoking the key ends its sessions (the key is
checked on every request, and ``revoke_key`` deletes them), signing out deletes the session, and
a session ends after ``OPENDTS_UI_SESSION_IDLE_MINUTES`` without use or
``OPENDTS_UI_SESSION_MAX_HOURS`` after sign-in, whichever comes first. The id has 256 bits of
entropy, so a fast hash is the right tool (as for API keys). All SQL about sessions is here.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, ForeignKey, String, delete, or_, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from opendts.kit.db import Base
from opendts.kit.types import BigId, UtcDateTime


class UiSession(Base):
    """One signed-in browser, acting for one API key until it ends."""

    __tablename__ = "ui_sessions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    api_key_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("api_keys.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    #: Renewed at most every ``touch_interval`` (reads should not all become writes).
    last_seen_at: Mapped[datetime] = mapped_column(UtcDateTime)
    #: The absolute end, fixed at sign-in.
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)


@dataclass(frozen=True, slots=True)
class SessionPolicy:
    """How long a session lives: ``idle`` without use, ``lifetime`` at most."""

    idle: timedelta
    lifetime: timedelta

    @property
    def touch_after(self) -> timedelta:
        """How stale ``last_seen_at`` may get before a request renews it (at most a minute, and
        a quarter of the idle period, so an active session never looks idle)."""
        return min(timedelta(minutes=1), self.idle / 4)

    def ended(self, row: UiSession, now: datetime) -> bool:
        """Whether ``row`` expired or sat idle too long at ``now``."""
        return now >= row.expires_at or now >= row.last_seen_at + self.idle


def hash_token(token: str) -> str:
    """Hex SHA-256 of a session id."""
    return hashlib.sha256(token.encode()).hexdigest()


def open_session(session: Session, api_key_id: int, *, now: datetime, lifetime: timedelta) -> str:
    """Start a session for the key; returns the id for the cookie (never stored)."""
    token = secrets.token_urlsafe(32)
    session.add(
        UiSession(
            token_hash=hash_token(token),
            api_key_id=api_key_id,
            created_at=now,
            last_seen_at=now,
            expires_at=now + lifetime,
        )
    )
    session.flush()
    return token


def find(session: Session, token: str) -> UiSession | None:
    """The session whose id is ``token``, whether or not it has ended."""
    return session.scalars(
        select(UiSession).where(UiSession.token_hash == hash_token(token))
    ).first()


def touch(session: Session, session_id: int, now: datetime) -> None:
    """Record that the session was used at ``now``."""
    session.execute(update(UiSession).where(UiSession.id == session_id).values(last_seen_at=now))


def close(session: Session, token: str) -> int:
    """End the session whose id is ``token`` (sign-out); returns how many ended (0 or 1)."""
    return _deleted(
        session.execute(delete(UiSession).where(UiSession.token_hash == hash_token(token)))
    )


def close_all_of_key(session: Session, api_key_id: int) -> int:
    """End every session of a key (the key was revoked)."""
    return _deleted(session.execute(delete(UiSession).where(UiSession.api_key_id == api_key_id)))


def delete_ended(session: Session, *, now: datetime, idle: timedelta) -> int:
    """Forget sessions that expired or sat idle too long (housekeeping at each sign-in)."""
    ended = or_(UiSession.expires_at <= now, UiSession.last_seen_at <= now - idle)
    return _deleted(session.execute(delete(UiSession).where(ended)))


def _deleted(result: Any) -> int:
    return int(cast(CursorResult[Any], result).rowcount or 0)
