"""Run processes benchmark: data runs end to end through the engine, in run processes or in
the engine's threads (``OPENDTS_RUN_PROCESSES``), and the engine process's memory.

    python bench/runs.py [--days 60] [--rows 10000] [--big-rows 3000000] [--concurrency 4]
    python bench/runs.py --smoke     # seconds: 4 days of 100 rows, a day of 20,000 rows

Each scenario runs in its own Python process (so its peak RSS is its own): a fresh SQLite
metadata database, one team, the ``demo`` source into a DuckDB warehouse in the team's folder,
an in-process engine (as ``opendts serve`` runs it) with ``--concurrency`` slots and a transfer
with as many parallel runs. The clock runs from the backfill's creation to COMPLETED.

Before the measured backfill, a warm-up backfill of ``--concurrency`` dates of 100 rows into
another table of the same warehouse (the first runs
import Arrow, DuckDB and the connectors, and start the run processes: what a server that has
been up a while has done); its time is shown apart.

- **backfill**: ``--days`` dates of ``--rows`` rows each;
- **one big day**: one date of ``--big-rows`` rows (the issue's "a 3-million-row day").

"engine peak RSS" is the ``VmHWM`` of the process that runs the engine (the API's process
under ``opendts serve``); "run process peak RSS" is the largest ``VmRSS`` of a run process,
sampled every 20 ms (none with threads).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

DAY = date(2024, 6, 30)


def _vm(field: str, pid: int | str = "self") -> float:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def scenario(mode: str, days: int, rows: int, concurrency: int) -> dict[str, Any]:
    """One backfill through an in-process engine; runs in a process of its own."""
    from opendts.backfills import service as backfills
    from opendts.connectors.boundary import Boundary
    from opendts.destinations import service as destinations
    from opendts.engine.engine import Engine
    from opendts.engine.processes import rss_mb
    from opendts.kit import migrate
    from opendts.kit.db import Database
    from opendts.kit.secrets import box_for
    from opendts.settings import Settings
    from opendts.teams import service as teams
    from opendts.transfers import api as transfers_api

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        url = f"sqlite:///{data_dir / 'opendts.db'}"
        db = Database(url)
        migrate.upgrade(db, data_dir=data_dir)
        settings = Settings(
            data_dir=data_dir,
            database_url=url,
            worker_concurrency=concurrency,
            poll_seconds=0.05,
            run_processes=mode == "processes",
        )
        box = box_for(settings.data_dir, settings.secret_key)
        with db.session(write=True) as session:
            team = teams.create_team(session, "Bench").id
            boundary = Boundary.for_team(settings, team)
            destination = destinations.create(
                session,
                box,
                boundary,
                None,
                destinations.DestinationInput("duckdb", "Warehouse", {"path": "w.duckdb"}),
            )
            transfer, warm = (
                transfers_api.create(
                    session,
                    box,
                    boundary,
                    None,
                    {
                        "data_source_id": "demo",
                        "destination_id": destination.id,
                        "display_name": table,
                        "table": table,
                        "source_config": {"rows_per_day": count},
                        "max_parallel_runs": concurrency,
                    },
                ).id
                for table, count in (("ads", rows), ("warm_up", 100))
            )
        engine = Engine(db, settings)
        engine.start()
        child_peak = 0.0
        stop = threading.Event()

        def sample() -> None:
            nonlocal child_peak
            while not stop.wait(0.02):
                for pid in _children():
                    child_peak = max(child_peak, rss_mb(pid) or 0.0)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()

        def backfill(transfer_id: int, first: date, last: date) -> str:
            with db.session(write=True) as session:
                backfill_id = backfills.create(
                    session,
                    team_id=team,
                    transfer_id=transfer_id,
                    user_id=1,
                    range_start=first,
                    range_end=last,
                    rules=backfills.RangeRules(max_days=3660),
                ).id
            engine.wake()
            while True:
                with db.session() as session:
                    status = backfills.get(session, team, backfill_id).status
                if status in ("COMPLETED", "FAILED", "CANCELLED"):
                    return status
                time.sleep(0.02)

        # Warm-up: the first runs import Arrow, DuckDB and the connectors (and start the run
        # processes); a server that has been up a while has done that.
        warm_up = DAY - timedelta(days=days)
        began = time.perf_counter()
        backfill(warm, warm_up - timedelta(days=concurrency - 1), warm_up)
        cold = time.perf_counter() - began
        began = time.perf_counter()
        status = backfill(transfer, DAY - timedelta(days=days - 1), DAY)
        seconds = time.perf_counter() - began
        stop.set()
        engine.stop(grace=0)
        db.dispose()
    return {
        "mode": mode,
        "status": status,
        "seconds": seconds,
        "warm_up_seconds": cold,
        "runs_per_s": days / seconds,
        "rows_per_s": days * rows / seconds,
        "engine_peak_mb": _vm("VmHWM"),
        "child_peak_mb": child_peak,
        "started": engine.processes.started,
    }


def _children() -> list[int]:
    """Process ids of this process's children: the engine's run processes."""
    me = os.getpid()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == me:
                found.append(int(entry.name))
    return found


def run(mode: str, days: int, rows: int, concurrency: int) -> dict[str, Any]:
    """``scenario`` in a fresh process."""
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--scenario",
            mode,
            "--days",
            str(days),
            "--rows",
            str(rows),
            "--concurrency",
            str(concurrency),
        ],
        capture_output=True,
        text=True,
        check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith("OPENDTS_")},
    )
    if out.returncode != 0:
        raise SystemExit(f"scenario {mode} failed:\n{out.stdout}\n{out.stderr}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


FULL = {"days": 60, "rows": 10_000, "big_rows": 3_000_000, "concurrency": 4}
SMOKE = {"days": 4, "rows": 100, "big_rows": 20_000, "concurrency": 2}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, help="dates in the backfill (60)")
    parser.add_argument("--rows", type=int, help="rows per date (10,000)")
    parser.add_argument("--big-rows", type=int, help="rows of the one big day (3,000,000)")
    parser.add_argument("--concurrency", type=int, help="engine slots and parallel runs (4)")
    parser.add_argument("--backend", choices=["sqlite"], default="sqlite", help="metadata")
    parser.add_argument("--scenario", choices=["threads", "processes"], help=argparse.SUPPRESS)
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="a few seconds: tiny sizes, same table, figures meaningless (the test suite "
        "runs this)",
    )
    args = parser.parse_args()
    for name, value in (SMOKE if args.smoke else FULL).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.scenario:
        print(json.dumps(scenario(args.scenario, args.days, args.rows, args.concurrency)))
        return
    if args.smoke:
        print("# smoke mode: tiny sizes to prove the benchmark runs; the figures mean nothing")
    print(
        f"# run processes benchmark, {platform.python_implementation()} "
        f"{platform.python_version()}, {os.cpu_count()} CPUs, demo source into DuckDB, "
        f"{args.concurrency} slots, SQLite metadata"
    )
    print(
        "| scenario, runs in | seconds | runs/s | rows/s | engine peak RSS MB | "
        "run process peak RSS MB | warm-up s |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for label, days, rows in (
        (f"backfill {args.days} days x {args.rows:,} rows", args.days, args.rows),
        (f"one day of {args.big_rows:,} rows", 1, args.big_rows),
    ):
        for mode in ("threads", "processes"):
            r = run(mode, days, rows, args.concurrency)
            if r["status"] != "COMPLETED":
                raise SystemExit(f"{label} in {mode}: the backfill ended {r['status']}")
            child = f"{r['child_peak_mb']:.0f}" if mode == "processes" else "-"
            print(
                f"| {label}, {mode} | {r['seconds']:.2f} | {r['runs_per_s']:,.1f} | "
                f"{r['rows_per_s']:,.0f} | {r['engine_peak_mb']:.0f} | {child} | "
                f"{r['warm_up_seconds']:.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
