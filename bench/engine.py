"""Engine benchmark: a 3,650-day noop backfill from the create request to COMPLETED.

    python bench/engine.py [--backend sqlite|postgresql|both] [--days 3650] [--parallel 64]
                           [--workers 1,2,4] [--concurrency 32] [--rounds 1]
    python bench/engine.py --smoke   # seconds: 30 days, both backends, 1 worker, same table

SQLite: one ``opendts serve`` process (API + engine). PostgreSQL: ``opendts serve --no-workers``
for the API plus 1, 2 and 4 ``opendts worker`` processes. Next to each, in the same run and on the
same database, a bare SQL loop (as many processes as workers) claims and completes the same number
of queue rows in batches of the same size, with nothing else: no leases kept, no counters, no
fencing, no executor. The ratio engine/bare is what the engine's guarantees cost.

Reported per scenario: runs/s from the create request to COMPLETED, the latency from the create
request to the first run started and from the last run finished to COMPLETED (read from the
database's timestamps), and the peak RSS (VmHWM) of every opendts process.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import psycopg
from sqlalchemy import text

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from api import free_port, wait_healthy  # noqa: E402
from opendts.kit.db import Database  # noqa: E402

PG_ADMIN = os.environ.get("OPENDTS_BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


def peak_rss_mb(pid: int) -> float:
    """VmHWM: the process's peak resident set so far."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def env_for(data_dir: Path, url: str | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENDTS_")}
    env["OPENDTS_DATA_DIR"] = str(data_dir)
    if url:
        env["OPENDTS_DATABASE_URL"] = url
    env.update(extra)
    return env


def cli(env: dict[str, str], *args: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-m", "opendts", *args, "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    parsed: dict[str, object] = json.loads(out.stdout)
    return parsed


@contextmanager
def pg_database() -> Iterator[str]:
    name = f"opendts_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN.rsplit("/", 1)[0].split("://", 1)[1]
    try:
        yield f"postgresql+psycopg://{base}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def wait_listening(url: str, count: int) -> None:
    """Until ``count`` workers hold a LISTEN connection: started, migrated, waiting for work."""
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    name = url.rsplit("/", 1)[1]
    deadline = time.monotonic() + 60
    with psycopg.connect(dsn, autocommit=True) as conn:
        while time.monotonic() < deadline:
            listening = conn.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = %s AND query LIKE 'LISTEN%%'",
                (name,),
            ).fetchone()
            if listening and listening[0] >= count:
                time.sleep(0.2)
                return
            time.sleep(0.05)
    raise SystemExit(f"{count} workers did not start listening within 60 s")


@dataclass
class EngineResult:
    label: str
    days: int
    seconds: float
    first_run_ms: float
    completed_after_last_ms: float
    peak_rss_mb: dict[str, float]

    @property
    def runs_per_s(self) -> float:
        return self.days / self.seconds


def engine_round(
    backend: str,
    workers: int,
    days: int,
    parallel: int,
    concurrency: int,
    data_dir: Path,
    url: str | None,
) -> EngineResult:
    engine_env = {
        "OPENDTS_WORKER_CONCURRENCY": str(concurrency),
        "OPENDTS_MAX_RUNNING_RUNS": "100000",
        "OPENDTS_MAX_RUNNING_RUNS_PER_TEAM": "100000",
        "OPENDTS_MAX_BACKFILL_DAYS": str(max(days, 3660)),
        "OPENDTS_RATE_LIMIT_PER_HOUR": "10000",
    }
    env = env_for(data_dir, url, **engine_env)
    subprocess.run(
        [sys.executable, "-m", "opendts", "migrate"], env=env, check=True, capture_output=True
    )
    account = cli(env, "admin", "demo")
    team, key = int(account["team_id"]), str(account["api_key"])  # type: ignore[call-overload]
    transfer = cli(
        env,
        "admin",
        "transfer",
        "create",
        "--team",
        str(team),
        "--name",
        "bench",
        "--kind",
        "noop",
        "--max-parallel-runs",
        str(parallel),
    )["transfer_id"]
    port = free_port()
    serve_args = [
        sys.executable,
        "-m",
        "opendts",
        "serve",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    if backend == "postgresql":
        serve_args.append("--no-workers")
    with ExitStack() as stack:
        serve = subprocess.Popen(
            serve_args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        stack.callback(lambda: (serve.terminate(), serve.wait(timeout=60)))
        wait_healthy(port, serve)
        worker_procs = []
        for _ in range(workers if backend == "postgresql" else 0):
            proc = subprocess.Popen(
                [sys.executable, "-m", "opendts", "worker", "--log-level", "warning"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            worker_procs.append(proc)
            stack.callback(lambda p=proc: (p.terminate(), p.wait(timeout=60)))
        if url:
            wait_listening(url, len(worker_procs))
        else:
            time.sleep(1.0)  # the in-process engine starts with the server
        rss: dict[str, float] = {}
        first = date(2000, 1, 1)
        last = first + timedelta(days=days - 1)
        client = httpx.Client(
            base_url=f"http://127.0.0.1:{port}/v1", headers={"Authorization": f"Bearer {key}"}
        )
        started = time.perf_counter()
        created = client.post(
            f"/teams/{team}/transfers/{transfer}/backfills",
            json={"range_start": first.isoformat(), "range_end": last.isoformat()},
        )
        created.raise_for_status()
        backfill = created.json()["data"]["transfer_backfill_id"]
        sampling = True

        def sample() -> None:
            while sampling:
                for name, pid in [("serve", serve.pid)] + [
                    (f"worker-{i}", p.pid) for i, p in enumerate(worker_procs)
                ]:
                    rss[name] = max(rss.get(name, 0.0), peak_rss_mb(pid))
                time.sleep(0.05)

        sampler = threading.Thread(target=sample)
        sampler.start()
        while True:
            data = client.get(f"/teams/{team}/backfills/{backfill}").json()["data"]
            if data["status"] in ("COMPLETED", "FAILED", "CANCELLED"):
                break
            time.sleep(0.01)
        seconds = time.perf_counter() - started
        sampling = False
        sampler.join()
        client.close()
        if data["status"] != "COMPLETED" or data["transfer_runs_completed"] != days:
            raise SystemExit(f"backfill ended {data['status']}: {data}")
    db = Database(url or f"sqlite:///{data_dir / 'opendts.db'}")
    with db.session() as session:
        row = session.execute(
            text(
                "SELECT b.created_time, b.end_time, min(r.started_time), max(r.ended_time) "
                "FROM backfills b JOIN transfer_runs r ON r.backfill_id = b.id "
                "WHERE b.id = :id GROUP BY b.created_time, b.end_time"
            ),
            {"id": backfill},
        ).one()
    db.dispose()
    created_t, end_t, first_start, last_end = (_as_dt(v) for v in row)
    # The database's own timestamps: create → first run started, last run ended → COMPLETED.
    label = "sqlite serve" if backend == "sqlite" else f"postgresql {workers} worker(s)"
    return EngineResult(
        label,
        days,
        (end_t - created_t).total_seconds() if end_t else seconds,
        (first_start - created_t).total_seconds() * 1000,
        (end_t - last_end).total_seconds() * 1000,
        rss,
    )


def _as_dt(value: object) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(str(value)).replace(tzinfo=UTC)


# -- the bare loop -------------------------------------------------------------------------

BARE_TABLE = "bench_bare_queue"


def bare_setup(url: str, days: int) -> None:
    db = Database(url)
    with db.session(write=True) as session:
        session.execute(text(f"DROP TABLE IF EXISTS {BARE_TABLE}"))
        session.execute(
            text(
                f"CREATE TABLE {BARE_TABLE} (id INTEGER PRIMARY KEY, data_date DATE NOT NULL, "
                "status VARCHAR(20) NOT NULL, owner VARCHAR(100))"
            )
        )
        session.execute(
            text(
                f"CREATE INDEX ix_{BARE_TABLE}_q ON {BARE_TABLE} (data_date) "
                "WHERE status = 'QUEUED'"
            )
        )
        first = date(2000, 1, 1)
        session.execute(
            text(f"INSERT INTO {BARE_TABLE} (id, data_date, status) VALUES (:i, :d, 'QUEUED')"),
            [{"i": i + 1, "d": first + timedelta(days=i)} for i in range(days)],
        )
    db.dispose()


def bare_worker(url: str, batch: int, owner: str, start_at: float) -> tuple[int, float]:
    """Claim ``batch`` rows newest first and mark them done, until the queue is empty."""
    db = Database(url)
    postgres = db.dialect == "postgresql"
    lock = " FOR UPDATE SKIP LOCKED" if postgres else ""
    claim = text(
        f"UPDATE {BARE_TABLE} SET status = 'RUNNING', owner = :owner WHERE id IN ("
        f"SELECT id FROM {BARE_TABLE} WHERE status = 'QUEUED' ORDER BY data_date DESC "
        f"LIMIT :batch{lock}) RETURNING id"
    )
    done = text(f"UPDATE {BARE_TABLE} SET status = 'DONE' WHERE id = :id AND owner = :owner")
    while time.time() < start_at:
        time.sleep(0.001)
    count = 0
    while True:
        with db.session(write=True) as session:
            ids = session.execute(claim, {"owner": owner, "batch": batch}).scalars().all()
        if not ids:
            break
        with db.session(write=True) as session:
            session.execute(done, [{"id": i, "owner": owner} for i in ids])
        count += len(ids)
    ended = time.time()
    db.dispose()
    return count, ended


def bare_round(url: str, days: int, processes: int, batch: int) -> float:
    bare_setup(url, days)
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        # Every process starts at the same instant, after the pool has spawned.
        start_at = time.time() + 2.0
        results = [
            pool.apply_async(bare_worker, (url, batch, f"bare-{i}", start_at))
            for i in range(processes)
        ]
        done = [r.get() for r in results]
    total = sum(count for count, _ in done)
    assert total == days, (total, days)
    return days / (max(ended for _, ended in done) - start_at)


FULL: dict[str, object] = {
    "days": 3650,
    "parallel": 64,
    "concurrency": 32,
    "workers": "1,2,4",
    "rounds": 1,
}
# Smoke: the same scenarios (serve with its engine, API + worker process, the bare loop) on a
# month of runs, so a broken benchmark shows in seconds; the figures mean nothing.
SMOKE: dict[str, object] = {
    "days": 30,
    "parallel": 8,
    "concurrency": 4,
    "workers": "1",
    "rounds": 1,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--days", type=int, help="days in the backfill (3650)")
    parser.add_argument("--parallel", type=int, help="transfer max_parallel_runs (64)")
    parser.add_argument("--concurrency", type=int, help="slots per engine process (32)")
    parser.add_argument("--workers", help="PostgreSQL worker process counts (1,2,4)")
    parser.add_argument("--rounds", type=int, help="rounds per scenario (1)")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="a few seconds: 30 days, 1 PostgreSQL worker; real code paths, same table, "
        "figures meaningless (the test suite runs this)",
    )
    args = parser.parse_args()
    for name, value in (SMOKE if args.smoke else FULL).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.smoke:
        print("# smoke mode: tiny sizes to prove the benchmark runs; the figures mean nothing")
    print(
        f"# engine benchmark, {platform.python_implementation()} {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, {args.days} days, max_parallel_runs {args.parallel}, "
        f"{args.concurrency} slots per engine process"
    )
    scenarios: list[tuple[str, int]] = []
    if args.backend in ("sqlite", "both"):
        scenarios.append(("sqlite", 1))
    if args.backend in ("postgresql", "both"):
        scenarios += [("postgresql", int(n)) for n in args.workers.split(",")]
    header = (
        "| scenario | engine runs/s | bare runs/s | ratio | first run ms | "
        "COMPLETED after last run ms | peak RSS MB |"
    )
    print(header)
    print("|---|---:|---:|---:|---:|---:|---|")
    for backend, workers in scenarios:
        engine_results: list[EngineResult] = []
        bare_results: list[float] = []
        for _ in range(args.rounds):
            with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
                url = None if backend == "sqlite" else stack.enter_context(pg_database())
                data_dir = Path(tmp)
                engine_results.append(
                    engine_round(
                        backend, workers, args.days, args.parallel, args.concurrency, data_dir, url
                    )
                )
                bare_url = url or f"sqlite:///{data_dir / 'bare.db'}"
                bare_results.append(bare_round(bare_url, args.days, workers, args.concurrency))
        best = max(engine_results, key=lambda r: r.runs_per_s)
        engine_rate = statistics.median(r.runs_per_s for r in engine_results)
        bare_rate = statistics.median(bare_results)
        rss = ", ".join(f"{k} {v:.0f}" for k, v in best.peak_rss_mb.items())
        print(
            f"| {best.label} | {engine_rate:,.0f} | {bare_rate:,.0f} | "
            f"{engine_rate / bare_rate:.2f} | "
            f"{statistics.median(r.first_run_ms for r in engine_results):.1f} | "
            f"{statistics.median(r.completed_after_last_ms for r in engine_results):.1f} | "
            f"{rss} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
