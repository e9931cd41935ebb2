"""What every response of the backfill API must look like, and short ways to make requests.

Every test in this package reads responses through ``envelope``/``data_of``/``error_of``, so the
envelope and header rules are checked on every response the suite sees, not only in one module.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any

import httpx
from starlette.testclient import TestClient

from tests.factories import Account

REQUEST_ID = re.compile(r"[A-Za-z0-9_-]{8,50}")
ERROR_CODE = re.compile(r"[A-Z][A-Z0-9_]*")
TIMESTAMP_Z = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z")
DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
MAX_ID = 9223372036854775807

BACKFILL_FIELDS = {
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
INT_FIELDS = (
    "transfer_backfill_id",
    "transfer_id",
    "created_user_id",
    "transfer_runs_total",
    "transfer_runs_created",
    "transfer_runs_completed",
    "transfer_runs_failed",
)
STATUSES = ("CREATED", "SCHEDULED", "RUNNING", "COMPLETED", "FAILED", "CANCELLED")
INCOMPLETE = ("CREATED", "SCHEDULED", "RUNNING", "FAILED")
JSON = {"Content-Type": "application/json"}


def envelope(response: httpx.Response) -> dict[str, Any]:
    """The parsed body, after checking what every response must carry."""
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    request_id = response.headers["X-Request-Id"]
    assert REQUEST_ID.fullmatch(request_id), request_id
    assert response.headers["content-type"].split(";")[0] == "application/json"
    body = response.json()
    assert isinstance(body, dict)
    assert body["meta"] == {"request_id": request_id}
    if response.status_code < 400:
        assert set(body) == {"meta", "data"}, body
        return body
    assert set(body) == {"meta", "error"}, body  # never a framework {"detail": ...}
    error = body["error"]
    assert set(error) in ({"code", "message"}, {"code", "message", "description"}), error
    assert ERROR_CODE.fullmatch(error["code"]) and len(error["code"]) <= 100, error
    assert isinstance(error["message"], str) and error["message"].strip(), error
    assert "\n" not in error["message"] and len(error["message"]) <= 255, error
    if "description" in error:
        assert isinstance(error["description"], str) and error["description"].strip(), error
        assert len(error["description"]) <= 255, error
    if response.status_code == 401:
        assert response.headers["WWW-Authenticate"].startswith("Bearer"), response.headers
    if response.status_code == 429:
        retry_after = response.headers["Retry-After"]
        assert retry_after.isdigit() and 1 <= int(retry_after) <= 3600, retry_after
    return body


def data_of(response: httpx.Response, status: int = 200) -> Any:
    """The ``data`` of a success response (checking the status and the envelope)."""
    assert response.status_code == status, response.text
    return envelope(response)["data"]


def error_of(response: httpx.Response, status: int, code: str | None = None) -> dict[str, str]:
    """The ``error`` object of an error response (checking status, code and the envelope)."""
    assert response.status_code == status, response.text
    error: dict[str, str] = envelope(response)["error"]
    if code is not None:
        assert error["code"] == code, error
    return error


def check_backfill(item: dict[str, Any]) -> None:
    """A backfill object exactly as the contract types it."""
    assert set(item) == BACKFILL_FIELDS, item
    for name in INT_FIELDS:
        assert type(item[name]) is int, (name, item[name])  # JSON integers, not strings/floats
    assert item["transfer_backfill_id"] >= 1
    for name in ("range_start_date", "range_end_date"):
        assert DAY.fullmatch(item[name]), item[name]
        date.fromisoformat(item[name])
    assert TIMESTAMP_Z.fullmatch(item["created_time"]), item["created_time"]
    for name in ("removed_time", "start_time", "end_time"):
        assert item[name] is None or TIMESTAMP_Z.fullmatch(item[name]), (name, item[name])
    assert item["removed_user_id"] is None or type(item["removed_user_id"]) is int
    assert item["status"] in STATUSES
    assert item["error_report"] == []


def instant(value: str) -> datetime:
    """A ``...Z`` timestamp of the API as an aware datetime."""
    return datetime.fromisoformat(value)


# URLs and calls, named as a user of the API would name them.


def list_url(team_id: int | str) -> str:
    return f"/v1/teams/{team_id}/backfills"


def backfill_url(team_id: int | str, backfill_id: int | str) -> str:
    return f"/v1/teams/{team_id}/backfills/{backfill_id}"


def create_url(team_id: int | str, transfer_id: int | str) -> str:
    return f"/v1/teams/{team_id}/transfers/{transfer_id}/backfills"


def latest_url(team_id: int | str, transfer_id: int | str) -> str:
    return f"/v1/teams/{team_id}/transfers/{transfer_id}/backfills/latest"


def create(
    client: TestClient,
    account: Account,
    start: str,
    end: str,
    *,
    transfer_id: int | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """POST a backfill of ``account``'s transfer (or ``transfer_id``) in ``account``'s team."""
    return client.post(
        create_url(account.team_id, transfer_id or account.transfer_id),
        json={"range_start": start, "range_end": end},
        headers=account.headers if headers is None else headers,
    )


def cancel(
    client: TestClient, account: Account, backfill_id: int, headers: dict[str, str] | None = None
) -> httpx.Response:
    """PATCH a backfill of ``account``'s team to CANCELLED."""
    return client.patch(
        backfill_url(account.team_id, backfill_id),
        json={"status": "CANCELLED"},
        headers=account.headers if headers is None else headers,
    )


def listed(client: TestClient, account: Account) -> list[dict[str, Any]]:
    """The team's incomplete backfills, as the list endpoint returns them."""
    items: list[dict[str, Any]] = data_of(
        client.get(list_url(account.team_id), headers=account.headers)
    )
    return items


def listed_ids(client: TestClient, account: Account) -> list[int]:
    return [item["transfer_backfill_id"] for item in listed(client, account)]


def fetched(client: TestClient, account: Account, backfill_id: int) -> dict[str, Any]:
    """One backfill of the team through GET."""
    item: dict[str, Any] = data_of(
        client.get(backfill_url(account.team_id, backfill_id), headers=account.headers)
    )
    return item
