"""Memory benchmark: the peak RSS of a process that loads one day of N rows into DuckDB.

    python bench/memory.py [--rows 3000000] [--source demo|sql|both] [--backend duckdb]
    python bench/memory.py --smoke     # seconds: 1,000 and 100,000 demo rows

Each load runs in a fresh child process (``--child``), as a worker would: it builds the
load's spec (a ``demo`` source of N rows a day, or a ``sql`` source over PostgreSQL's
``generate_series(1, N)``; a DuckDB destination in a temporary team folder) and calls
``connectors.load.load_day`` once. The child reports ``ru_maxrss`` (its peak resident set)
after the load; a load of 1,000 rows gives the process's baseline (Python, pyarrow, DuckDB
imported and used). Goal: the peak does not grow with the day's size, only with the batch size.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=3_000_000)
    parser.add_argument("--source", choices=("demo", "sql", "both"), default="demo")
    parser.add_argument("--backend", choices=("duckdb",), default="duckdb")
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.rows, args.source, Path(os.environ["OPENDTS_BENCH_FOLDER"]))
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
