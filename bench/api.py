"""API benchmark: create and list with 10,000 backfills in the DB, next to a bare endpoint.

    python bench/api.py [--backend sqlite|postgresql|both] [--requests N] [--concurrency C]
                        [--processes P]
    python bench/api.py --smoke      # seconds: tiny sizes, both backends, same table


Starts a real ``opendts serve`` and, in the same run, a bare FastAPI app (``bare_app.py``) that
answers the same routes with the same JSON bytes and nothing else, then drives both with the same
load generator (``loadgen.py``, a separate process from both servers) and prints p50/p99 latency,
requests/s and the opendts/bare throughput ratio. Goals (issue 12): list p99 <= 20 ms and list
throughput >= 0.5 of the bare endpoint at 8 clients, create >= 0.2 of bare at 1 client.

``--processes P`` runs ``opendts serve --workers P`` and the bare app in P processes too (the
same kind of supervisor: one socket, P processes accepting on it), so the ratio compares equal
resources.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import psycopg
from sqlalchemy import insert

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import opendts.kit.registry  # noqa: E402  (every table, so foreign keys resolve)
from loadgen import LoadResult, build_request, run_load  # noqa: E402
from opendts.auth.service import issue_key  # noqa: E402
from opendts.backfills.models import Backfill  # noqa: E402
from opendts.kit import registry  # noqa: E402, F401  (every table known before seeding)
from opendts.kit.db import Database  # noqa: E402
from opendts.transfers.models import Transfer  # noqa: E402

PG_ADMIN = os.environ.get("OPENDTS_BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
SEED_TRANSFERS = 100
CREATE_TRANSFERS = 50
REQUESTS_PER_KEY = 9000  # under the 10,000/hour maximum a key may be given
FULL = {"backend": "sqlite", "requests": 3000, "backfills": 10_000, "rounds": 3}
# Smoke: every code path of a full run (seed, serve, bare app, list and create at both
# concurrencies, the report) at sizes that take seconds; at least 100 backfills fill a page.
SMOKE = {"backend": "both", "requests": 30, "backfills": 200, "rounds": 1}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_healthy(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server on port {port} exited with {process.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit(f"server on port {port} did not start")


@contextmanager
def process(args: list[str], env: dict[str, str], port: int) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_healthy(port, proc)
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@contextmanager
def database(backend: str, data_dir: Path) -> Iterator[str | None]:
    if backend == "sqlite":
        yield None
        return
    name = f"opendts_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield (
            PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
            + "/"
            + name
        )
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def opendts(env: dict[str, str], *args: str) -> str:
    return subprocess.run(
        [sys.executable, "-m", "opendts", *args],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def seed(
    db: Database, team_id: int, user_id: int, backfills: int, keys: int
) -> tuple[list[int], list[str]]:
    """10,000 backfills over 100 transfers (90 % incomplete), transfers for creates, more keys."""
    now = datetime.now(UTC)
    with db.session(write=True) as session:
        transfer_ids = []
        for index in range(SEED_TRANSFERS + CREATE_TRANSFERS):
            transfer = Transfer(
                team_id=team_id, display_name=f"bench {index}", created_user_id=user_id
            )
            session.add(transfer)
            session.flush()
            transfer_ids.append(transfer.id)
        statuses = [
            "CREATED",
            "SCHEDULED",
            "RUNNING",
            "FAILED",
            "CREATED",
            "RUNNING",
            "CREATED",
            "SCHEDULED",
            "FAILED",
            "COMPLETED",
        ]
        rows = []
        for index in range(backfills):
            day = date(2000, 1, 1) + timedelta(days=index // SEED_TRANSFERS)
            rows.append(
                {
                    "team_id": team_id,
                    "transfer_id": transfer_ids[index % SEED_TRANSFERS],
                    "range_start": day,
                    "range_end": day,
                    "status": statuses[index % len(statuses)],
                    "created_time": now - timedelta(seconds=backfills - index),
                    "created_user_id": user_id,
                    "runs_total": 1,
                    "runs_created": 0,
                    "runs_completed": 0,
                    "runs_failed": 0,
                }
            )
        session.execute(insert(Backfill), rows)
        plaintexts = [
            issue_key(session, user_id, ("dwh_transfers_read", "dwh_transfers_write")).plaintext
            for _ in range(keys)
        ]
    return transfer_ids[SEED_TRANSFERS:], plaintexts


def measure(port: int, factory, total: int, concurrency: int) -> LoadResult:  # type: ignore[no-untyped-def]
    run_load("127.0.0.1", port, factory, min(300, total), concurrency)  # warm up
    return run_load("127.0.0.1", port, factory, total, concurrency)


def row(label: str, result: LoadResult) -> str:
    bad = sum(n for status, n in result.statuses.items() if status != 200)
    return (
        f"| {label} | {result.rps:,.0f} | {result.percentile(0.5) * 1000:.2f} | "
        f"{result.percentile(0.99) * 1000:.2f} | {bad} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--backend",
        choices=["sqlite", "postgresql", "both"],
        help="default sqlite (both with --smoke)",
    )
    parser.add_argument("--requests", type=int, help="measured requests per scenario (3000)")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--backfills", type=int, help="backfills seeded (10,000)")
    parser.add_argument("--rounds", type=int, help="alternating rounds; median wins (3)")
    parser.add_argument(
        "--processes", type=int, default=1, help="API processes of opendts and of the bare app"
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="a few seconds: 200 backfills, 30 requests, 1 round, both backends; the real code "
        "paths and the same table, figures meaningless (the test suite runs this)",
    )
    options = parser.parse_args()
    sizes = SMOKE if options.smoke else FULL
    for name, value in sizes.items():
        if getattr(options, name) is None:
            setattr(options, name, value)
    backends = ["sqlite", "postgresql"] if options.backend == "both" else [options.backend]
    for options.backend in backends:
        options.load_before = f"{os.getloadavg()[0]:.2f}"
        bench(options)


def bench(options: argparse.Namespace) -> None:
    """Seed one database, start opendts and the bare app, measure, print the tables."""
    work = Path(tempfile.mkdtemp(prefix="opendts-bench-"))
    with database(options.backend, work) as url:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPENDTS_")}
        # The API alone: the seeded backfills are fixtures for listing, not work for an engine.
        env |= {
            "OPENDTS_DATA_DIR": str(work),
            "OPENDTS_RATE_LIMIT_PER_HOUR": "10000",
            "OPENDTS_WORKERS": "false",
        }
        if url:
            env["OPENDTS_DATABASE_URL"] = url
            opendts(env, "migrate")
        demo = json.loads(opendts(env, "admin", "demo", "--json"))
        team, user = demo["team_id"], demo["user_id"]
        db = Database(url or f"sqlite:///{work / 'opendts.db'}")
        # Enough keys that no key exceeds its hourly budget during the run.
        scenarios_requests = options.rounds * 4 * (options.requests + 300) + 10
        keys_needed = scenarios_requests // REQUESTS_PER_KEY + 1
        create_transfers, keys = seed(db, team, user, options.backfills, keys_needed)
        db.dispose()

        real_port, bare_port = free_port(), free_port()
        serve = [
            sys.executable,
            "-m",
            "opendts",
            "serve",
            "--port",
            str(real_port),
            "--log-level",
            "warning",
            "--workers",
            str(options.processes),
        ]
        with process(serve, env, real_port):
            auth = {"Authorization": f"Bearer {keys[0]}"}
            base = f"http://127.0.0.1:{real_port}/v1/teams/{team}"
            list_body = httpx.get(f"{base}/backfills", headers=auth).content
            assert len(json.loads(list_body)["data"]) == 100
            sample = httpx.post(
                f"{base}/transfers/{create_transfers[0]}/backfills",
                json={"range_start": "1999-01-01", "range_end": "1999-01-01"},
                headers=auth,
            )
            assert sample.status_code == 200, sample.text
            (work / "list.json").write_bytes(list_body)
            (work / "create.json").write_bytes(sample.content)
            bare = [
                sys.executable,
                str(HERE / "bare_app.py"),
                str(bare_port),
                str(work / "list.json"),
                str(work / "create.json"),
                str(options.processes),
            ]
            with process(bare, env, bare_port):
                results = run_scenarios(options, team, create_transfers, keys, real_port, bare_port)

    print_report(options, results)


def run_scenarios(options, team, create_transfers, keys, real_port, bare_port):  # type: ignore[no-untyped-def]
    host = "127.0.0.1"
    created = iter(range(10**9))

    def list_request(port: int):  # type: ignore[no-untyped-def]
        def factory(index: int) -> bytes:
            headers = {"Authorization": f"Bearer {keys[index % len(keys)]}"}
            return build_request("GET", f"/v1/teams/{team}/backfills", f"{host}:{port}", headers)

        return factory

    def create_request(port: int):  # type: ignore[no-untyped-def]
        def factory(_: int) -> bytes:
            # Each create is a distinct day of one of 50 transfers: never an overlap.
            index = next(created)
            transfer = create_transfers[index % len(create_transfers)]
            day = (date(1990, 1, 1) + timedelta(days=index // len(create_transfers))).isoformat()
            body = json.dumps({"range_start": day, "range_end": day}).encode()
            headers = {
                "Authorization": f"Bearer {keys[index % len(keys)]}",
                "Content-Type": "application/json",
            }
            path = f"/v1/teams/{team}/transfers/{transfer}/backfills"
            return build_request("POST", path, f"{host}:{port}", headers, body)

        return factory

    # Alternate bare and opendts over several rounds: a shared 2-core machine drifts, and
    # interleaving keeps that drift out of the ratio. Report the median round.
    runs: dict[tuple[str, str, int], list[LoadResult]] = {}
    for round_number in range(options.rounds):
        for concurrency in (1, options.concurrency):
            single = max(min(500, options.requests), options.requests // 3)
            total = options.requests if concurrency > 1 else single
            for op, make in (("list", list_request), ("create", create_request)):
                targets = [("bare", bare_port), ("opendts", real_port)]
                if round_number % 2:
                    targets.reverse()
                for target, port in targets:
                    result = measure(port, make(port), total, concurrency)
                    runs.setdefault((op, target, concurrency), []).append(result)
    return {
        key: sorted(results, key=lambda r: r.rps)[len(results) // 2]
        for key, results in runs.items()
    }


def print_report(options, results) -> None:  # type: ignore[no-untyped-def]
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    print(
        f"\nopendts API benchmark: backend={options.backend}, "
        f"{options.backfills:,} backfills seeded, {options.processes} API process(es) each"
    )
    if options.smoke:
        print("smoke mode: tiny sizes to prove the benchmark runs; the figures mean nothing")
    print(f"load average before/after: {options.load_before} / {os.getloadavg()[0]:.2f}")
    print(f"machine: {os.cpu_count()} cores, {cpu}; python {platform.python_version()}\n")
    print(f"median of {options.rounds} alternating rounds\n")
    print("| scenario | req/s | p50 ms | p99 ms | non-200 |")
    print("|---|---:|---:|---:|---:|")
    for (op, target, concurrency), result in results.items():
        print(row(f"{op} {target} c={concurrency}", result))
    print(f"\n| ratio (opendts / bare req/s) | c=1 | c={options.concurrency} |")
    print("|---|---:|---:|")
    for op in ("list", "create"):
        ratios = [
            results[(op, "opendts", c)].rps / results[(op, "bare", c)].rps
            for c in (1, options.concurrency)
        ]
        print(f"| {op} | {ratios[0]:.2f} | {ratios[1]:.2f} |")
    p99 = (
        max(results[("list", "opendts", c)].percentile(0.99) for c in (1, options.concurrency))
        * 1000
    )
    ratio = (
        results[("list", "opendts", options.concurrency)].rps
        / results[("list", "bare", options.concurrency)].rps
    )
    print(
        f"\ngoal list p99 <= 20 ms: {'met' if p99 <= 20 else 'NOT met'} "
        f"({p99:.2f} ms, worst of c=1 and c={options.concurrency})"
    )
    print(
        f"goal list throughput >= 0.5 x bare: {'met' if ratio >= 0.5 else 'NOT met'} ({ratio:.2f})"
    )
    create = results[("create", "opendts", 1)].rps / results[("create", "bare", 1)].rps
    print(
        f"goal create throughput >= 0.2 x bare at c=1: {'met' if create >= 0.2 else 'NOT met'} "
        f"({create:.2f})"
    )


if __name__ == "__main__":
    main()
