"""Fixtures: every database-backed test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient

from opendts.api.app import create_app
from opendts.kit.clock import set_clock
from opendts.kit.db import Database
from opendts.settings import Settings
from tests import databases
from tests.factories import Account, make_account
from tests.live import LiveServer, live_server


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return databases.sqlite_template(tmp_path_factory.mktemp("template"))


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    databases.require_pg()
    with databases.pg_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database_url(
    backend: str, request: pytest.FixtureRequest, sqlite_template: Path, tmp_path: Path
) -> str:
    if backend == "sqlite":
        return databases.fresh_sqlite(sqlite_template, tmp_path)
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    if database.dialect == "postgresql":
        databases.truncate_all(database)
    yield database
    database.dispose()


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(data_dir=tmp_path, database_url=database_url)


@pytest.fixture
def app(settings: Settings, db: Database) -> FastAPI:
    return create_app(settings, db)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def account(db: Database) -> Account:
    """An admin of a fresh team, with an all-scopes key and one active transfer."""
    return make_account(db)


@pytest.fixture(autouse=True)
def _system_clock() -> Iterator[None]:
    yield
    set_clock(None)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def live(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """A real ``opendts serve`` process with a demo account, on each database."""
    data_dir = tmp_path_factory.mktemp("live")
    if request.param == "sqlite":
        with live_server(data_dir) as server:
            yield server
        return
    databases.require_pg()
    with databases.pg_database() as url, live_server(data_dir, url) as server:
        yield server
