"""DuckDB writers benchmark: several processes loading dates into one warehouse file at once.

    python bench/duckdb_writers.py [--processes 4] [--days 50] [--rows 1000] [--rounds 3]
    python bench/duckdb_writers.py --smoke   # seconds: 2 processes, 5 days each, 100 rows

DuckDB lets one process at a time open a file for writing; opendts's DuckDB destination takes
turns through a lock file beside the warehouse (``connectors/destinations/duckdb.py``). Three
ways to load the same ``processes x days`` dates of ``rows`` rows each into one fresh file:

- ``serial``: one process writes every date through ``DuckDBDestination().write`` (its
  connection stays open between writes): the floor, no contention;
- ``concurrent, destination``: ``processes`` processes, each writing its own dates through the
  destination at the same time (they take turns on the file);
- ``concurrent, bare connect``: the same with a plain ``duckdb.connect`` + write + close per
  date and no lock: what happens without turns (failed writes are counted, not retried).

Every process is started and has imported everything before the clock starts (a barrier);
writes/s is dates written over the wall time from the barrier to the last write. Each scenario
gets a fresh file; rounds alternate nothing (the scenarios are independent); medians shown.
"""

from __future__ import annotations

import argparse
import multiprocessing
import platform
import statistics
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from opendts.connectors.base import WriteRequest, parse_settings
from opendts.connectors.boundary import Boundary
from opendts.connectors.destinations import duckdb as duckdb_dest

DAY = date(2024, 1, 1)
FULL = {"processes": 4, "days": 50, "rows": 1000, "rounds": 3}
SMOKE = {"processes": 2, "days": 5, "rows": 100, "rounds": 1}


def day_table(day: date, rows: int) -> pa.Table:
    return pa.table(
        {
            "date": pa.array([day] * rows, pa.date32()),
            "campaign": pa.array([f"cmp-{n}" for n in range(rows)], pa.string()),
            "clicks": pa.array(range(rows), pa.int64()),
        }
    )


def _destination_writer(data_dir: str, first: int, days: int, rows: int) -> tuple[int, int]:
    team = Boundary(team_id=1, data_dir=Path(data_dir))
    settings = parse_settings(duckdb_dest.DuckDBSettings, {})
    destination = duckdb_dest.DuckDBDestination()
    tables = [day_table(DAY + timedelta(first + n), rows) for n in range(days)]
    written = failed = 0
    _BARRIER.wait()
    for n, table in enumerate(tables):
        day = DAY + timedelta(first + n)
        try:
            destination.write(settings, WriteRequest("ads", day, boundary=team), table)
            written += 1
        except Exception:
            failed += 1
    duckdb_dest.close_all()
    return written, failed


def _bare_writer(data_dir: str, first: int, days: int, rows: int) -> tuple[int, int]:
    path = Path(data_dir) / "bare.duckdb"
    tables = [day_table(DAY + timedelta(first + n), rows) for n in range(days)]
    written = failed = 0
    _BARRIER.wait()
    for n, incoming in enumerate(tables):
        day = DAY + timedelta(first + n)
        try:
            conn = duckdb.connect(str(path), config=duckdb_dest.CONFIG)
        except duckdb.Error:
            failed += 1
            continue
        try:
            conn.register("incoming", incoming)
            conn.execute(
                "CREATE TABLE IF NOT EXISTS ads (date DATE, campaign VARCHAR, clicks BIGINT)"
            )
            conn.begin()
            conn.execute(f"DELETE FROM ads WHERE date = DATE '{day.isoformat()}'")
            conn.execute("INSERT INTO ads SELECT * FROM incoming")
            conn.commit()
            written += 1
        except duckdb.Error:
            failed += 1
        finally:
            conn.close()
    return written, failed


_BARRIER: Any = None


def _init(barrier: Any) -> None:
    global _BARRIER
    _BARRIER = barrier


def run(scenario: str, processes: int, days: int, rows: int) -> tuple[float, int, int]:
    """One scenario on a fresh data folder: (writes/s, written, failed)."""
    writer = _bare_writer if scenario == "bare" else _destination_writer
    workers = 1 if scenario == "serial" else processes
    per_worker = days * processes // workers
    context = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory() as data_dir:
        barrier = context.Barrier(workers + 1)
        with context.Pool(workers, initializer=_init, initargs=(barrier,)) as pool:
            pending = pool.starmap_async(
                writer, [(data_dir, w * per_worker, per_worker, rows) for w in range(workers)]
            )
            barrier.wait()
            started = time.perf_counter()
            results = pending.get(timeout=600)
            elapsed = time.perf_counter() - started
        written = sum(w for w, _ in results)
        failed = sum(f for _, f in results)
        if scenario != "bare":
            check = duckdb.connect(str(Path(data_dir) / "teams" / "1" / "warehouse.duckdb"))
            try:
                stored = check.execute("SELECT count(DISTINCT date), count(*) FROM ads").fetchone()
            finally:
                check.close()
            assert stored == (written, written * rows), (stored, written)
    return written / elapsed, written, failed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int)
    parser.add_argument("--days", type=int, help="dates each process writes")
    parser.add_argument("--rows", type=int, help="rows per date")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--backend", choices=["duckdb"], default="duckdb")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    for name, value in (SMOKE if args.smoke else FULL).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.smoke:
        print("# smoke mode: tiny sizes to prove the benchmark runs; the figures mean nothing")
    total = args.processes * args.days
    print(
        f"# DuckDB writers, CPython {platform.python_version()}, duckdb {duckdb.__version__}, "
        f"{args.processes} processes x {args.days} dates x {args.rows} rows into one file "
        f"({total} dates), median of {args.rounds}"
    )
    print("| scenario | writes/s | dates written | failed writes |")
    print("|---|---:|---:|---:|")
    labels = {
        "serial": "serial, one process, destination",
        "destination": f"concurrent, {args.processes} processes, destination (lock)",
        "bare": f"concurrent, {args.processes} processes, bare connect (no lock)",
    }
    for scenario, label in labels.items():
        figures = [run(scenario, args.processes, args.days, args.rows) for _ in range(args.rounds)]
        rate = statistics.median(f[0] for f in figures)
        written = statistics.median(f[1] for f in figures)
        failed = statistics.median(f[2] for f in figures)
        print(f"| {label} | {rate:,.0f} | {written:,.0f} | {failed:,.0f} |", flush=True)


if __name__ == "__main__":
    sys.exit(main())
