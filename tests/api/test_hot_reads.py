"""The backfill list and authentication read on bare pooled connections (``Database.read``):
they must survive the database dropping those connections, and see every commit at once."""

from __future__ import annotations

from datetime import date

import psycopg
import pytest
from starlette.testclient import TestClient

from opendts.auth.service import revoke_key
from opendts.kit.db import Database
from tests.databases import PG_ADMIN_DSN
from tests.factories import Account, make_backfill


def terminate_connections_to(db: Database) -> int:
    """Terminate every server process connected to ``db``'s database (as a failover would)."""
    name = db.engine.url.database
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        ).fetchall()
    return len(rows)


def test_list_answers_after_the_database_dropped_its_connections(
    client: TestClient, db: Database, account: Account, backend: str
) -> None:
    if backend != "postgresql":
        pytest.skip("SQLite connections are files: nothing can drop them")
    url = f"/v1/teams/{account.team_id}/backfills"
    assert client.get(url, headers=account.headers).status_code == 200  # pooled now
    assert terminate_connections_to(db) >= 1
    response = client.get(url, headers=account.headers)
    assert response.status_code == 200, response.text


def test_list_sees_each_commit_and_revocation_at_once(
    client: TestClient, db: Database, account: Account
) -> None:
    url = f"/v1/teams/{account.team_id}/backfills"
    assert client.get(url, headers=account.headers).json()["data"] == []
    created = make_backfill(db, account, date(2024, 1, 1), date(2024, 1, 2))
    listed = client.get(url, headers=account.headers).json()["data"]
    assert [b["transfer_backfill_id"] for b in listed] == [created.id]
    with db.session(write=True) as session:
        revoke_key(session, account.key_id)
    refused = client.get(url, headers=account.headers)
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "API_KEY_INVALID"
