"""Bad input: a 400 or 422 that names what to fix, and nothing written."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient

from opendts.backfills.models import Backfill
from opendts.kit.clock import set_clock
from opendts.kit.db import Database
from opendts.transfers import service as transfers
from opendts.transfers.models import TransferState
from tests.factories import Account, make_backfill, make_transfer, set_status


def count_backfills(db: Database) -> int:
    with db.session() as session:
        return int(session.scalar(select(func.count()).select_from(Backfill)) or 0)


def url_of(account: Account, transfer_id: int | None = None) -> str:
    return f"/v1/teams/{account.team_id}/transfers/{transfer_id or account.transfer_id}/backfills"


def post(client: TestClient, account: Account, body: object, transfer_id: int | None = None):  # type: ignore[no-untyped-def]
    return client.post(url_of(account, transfer_id), json=body, headers=account.headers)


@pytest.mark.parametrize(
    ("content", "content_type", "field"),
    [
        (b'{"range_start": "2024-01-01", "range_end": "2024-01-31"', "application/json", "JSON"),
        (b'{"range_start": "2024-01-01", "range_end": "2024-01-31"}', "text/plain", "Content-Type"),
        (b'{"range_start": "2024-01-01", "range_end": "2024-01-31"}', None, "Content-Type"),
        (b"", "application/json", "empty"),
        (b'["2024-01-01", "2024-01-31"]', "application/json", "object"),
        (b'"2024-01-01"', "application/json", "object"),
        (b'{"range_end": "2024-01-31"}', "application/json", "range_start"),
        (b'{"range_start": "2024-01-01"}', "application/json", "range_end"),
        (b'{"range_start": null, "range_end": "2024-01-31"}', "application/json", "range_start"),
        (
            b'{"range_start": 20240101, "range_end": "2024-01-31"}',
            "application/json",
            "range_start",
        ),
        (
            b'{"range_start": "2024-1-01", "range_end": "2024-01-31"}',
            "application/json",
            "range_start",
        ),
        (
            b'{"range_start": "20240101", "range_end": "2024-01-31"}',
            "application/json",
            "range_start",
        ),
        (
            b'{"range_start": "2024-01-01", "range_end": "2024-02-30"}',
            "application/json",
            "range_end",
        ),
        (
            b'{"range_start": "2023-02-29", "range_end": "2024-01-31"}',
            "application/json",
            "range_start",
        ),
        (
            b'{"range_start": "2024-01-01T00:00:00Z", "range_end": "2024-01-31"}',
            "application/json",
            "range_start",
        ),
        (
            b'{"range_start": "2024-13-01", "range_end": "2024-01-31"}',
            "application/json",
            "range_start",
        ),
        (
            b'{"range_start": "0000-01-01", "range_end": "2024-01-31"}',
            "application/json",
            "range_start",
        ),
    ],
)
def test_malformed_create_is_400_naming_the_field(
    client: TestClient,
    db: Database,
    account: Account,
    content: bytes,
    content_type: str | None,
    field: str,
) -> None:
    headers = dict(account.headers)
    if content_type:
        headers["Content-Type"] = content_type
    response = client.post(url_of(account), content=content, headers=headers)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "INVALID_PARAMETER"
    assert field.lower() in error["description"].lower()
    assert count_backfills(db) == 0


@pytest.mark.parametrize("bad_id", ["abc", "0", "-1", "1.5", "1e3", "9223372036854775808", "01"])
def test_bad_path_ids_are_400(client: TestClient, account: Account, bad_id: str) -> None:
    for url in [
        f"/v1/teams/{bad_id}/backfills",
        f"/v1/teams/{account.team_id}/backfills/{bad_id}",
        f"/v1/teams/{account.team_id}/transfers/{bad_id}/backfills/latest",
    ]:
        response = client.get(url, headers=account.headers)
        assert response.status_code == 400, url
        assert response.json()["error"]["code"] == "INVALID_PARAMETER"
        assert "_id" in response.json()["error"]["description"]


def test_end_before_start(client: TestClient, db: Database, account: Account) -> None:
    response = post(client, account, {"range_start": "2024-02-01", "range_end": "2024-01-31"})
    assert (response.status_code, response.json()["error"]["code"]) == (422, "INVALID_DATE_RANGE")
    assert count_backfills(db) == 0


def test_today_is_allowed_tomorrow_is_not(
    client: TestClient, db: Database, account: Account
) -> None:
    set_clock(lambda: datetime(2025, 6, 15, 23, 59, tzinfo=UTC))
    today = post(client, account, {"range_start": "2025-06-14", "range_end": "2025-06-15"})
    assert today.status_code == 200
    tomorrow = post(client, account, {"range_start": "2025-06-16", "range_end": "2025-06-16"})
    assert (tomorrow.status_code, tomorrow.json()["error"]["code"]) == (422, "RANGE_END_IN_FUTURE")
    assert count_backfills(db) == 1


def test_range_length_limit(client: TestClient, db: Database, account: Account) -> None:
    end = date(2024, 12, 31)
    longest = end - timedelta(days=3659)
    ok = post(client, account, {"range_start": longest.isoformat(), "range_end": end.isoformat()})
    assert ok.status_code == 200 and ok.json()["data"]["transfer_runs_total"] == 3660
    other = make_transfer(db, account.team_id)
    too_long = post(
        client,
        account,
        {"range_start": (longest - timedelta(days=1)).isoformat(), "range_end": end.isoformat()},
        other,
    )
    assert (too_long.status_code, too_long.json()["error"]["code"]) == (422, "RANGE_TOO_LONG")
    assert "3661" in too_long.json()["error"]["description"]
    assert count_backfills(db) == 1


@pytest.mark.parametrize("status", ["CREATED", "SCHEDULED", "RUNNING"])
def test_overlap_with_an_active_backfill_is_refused(
    client: TestClient, db: Database, account: Account, status: str
) -> None:
    existing = make_backfill(db, account, date(2024, 1, 10), date(2024, 1, 20))
    set_status(db, existing.id, status)
    for start, end in [
        ("2024-01-20", "2024-01-25"),
        ("2024-01-01", "2024-01-10"),
        ("2024-01-12", "2024-01-13"),
        ("2024-01-01", "2024-02-01"),
    ]:
        response = post(client, account, {"range_start": start, "range_end": end})
        assert response.status_code == 422, (start, end)
        error = response.json()["error"]
        assert error["code"] == "BACKFILL_OVERLAP"
        assert str(existing.id) in error["description"]
    assert count_backfills(db) == 1
    # Adjacent ranges and other transfers are fine.
    assert (
        post(client, account, {"range_start": "2024-01-21", "range_end": "2024-01-31"}).status_code
        == 200
    )
    other = make_transfer(db, account.team_id)
    assert (
        post(
            client, account, {"range_start": "2024-01-10", "range_end": "2024-01-20"}, other
        ).status_code
        == 200
    )


@pytest.mark.parametrize("status", ["COMPLETED", "CANCELLED", "FAILED"])
def test_finished_or_failed_backfills_do_not_block(
    client: TestClient, db: Database, account: Account, status: str
) -> None:
    existing = make_backfill(db, account, date(2024, 1, 10), date(2024, 1, 20))
    set_status(db, existing.id, status)
    assert (
        post(client, account, {"range_start": "2024-01-01", "range_end": "2024-01-31"}).status_code
        == 200
    )


def test_paused_and_deleted_transfers(client: TestClient, db: Database, account: Account) -> None:
    body = {"range_start": "2024-01-01", "range_end": "2024-01-02"}
    with db.session(write=True) as session:
        transfers.set_state(session, account.transfer_id, TransferState.PAUSED)
    paused = post(client, account, body)
    assert (paused.status_code, paused.json()["error"]["code"]) == (422, "TRANSFER_PAUSED")
    with db.session(write=True) as session:
        transfers.soft_delete(session, account.transfer_id)
    deleted = post(client, account, body)
    assert (deleted.status_code, deleted.json()["error"]["code"]) == (422, "TRANSFER_DELETED")
    assert count_backfills(db) == 0


def test_unknown_transfer_is_404(client: TestClient, db: Database, account: Account) -> None:
    response = post(
        client, account, {"range_start": "2024-01-01", "range_end": "2024-01-02"}, 777777
    )
    assert (response.status_code, response.json()["error"]["code"]) == (404, "TRANSFER_NOT_FOUND")


def test_unknown_fields_are_ignored(client: TestClient, account: Account) -> None:
    body = {"range_start": "2024-01-01", "range_end": "2024-01-02", "note": "x"}
    assert post(client, account, body).status_code == 200


def test_a_trailing_newline_is_not_a_date_or_an_id(client: TestClient, account: Account) -> None:
    body = {"range_start": "2024-01-01\n", "range_end": "2024-01-02"}
    response = post(client, account, body)
    assert response.status_code == 400
    assert "YYYY-MM-DD" in response.json()["error"]["description"]
    by_id = client.get(f"/v1/teams/{account.team_id}/backfills/1%0A", headers=account.headers)
    assert by_id.status_code == 400
