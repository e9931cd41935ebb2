"""The five backfill endpoints, as a client sees them, on both databases."""

from __future__ import annotations

import re
from datetime import date, timedelta

import pytest
from sqlalchemy import func, select, update
from starlette.testclient import TestClient

from opendts.backfills.models import Backfill
from opendts.kit.db import Database
from tests.api.support import data_of, error_of, list_url
from tests.factories import Account, make_account, make_backfill, make_transfer, set_status

TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")
FIELDS = {
    "transfer_backfill_id",
    "transfer_id",
    "range_start_date",
    "range_end_date",
    "created_time",
    "created_user_id",
    "removed_time",
    "removed_user_id",
    "start_time",
    "end_time",
    "status",
    "transfer_runs_total",
    "transfer_runs_created",
    "transfer_runs_completed",
    "transfer_runs_failed",
    "error_report",
}


def create(client: TestClient, account: Account, start: str, end: str, transfer: int = 0):  # type: ignore[no-untyped-def]
    url = f"/v1/teams/{account.team_id}/transfers/{transfer or account.transfer_id}/backfills"
    return client.post(url, json={"range_start": start, "range_end": end}, headers=account.headers)


def count_backfills(db: Database) -> int:
    with db.session() as session:
        return int(session.scalar(select(func.count()).select_from(Backfill)) or 0)


def test_create_returns_the_contract_backfill(client: TestClient, account: Account) -> None:
    response = create(client, account, "2024-02-01", "2024-02-29")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    data = response.json()["data"]
    assert set(data) == FIELDS
    assert data["status"] == "CREATED"
    assert data["transfer_runs_total"] == 29  # leap year, inclusive range
    assert [data[f"transfer_runs_{c}"] for c in ("created", "completed", "failed")] == [0, 0, 0]
    assert data["error_report"] == []
    assert isinstance(data["transfer_backfill_id"], int) and data["transfer_backfill_id"] >= 1
    assert data["transfer_id"] == account.transfer_id
    assert data["created_user_id"] == account.user_id
    assert (data["range_start_date"], data["range_end_date"]) == ("2024-02-01", "2024-02-29")
    assert TIMESTAMP.match(data["created_time"])
    assert data["start_time"] is data["end_time"] is data["removed_time"] is None


def test_single_day_range_has_one_run(client: TestClient, account: Account) -> None:
    assert (
        create(client, account, "2024-03-10", "2024-03-10").json()["data"]["transfer_runs_total"]
        == 1
    )


def test_get_returns_what_create_returned(client: TestClient, account: Account) -> None:
    created = create(client, account, "2024-01-01", "2024-01-10").json()["data"]
    url = f"/v1/teams/{account.team_id}/backfills/{created['transfer_backfill_id']}"
    fetched = client.get(url, headers=account.headers)
    assert fetched.status_code == 200
    assert fetched.json()["data"] == created


def test_list_shows_only_incomplete_newest_first(
    client: TestClient, db: Database, account: Account
) -> None:
    ids = {}
    for index, status in enumerate(
        ["CREATED", "SCHEDULED", "RUNNING", "FAILED", "COMPLETED", "CANCELLED"]
    ):
        transfer = make_transfer(db, account.team_id)
        day = date(2024, 1, 1) + timedelta(days=index)
        ids[status] = make_backfill(db, account, day, day, transfer_id=transfer).id
        set_status(db, ids[status], status)
    make_backfill(db, make_account(db), date(2024, 1, 1), date(2024, 1, 1))  # other team
    response = client.get(f"/v1/teams/{account.team_id}/backfills", headers=account.headers)
    assert response.status_code == 200
    listed = [b["transfer_backfill_id"] for b in response.json()["data"]]
    assert listed == [ids["FAILED"], ids["RUNNING"], ids["SCHEDULED"], ids["CREATED"]]
    assert {b["status"] for b in response.json()["data"]} == {
        "CREATED",
        "SCHEDULED",
        "RUNNING",
        "FAILED",
    }


def test_list_is_capped_at_100_newest(client: TestClient, db: Database, account: Account) -> None:
    first = date(2020, 1, 1)
    created = [
        make_backfill(db, account, first + timedelta(days=i), first + timedelta(days=i)).id
        for i in range(105)
    ]
    response = client.get(f"/v1/teams/{account.team_id}/backfills", headers=account.headers)
    listed = [b["transfer_backfill_id"] for b in response.json()["data"]]
    assert listed == list(reversed(created))[:100]


def test_list_of_a_team_without_backfills_is_empty(client: TestClient, account: Account) -> None:
    response = client.get(f"/v1/teams/{account.team_id}/backfills", headers=account.headers)
    assert response.status_code == 200
    assert response.json()["data"] == []


def test_latest_is_the_newest_of_any_status(
    client: TestClient, db: Database, account: Account
) -> None:
    url = f"/v1/teams/{account.team_id}/transfers/{account.transfer_id}/backfills/latest"
    never = client.get(url, headers=account.headers)
    assert (never.status_code, never.json()["error"]["code"]) == (404, "BACKFILL_NOT_FOUND")
    older = create(client, account, "2024-01-01", "2024-01-02").json()["data"]
    newer = create(client, account, "2024-02-01", "2024-02-02").json()["data"]
    assert (
        client.get(url, headers=account.headers).json()["data"]["transfer_backfill_id"]
        == (newer["transfer_backfill_id"])
    )
    set_status(db, newer["transfer_backfill_id"], "CANCELLED")
    latest = client.get(url, headers=account.headers).json()["data"]
    assert latest["transfer_backfill_id"] == newer["transfer_backfill_id"]
    assert latest["status"] == "CANCELLED"
    assert older["transfer_backfill_id"] != latest["transfer_backfill_id"]
    missing = client.get(
        f"/v1/teams/{account.team_id}/transfers/424242/backfills/latest", headers=account.headers
    )
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "TRANSFER_NOT_FOUND")


def test_cancel_sets_who_and_when(client: TestClient, db: Database, account: Account) -> None:
    created = create(client, account, "2024-01-01", "2024-01-31").json()["data"]
    url = f"/v1/teams/{account.team_id}/backfills/{created['transfer_backfill_id']}"
    response = client.patch(url, json={"status": "CANCELLED"}, headers=account.headers)
    assert response.status_code == 200
    data = response.json()["data"]
    assert data["status"] == "CANCELLED"
    assert data["removed_user_id"] == account.user_id
    assert TIMESTAMP.match(data["removed_time"]) and data["end_time"] == data["removed_time"]
    assert data["removed_time"] >= data["created_time"]
    assert client.get(url, headers=account.headers).json()["data"] == data
    # A cancelled backfill no longer blocks its dates.
    assert create(client, account, "2024-01-15", "2024-01-20").status_code == 200


def test_failed_backfills_can_be_cancelled_final_ones_cannot(
    client: TestClient, db: Database, account: Account
) -> None:
    for status, expected in [("FAILED", 200), ("COMPLETED", 422), ("CANCELLED", 422)]:
        transfer = make_transfer(db, account.team_id)
        backfill = make_backfill(db, account, date(2024, 1, 1), date(2024, 1, 2), transfer)
        set_status(db, backfill.id, status)
        url = f"/v1/teams/{account.team_id}/backfills/{backfill.id}"
        response = client.patch(url, json={"status": "CANCELLED"}, headers=account.headers)
        assert response.status_code == expected, status
        if expected == 422:
            assert response.json()["error"]["code"] == "BACKFILL_NOT_CANCELLABLE"
            after = client.get(url, headers=account.headers).json()["data"]
            assert (after["status"], after["removed_time"]) == (status, None)


def test_cancel_bodies_other_than_cancelled_are_400_and_change_nothing(
    client: TestClient, db: Database, account: Account
) -> None:
    backfill = make_backfill(db, account, date(2024, 1, 1), date(2024, 1, 2))
    url = f"/v1/teams/{account.team_id}/backfills/{backfill.id}"
    json_headers = {**account.headers, "Content-Type": "application/json"}
    for body, headers in [
        (b'{"status": "RUNNING"}', json_headers),
        (b'{"status": "cancelled"}', json_headers),
        (b'{"status": null}', json_headers),
        (b"{}", json_headers),
        (b"[]", json_headers),
        (b"not json", json_headers),
        (b"", json_headers),
        (b'{"status": "CANCELLED"}', {**account.headers, "Content-Type": "text/plain"}),
    ]:
        response = client.patch(url, content=body, headers=headers)
        assert response.status_code == 400, body
        error = response.json()["error"]
        assert error["code"] == "INVALID_PARAMETER"
        assert error["description"]
    assert client.get(url, headers=account.headers).json()["data"]["status"] == "CREATED"
    assert count_backfills(db) == 1


def test_list_json_rendered_by_the_database_equals_the_reference_rendering(
    client: TestClient, db: Database, account: Account
) -> None:
    """The list is rendered in SQL for speed; it must match ``to_wire`` byte for byte in meaning."""
    from datetime import UTC, datetime

    plain = make_backfill(db, account, date(2024, 1, 1), date(2024, 1, 31))
    other = make_transfer(db, account.team_id)
    busy = make_backfill(db, account, date(2023, 12, 31), date(2024, 2, 29), other)
    with db.session(write=True) as session:
        session.execute(
            update(Backfill)
            .where(Backfill.id == busy.id)
            .values(
                status="RUNNING",
                start_time=datetime(2024, 3, 1, 0, 0, 0, tzinfo=UTC),  # no microseconds
                created_time=datetime(2024, 3, 1, 12, 30, 15, 123456, tzinfo=UTC),
                runs_created=61,
                runs_completed=7,
                runs_failed=2,
            )
        )
    listed = client.get(f"/v1/teams/{account.team_id}/backfills", headers=account.headers)
    by_id = {b["transfer_backfill_id"]: b for b in listed.json()["data"]}
    for backfill_id in (plain.id, busy.id):
        one = client.get(
            f"/v1/teams/{account.team_id}/backfills/{backfill_id}", headers=account.headers
        )
        assert by_id[backfill_id] == one.json()["data"]
    assert by_id[busy.id]["start_time"] == "2024-03-01T00:00:00.000000Z"
    assert by_id[busy.id]["created_time"] == "2024-03-01T12:30:15.123456Z"
    assert list(by_id[busy.id]) == list(one.json()["data"])  # same key order


@pytest.mark.parametrize(
    "query",
    ["transfer_id=%C2%B2", "limit=%D9%A3", "status=%C5%BFcheduled", "status=CREATED,,RUNNING"],
)
def test_list_filters_refuse_what_the_document_does_not_allow(
    client: TestClient, account: Account, query: str
) -> None:
    # A superscript two passed str.isdigit() and then int() raised (a 500); a long s upper-cased
    # to a plain S. The filters accept exactly what /v1/openapi.json declares.
    response = client.get(f"{list_url(account.team_id)}?{query}", headers=account.headers)
    error_of(response, 400, "INVALID_PARAMETER")


def test_list_filters_accept_any_case_and_spaces(client: TestClient, account: Account) -> None:
    url = f"{list_url(account.team_id)}?status=created%2C%20Running&limit=5"
    assert data_of(client.get(url, headers=account.headers)) == []
