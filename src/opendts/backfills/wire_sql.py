"""The backfill wire object, built by the database itself for listing.

Listing is the hot read path: having SQLite or PostgreSQL render each backfill as the
contract's JSON object skips building 100 datetime objects and dicts per request in Python.
``schemas.to_wire`` stays the reference; a test asserts that both produce the same JSON.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, String, and_, case, cast, func, literal_column, select
from sqlalchemy.dialects.postgresql import aggregate_order_by

from opendts.backfills.models import Backfill
from opendts.runs.models import TransferRun

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


def _error_report(dialect: str) -> ColumnElement[Any]:
    """The failed dates of the row's backfill as a JSON array, in date order.

    Only backfills with failures pay for the subquery (a partial index covers failed runs).
    """
    runs = TransferRun.__table__.alias("r")
    failed = and_(runs.c.backfill_id == Backfill.id, runs.c.status == literal_column("'FAILED'"))
    if dialect == "sqlite":
        ordered = (
            select(runs.c.data_date, runs.c.error)
            .where(failed)
            .order_by(runs.c.data_date)
            .subquery("f")
        )
        item = func.json_object(
            literal_column("'transfer_run_date'"),
            cast(ordered.c.data_date, String),
            literal_column("'error'"),
            func.coalesce(ordered.c.error, literal_column("'Failed.'")),
        )
        report: Any = select(func.json_group_array(func.json(item))).scalar_subquery()
        empty: Any = func.json(literal_column("'[]'"))
    else:
        item = func.json_build_object(
            literal_column("'transfer_run_date'"),
            func.to_char(runs.c.data_date, "YYYY-MM-DD"),
            literal_column("'error'"),
            func.coalesce(runs.c.error, literal_column("'Failed.'")),
        )
        report = (
            select(
                func.coalesce(
                    func.json_agg(aggregate_order_by(item, runs.c.data_date)),
                    literal_column("'[]'::json"),
                )
            )
            .where(failed)
            .scalar_subquery()
        )
        empty = literal_column("'[]'::json")
    return case((Backfill.runs_failed > 0, report), else_=empty)


def backfill_json(dialect: str) -> ColumnElement[Any]:
    """A SQL expression rendering one backfills row as the contract's JSON text."""
    b = Backfill
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
        ("error_report", _error_report(dialect)),
    ]
    arguments: list[Any] = []
    for key, value in pairs:
        # Keys as SQL literals, not bound parameters: the statement then has one parameter
        # (the team) and SQLAlchemy's compiled cache hits cheaply.
        arguments += [literal_column(f"'{key}'"), value]
    builder = func.json_object if dialect == "sqlite" else func.json_build_object
    rendered = builder(*arguments)
    return rendered if dialect == "sqlite" else cast(rendered, String)
