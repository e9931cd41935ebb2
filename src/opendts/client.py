"""A small synchronous HTTP client for an opendts server (or any Supermetrics DTS-compatible API).

Every method returns plain JSON values: the ``data`` of enveloped answers, the object itself for
the endpoints that answer plain objects (``docs/api.md``), ``None`` for 204 answers. Every
failure raises :class:`ApiError`, built from the server's error envelope, or with the code
``CONNECTION_FAILED`` (the server cannot be reached) or ``BAD_RESPONSE`` (it answered something
that is not the API's JSON).

>>> with Client("http://127.0.0.1:8080", api_key, team=1) as client:  # doctest: +SKIP
...     backfill = client.create_backfill(1, "2024-01-01", "2024-01-31")
...     client.get_backfill(backfill["transfer_backfill_id"])["status"]
"""

from __future__ import annotations

from datetime import date, datetime
from types import TracebackType
from typing import Any, Literal

import httpx

from opendts import __version__

#: A JSON object as returned by the API.
JsonObject = dict[str, Any]

#: Backfill statuses after which nothing changes any more.
FINAL_BACKFILL_STATUSES = frozenset({"COMPLETED", "FAILED", "CANCELLED"})

DEFAULT_SERVER = "http://127.0.0.1:8080"


class ApiError(Exception):
    """A refused request: the error envelope's fields, plus the HTTP status (0: no answer)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        description: str = "",
        request_id: str | None = None,
    ) -> None:
        super().__init__(f"{code}: {description or message}")
        self.status = status
        self.code = code
        self.message = message
        self.description = description
        self.request_id = request_id

    def as_dict(self) -> JsonObject:
        return {
            "status": self.status,
            "code": self.code,
            "message": self.message,
            "description": self.description,
            "request_id": self.request_id,
        }


def api_base(server: str) -> str:
    """``http://host:port/v1`` from a server URL given with or without ``/v1``."""
    base = server.strip().rstrip("/")
    if not base:
        base = DEFAULT_SERVER
    if "://" not in base:
        base = f"http://{base}"
    if not base.endswith("/v1"):
        base = f"{base}/v1"
    return base


def _day(value: date | datetime | str) -> str:
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return value


class Client:
    """Talks to one server as one API key; ``team`` is the default team of every call."""

    def __init__(
        self,
        server: str,
        api_key: str,
        team: int | None = None,
        timeout: float = 30,
        *,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = api_base(server)
        self.team = team
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=timeout,
            transport=transport,
            headers={
                "Authorization": f"Bearer {api_key}",
                "Accept": "application/json",
                "User-Agent": f"opendts-client/{__version__}",
            },
        )

    # Lifecycle

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # Backfills

    def create_backfill(
        self,
        transfer_id: int,
        range_start: date | str,
        range_end: date | str,
        *,
        team: int | None = None,
    ) -> JsonObject:
        """Start a backfill of ``range_start``..``range_end`` (inclusive)."""
        body = {"range_start": _day(range_start), "range_end": _day(range_end)}
        path = f"/teams/{self._team(team)}/transfers/{transfer_id}/backfills"
        return self._object("POST", path, json=body)

    def list_incomplete_backfills(self, *, team: int | None = None) -> list[JsonObject]:
        """The team's CREATED, SCHEDULED, RUNNING and FAILED backfills, newest first."""
        return self._list("GET", f"/teams/{self._team(team)}/backfills")

    def list_backfills(
        self,
        *,
        status: str | None = None,
        transfer_id: int | None = None,
        limit: int | None = None,
        team: int | None = None,
    ) -> list[JsonObject]:
        """Any of the team's backfills, newest first (an opendts extension of the list).

        ``status``: ``"all"`` (the default) or a comma list (``"FAILED,CANCELLED"``);
        ``transfer_id``: one transfer's; ``limit``: 1 to 1,000 (100 by default).
        """
        params: dict[str, str | int] = {"status": status or "all"}
        if transfer_id is not None:
            params["transfer_id"] = transfer_id
        if limit is not None:
            params["limit"] = limit
        return self._list("GET", f"/teams/{self._team(team)}/backfills", params=params)

    def get_backfill(self, backfill_id: int, *, team: int | None = None) -> JsonObject:
        return self._object("GET", f"/teams/{self._team(team)}/backfills/{backfill_id}")

    def latest_backfill(self, transfer_id: int, *, team: int | None = None) -> JsonObject:
        """The transfer's most recent backfill (``BACKFILL_NOT_FOUND`` if it never had one)."""
        path = f"/teams/{self._team(team)}/transfers/{transfer_id}/backfills/latest"
        return self._object("GET", path)

    def cancel_backfill(self, backfill_id: int, *, team: int | None = None) -> JsonObject:
        path = f"/teams/{self._team(team)}/backfills/{backfill_id}"
        return self._object("PATCH", path, json={"status": "CANCELLED"})

    # Transfer runs

    def list_runs(
        self,
        transfer_id: int,
        start_date: date | datetime | str,
        end_date: date | datetime | str,
        *,
        filter_issues_only: bool = False,
        sort_field: Literal["data_date", "created_time", "ended_time"] | None = None,
        sort_direction: Literal["ASC", "DESC"] | None = None,
        limit: int | None = None,
        offset: int | None = None,
        team: int | None = None,
    ) -> list[JsonObject]:
        """Runs whose data date is within ``start_date``..``end_date``, one page."""
        params: dict[str, str | int] = {
            "start_date": _day(start_date),
            "end_date": _day(end_date),
        }
        if filter_issues_only:
            params["filter_issues_only"] = "true"
        if sort_field is not None:
            params["sort_field"] = sort_field
        if sort_direction is not None:
            params["sort_direction"] = sort_direction
        if limit is not None:
            params["limit"] = limit
        if offset is not None:
            params["offset"] = offset
        path = f"/teams/{self._team(team)}/transfers/{transfer_id}/runs"
        return self._list("GET", path, params=params)

    def get_run(self, run_id: int, *, team: int | None = None) -> JsonObject:
        return self._object("GET", f"/teams/{self._team(team)}/transfer_runs/{run_id}")

    # Transfers

    def list_transfers(self, *, team: int | None = None) -> list[JsonObject]:
        return self._list("GET", f"/teams/{self._team(team)}/transfers")

    def get_transfer(self, transfer_id: int, *, team: int | None = None) -> JsonObject:
        path = f"/teams/{self._team(team)}/transfers/{transfer_id}"
        return self._object("GET", path, envelope=False)

    def create_transfer(self, body: JsonObject, *, team: int | None = None) -> JsonObject:
        """Create a transfer (TransferConfigurationRequest); ``{transfer_id, transfer_name}``."""
        return self._object("POST", f"/teams/{self._team(team)}/transfers", json=body)

    def validate_transfer(
        self, body: JsonObject, *, transfer_id: int | None = None, team: int | None = None
    ) -> JsonObject:
        """``{is_valid, errors: [{field_id, error_code, message}]}`` for a new transfer, or for
        an update of ``transfer_id``; an invalid configuration is an answer, not an error."""
        where = f"{transfer_id}/validations" if transfer_id is not None else "validations"
        path = f"/teams/{self._team(team)}/transfers/{where}"
        return self._object("POST", path, json=body, envelope=False)

    def available_sources(self, *, team: int | None = None) -> JsonObject:
        """``{data_sources: [{data_source_id, name, settings}]}``: the installed sources."""
        path = f"/teams/{self._team(team)}/transfers/available-sources"
        return self._object("GET", path, envelope=False)

    def update_transfer(
        self, transfer_id: int, body: JsonObject, *, team: int | None = None
    ) -> JsonObject:
        """Replace a transfer's configuration; ``{transfer_id, transfer_name}``."""
        path = f"/teams/{self._team(team)}/transfers/{transfer_id}"
        return self._object("PUT", path, json=body, envelope=False)

    def delete_transfer(self, transfer_id: int, *, team: int | None = None) -> None:
        """Soft-delete a transfer; its unfinished backfills are cancelled."""
        self._request("DELETE", f"/teams/{self._team(team)}/transfers/{transfer_id}")

    def set_transfer_state(
        self,
        transfer_id: int,
        state: Literal["pause", "unpause"],
        *,
        team: int | None = None,
    ) -> JsonObject:
        """Pause or unpause a transfer; ``{result, state}``."""
        path = f"/teams/{self._team(team)}/transfers/{transfer_id}/state"
        return self._object("PUT", path, json={"transfer_state": state}, envelope=False)

    # Destinations

    def list_destinations(self, *, team: int | None = None) -> list[JsonObject]:
        return self._list("GET", f"/teams/{self._team(team)}/destinations")

    def get_destination(self, destination_id: int, *, team: int | None = None) -> JsonObject:
        return self._object("GET", f"/teams/{self._team(team)}/destinations/{destination_id}")

    def create_destination(self, body: JsonObject, *, team: int | None = None) -> JsonObject:
        """Create a destination from ``{type, display_name, fields}``; its DestinationInfo."""
        return self._object("POST", f"/teams/{self._team(team)}/destinations", json=body)

    def update_destination(
        self, destination_id: int, body: JsonObject, *, team: int | None = None
    ) -> JsonObject:
        path = f"/teams/{self._team(team)}/destinations/{destination_id}"
        return self._object("PUT", path, json=body)

    def delete_destination(self, destination_id: int, *, team: int | None = None) -> None:
        """Delete a destination (``DESTINATION_IN_USE`` while a transfer loads into it)."""
        self._request("DELETE", f"/teams/{self._team(team)}/destinations/{destination_id}")

    def test_destination_connection(
        self, body: JsonObject, *, team: int | None = None
    ) -> JsonObject:
        """``{success, error}``: a failed connection is an answer, not an :class:`ApiError`."""
        path = f"/teams/{self._team(team)}/destinations/test-connection"
        return self._object("POST", path, json=body)

    def destination_usage(self, destination_id: int, *, team: int | None = None) -> JsonObject:
        """``{is_used, transfers: [{transfer_id, transfer_name}]}``."""
        path = f"/teams/{self._team(team)}/destinations/{destination_id}/usage"
        return self._object("GET", path)

    # Plumbing

    def _team(self, team: int | None) -> int:
        chosen = self.team if team is None else team
        if chosen is None:
            raise ApiError(
                0,
                "TEAM_REQUIRED",
                "No team given",
                "Pass a team id (Client(..., team=N) or team=N on the call).",
            )
        return chosen

    def _object(
        self,
        method: str,
        path: str,
        *,
        json: JsonObject | None = None,
        params: dict[str, str | int] | None = None,
        envelope: bool = True,
    ) -> JsonObject:
        value = self._request(method, path, json=json, params=params, envelope=envelope)
        if not isinstance(value, dict):
            raise _bad_response(method, path, f"expected a JSON object, got {_kind(value)}")
        return value

    def _list(
        self, method: str, path: str, *, params: dict[str, str | int] | None = None
    ) -> list[JsonObject]:
        value = self._request(method, path, params=params)
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            raise _bad_response(method, path, f"expected a list of objects, got {_kind(value)}")
        return value

    def _request(
        self,
        method: str,
        path: str,
        *,
        json: JsonObject | None = None,
        params: dict[str, str | int] | None = None,
        envelope: bool = True,
    ) -> Any:
        try:
            response = self._http.request(method, path, json=json, params=params)
        except httpx.TimeoutException as exc:
            raise ApiError(
                0,
                "CONNECTION_FAILED",
                "The server did not answer in time",
                f"{method} {self.base_url}{path} timed out ({type(exc).__name__}). "
                "Check that the server is running, or raise the timeout.",
            ) from exc
        except httpx.HTTPError as exc:
            raise ApiError(
                0,
                "CONNECTION_FAILED",
                "Cannot reach the server",
                f"Cannot reach {self.base_url}: {exc or type(exc).__name__}. "
                "Check the server URL (--server, OPENDTS_SERVER) and that it is running.",
            ) from exc
        request_id = response.headers.get("X-Request-Id")
        if response.status_code == 204:
            return None
        try:
            body = response.json()
        except ValueError as exc:
            raise ApiError(
                response.status_code,
                "BAD_RESPONSE",
                "The server did not answer JSON",
                f"{method} {path} answered HTTP {response.status_code} "
                f"({response.headers.get('Content-Type') or 'no content type'}): "
                f"{response.text[:120]!r}. Is --server an opendts server?",
                request_id,
            ) from exc
        if isinstance(body, dict) and isinstance(body.get("meta"), dict):
            request_id = str(body["meta"].get("request_id") or request_id or "") or None
        if response.is_error:
            raise _error_from(response.status_code, body, request_id)
        if not envelope:
            return body
        if not isinstance(body, dict) or "data" not in body:
            raise _bad_response(method, path, "the answer has no 'data'", response.status_code)
        return body["data"]


def _error_from(status: int, body: Any, request_id: str | None) -> ApiError:
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and isinstance(error.get("code"), str):
        return ApiError(
            status,
            error["code"],
            str(error.get("message") or ""),
            str(error.get("description") or ""),
            request_id,
        )
    return ApiError(
        status,
        "HTTP_ERROR",
        f"HTTP {status}",
        f"The server refused the request with HTTP {status} and no error envelope.",
        request_id,
    )


def _bad_response(method: str, path: str, problem: str, status: int = 0) -> ApiError:
    return ApiError(
        status,
        "BAD_RESPONSE",
        "Unexpected answer",
        f"{method} {path}: {problem}. Is --server an opendts server of this version?",
    )


def _kind(value: Any) -> str:
    return "nothing" if value is None else type(value).__name__
