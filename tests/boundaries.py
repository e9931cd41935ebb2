"""Boundaries for connector tests: a team's view of a test's data folder."""

from __future__ import annotations

from pathlib import Path

from opendts.connectors import paths
from opendts.connectors.boundary import Boundary
from opendts.settings import Settings

#: The PostgreSQL the tests use runs on this machine: tests allow loopback on purpose.
LOCAL_NETWORKS = ("127.0.0.0/8", "::1/128", "localhost")


def boundary(team_id: int = 1, data_dir: Path | None = None, **overrides: object) -> Boundary:
    """Team ``team_id``'s boundary in ``data_dir`` (default: the connectors' data folder),
    with this machine's PostgreSQL and SQLite allowed."""
    values: dict[str, object] = {
        "team_id": team_id,
        "data_dir": (data_dir or paths.data_dir()).resolve(),
        "allowed_networks": LOCAL_NETWORKS,
        "sql_dialects": ("postgresql", "sqlite"),
    }
    values.update(overrides)
    return Boundary(**values)  # type: ignore[arg-type]


def allow_local(settings: Settings) -> Settings:
    """``settings`` whose teams may reach this machine (the tests' PostgreSQL and servers),
    as an operator allows a laptop's own database with ``OPENDTS_ALLOWED_NETWORKS``."""
    return settings.model_copy(update={"allowed_networks": ",".join(LOCAL_NETWORKS)})
