"""Data transfers for end-to-end tests: a destination, a demo transfer, the expected rows."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from typing import Any

import psycopg
import pyarrow as pa

from opendts.connectors import registry
from opendts.connectors.base import parse_settings
from opendts.connectors.boundary import Boundary
from opendts.connectors.sources.demo import DemoSettings, generate
from opendts.destinations import service as destinations
from opendts.kit.db import Database
from opendts.kit.secrets import box_for
from opendts.settings import Settings
from opendts.transfers import api as transfers_api
from tests.databases import PG_ADMIN_DSN, require_pg

ACCOUNTS = ("acc-1", "acc-2", "acc-3")
SORT = [("date", "ascending"), ("account_id", "ascending"), ("campaign_id", "ascending")]


@contextmanager
def warehouse_fields(kind: str) -> Iterator[dict[str, Any]]:
    """Settings of a fresh warehouse of ``kind`` (a new PostgreSQL database, dropped after)."""
    if kind != "postgresql":
        yield {"duckdb": {"path": "warehouse.duckdb"}, "parquet": {"path": "lake"}}.get(
            kind, {"path": "warehouse.sqlite"}
        )
        return
    require_pg()
    name = f"opendts_wh_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield {"host": "127.0.0.1", "port": 5432, "database": name, "user": "postgres"}
    finally:
        from opendts.connectors.destinations import postgresql

        close = getattr(postgresql, "close_pools", None)
        if close is not None:
            close()
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def make_data_transfer(
    db: Database,
    settings: Settings,
    team_id: int,
    kind: str,
    fields: dict[str, Any],
    *,
    rows_per_day: int = 40,
    parallel: int = 4,
    **extra: Any,
) -> tuple[int, int]:
    """(transfer id, destination id): the demo source into a new ``kind`` destination."""
    box = box_for(settings.data_dir, settings.secret_key)
    with db.session(write=True) as session:
        destination = destinations.create(
            session,
            box,
            Boundary.for_team(settings, team_id),
            None,
            destinations.DestinationInput(kind, "Warehouse", fields),
        )
        transfer = transfers_api.create(
            session,
            box,
            Boundary.for_team(settings, team_id),
            None,
            {
                "data_source_id": "demo",
                "destination_id": destination.id,
                "display_name": "Ads",
                "table": "ads",
                "accounts": [{"account_id": a} for a in ACCOUNTS],
                "source_config": {"rows_per_day": rows_per_day, **extra},
                "max_parallel_runs": parallel,
            },
        )
        return transfer.id, destination.id


def expected(first: date, last: date, rows_per_day: int = 40, seed: int = 0) -> pa.Table:
    """What the demo source holds for ``first..last``."""
    settings = DemoSettings(rows_per_day=rows_per_day, seed=seed)
    day_count = (last - first).days + 1
    tables = [generate(settings, first + timedelta(days=i), ACCOUNTS) for i in range(day_count)]
    return pa.concat_tables(tables).sort_by(SORT)


def warehouse(settings: Settings, kind: str, fields: dict[str, Any], team_id: int) -> pa.Table:
    """Team ``team_id``'s ``ads`` table as the destination reads it back, in a stable order
    and schema."""
    destination = registry.get_destination(kind)
    team = Boundary.for_team(settings, team_id)
    table = destination.read_table(parse_settings(destination.Settings, fields), "ads", team)
    columns = expected(date(2024, 1, 1), date(2024, 1, 1)).column_names
    return (
        table.select(columns)
        .cast(expected(date(2024, 1, 1), date(2024, 1, 1)).schema)
        .sort_by(SORT)
    )
