"""Fixtures of the dashboard's browser tests: a headless Chromium and a live server.

Needs Playwright for Python and a Chromium binary (``/usr/bin/chromium``, or
``OPENDTS_CHROMIUM``); without them the tests are skipped with the reason, except under
``CI=true``, where they fail.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.live import LiveServer, live_server
from tests.web.support import CHROMIUM, ON_CI

if TYPE_CHECKING:
    from playwright.sync_api import Browser


def _unavailable(reason: str) -> None:
    if ON_CI:
        pytest.fail(f"{reason} (CI=true: the browser tests must run)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("Playwright is not installed: .venv/bin/pip install playwright")
    if not CHROMIUM.exists():
        _unavailable(
            f"no Chromium at {CHROMIUM}: apt-get install chromium (or set OPENDTS_CHROMIUM)"
        )
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveServer]:
    """A fresh ``opendts serve`` (SQLite) with a demo account, for one test."""
    with live_server(tmp_path) as server:
        yield server
