"""The demo account: a team with an admin user, an all-scopes key and a demo transfer."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from sqlalchemy.orm import Session

from opendts.auth.permissions import ALL_SCOPES, Role
from opendts.auth.service import issue_key
from opendts.teams import service as teams
from opendts.transfers import service as transfers


@dataclass(frozen=True, slots=True)
class DemoAccount:
    """Ids and the one-time API key of a demo setup."""

    team_id: int
    user_id: int
    api_key: str
    transfer_id: int

    def as_dict(self) -> dict[str, object]:
        """The JSON shape printed by ``opendts admin demo --json``."""
        return asdict(self)


def create_demo(session: Session, team_name: str = "Demo team") -> DemoAccount:
    """Create a fresh demo team, its admin user, key and transfer."""
    team = teams.create_team(session, team_name)
    user = teams.create_user(session, f"admin@team-{team.id}.opendts.local", "Demo admin")
    teams.set_role(session, team.id, user.id, Role.ADMIN)
    key = issue_key(session, user.id, tuple(s.value for s in ALL_SCOPES), name="demo")
    # Until real connectors land, the demo transfer simulates a short load per date.
    transfer = transfers.create(
        session,
        team.id,
        "Demo transfer",
        created_user_id=user.id,
        max_parallel_runs=2,
        kind="fault",
        config={"latency_ms": 20, "rows": 1000},
    )
    return DemoAccount(team.id, user.id, key.plaintext, transfer.id)
