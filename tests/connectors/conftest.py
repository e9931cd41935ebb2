"""Every connector test runs as team 1 of its own data folder (``tmp_path``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.boundaries import use_data_dir


@pytest.fixture(autouse=True)
def team_folder(tmp_path: Path) -> Iterator[Path]:
    """Team 1's folder in ``tmp_path`` (``tests.boundaries.boundary()`` is that team)."""
    with use_data_dir(tmp_path) as folder:
        yield folder
