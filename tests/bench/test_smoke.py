"""Every benchmark runs in smoke mode, so a benchmark that breaks fails the test command.

Each script runs as a subprocess (as a person runs it) with ``--smoke`` on one backend: it must
exit 0 and print its table with figures in it. The figures themselves are never asserted: at
smoke sizes on a shared machine they mean nothing.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests import databases

BENCH = Path(__file__).resolve().parents[2] / "bench"
# A table row whose cells after the label include a figure: "| list opendts c=1 | 729 | 1.16 |".
FIGURE_ROW = re.compile(r"^\|[^|]+\|\s*[\d,]+(\.\d+)?\s*\|", re.MULTILINE)

pytestmark = pytest.mark.live

# (script, backend, rows of figures it prints for one backend)
SCRIPTS = [
    ("api.py", "sqlite", 10),
    ("api.py", "postgresql", 10),
    ("engine.py", "sqlite", 1),
    ("engine.py", "postgresql", 1),
    ("load.py", "duckdb", 2),
    ("load.py", "postgresql", 2),
    ("memory.py", "duckdb", 2),
    ("duckdb_writers.py", "duckdb", 3),
    ("runs.py", "sqlite", 4),
]


@pytest.mark.parametrize(
    ("script", "backend", "rows"), SCRIPTS, ids=[f"{s}-{b}" for s, b, _ in SCRIPTS]
)
def test_benchmark_runs_in_smoke_mode(script: str, backend: str, rows: int) -> None:
    if backend == "postgresql":
        databases.require_pg()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENDTS_")}
    env["OPENDTS_BENCH_PG_DSN"] = databases.PG_ADMIN_DSN
    result = subprocess.run(
        [sys.executable, str(BENCH / script), "--smoke", "--backend", backend],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    said = f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert result.returncode == 0, f"bench/{script} --smoke exited {result.returncode}\n{said}"
    assert "smoke mode" in result.stdout, said
    figures = FIGURE_ROW.findall(result.stdout)
    assert len(figures) >= rows, f"bench/{script} printed {len(figures)} rows of figures\n{said}"
