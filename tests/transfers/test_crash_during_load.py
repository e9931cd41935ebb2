"""A worker killed with SIGKILL while it writes a date: the date holds the old rows or the
new rows, never a mix, and the retry completes it."""

from __future__ import annotations

import json
import signal
import time
from datetime import date

import psycopg
import pyarrow as pa
import pytest
from sqlalchemy import text

from opendts.kit.db import Database
from opendts.settings import Settings
from tests.boundaries import LOCAL_NETWORKS, allow_local
from tests.databases import PG_ADMIN_DSN
from tests.engine.processes import workers
from tests.engine.support import final, running_engine, snapshot, wait_for
from tests.factories import Account, make_backfill
from tests.transfers.loads import expected, make_data_transfer, warehouse, warehouse_fields

DAY = date(2024, 2, 29)
ROWS = 1_500_000


def set_seed(db: Database, transfer_id: int, seed: int) -> None:
    with db.session(write=True) as session:
        session.execute(
            text("UPDATE transfers SET config = :config WHERE id = :id"),
            {"config": json.dumps({"rows_per_day": ROWS, "seed": seed}), "id": transfer_id},
        )


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
@pytest.mark.parametrize("kind", ["duckdb", "postgresql"])
def test_a_worker_killed_mid_write_leaves_old_or_new_rows_and_the_retry_completes(
    db: Database, database_url: str, settings: Settings, account: Account, kind: str
) -> None:
    settings = allow_local(settings)  # the PostgreSQL warehouse is on this machine
    with warehouse_fields(kind) as fields:
        transfer_id, _ = make_data_transfer(
            db, settings, account.team_id, kind, fields, rows_per_day=ROWS, seed=1
        )
        first = make_backfill(db, account, DAY, DAY, transfer_id)
        with running_engine(db, settings):
            assert final(db, first.id, timeout=120).status == "COMPLETED"
        old = expected(DAY, DAY, ROWS, seed=1)
        new = expected(DAY, DAY, ROWS, seed=2)
        time.sleep(2.5)  # the in-process engine's DuckDB connection closes when idle
        assert warehouse(settings, kind, fields, account.team_id).equals(old)

        set_seed(db, transfer_id, 2)
        second = make_backfill(db, account, DAY, DAY, transfer_id)
        local = ",".join(LOCAL_NETWORKS)
        with workers(settings.data_dir, database_url, OPENDTS_ALLOWED_NETWORKS=local) as group:
            victim = group.start(concurrency=1)
            wait_for(lambda: snapshot(db, second.id).runs_running == 1, what="the run to start")
            if kind == "postgresql":
                wait_for(lambda: _copying(fields["database"]), what="the COPY to start")
                time.sleep(0.2)
            else:
                time.sleep(1.3)  # generating 1.5M rows takes ~1.2 s, writing them ~0.5 s
            victim.send_signal(signal.SIGKILL)
            victim.wait(timeout=10)
            after_kill = warehouse(settings, kind, fields, account.team_id)
            assert after_kill.equals(old) or after_kill.equals(new), _describe(after_kill)
            group.start(concurrency=1)
            snap = final(db, second.id, timeout=120)
        assert snap.status == "COMPLETED" and snap.completed == 1, snap
        assert warehouse(settings, kind, fields, account.team_id).equals(new)


def _copying(database: str) -> bool:
    """Whether a bulk load into ``database`` is executing now."""
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        found = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND state = 'active' "
            "AND query ILIKE '%%COPY%%'",
            (database,),
        ).fetchone()
    return bool(found and found[0])


def _describe(table: pa.Table) -> str:
    return f"{table.num_rows} rows, a mix of old and new (or partial)"
