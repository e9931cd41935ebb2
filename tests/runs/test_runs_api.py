"""The transfer runs API: filters, sorting, paging, details, validation and access."""

from __future__ import annotations

from datetime import date

import pytest
from starlette.testclient import TestClient

from opendts.auth.permissions import Role
from opendts.engine import queue
from opendts.kit.clock import utcnow
from opendts.kit.db import Database
from tests.factories import Account, make_account, make_backfill

CAPS = queue.Caps(total=100, per_team=100)


def runs_url(account: Account, transfer_id: int | None = None) -> str:
    return f"/v1/teams/{account.team_id}/transfers/{transfer_id or account.transfer_id}/runs"


@pytest.fixture
def history(db: Database, account: Account) -> dict[str, int]:
    """Jan 1 to 10: Jan 10 and 9 completed, Jan 8 failed (terminal), Jan 7 waiting for a retry,
    Jan 6 running, the rest queued. Returns run ids by date."""
    make_backfill(db, account, date(2024, 1, 1), date(2024, 1, 10))
    with db.session(write=True) as session:
        queue.plan_step(session, batch_size=100, max_attempts=3, now=utcnow())
    with db.session(write=True) as session:
        session.execute(queue.update(queue.transfers).values(max_parallel_runs=5))
    with db.session(write=True) as session:
        got = queue.claim(session, owner="w", want=5, caps=CAPS, lease_seconds=60, now=utcnow())
    by_date = {str(c.data_date): c for c in got}
    outcomes = [
        queue.Outcome(
            by_date["2024-01-10"].run_id,
            "w",
            1,
            queue.Result.COMPLETED,
            "done",
            rows=7,
            duration=0.5,
        ),
        queue.Outcome(
            by_date["2024-01-09"].run_id,
            "w",
            1,
            queue.Result.COMPLETED,
            "done",
            rows=3,
            duration=0.25,
        ),
        queue.Outcome(
            by_date["2024-01-08"].run_id,
            "w",
            1,
            queue.Result.FAILED,
            "Failed: bad",
            error="bad credentials",
            duration=0.1,
        ),
        queue.Outcome(
            by_date["2024-01-07"].run_id,
            "w",
            1,
            queue.Result.RETRY,
            "Attempt 1 failed",
            error="timeout",
            duration=2.0,
            retry_at=utcnow(),
        ),
    ]
    with db.session(write=True) as session:
        queue.apply(session, outcomes, now=utcnow())
    with db.session() as session:
        rows = session.execute(queue.select(queue.runs.c.data_date, queue.runs.c.id)).all()
    return {str(d): i for d, i in rows}


def listed(client: TestClient, account: Account, **params: object) -> list[dict[str, object]]:
    query = {"start_date": "2024-01-01", "end_date": "2024-01-31", **params}
    response = client.get(runs_url(account), headers=account.headers, params=query)
    assert response.status_code == 200, response.text
    assert response.json()["meta"]["request_id"] == response.headers["x-request-id"]
    data: list[dict[str, object]] = response.json()["data"]
    return data


def test_runs_of_a_date_range_newest_first_by_default(
    client: TestClient, account: Account, history: dict[str, int]
) -> None:
    data = listed(client, account)
    assert [r["data_date"] for r in data] == [f"2024-01-{d:02d}" for d in range(10, 0, -1)]
    by_date = {r["data_date"]: r for r in data}
    assert by_date["2024-01-10"]["status"] == "COMPLETED"
    assert by_date["2024-01-10"]["total_rows"] == 7
    assert by_date["2024-01-10"]["total_duration"] == 0.5
    assert by_date["2024-01-10"]["ended_time"].endswith("Z")  # type: ignore[union-attr]
    assert by_date["2024-01-08"]["status"] == "FAILED"
    assert by_date["2024-01-07"]["status"] == "QUEUED"
    assert by_date["2024-01-07"]["next_attempt_time"] is not None
    assert by_date["2024-01-06"]["status"] == "RUNNING"
    assert by_date["2024-01-01"]["status"] == "QUEUED"
    assert {r["type"] for r in data} == {"Backfill"}
    assert all(isinstance(r["message"], str) and r["message"] for r in data)
    required = {
        "id",
        "status",
        "type",
        "message",
        "created_time",
        "ended_time",
        "total_duration",
        "total_rows",
        "data_date",
    }
    assert all(required <= set(r) for r in data)


def test_date_bounds_are_inclusive_and_accept_date_times(
    client: TestClient, account: Account, history: dict[str, int]
) -> None:
    for start, end in [
        ("2024-01-03", "2024-01-05"),
        ("2024-01-03T00:00:00", "2024-01-05T00:00:00"),
        ("2024-01-03T00:00:00+00:00", "2024-01-05T23:59:59Z"),
        ("2024-01-03T10:00:00.123456", "2024-01-05T00:00:00+02:00"),
    ]:
        data = listed(client, account, start_date=start, end_date=end)
        assert [r["data_date"] for r in data] == ["2024-01-05", "2024-01-04", "2024-01-03"], start
    assert listed(client, account, start_date="2023-01-01", end_date="2023-12-31") == []


def test_sorting_and_paging(client: TestClient, account: Account, history: dict[str, int]) -> None:
    asc = listed(client, account, sort_field="data_date", sort_direction="ASC")
    assert [r["data_date"] for r in asc][:3] == ["2024-01-01", "2024-01-02", "2024-01-03"]
    page = listed(client, account, sort_direction="ASC", limit=3, offset=4)
    assert [r["data_date"] for r in page] == ["2024-01-05", "2024-01-06", "2024-01-07"]
    assert listed(client, account, limit=3, offset=9)[0]["data_date"] == "2024-01-01"
    assert listed(client, account, offset=10) == []
    ended = listed(client, account, sort_field="ended_time", sort_direction="DESC")
    # Runs that never ended come last whichever the direction.
    assert [r["ended_time"] is None for r in ended] == [False] * 3 + [True] * 7
    created = listed(client, account, sort_field="created_time", sort_direction="ASC")
    assert len(created) == 10


def test_issues_only_keeps_failed_and_retried_runs(
    client: TestClient, account: Account, history: dict[str, int]
) -> None:
    data = listed(client, account, filter_issues_only="true")
    assert sorted(r["data_date"] for r in data) == ["2024-01-07", "2024-01-08"]
    assert len(listed(client, account, filter_issues_only="false")) == 10


def test_a_run_in_detail(client: TestClient, account: Account, history: dict[str, int]) -> None:
    url = f"/v1/teams/{account.team_id}/transfer_runs/{history['2024-01-10']}"
    response = client.get(url, headers=account.headers)
    assert response.status_code == 200
    run = response.json()["data"]
    assert run["id"] == history["2024-01-10"] and run["status"] == "COMPLETED"
    assert run["data_date"] == "2024-01-10" and run["type"] == "Backfill"
    assert isinstance(run["external_id"], str) and run["external_id"]
    assert run["query_details"] == [
        {"status": "COMPLETED", "rows": 7, "duration": 0.5, "error_description": None, "attempt": 1}
    ]
    assert (run["query_amount"], run["failed_query_amount"]) == (1, 0)
    for key in ("started_time", "ended_time", "created_time", "queued_time"):
        assert run[key].endswith("Z")
    failed = client.get(
        f"/v1/teams/{account.team_id}/transfer_runs/{history['2024-01-08']}",
        headers=account.headers,
    ).json()["data"]
    assert failed["query_details"][0]["error_description"] == "bad credentials"
    assert failed["failed_query_amount"] == 1


@pytest.mark.parametrize(
    ("params", "names"),
    [
        ({"end_date": "2024-01-31"}, "start_date"),
        ({"start_date": "2024-01-01"}, "end_date"),
        ({"start_date": "2024-13-01", "end_date": "2024-01-31"}, "start_date"),
        ({"start_date": "yesterday", "end_date": "2024-01-31"}, "start_date"),
        ({"start_date": "2024-02-01", "end_date": "2024-01-31"}, "end_date"),
        ({"limit": "0"}, "limit"),
        ({"limit": "10001"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"offset": "-1"}, "offset"),
        ({"sort_field": "status"}, "sort_field"),
        ({"sort_direction": "UP"}, "sort_direction"),
        ({"filter_issues_only": "maybe"}, "filter_issues_only"),
    ],
)
def test_bad_query_parameters_are_400_naming_the_parameter(
    client: TestClient, account: Account, params: dict[str, str], names: str
) -> None:
    query = {"start_date": "2024-01-01", "end_date": "2024-01-31"}
    query.update(params)
    if "start_date" not in params and names == "start_date":
        query.pop("start_date")
    if "end_date" not in params and names == "end_date" and "start_date" in params:
        query.pop("end_date")
    response = client.get(runs_url(account), headers=account.headers, params=query)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "INVALID_PARAMETER" and names in error["description"]


def test_access_rules(
    client: TestClient, db: Database, account: Account, history: dict[str, int]
) -> None:
    query = {"start_date": "2024-01-01", "end_date": "2024-01-31"}
    run_url = f"/v1/teams/{account.team_id}/transfer_runs/{history['2024-01-10']}"
    assert client.get(runs_url(account), params=query).status_code == 401
    assert client.get(run_url).status_code == 401
    viewer = make_account(
        db, role=Role.VIEWER, team_id=account.team_id, transfer_id=account.transfer_id
    )
    assert client.get(runs_url(account), params=query, headers=viewer.headers).status_code == 200
    assert client.get(run_url, headers=viewer.headers).status_code == 200
    no_read = make_account(db, scopes=("dwh_transfers_write",), team_id=account.team_id)
    assert client.get(run_url, headers=no_read.headers).status_code == 403
    stranger = make_account(db)
    assert client.get(run_url, headers=stranger.headers).status_code == 403
    # The stranger's own team: another team's run and transfer are 404, like missing ones.
    other_run = f"/v1/teams/{stranger.team_id}/transfer_runs/{history['2024-01-10']}"
    response = client.get(other_run, headers=stranger.headers)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "TRANSFER_RUN_NOT_FOUND"
    other_transfer = f"/v1/teams/{stranger.team_id}/transfers/{account.transfer_id}/runs"
    response = client.get(other_transfer, params=query, headers=stranger.headers)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "TRANSFER_NOT_FOUND"
    bad_id = client.get(f"/v1/teams/{account.team_id}/transfer_runs/1.5", headers=account.headers)
    assert bad_id.status_code == 400
