"""The API reference at ``/docs``: packaged Swagger UI, no other origin, no inline script.

The first tests need no browser. The last renders the page in headless Chromium under a
strict Content-Security-Policy with every request to another origin blocked (skipped without
Chromium, except under ``CI=true``).
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient

from opendts.api.app import create_app
from opendts.settings import Settings
from tests.live import LiveServer
from tests.web.support import DESKTOP, WAIT_MS, origin

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Route

ROOT = Path(__file__).resolve().parents[2]
STRICT_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; frame-ancestors 'none'; base-uri 'none'"
)


class Page(HTMLParser):
    """Scripts, stylesheets and attributes of an HTML page."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[str] = []
        self.styles: list[str] = []
        self.inline: list[str] = []
        self.attributes: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        self.attributes += [name for name, _ in attrs]
        if tag == "script":
            self._in_script = True
            self.scripts.append(values.get("src") or "")
        if tag == "link" and values.get("rel") == "stylesheet":
            self.styles.append(values.get("href") or "")
        if tag == "style":
            self.inline.append("<style>")

    def handle_endtag(self, tag: str) -> None:
        self._in_script = self._in_script and tag != "script"

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline.append(data.strip()[:40])


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> FastAPI:
    data = tmp_path_factory.mktemp("reference")
    return create_app(Settings(data_dir=data, database_url=f"sqlite:///{data / 'm.db'}"))


def parsed(html: str) -> Page:
    page = Page()
    page.feed(html)
    return page


def test_docs_and_every_asset_load_from_this_server(app: FastAPI) -> None:
    with TestClient(app) as client:
        docs = client.get("/docs")
        assert docs.status_code == 200, docs.text
        assert docs.headers["content-type"].startswith("text/html")
        page = parsed(docs.text)
        assert page.scripts == ["/static/docs/swagger-ui-bundle.js", "/static/docs/reference.js"]
        assert "/static/docs/swagger-ui.css" in page.styles
        kinds = {".js": "javascript", ".css": "text/css"}
        for url in page.scripts + page.styles:
            asset = client.get(url)
            assert asset.status_code == 200, url
            assert kinds[Path(url).suffix] in asset.headers["content-type"], url
            assert len(asset.content) > 100, url
        init = client.get("/static/docs/reference.js").text
        assert '"/v1/openapi.json"' in init and "validatorUrl: null" in init
        assert client.get("/v1/openapi.json").status_code == 200
        for license_file in ("LICENSE", "NOTICE"):
            assert client.get(f"/static/docs/{license_file}").status_code == 200


def test_the_page_has_no_inline_script_and_names_no_other_origin() -> None:
    folder = ROOT / "src" / "opendts" / "web" / "static" / "docs"
    html = (folder / "index.html").read_text()
    page = parsed(html)
    assert page.inline == []
    assert not [name for name in page.attributes if name.startswith("on") or name == "style"]
    for own in ("index.html", "reference.js", "reference.css"):
        assert not re.search(r"https?://", (folder / own).read_text()), own
    assert "Apache License" in (folder / "LICENSE").read_text()


def test_the_dashboard_and_the_readme_link_to_the_reference() -> None:
    dashboard = (ROOT / "src" / "opendts" / "web" / "static" / "index.html").read_text()
    assert 'href="/docs"' in dashboard
    assert "/docs" in (ROOT / "README.md").read_text()


def test_the_reference_renders_offline_under_a_strict_csp(
    browser: Browser, live: LiveServer
) -> None:
    from playwright.sync_api import expect

    base = origin(live)
    foreign: list[str] = []
    violations: list[str] = []
    errors: list[str] = []

    def only_this_server(route: Route) -> None:
        url = route.request.url
        if not url.startswith(base):
            foreign.append(url)
            route.abort()
            return
        response = route.fetch()
        route.fulfill(
            response=response, headers={**response.headers, "content-security-policy": STRICT_CSP}
        )

    context = browser.new_context(viewport=DESKTOP)  # type: ignore[arg-type]
    page = context.new_page()
    page.route("**/*", only_this_server)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on(
        "console",
        lambda message: (
            violations.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    page.goto(f"{base}/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("opendts", timeout=WAIT_MS)
    expect(page.locator(".opblock").first).to_be_visible(timeout=WAIT_MS)
    assert page.locator(".opblock").count() >= 25
    expect(page.locator("text=createBackfill").first).to_be_attached()
    page.locator(".opblock-summary", has_text="createBackfill").first.click()
    expect(page.locator(".opblock-body").first).to_contain_text("range_start", timeout=WAIT_MS)
    context.close()
    assert foreign == []
    assert violations == []
    assert errors == []
