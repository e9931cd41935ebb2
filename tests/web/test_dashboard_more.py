"""More of the dashboard in a real Chromium: a failed backfill, a key of two teams, validation.

Same requirements and skips as ``test_dashboard.py``. One server serves the whole module;
each test makes its own teams, transfers and dates, so none depends on another.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.live import LiveServer, live_server
from tests.web.support import DESKTOP, WAIT_MS, create, origin, sign_in

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page

OK_GREEN = "rgb(31, 157, 85)"  # --ok in app.css
FAILED_RED = "rgb(214, 69, 69)"  # --failed in app.css


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with live_server(tmp_path_factory.mktemp("dashboard")) as running:
        yield running


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    from playwright.sync_api import expect

    expect.set_options(timeout=WAIT_MS)
    opened = browser.new_context(viewport=DESKTOP)  # type: ignore[arg-type]
    yield opened
    opened.close()


def new_page(context: BrowserContext) -> tuple[Page, list[str]]:
    """A page whose script errors are collected (a test asserts there were none)."""
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return page, errors


def number(payload: dict[str, object], name: str) -> int:
    return int(payload[name])  # type: ignore[call-overload]


def api_backfill(
    server: LiveServer, api_key: str, team_id: int, transfer_id: int, dates: str
) -> int:
    """Create a backfill through the API (``dates`` is ``"start..end"``); returns its id."""
    start, end = dates.split("..")
    response = httpx.post(
        f"{server.base_url}/teams/{team_id}/transfers/{transfer_id}/backfills",
        headers={"Authorization": f"Bearer {api_key}"},
        json={"range_start": start, "range_end": end},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return int(response.json()["data"]["transfer_backfill_id"])


def test_failed_backfill_shows_status_report_calendar_and_runs(
    context: BrowserContext, server: LiveServer
) -> None:
    from playwright.sync_api import expect

    config = {"latency_ms": 5, "rows": 10, "fail_dates": ["2024-01-03"], "failure": "terminal"}
    fault = server.admin(
        "transfer",
        "create",
        "--team",
        str(server.team_id),
        "--name",
        "flaky",
        "--kind",
        "fault",
        "--config",
        json.dumps(config),
    )
    transfer_id = number(fault, "transfer_id")
    backfill_id = api_backfill(
        server, server.api_key, server.team_id, transfer_id, "2024-01-01..2024-01-05"
    )
    message = "Simulated terminal failure for 2024-01-03 (fault transfer)."

    page, errors = new_page(context)
    sign_in(page, server, server.api_key)
    expect(page.locator("#team-name")).to_have_text("Demo team")

    # The list: the backfill is FAILED, and its bar says one date failed.
    row = page.locator(f'#backfills tbody tr[data-id="{backfill_id}"]')
    expect(row.locator(".badge")).to_have_text("FAILED")
    expect(row.locator(".badge")).to_have_css("background-color", FAILED_RED)
    expect(row.locator(".progress-text")).to_have_text("5/5, 1 failed")
    expect(row).to_contain_text("flaky")

    # Its page: status, the error report naming the date and the error.
    row.locator("a").click()
    expect(page).to_have_url(f"{origin(server)}/#/backfills/{backfill_id}")
    expect(page.locator("#summary .badge")).to_have_text("FAILED")
    expect(page.locator("#summary")).to_contain_text("4 completed, 1 failed, 5 in all")
    report = page.locator("#error-report")
    expect(report).to_be_visible()
    expect(report.locator("li")).to_have_count(1)
    expect(report.locator("li strong")).to_have_text("2024-01-03")
    expect(report.locator("li")).to_contain_text(message)

    # The calendar: 2024-01-03 red and marked failed, the four other dates green.
    cells = page.locator("#calendar .cal-cell")
    expect(cells).to_have_count(5)
    failed_cell = page.locator('#calendar .cal-cell[data-date="2024-01-03"]')
    expect(failed_cell).to_have_attribute("data-status", "failed")
    expect(failed_cell).to_have_class("cal-cell cal-failed")
    expect(failed_cell).to_have_css("background-color", FAILED_RED)
    expect(page.locator("#calendar .cal-cell.cal-completed")).to_have_count(4)
    for day in ("2024-01-01", "2024-01-02", "2024-01-04", "2024-01-05"):
        cell = page.locator(f'#calendar .cal-cell[data-date="{day}"]')
        expect(cell).to_have_css("background-color", OK_GREEN)

    # The runs: the failed one carries its error; the others their success message.
    runs = page.locator("#runs tbody tr")
    expect(runs).to_have_count(5)
    failed_run = page.locator('#runs tbody tr[data-status="FAILED"]')
    expect(failed_run).to_have_count(1)
    expect(failed_run).to_contain_text("2024-01-03")
    expect(failed_run.locator(".badge")).to_have_text("FAILED")
    expect(failed_run.locator("td.message")).to_have_text(message)
    completed_run = page.locator('#runs tbody tr[data-status="COMPLETED"]').first
    expect(completed_run.locator("td.message")).to_contain_text("loaded 10 rows")
    assert errors == []


def test_key_of_two_teams_picks_and_switches_team(
    browser: Browser, context: BrowserContext, server: LiveServer
) -> None:
    from playwright.sync_api import expect

    beta = number(server.admin("team", "create", "--name", "Beta team"), "team_id")
    user = number(
        server.admin(
            "user", "create", "--email", "both@example.com", "--team", str(server.team_id)
        ),
        "user_id",
    )
    server.admin("user", "set-role", "--user", str(user), "--team", str(beta), "--role", "admin")
    both_key = str(server.admin("key", "create", "--user", str(user))["api_key"])
    beta_transfer = number(
        server.admin("transfer", "create", "--team", str(beta), "--name", "beta-load"),
        "transfer_id",
    )
    demo_backfill = api_backfill(
        server, server.api_key, server.team_id, server.transfer_id, "2024-06-01..2024-06-02"
    )
    beta_backfill = api_backfill(server, both_key, beta, beta_transfer, "2024-07-01..2024-07-03")

    page, errors = new_page(context)
    sign_in(page, server, both_key)

    # The picker lists both teams; nothing is shown before one is chosen.
    expect(page.locator("h1")).to_have_text("Choose a team")
    buttons = page.locator(".team-button")
    expect(buttons).to_have_count(2)
    expect(buttons.filter(has_text="Demo team")).to_have_count(1)
    expect(buttons.filter(has_text="Beta team")).to_have_count(1)
    expect(page.locator("#backfills")).to_have_count(0)

    # Beta team: only its backfill.
    buttons.filter(has_text="Beta team").click()
    expect(page.locator("#team-name")).to_have_text("Beta team")
    page_rows = page.locator("#backfills tbody tr")
    settled = page.locator('#backfills[aria-busy="false"]')
    expect(settled).to_have_count(1)
    expect(page_rows).to_have_count(1)
    expect(page_rows.first).to_have_attribute("data-id", str(beta_backfill))
    expect(page_rows.first).to_contain_text("beta-load")
    expect(page_rows.first).to_contain_text("2024-07-01 → 2024-07-03")

    # The choice survives a reload.
    page.reload()
    expect(page.locator("#team-name")).to_have_text("Beta team")
    expect(page_rows).to_have_count(1)

    # Filter by Beta's transfer, then switch: the other team's list is not filtered by it.
    page.select_option("#filter-transfer", str(beta_transfer))
    expect(settled).to_have_count(1)
    expect(page_rows).to_have_count(1)

    # Switch to Demo team: its backfill, never Beta's.
    expect(page.locator("#switch-team")).to_be_visible()
    page.click("#switch-team")
    expect(page.locator(".team-button")).to_have_count(2)
    page.locator(".team-button", has_text="Demo team").click()
    expect(page.locator("#team-name")).to_have_text("Demo team")
    expect(settled).to_have_count(1)
    expect(page.locator("#filter-transfer")).to_have_value("")
    expect(page.locator(f'#backfills tbody tr[data-id="{demo_backfill}"]')).to_have_count(1)
    expect(page.locator(f'#backfills tbody tr[data-id="{beta_backfill}"]')).to_have_count(0)
    expect(page.locator("#backfills")).not_to_contain_text("beta-load")
    assert errors == []

    # A key of Demo team only: no picker, and Beta's backfill id in the URL is not found.
    other_context = browser.new_context(viewport=DESKTOP)  # type: ignore[arg-type]
    other, other_errors = new_page(other_context)
    sign_in(other, server, server.api_key)
    expect(other.locator("#team-name")).to_have_text("Demo team")
    expect(other.locator("#switch-team")).to_be_hidden()
    expect(other.locator('#backfills[aria-busy="false"]')).to_have_count(1)
    expect(other.locator(f'#backfills tbody tr[data-id="{demo_backfill}"]')).to_have_count(1)
    expect(other.locator(f'#backfills tbody tr[data-id="{beta_backfill}"]')).to_have_count(0)
    other.goto(f"{origin(server)}/#/backfills/{beta_backfill}")
    alert = other.locator(".error[role=alert]")
    expect(alert).to_contain_text(f"Backfill {beta_backfill} does not exist in this team")
    expect(other.locator("#summary")).to_have_count(0)
    expect(other.locator("#calendar")).to_have_count(0)
    expect(other.locator("#view")).not_to_contain_text("2024-07-01")
    expect(other.locator("#view")).not_to_contain_text("beta-load")
    assert other_errors == []
    other_context.close()


def test_create_form_puts_range_errors_next_to_the_end_date(
    context: BrowserContext, server: LiveServer
) -> None:
    from playwright.sync_api import expect

    page, errors = new_page(context)
    sign_in(page, server, server.api_key)
    expect(page.locator("#create-form")).to_be_visible()

    # Too long: the message does not name a field, its code does (RANGE_TOO_LONG).
    create(page, server.transfer_id, "2000-01-01", "2024-01-01")
    expect(page.locator("#range_end-error")).to_contain_text("the maximum is 3660")
    expect(page.locator("#range_start-error")).to_be_empty()
    expect(page.locator("#create-error")).to_be_empty()
    expect(page.locator("#range_end-error")).to_have_css("color", FAILED_RED)

    # In the future.
    create(page, server.transfer_id, "2099-01-01", "2099-01-02")
    expect(page.locator("#range_end-error")).to_contain_text("is in the future")
    expect(page.locator("#range_start-error")).to_be_empty()

    # Fixed: the error goes away and the backfill is listed.
    create(page, server.transfer_id, "2023-02-01", "2023-02-02")
    expect(page.locator("#range_end-error")).to_be_empty()
    expect(page.locator("#backfills tbody tr").first).to_contain_text("2023-02-01 → 2023-02-02")
    assert errors == []


def test_key_of_a_user_in_no_team_is_told_why_it_cannot_sign_in(
    context: BrowserContext, server: LiveServer
) -> None:
    from playwright.sync_api import expect

    loner = number(server.admin("user", "create", "--email", "loner@example.com"), "user_id")
    key = str(server.admin("key", "create", "--user", str(loner))["api_key"])
    page, errors = new_page(context)
    sign_in(page, server, key)
    expect(page.locator("#sign-in-error")).to_contain_text("not a member of any team")
    expect(page.locator("#sign-in")).to_be_visible()
    expect(page.locator("#nav")).to_be_hidden()
    assert context.cookies() == []  # nothing to keep: the key opens no team
    assert errors == []
