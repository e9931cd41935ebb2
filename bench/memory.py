"""Memory benchmark: the peak RSS of a process that loads one day of N rows into DuckDB.

    python bench/memory.py [--rows 3000000] [--source demo|sql|both] [--backend duckdb]
    python bench/memory.py --smoke     # seconds: 1,000 and 100,000 demo rows
    python bench/memory.py --serve [--rows 3000000]   # opendts serve loading one such day

Each load runs in a fresh child process (``--child``), as a worker would: it builds the
load's spec (a ``demo`` source of N rows a day, or a ``sql`` source over PostgreSQL's
``generate_series(1, N)``; a DuckDB destination in a temporary team folder) and calls
``connectors.load.load_day`` once. The child reports ``ru_maxrss`` (its peak resident set)
after the load; a load of 1,000 rows gives the process's baseline (Python, pyarrow, DuckDB
imported and used). Goal: the peak does not grow with the day's size, only with the batch size.

``--serve``: a real ``opendts serve`` (SQLite metadata, its in-process engine) in a fresh data
folder; a demo transfer of N rows a day into the demo team's DuckDB warehouse is created over
the API and a one-day backfill of it run; the server's ``VmHWM`` (peak) and ``VmRSS`` (after
the load, what it keeps) are read from ``/proc`` before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

PG_ADMIN = os.environ.get("OPENDTS_BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
DAY = date(2024, 1, 1)


def child(rows: int, source_name: str, folder: Path) -> None:
    from opendts.connectors import registry
    from opendts.connectors.base import RefreshMode, parse_settings
    from opendts.connectors.boundary import Boundary
    from opendts.connectors.load import LoadSpec, load_day
    from opendts.engine.kinds import RunContext

    boundary = Boundary(
        team_id=1,
        data_dir=folder.resolve(),
        allowed_networks=("127.0.0.0/8", "::1/128", "localhost"),
        sql_dialects=("postgresql",),
    )
    source = registry.get_source(source_name)
    if source_name == "demo":
        config: dict[str, object] = {"rows_per_day": rows}
    else:
        config = {
            "url": PG_ADMIN,
            "query": "SELECT g AS id, 'acc-' || (g % 100) AS account_id, "
            "'Campaign ' || g AS campaign_name, g % 1000 AS clicks, g * 0.01 AS cost "
            f"FROM generate_series(1, {rows}) AS g WHERE :date IS NOT NULL",
        }
    destination = registry.get_destination("duckdb")
    spec = LoadSpec(
        source,
        parse_settings(source.Settings, config, boundary),
        destination,
        parse_settings(destination.Settings, {"path": "warehouse.duckdb"}, boundary),
        "bench",
        "ads",
        "date",
        RefreshMode.REPLACE,
        (),
    )
    began = time.perf_counter()
    result = load_day(spec, RunContext(1, 1, 1, DAY, 1, 1), boundary)
    seconds = time.perf_counter() - began
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"rows": result.rows, "peak_kb": peak_kb, "seconds": seconds}))


def measure(rows: int, source: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="opendts-memory-") as folder:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPENDTS_")}
        done = subprocess.run(
            [sys.executable, __file__, "--child", "--rows", str(rows), "--source", source],
            env={**env, "OPENDTS_BENCH_FOLDER": folder, "OPENDTS_BENCH_PG_DSN": PG_ADMIN},
            capture_output=True,
            text=True,
            check=False,
        )
    if done.returncode != 0:
        sys.exit(f"the child loading {rows:,} {source} rows failed:\n{done.stderr}")
    figures: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    if figures["rows"] != rows:
        sys.exit(f"the child loaded {figures['rows']:,} rows, not {rows:,}")
    return figures


def serve(rows: int) -> None:
    import httpx

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from engine import cli, env_for, free_port, wait_healthy

    def status(pid: int) -> dict[str, float]:
        found = {}
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmHWM", "VmRSS"):
                found[name] = int(value.split()[0]) / 1024
        return found

    with tempfile.TemporaryDirectory(prefix="opendts-serve-memory-") as folder:
        env = env_for(Path(folder), None, OPENDTS_RATE_LIMIT_PER_HOUR="100000")
        subprocess.run(
            [sys.executable, "-m", "opendts", "migrate"], env=env, check=True, capture_output=True
        )
        account = cli(env, "admin", "demo")
        team, key = account["team_id"], account["api_key"]
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "opendts", "serve", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_healthy(port, server)
            client = httpx.Client(
                base_url=f"http://127.0.0.1:{port}/v1",
                headers={"Authorization": f"Bearer {key}"},
                timeout=60,
            )
            destinations = client.get(f"/teams/{team}/destinations").json()["data"]
            body = {
                "data_source_id": "demo",
                "destination_id": destinations[0]["id"],
                "display_name": "memory",
                "table": "memory_ads",
                "data_source_settings": [{"field_id": "rows_per_day", "value": rows}],
            }
            made = client.post(f"/teams/{team}/transfers", json=body)
            made.raise_for_status()
            transfer = made.json()["data"]["transfer_id"]
            time.sleep(1.0)
            before = status(server.pid)
            began = time.perf_counter()
            created = client.post(
                f"/teams/{team}/transfers/{transfer}/backfills",
                json={"range_start": DAY.isoformat(), "range_end": DAY.isoformat()},
            )
            created.raise_for_status()
            backfill = created.json()["data"]["transfer_backfill_id"]
            while True:
                got = client.get(f"/teams/{team}/backfills/{backfill}").json()["data"]
                if got["status"] in ("COMPLETED", "FAILED", "CANCELLED"):
                    break
                time.sleep(0.5)
            seconds = time.perf_counter() - began
            time.sleep(3.0)  # the DuckDB connection closes after 2 s idle
            after = status(server.pid)
        finally:
            server.terminate()
            server.wait(timeout=60)
    if got["status"] != "COMPLETED":
        sys.exit(f"the backfill ended {got['status']}")
    print(f"opendts serve loading one day of {rows:,} demo rows into DuckDB\n")
    print("| serve | VmHWM (MB) | VmRSS (MB) |")
    print("|---|---:|---:|")
    print(f"| before the load | {before['VmHWM']:.0f} | {before['VmRSS']:.0f} |")
    print(f"| after the load ({seconds:.1f} s) | {after['VmHWM']:.0f} | {after['VmRSS']:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=3_000_000)
    parser.add_argument("--source", choices=("demo", "sql", "both"), default="demo")
    parser.add_argument("--backend", choices=("duckdb",), default="duckdb")
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--serve", action="store_true", help="measure opendts serve instead")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.rows, args.source, Path(os.environ["OPENDTS_BENCH_FOLDER"]))
        return
    if args.serve:
        serve(args.rows)
        return
    sizes = [1_000, 100_000] if args.smoke else [1_000, args.rows]
    sources = ["demo", "sql"] if args.source == "both" else [args.source]
    if args.smoke:
        print("smoke mode: figures mean nothing at this size")
    print(f"Peak RSS of one load_day into DuckDB, in a fresh process ({os.cpu_count()} CPUs)\n")
    print("| source | rows | peak RSS (MB) | above 1,000 rows (MB) | load (s) |")
    print("|---|---:|---:|---:|---:|")
    for source in sources:
        base = None
        for rows in sizes:
            figures = measure(rows, source)
            peak = figures["peak_kb"] / 1024
            base = peak if base is None else base
            print(
                f"| {source} | {rows:,} | {peak:.0f} | {peak - base:.0f} | "
                f"{figures['seconds']:.2f} |"
            )


if __name__ == "__main__":
    main()
