"""Helpers of the dashboard's browser tests (the fixtures are in ``conftest.py``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from tests.live import LiveServer

if TYPE_CHECKING:
    from playwright.sync_api import Page

CHROMIUM = Path(os.environ.get("OPENDTS_CHROMIUM", "/usr/bin/chromium"))
ON_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
WAIT_MS = 30_000


def origin(server: LiveServer) -> str:
    """The dashboard's address (the server's base URL without ``/v1``)."""
    return server.base_url.removesuffix("/v1")


def create(page: Page, transfer_id: int, start: str, end: str) -> None:
    """Fill in and submit the dashboard's create form."""
    page.select_option("#transfer", str(transfer_id))
    page.fill("#range_start", start)
    page.fill("#range_end", end)
    page.click("#create-form button[type=submit]")


def sign_in(page: Page, server: LiveServer, api_key: str) -> None:
    """Open the dashboard and submit the sign-in form with ``api_key``."""
    page.goto(f"{origin(server)}/")
    page.fill("#api_key", api_key)
    page.click("#sign-in button[type=submit]")
