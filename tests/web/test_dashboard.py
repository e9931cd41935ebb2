"""The dashboard in a real headless Chromium against a real ``opendts serve``.

Needs Playwright for Python and a Chromium binary (``/usr/bin/chromium``, or
``OPENDTS_CHROMIUM``); without them the test is skipped with the reason, except under
``CI=true``, where it fails. ``OPENDTS_SCREENSHOTS=1`` also rewrites ``docs/screenshots/``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from tests.live import LiveServer, admin_json
from tests.web.support import DESKTOP, PHONE, WAIT_MS, create

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def screenshot(page: Page, name: str) -> None:
    if os.environ.get("OPENDTS_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / name), full_page=True)


def test_dashboard_signs_in_creates_watches_and_cancels(browser: Browser, live: LiveServer) -> None:
    from playwright.sync_api import expect

    expect.set_options(timeout=WAIT_MS)
    slow = admin_json(
        live.env,
        "transfer",
        "create",
        "--team",
        str(live.team_id),
        "--name",
        "slow",
        "--kind",
        "fault",
        "--config",
        '{"latency_ms": 60000}',
    )
    slow_id = int(slow["transfer_id"])  # type: ignore[call-overload]
    origin = live.base_url.removesuffix("/v1")
    context = browser.new_context(viewport=DESKTOP)  # type: ignore[arg-type]
    page = context.new_page()
    page.on("dialog", lambda dialog: dialog.accept())
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # The page runs under its Content-Security-Policy: nothing it does may be refused.
    page.on(
        "console",
        lambda message: "Content Security Policy" in message.text and errors.append(message.text),
    )

    # A wrong key is refused next to the field; the demo key signs in (one team: no picker).
    page.goto(f"{origin}/")
    page.fill("#api_key", "odts_wrong")
    page.click("#sign-in button[type=submit]")
    expect(page.locator("#sign-in-error")).not_to_be_empty()
    page.fill("#api_key", live.api_key)
    page.click("#sign-in button[type=submit]")
    expect(page.locator("#team-name")).to_have_text("Demo team")
    expect(page.locator("#create-form")).to_be_visible()
    assert "odts_" not in page.evaluate("document.cookie")  # HttpOnly: scripts never see it

    # Create a two-week backfill through the form; its bar fills live, without a reload.
    page.evaluate("window.__sameDocument = true")
    create(page, live.transfer_id, "2024-03-04", "2024-03-17")
    row = page.locator("#backfills tbody tr").first
    expect(row.locator(".badge")).to_have_text("COMPLETED")
    expect(row.locator("[role=progressbar]")).to_have_attribute("aria-valuenow", "14")
    expect(row.locator("[role=progressbar]")).to_have_attribute("aria-valuemax", "14")
    assert page.evaluate("window.__sameDocument") is True
    backfill_id = row.get_attribute("data-id")
    screenshot(page, "backfills.png")

    # Its page: one calendar cell per date, all completed; the runs with their messages.
    row.locator("a").click()
    expect(page).to_have_url(f"{origin}/#/backfills/{backfill_id}")
    cells = page.locator("#calendar .cal-cell")
    expect(cells).to_have_count(14)
    expect(page.locator('#calendar .cal-cell[data-status="completed"]')).to_have_count(14)
    expect(page.locator("#runs tbody tr")).to_have_count(14)
    expect(page.locator("#runs tbody tr").first).to_contain_text("Loaded 1,000 rows")
    expect(page.locator("#cancel")).to_have_count(0)  # complete: nothing to cancel
    screenshot(page, "backfill.png")

    # A validation error appears next to the field it is about.
    page.click("text=← Backfills")
    create(page, live.transfer_id, "2024-02-10", "2024-02-01")
    expect(page.locator("#range_end-error")).to_contain_text("before range_start")
    expect(page.locator("#range_start-error")).to_be_empty()
    create(page, live.transfer_id, "2024-02-01", "")
    expect(page.locator("#range_end-error")).to_contain_text("range_end")

    # A backfill of a slow transfer is cancelled with the button.
    create(page, slow_id, "2024-05-01", "2024-05-10")
    slow_row = page.locator("#backfills tbody tr").first
    expect(slow_row).to_contain_text("slow")
    expect(slow_row.locator(".badge")).to_have_text("RUNNING")
    slow_row.locator("a").click()
    page.click("#cancel")
    expect(page.locator("#summary .badge")).to_have_text("CANCELLED")
    expect(page.locator("#cancel")).to_have_count(0)

    # Filters: by status, then by transfer (each change reloads the list: wait for it).
    page.click("text=← Backfills")
    settled = page.locator('#backfills[aria-busy="false"]')
    rows = page.locator("#backfills tbody tr")
    page.select_option("#filter-status", "CANCELLED")
    expect(settled).to_have_count(1)
    expect(rows).to_have_count(1)
    expect(rows.locator(".badge")).to_have_text("CANCELLED")
    page.select_option("#filter-status", "all")
    page.select_option("#filter-transfer", str(live.transfer_id))
    expect(settled).to_have_count(1)
    expect(rows).to_have_count(1)
    expect(rows.locator(".badge")).to_have_text("COMPLETED")
    page.select_option("#filter-transfer", "")
    expect(settled).to_have_count(1)
    expect(rows).to_have_count(2)

    # A phone shows the list without horizontal scrolling.
    page.set_viewport_size(PHONE)  # type: ignore[arg-type]
    expect(page.locator("#backfills tbody tr")).to_have_count(2)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    page.goto(f"{origin}/#/backfills/{backfill_id}")
    expect(page.locator('#calendar .cal-cell[data-status="completed"]')).to_have_count(14)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")

    # Sign out: the cookie is gone, the API refuses the page's requests.
    page.click("#sign-out")
    expect(page.locator("#sign-in")).to_be_visible()
    expect(page.locator("#nav")).to_be_hidden()  # no team name, no "Sign out" any more
    assert page.context.cookies() == []
    assert errors == []
    context.close()
