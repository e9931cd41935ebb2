"""The backfill wire object, built by the database itself for listing.

Listing is the hot read path: having SQLite or PostgreSQL render each backfill as the
contract's JSON object skips building 100 datetime objects and dicts per request in Python.
``schemas.to_wire`` stays the reference; a test asserts that both produce the same JSON.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, String, cast, func, literal_column
from sqlalchemy.sql.elements import ColumnClause

from opendts.backfills.models import Backfill

_PG_TIMESTAMP = 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'


def _timestamp(column: Any, dialect: str) -> ColumnElement[Any]:
    if dialect == "sqlite":
        # Stored as 'YYYY-MM-DD HH:MM:SS.ffffff' in UTC; NULL stays NULL.
        return func.replace(column, " ", "T").concat("Z")
    return func.to_char(func.timezone("UTC", column), _PG_TIMESTAMP)


def _date(column: Any, dialect: str) -> ColumnElement[Any]:
    if dialect == "sqlite":
        return cast(column, String)
    return func.to_char(column, "YYYY-MM-DD")


def backfill_json(dialect: str) -> ColumnElement[Any]:
    """A SQL expression rendering one backfills row as the contract's JSON text."""
    b = Backfill
    empty_array: ColumnClause[Any] | ColumnElement[Any] = (
        func.json(literal_column("'[]'")) if dialect == "sqlite" else literal_column("'[]'::json")
    )
    pairs: list[tuple[str, Any]] = [
        ("transfer_backfill_id", b.id),
        ("transfer_id", b.transfer_id),
        ("range_start_date", _date(b.range_start, dialect)),
        ("range_end_date", _date(b.range_end, dialect)),
        ("created_time", _timestamp(b.created_time, dialect)),
        ("created_user_id", b.created_user_id),
        ("removed_time", _timestamp(b.removed_time, dialect)),
        ("removed_user_id", b.removed_user_id),
        ("start_time", _timestamp(b.start_time, dialect)),
        ("end_time", _timestamp(b.end_time, dialect)),
        ("status", b.status),
        ("transfer_runs_total", b.runs_total),
        ("transfer_runs_created", b.runs_created),
        ("transfer_runs_completed", b.runs_completed),
        ("transfer_runs_failed", b.runs_failed),
        ("error_report", empty_array),
    ]
    arguments: list[Any] = []
    for key, value in pairs:
        # Keys as SQL literals, not bound parameters: the statement then has one parameter
        # (the team) and SQLAlchemy's compiled cache hits cheaply.
        arguments += [literal_column(f"'{key}'"), value]
    builder = func.json_object if dialect == "sqlite" else func.json_build_object
    rendered = builder(*arguments)
    return rendered if dialect == "sqlite" else cast(rendered, String)
