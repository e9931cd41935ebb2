"""Boundaries for connector tests: a team's view of a test's data folder.

Connector tests run as team 1 of a data folder set per test (``use_data_dir``, done by the
``team_folder`` fixtures): its embedded warehouses live in ``team_dir()`` and its file source
reads ``files_dir()``, exactly as on a server.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from opendts.connectors import paths
from opendts.connectors.boundary import Boundary
from opendts.settings import Settings

#: The PostgreSQL the tests use runs on this machine: tests allow loopback on purpose.
LOCAL_NETWORKS = ("127.0.0.0/8", "::1/128", "localhost")

_data_dir: Path | None = None


@contextmanager
def use_data_dir(data_dir: Path) -> Iterator[Path]:
    """Make ``data_dir`` the data folder of ``boundary()`` inside the block; yields team 1's
    folder (created, with its ``files/``)."""
    global _data_dir
    previous, _data_dir = _data_dir, data_dir.resolve()
    try:
        yield paths.ensure_team_dir(boundary())
    finally:
        _data_dir = previous


def boundary(team_id: int = 1, data_dir: Path | None = None, **overrides: object) -> Boundary:
    """Team ``team_id``'s boundary in ``data_dir`` (default: the one ``use_data_dir`` set),
    with this machine's PostgreSQL and SQLite allowed."""
    folder = data_dir or _data_dir
    if folder is None:
        raise RuntimeError("no data folder: use tests.boundaries.use_data_dir(tmp_path)")
    values: dict[str, object] = {
        "team_id": team_id,
        "data_dir": folder.resolve(),
        "allowed_networks": LOCAL_NETWORKS,
        "sql_dialects": ("postgresql", "sqlite"),
        "metadata_url": f"sqlite:///{folder.resolve() / 'opendts.db'}",
    }
    values.update(overrides)
    return Boundary(**values)  # type: ignore[arg-type]


def team_dir(team_id: int = 1) -> Path:
    """The team's folder in the current data folder."""
    return paths.team_dir(boundary(team_id))


def files_dir(team_id: int = 1) -> Path:
    """The team's ``files/`` folder (what relative ``file`` source paths read)."""
    return paths.files_dir(boundary(team_id))


def allow_local(settings: Settings) -> Settings:
    """``settings`` whose teams may reach this machine (the tests' PostgreSQL and servers),
    as an operator allows a laptop's own database with ``OPENDTS_ALLOWED_NETWORKS``."""
    return settings.model_copy(update={"allowed_networks": ",".join(LOCAL_NETWORKS)})
