"""Factories: teams, users with roles, keys with scopes, transfers, backfills."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import func, select, update

from opendts.auth.permissions import ALL_SCOPES, Role
from opendts.auth.service import issue_key, revoke_key
from opendts.backfills import service as backfills
from opendts.backfills.models import Backfill
from opendts.kit.clock import utcnow
from opendts.kit.db import Database
from opendts.teams import service as teams
from opendts.transfers import service as transfers
from opendts.transfers.models import TransferState

ALL = tuple(scope.value for scope in ALL_SCOPES)


@dataclass(frozen=True)
class Account:
    """A user in a team with a key, and one transfer of that team."""

    team_id: int
    user_id: int
    key_id: int
    api_key: str
    transfer_id: int

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


def make_account(
    db: Database,
    *,
    role: Role = Role.ADMIN,
    scopes: tuple[str, ...] = ALL,
    team_id: int | None = None,
    transfer_id: int | None = None,
) -> Account:
    """A user with ``role`` in a (new or given) team, a key with ``scopes``, and a transfer."""
    with db.session(write=True) as session:
        if team_id is None:
            team_id = teams.create_team(session, "Team").id
        user = teams.create_user(session, f"user-{uuid.uuid4().hex[:10]}@example.com")
        teams.set_role(session, team_id, user.id, role)
        key = issue_key(session, user.id, scopes)
        if transfer_id is None:
            transfer_id = transfers.create(session, team_id, "Transfer", created_user_id=user.id).id
    return Account(team_id, user.id, key.id, key.plaintext, transfer_id)


def make_transfer(db: Database, team_id: int, **kwargs: object) -> int:
    """Another transfer in ``team_id``."""
    with db.session(write=True) as session:
        return transfers.create(session, team_id, "Transfer", **kwargs).id  # type: ignore[arg-type]


def make_backfill(
    db: Database, account: Account, start: date, end: date, transfer_id: int | None = None
) -> Backfill:
    """A backfill created through the service, as the API would."""
    with db.session(write=True) as session:
        return backfills.create(
            session,
            team_id=account.team_id,
            transfer_id=transfer_id or account.transfer_id,
            user_id=account.user_id,
            range_start=start,
            range_end=end,
            rules=backfills.RangeRules(max_days=3660),
        )


def set_status(db: Database, backfill_id: int, status: str) -> None:
    """Force a backfill into ``status`` (until the engine moves them for real)."""
    with db.session(write=True) as session:
        session.execute(update(Backfill).where(Backfill.id == backfill_id).values(status=status))


@dataclass(frozen=True)
class Key:
    """An API key of some user (who may belong to no team at all)."""

    key_id: int
    user_id: int
    api_key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


def add_key(db: Database, user_id: int, scopes: tuple[str, ...] = ALL) -> Key:
    """Another key for an existing user."""
    with db.session(write=True) as session:
        key = issue_key(session, user_id, scopes)
    return Key(key.id, user_id, key.plaintext)


def make_user(db: Database, scopes: tuple[str, ...] = ALL) -> Key:
    """A user who is a member of no team, with a key."""
    with db.session(write=True) as session:
        user = teams.create_user(session, f"loner-{uuid.uuid4().hex[:10]}@example.com")
    return add_key(db, user.id, scopes)


def revoke(db: Database, key_id: int) -> None:
    """Revoke a key as ``opendts admin key revoke`` would."""
    with db.session(write=True) as session:
        revoke_key(session, key_id)


def pause_transfer(db: Database, transfer_id: int, paused: bool = True) -> None:
    """Pause (or unpause) a transfer as the admin CLI would."""
    state = TransferState.PAUSED if paused else TransferState.ACTIVE
    with db.session(write=True) as session:
        transfers.set_state(session, transfer_id, state)


def delete_transfer(db: Database, transfer_id: int) -> None:
    """Soft-delete a transfer as the admin CLI would."""
    with db.session(write=True) as session:
        transfers.soft_delete(session, transfer_id)


@dataclass(frozen=True)
class Row:
    """A backfill row to insert directly (bulk set-ups, chosen statuses and creation times)."""

    transfer_id: int
    range_start: date
    range_end: date
    status: str = "CREATED"
    created_time: datetime | None = None


def insert_backfills(db: Database, account: Account, rows: list[Row]) -> list[int]:
    """Insert backfills of ``account``'s team straight into the table; returns their ids."""
    with db.session(write=True) as session:
        objects = [
            Backfill(
                team_id=account.team_id,
                transfer_id=row.transfer_id,
                range_start=row.range_start,
                range_end=row.range_end,
                status=row.status,
                created_time=row.created_time or utcnow(),
                created_user_id=account.user_id,
                runs_total=(row.range_end - row.range_start).days + 1,
            )
            for row in rows
        ]
        session.add_all(objects)
        session.flush()
        return [backfill.id for backfill in objects]


def count_backfills(db: Database) -> int:
    """How many backfills exist, in every team."""
    with db.session() as session:
        return int(session.scalar(select(func.count()).select_from(Backfill)) or 0)


def backfill_rows(db: Database) -> list[dict[str, Any]]:
    """Every column of every backfill, by id: compare before and after to prove nothing changed."""
    with db.session() as session:
        table = Backfill.__table__
        rows = session.execute(select(table).order_by(table.c.id)).mappings().all()
        return [dict(row) for row in rows]
