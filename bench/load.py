"""Load benchmark: the DuckDB and PostgreSQL destinations next to raw inserts of the same rows.

    python bench/load.py [--rows 100000] [--rounds 5] [--replace-rounds 30]
                         [--replace-rows 10000] [--days 365] [--backend duckdb|postgresql|both]
    python bench/load.py --smoke     # seconds: 1,000 rows, both destinations, same tables

One Arrow table of synthetic ad metrics (one date, deterministic numpy data) is loaded:

(a) into a fresh DuckDB file by ``DuckDBDestination().write`` and, as the baseline, by a raw
    ``CREATE TABLE`` + ``INSERT INTO t SELECT * FROM arrow_tbl`` on another fresh file
    (connection opening included in both, the checkpoint at close in neither);
(b) into a fresh PostgreSQL table by ``PostgreSQLDestination().write`` and, as the baseline, by
    a raw ADBC ``adbc_ingest(mode="create")`` (binary COPY) on an open connection;
(c) replacing one date of ``--replace-rows`` rows in a table holding ``--days`` such dates,
    by the destination and by raw statements (DELETE of the date + insert of the rows, in one
    transaction, on a connection kept open), alternating, each round on another date.

Rounds alternate which side goes first; the table shows medians.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import adbc_driver_postgresql.dbapi as adbc_pg
import duckdb
import numpy as np
import psycopg
import pyarrow as pa

from opendts.connectors import paths
from opendts.connectors.base import WriteRequest, parse_settings
from opendts.connectors.boundary import Boundary
from opendts.connectors.destinations import duckdb as duckdb_dest
from opendts.connectors.destinations import postgresql as pg_dest

PG_ADMIN = os.environ.get("OPENDTS_BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
DAY = date(2024, 1, 1)
EPOCH = date(1970, 1, 1).toordinal()


#: The benchmark's data folder (a temporary folder ``main`` makes); team 1 writes in it.
_data_dir = Path(tempfile.gettempdir())


def boundary() -> Boundary:
    """The benchmark's team: files in its folder of the data folder, local PostgreSQL."""
    return Boundary(
        team_id=1,
        data_dir=_data_dir.resolve(),
        allowed_networks=("127.0.0.0/8", "::1/128", "localhost"),
        sql_dialects=("postgresql", "sqlite"),
    )


def ad_metrics(rows: int, day: date, seed: int = 0) -> pa.Table:
    """``rows`` rows of one day's ad metrics, the same for the same arguments."""
    rng = np.random.Generator(np.random.PCG64([seed, day.toordinal()]))
    index = np.arange(rows)
    accounts = np.array([f"act-{n:04d}" for n in range(max(1, rows // 1000))], dtype=object)
    campaigns = np.array([f"cmp-{n:06d}" for n in range(rows)], dtype=object)
    names = np.array([f"Campaign {n % 97} / {n}" for n in range(rows)], dtype=object)
    impressions = rng.integers(100, 100_000, rows, dtype=np.int64)
    clicks = rng.binomial(impressions, rng.uniform(0.005, 0.08, rows)).astype(np.int64)
    cost = np.round(clicks * rng.uniform(0.2, 3.0, rows), 2)
    conversions = rng.binomial(clicks, 0.05).astype(np.int64)
    dates = np.full(rows, day.toordinal() - EPOCH, np.int32)
    return pa.table(
        {
            "date": pa.array(dates).cast(pa.date32()),
            "account_id": pa.array(accounts[index % len(accounts)], pa.string()),
            "campaign_id": pa.array(campaigns, pa.string()),
            "campaign_name": pa.array(names, pa.string()),
            "impressions": pa.array(impressions),
            "clicks": pa.array(clicks),
            "cost": pa.array(cost),
            "conversions": pa.array(conversions),
        }
    )


def with_day(table: pa.Table, day: date) -> pa.Table:
    dates = pa.array(np.full(table.num_rows, day.toordinal() - EPOCH, np.int32))
    return table.set_column(0, "date", dates.cast(pa.date32()))


def many_days(table: pa.Table, first: date, days: int) -> pa.Table:
    return pa.concat_tables([with_day(table, first + timedelta(days=i)) for i in range(days)])


def timed(action: Callable[[], Any]) -> float:
    began = time.perf_counter()
    action()
    return time.perf_counter() - began


# --- DuckDB ---------------------------------------------------------------------------------


def duckdb_settings(name: str) -> Any:
    """A DuckDB destination at ``name`` in the team's folder (``team_file(name)``)."""
    return parse_settings(duckdb_dest.DuckDBSettings, {"path": name}, boundary())


def team_file(name: str) -> Path:
    """Where the team's file ``name`` is."""
    return paths.team_path(name, boundary())


DUCK_COLUMNS = (
    "date DATE, account_id VARCHAR, campaign_id VARCHAR, campaign_name VARCHAR, "
    "impressions BIGINT, clicks BIGINT, cost DOUBLE, conversions BIGINT"
)


def duckdb_load(data: pa.Table, rounds: int, folder: Path) -> tuple[list[float], list[float]]:
    dest, raw = [], []
    destination = duckdb_dest.DuckDBDestination()
    for i in range(rounds):

        def run_dest(i: int = i) -> None:
            settings = duckdb_settings(f"dest_{i}.duckdb")
            dest.append(
                timed(
                    lambda: destination.write(
                        settings, WriteRequest("ads", DAY, boundary=boundary()), data
                    )
                )
            )
            duckdb_dest.close_all()

        def run_raw(i: int = i) -> None:
            path = folder / f"raw_{i}.duckdb"
            arrow_tbl = data  # noqa: F841 (DuckDB finds the Arrow table by its Python name)
            began = time.perf_counter()
            con = duckdb.connect(str(path))
            con.execute(f"CREATE TABLE t ({DUCK_COLUMNS})")
            con.execute("INSERT INTO t SELECT * FROM arrow_tbl")
            raw.append(time.perf_counter() - began)
            con.close()

        for step in (run_dest, run_raw) if i % 2 == 0 else (run_raw, run_dest):
            step()
    return dest, raw


def duckdb_replace(
    day_rows: pa.Table, days: int, rounds: int, folder: Path
) -> tuple[list[float], list[float]]:
    destination = duckdb_dest.DuckDBDestination()
    history = many_days(day_rows, DAY + timedelta(days=1), days - 1)
    dest_settings = duckdb_settings("replace_dest.duckdb")
    destination.write(
        dest_settings, WriteRequest("ads", DAY, boundary=boundary()), with_day(day_rows, DAY)
    )
    duckdb_dest.close_all()
    with duckdb.connect(str(team_file("replace_dest.duckdb"))) as con:
        con.register("history", history)
        con.execute("INSERT INTO ads SELECT * FROM history")
    raw_con = duckdb.connect(str(folder / "replace_raw.duckdb"))
    raw_con.execute(f"CREATE TABLE ads ({DUCK_COLUMNS})")
    raw_con.register("history", pa.concat_tables([with_day(day_rows, DAY), history]))
    raw_con.execute("INSERT INTO ads SELECT * FROM history")
    raw_con.unregister("history")
    raw_con.execute("CHECKPOINT")
    destination.write(
        dest_settings, WriteRequest("ads", DAY, boundary=boundary()), with_day(day_rows, DAY)
    )  # warm
    dest, raw = [], []
    for i in range(rounds):
        day = DAY + timedelta(days=10 + i)
        incoming = with_day(day_rows, day)

        def run_dest(day: date = day, incoming: pa.Table = incoming) -> None:
            request = WriteRequest("ads", day, boundary=boundary())
            dest.append(timed(lambda: destination.write(dest_settings, request, incoming)))

        def run_raw(day: date = day, incoming: pa.Table = incoming) -> None:
            def statements() -> None:
                arrow_tbl = incoming  # noqa: F841
                raw_con.begin()
                raw_con.execute("DELETE FROM ads WHERE date = ?", [day])
                raw_con.execute("INSERT INTO ads SELECT * FROM arrow_tbl")
                raw_con.commit()

            raw.append(timed(statements))

        for step in (run_dest, run_raw) if i % 2 == 0 else (run_raw, run_dest):
            step()
    raw_con.close()
    duckdb_dest.close_all()
    return dest, raw


# --- PostgreSQL -----------------------------------------------------------------------------


@contextmanager
def pg_database() -> Iterator[str]:
    name = f"opendts_bench_load_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        pg_dest.close_all()
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def pg_settings(database: str) -> Any:
    info = psycopg.conninfo.conninfo_to_dict(PG_ADMIN)
    config: dict[str, Any] = {
        "host": str(info.get("host") or "127.0.0.1"),
        "port": int(info.get("port") or 5432),
        "database": database,
        "user": str(info.get("user") or "postgres"),
    }
    if info.get("password"):
        config["password"] = str(info["password"])
    return parse_settings(pg_dest.PostgreSQLSettings, config)


def pg_load(database: str, data: pa.Table, rounds: int) -> tuple[list[float], list[float]]:
    settings = pg_settings(database)
    destination = pg_dest.PostgreSQLDestination()
    destination.write(
        settings, WriteRequest("warmup", DAY, boundary=boundary()), data.slice(0, 10)
    )  # opens the pool
    conn = adbc_pg.connect(pg_dest.conninfo(settings))
    dest, raw = [], []
    for i in range(rounds):

        def run_dest(i: int = i) -> None:
            request = WriteRequest(f"dest_{i}", DAY, boundary=boundary())
            dest.append(timed(lambda: destination.write(settings, request, data)))

        def run_raw(i: int = i) -> None:
            def ingest() -> None:
                with conn.cursor() as cur:
                    cur.adbc_ingest(f"raw_{i}", data, mode="create")
                conn.commit()

            raw.append(timed(ingest))

        for step in (run_dest, run_raw) if i % 2 == 0 else (run_raw, run_dest):
            step()
    conn.close()
    return dest, raw


def pg_replace(
    database: str, day_rows: pa.Table, days: int, rounds: int
) -> tuple[list[float], list[float]]:
    settings = pg_settings(database)
    destination = pg_dest.PostgreSQLDestination()
    destination.write(
        settings, WriteRequest("ads", DAY, boundary=boundary()), with_day(day_rows, DAY)
    )
    conn = adbc_pg.connect(pg_dest.conninfo(settings))
    with conn.cursor() as cur:
        cur.adbc_ingest(
            "ads", many_days(day_rows, DAY + timedelta(days=1), days - 1), mode="append"
        )
    conn.commit()
    with psycopg.connect(pg_dest.conninfo(settings), autocommit=True) as admin:
        admin.execute("VACUUM ANALYZE ads")
        admin.execute("CHECKPOINT")  # the setup's WAL is not the rounds' to write
    destination.write(
        settings, WriteRequest("ads", DAY, boundary=boundary()), with_day(day_rows, DAY)
    )  # warm
    dest, raw = [], []
    for i in range(rounds):
        dest_day = DAY + timedelta(days=10 + 2 * i)
        raw_day = dest_day + timedelta(days=1)

        def run_dest(day: date = dest_day) -> None:
            incoming, request = (
                with_day(day_rows, day),
                WriteRequest("ads", day, boundary=boundary()),
            )
            dest.append(timed(lambda: destination.write(settings, request, incoming)))

        def run_raw(day: date = raw_day) -> None:
            incoming = with_day(day_rows, day)

            def statements() -> None:
                with conn.cursor() as cur:
                    cur.execute(f"DELETE FROM ads WHERE date = DATE '{day.isoformat()}'")
                    cur.adbc_ingest("ads", incoming, mode="append")
                conn.commit()

            raw.append(timed(statements))

        for step in (run_dest, run_raw) if i % 2 == 0 else (run_raw, run_dest):
            step()
    conn.close()
    return dest, raw


# --- report ---------------------------------------------------------------------------------


FULL = {"rows": 100_000, "rounds": 5, "replace_rows": 10_000, "days": 365, "replace_rounds": 30}
# Smoke: every load and replace path on both destinations at sizes that take seconds (at
# least 2 replace rounds: the p90 needs two samples); the figures mean nothing.
SMOKE = {"rows": 1_000, "rounds": 2, "replace_rows": 100, "days": 5, "replace_rounds": 3}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, help="rows per load (100,000)")
    parser.add_argument("--rounds", type=int, help="load rounds (5)")
    parser.add_argument("--replace-rows", type=int, help="rows of the replaced date (10,000)")
    parser.add_argument("--days", type=int, help="dates in the replace table (365)")
    parser.add_argument("--replace-rounds", type=int, help="replace rounds (30)")
    parser.add_argument("--backend", choices=["duckdb", "postgresql", "both"], default="both")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="a few seconds: tiny sizes, real code paths, same tables, figures meaningless "
        "(the test suite runs this)",
    )
    args = parser.parse_args()
    for name, value in (SMOKE if args.smoke else FULL).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.smoke:
        print("# smoke mode: tiny sizes to prove the benchmark runs; the figures mean nothing")
    print(
        f"# load benchmark, {platform.python_implementation()} {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, DuckDB {duckdb.__version__}, pyarrow {pa.__version__}, "
        f"{args.rows:,} rows per load, {args.rounds} rounds; replace: {args.replace_rows:,} "
        f"rows of one date in {args.days} dates, {args.replace_rounds} rounds"
    )
    data = ad_metrics(args.rows, DAY)
    day_rows = ad_metrics(args.replace_rows, DAY, seed=1)
    loads: list[tuple[str, list[float], list[float]]] = []
    replaces: list[tuple[str, list[float], list[float], float]] = []
    global _data_dir
    with tempfile.TemporaryDirectory() as tmp:
        folder = _data_dir = Path(tmp)
        if args.backend in ("duckdb", "both"):
            loads.append(("DuckDB", *duckdb_load(data, args.rounds, folder)))
            replaces.append(
                ("DuckDB", *duckdb_replace(day_rows, args.days, args.replace_rounds, folder), 20)
            )
    if args.backend in ("postgresql", "both"):
        with pg_database() as database:
            loads.append(("PostgreSQL", *pg_load(database, data, args.rounds)))
        with pg_database() as database:
            replaces.append(
                (
                    "PostgreSQL",
                    *pg_replace(database, day_rows, args.days, args.replace_rounds),
                    40,
                )
            )

    print()
    print(f"Load {args.rows:,} rows into a fresh table (median of {args.rounds})")
    print()
    print("| destination | opendts rows/s | raw rows/s | ratio | opendts ms | raw ms | goal |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for label, dest, raw in loads:
        d, r = statistics.median(dest), statistics.median(raw)
        ratio = r / d
        goal = "met" if ratio >= 0.7 else "NOT met"
        print(
            f"| {label} | {args.rows / d:,.0f} | {args.rows / r:,.0f} | {ratio:.2f} | "
            f"{d * 1000:.1f} | {r * 1000:.1f} | ≥ 0.7: {goal} |"
        )
    print()
    print(
        f"Replace one date of {args.replace_rows:,} rows in a table of {args.days} dates "
        f"(median of {args.replace_rounds})"
    )
    print()
    print("| destination | opendts ms | raw ms | ratio | opendts p90 ms | raw p90 ms | goal |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for label, dest, raw, goal_ms in replaces:
        d, r = statistics.median(dest) * 1000, statistics.median(raw) * 1000
        d90 = statistics.quantiles(dest, n=10)[-1] * 1000
        r90 = statistics.quantiles(raw, n=10)[-1] * 1000
        goal = "met" if d <= goal_ms else "NOT met"
        print(
            f"| {label} | {d:.1f} | {r:.1f} | {r / d:.2f} | {d90:.1f} | {r90:.1f} | "
            f"≤ {goal_ms} ms: {goal} |"
        )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
