"""``GET /readyz``: ready when the database answers and is migrated to head; else 503."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from starlette.testclient import TestClient

from opendts.api.app import create_app
from opendts.kit import migrate
from opendts.kit.db import Database
from opendts.settings import Settings
from tests import databases


def test_ready_on_a_migrated_database(client: TestClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready"}
    # The verdict is cached for a few seconds; asking again is just as ready.
    assert client.get("/readyz").json() == {"status": "ready"}
    assert client.get("/healthz").status_code == 200


def test_not_ready_while_migrations_are_behind_head(sqlite_template: Path, tmp_path: Path) -> None:
    url = databases.fresh_sqlite(sqlite_template, tmp_path)
    db = Database(url)
    head = migrate.head_revision(db)
    config = migrate.alembic_config(url)
    with db.write_engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "-1")
    behind = migrate.current_revision(db)
    assert behind is not None and behind != head
    app = create_app(Settings(data_dir=tmp_path, database_url=url), db)
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/readyz")
        assert response.status_code == 503
        body = response.json()
        assert set(body) == {"meta", "error"}
        assert body["meta"]["request_id"] == response.headers["X-Request-Id"]
        assert body["error"]["code"] == "NOT_READY"
        description = body["error"]["description"]
        assert f"at {behind}, head is {head}" in description
        assert "opendts migrate" in description
        assert response.headers["Retry-After"] == "5"
        # /healthz only says the process is up.
        assert client.get("/healthz").status_code == 200

        migrate.upgrade(db)
        # A failed check is never cached: ready as soon as the migration ran.
        assert client.get("/readyz").status_code == 200
    db.dispose()


def not_ready(tmp_path: Path, url: str) -> str:
    """``/readyz`` of an app on ``url``: 503 NOT_READY (``/healthz`` still 200); its body."""
    app = create_app(Settings(data_dir=tmp_path, database_url=url))
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/readyz")
        assert client.get("/healthz").status_code == 200
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "NOT_READY"
    assert "cannot be reached" in error["description"]
    return response.text


def test_not_ready_when_the_sqlite_database_cannot_be_opened(tmp_path: Path) -> None:
    not_ready(tmp_path, f"sqlite:///{tmp_path / 'missing-folder' / 'opendts.db'}")


def test_not_ready_when_postgresql_is_unreachable(tmp_path: Path) -> None:
    # Nothing listens on port 1: the connection is refused at once.
    url = "postgresql+psycopg://opendts:secret@127.0.0.1:1/opendts?connect_timeout=2"
    assert "secret" not in not_ready(tmp_path, url)
