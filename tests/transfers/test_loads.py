"""Backfills of the demo source into real warehouses: exactly the source's rows, once."""

from __future__ import annotations

from datetime import date

import pytest

from opendts.kit.db import Database
from opendts.settings import Settings
from tests.boundaries import allow_local
from tests.engine.support import final, running_engine
from tests.factories import Account, make_backfill
from tests.transfers.loads import expected, make_data_transfer, warehouse, warehouse_fields


@pytest.mark.parametrize("kind", ["duckdb", "postgresql", "parquet", "sqlite"])
def test_a_backfill_leaves_exactly_the_source_rows_and_a_second_one_no_duplicates(
    db: Database, settings: Settings, account: Account, kind: str
) -> None:
    settings = allow_local(settings)  # the PostgreSQL warehouse is on this machine
    with warehouse_fields(kind) as fields:
        transfer_id, _ = make_data_transfer(db, settings, account.team_id, kind, fields)
        first = make_backfill(db, account, date(2024, 1, 1), date(2024, 3, 30), transfer_id)
        with running_engine(db, settings, worker_concurrency=4) as engine:
            snap = final(db, first.id, timeout=120)
            assert snap.status == "COMPLETED", snap
            assert (snap.completed, snap.failed) == (90, 0)
            assert warehouse(settings, kind, fields, account.team_id).equals(
                expected(date(2024, 1, 1), date(2024, 3, 30))
            )
            # An overlapping backfill afterwards: the same rows, none twice.
            second = make_backfill(db, account, date(2024, 3, 1), date(2024, 4, 9), transfer_id)
            snap = final(db, second.id, timeout=120)
            assert snap.status == "COMPLETED", snap
            assert engine.stats.failed == 0
        assert warehouse(settings, kind, fields, account.team_id).equals(
            expected(date(2024, 1, 1), date(2024, 4, 9))
        )


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_runs_report_rows_and_duration_and_a_message(
    db: Database, settings: Settings, account: Account
) -> None:
    from tests.engine.support import run_rows

    with warehouse_fields("duckdb") as fields:
        transfer_id, _ = make_data_transfer(db, settings, account.team_id, "duckdb", fields)
        backfill = make_backfill(db, account, date(2024, 5, 1), date(2024, 5, 3), transfer_id)
        with running_engine(db, settings):
            assert final(db, backfill.id).status == "COMPLETED"
    for row in run_rows(db, backfill.id):
        assert row["total_rows"] == 40
        assert row["total_duration"] is not None and row["total_duration"] > 0
        assert "Loaded 40 rows" in row["message"] and "'ads'" in row["message"]


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_source_failure_is_retried_and_a_bad_config_fails_the_date_with_a_clear_message(
    db: Database, settings: Settings, account: Account
) -> None:
    from tests.engine.support import run_rows

    with warehouse_fields("duckdb") as fields:
        flaky, _ = make_data_transfer(
            db, settings, account.team_id, "duckdb", fields, failure_rate=0.5, seed=7
        )
        backfill = make_backfill(db, account, date(2024, 6, 1), date(2024, 6, 10), flaky)
        with running_engine(db, settings, run_max_attempts=10):
            snap = final(db, backfill.id)
        assert snap.status == "COMPLETED"
        assert any(r["attempt"] > 1 for r in run_rows(db, backfill.id))


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
@pytest.mark.parametrize("kind", ["duckdb", "postgresql", "parquet", "sqlite"])
def test_days_larger_than_a_batch_and_than_memory_load_exactly(
    db: Database, settings: Settings, account: Account, kind: str
) -> None:
    """Days of 250,000 demo rows (four generated chunks, 23 MB: spooled beyond 16 MiB): every
    row lands once through the engine, and the team's folder keeps no spool."""
    settings = allow_local(settings)
    rows = 250_000
    with warehouse_fields(kind) as fields:
        transfer_id, _ = make_data_transfer(
            db, settings, account.team_id, kind, fields, rows_per_day=rows, batch_rows=50_000
        )
        backfill = make_backfill(db, account, date(2024, 6, 1), date(2024, 6, 2), transfer_id)
        with running_engine(db, settings, worker_concurrency=2):
            snap = final(db, backfill.id, timeout=240)
        assert snap.status == "COMPLETED", snap
        assert warehouse(settings, kind, fields, account.team_id).equals(
            expected(date(2024, 6, 1), date(2024, 6, 2), rows_per_day=rows)
        )
    team_dir = settings.data_dir / "teams" / str(account.team_id)
    assert team_dir.is_dir()  # the spool was made there (a PostgreSQL load needs no folder)
    assert not [p for p in team_dir.iterdir() if p.name.startswith(".spool-")]
