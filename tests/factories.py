"""Factories: teams, users with roles, keys with scopes, transfers, backfills."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date

from sqlalchemy import update

from opendts.auth.permissions import ALL_SCOPES, Role
from opendts.auth.service import issue_key
from opendts.backfills import service as backfills
from opendts.backfills.models import Backfill
from opendts.kit.db import Database
from opendts.teams import service as teams
from opendts.transfers import service as transfers

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
