"""The demo account: a team with an admin user, an all-scopes key, an embedded DuckDB
warehouse as its destination and a transfer of the ``demo`` source into it.

Each demo team's warehouse is its own file, ``<data dir>/teams/<team_id>/warehouse.duckdb``:
the destination's path is relative, and relative paths live in the team's folder.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from sqlalchemy.orm import Session

from opendts.auth.permissions import ALL_SCOPES, Role
from opendts.auth.service import issue_key
from opendts.connectors.boundary import TEAMS_FOLDER, Boundary
from opendts.destinations import service as destinations
from opendts.kit.secrets import SecretBox
from opendts.settings import Settings
from opendts.teams import service as teams
from opendts.transfers import api as transfers_api

#: The demo transfer's table in the warehouse.
DEMO_TABLE = "demo_ad_metrics"
#: The demo destination's file, in the team's folder.
DEMO_WAREHOUSE = "warehouse.duckdb"


@dataclass(frozen=True, slots=True)
class DemoAccount:
    """Ids and the one-time API key of a demo setup."""

    team_id: int
    user_id: int
    api_key: str
    transfer_id: int
    destination_id: int
    #: The team's DuckDB file, under the data folder as configured (for a query command).
    warehouse: str

    def as_dict(self) -> dict[str, object]:
        """The JSON shape printed by ``opendts admin demo --json``."""
        return asdict(self)


def create_demo(session: Session, settings: Settings, team_name: str = "Demo team") -> DemoAccount:
    """Create a fresh demo team, its admin user, key and transfer."""
    team = teams.create_team(session, team_name)
    user = teams.create_user(session, f"admin@team-{team.id}.opendts.local", "Demo admin")
    teams.set_role(session, team.id, user.id, Role.ADMIN)
    key = issue_key(session, user.id, tuple(s.value for s in ALL_SCOPES), name="demo")
    # The demo stores no credentials: a throwaway key seals nothing.
    box = SecretBox(SecretBox.new_key())
    boundary = Boundary.for_team(settings, team.id)
    destination = destinations.create(
        session,
        box,
        boundary,
        user.id,
        destinations.DestinationInput(
            "duckdb", "Local warehouse (DuckDB)", {"path": DEMO_WAREHOUSE}
        ),
    )
    transfer = transfers_api.create(
        session,
        box,
        boundary,
        user.id,
        {
            "data_source_id": "demo",
            "destination_id": destination.id,
            "display_name": "Demo ad metrics",
            "table": DEMO_TABLE,
            "source_config": {"rows_per_day": 1000},
            "accounts": [{"account_id": "demo-account-1"}, {"account_id": "demo-account-2"}],
            "schedule": [{"run_interval": "daily", "run_hour": 6, "refresh_window": 3}],
            "max_parallel_runs": 2,
        },
    )
    warehouse = settings.data_dir / TEAMS_FOLDER / str(team.id) / DEMO_WAREHOUSE
    return DemoAccount(team.id, user.id, key.plaintext, transfer.id, destination.id, str(warehouse))
