"""The tenant boundary: what one team's connectors may reach on this server.

Teams share a server; the operator owns the host. A ``Boundary`` is handed to every
connector call made for a team (``ReadRequest.boundary``, ``WriteRequest.boundary``,
``test_connection``, settings validation through ``parse_settings(..., boundary=...)``).
Connectors check each path and address they use against it at the moment they use it (the
resolved path, the connected address), not only when a config is saved: a symlink or a DNS
answer can change in between. Deny by default: what crosses the boundary is the operator's
decision (``OPENDTS_FILE_ROOTS``, ``OPENDTS_ALLOWED_NETWORKS``, ``OPENDTS_SQL_DIALECTS``).
``docs/security.md`` is the operator's view.

A boundary is plain data (it crosses into the processes that execute runs).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from opendts.settings import Settings

#: Folder of the data folder under which each team gets ``<team_id>/``.
TEAMS_FOLDER = "teams"


@dataclass(frozen=True, slots=True)
class Boundary:
    """What one team's connectors may reach."""

    team_id: int
    #: The installation's data folder (holds the metadata database and the secret key,
    #: which no team may reach; teams get ``teams/<team_id>/`` inside it).
    data_dir: Path
    #: Operator folders whose ``<root>/<team_id>/`` subfolder the ``file`` source may read.
    file_roots: tuple[Path, ...] = ()
    #: Operator allowances beyond public addresses: CIDRs and host names (raw entries).
    allowed_networks: tuple[str, ...] = ()
    #: SQLAlchemy backends the ``sql`` source may use.
    sql_dialects: tuple[str, ...] = ()
    #: The metadata database's URL: never a source or a destination.
    metadata_url: str | None = None

    @property
    def team_dir(self) -> Path:
        """The team's own folder: embedded warehouses and its ``files/``."""
        return self.data_dir / TEAMS_FOLDER / str(self.team_id)

    @classmethod
    def for_team(cls, settings: Settings, team_id: int) -> Boundary:
        """The boundary of ``team_id`` under the operator's ``settings``."""
        return cls(
            team_id=team_id,
            data_dir=settings.data_dir.resolve(),
            file_roots=tuple(Path(p).expanduser().resolve() for p in settings.file_root_list),
            allowed_networks=tuple(settings.allowed_network_list),
            sql_dialects=tuple(settings.sql_dialect_list),
            metadata_url=settings.resolved_database_url,
        )
