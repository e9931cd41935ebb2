"""Issue 11 §4: a team cannot grow the server with a big day (its part "data flows in bounded
batches"; running loads in their own processes under a cap is another test's).

The attack was a ``sql`` source over ``generate_series`` with the largest ``chunk_size``: the
loader gathered the day whole, so memory grew with whatever number the team typed. Here a day
of 800,000 rows (about 88 MiB in Arrow) is loaded by ``load_day``, as the engine runs it, while
a thread samples Arrow's allocated bytes: the peak stays near the loader's in-memory bound
(16 MiB) instead of the day's size. Sampling can only miss a peak, never invent one, so the
assertion cannot fail by timing; before the change it saw 88 MiB.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pyarrow as pa
import pytest

from opendts.connectors import registry, spool
from opendts.connectors.base import RefreshMode, parse_settings
from opendts.connectors.load import LoadSpec, load_day
from opendts.engine.kinds import RunContext
from tests import databases
from tests.boundaries import boundary, use_data_dir

DAY = date(2024, 7, 1)
ROWS = 800_000


@pytest.fixture
def team(tmp_path: Path) -> Iterator[Path]:
    with use_data_dir(tmp_path) as folder:
        yield folder


def peak_while(action: threading.Event) -> tuple[threading.Thread, list[int]]:
    peak = [0]

    def sample() -> None:
        while not action.is_set():
            peak[0] = max(peak[0], pa.total_allocated_bytes())
            action.wait(0.001)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    return thread, peak


def test_a_huge_chunk_size_over_generate_series_does_not_hold_the_day(team: Path) -> None:
    databases.require_pg()
    source = registry.get_source("sql")
    destination = registry.get_destination("duckdb")
    config = {
        "url": databases.PG_ADMIN_DSN,
        "chunk_size": 10_000_000,  # the largest a team may type
        "query": "SELECT g AS id, repeat('x', 100) AS pad "
        f"FROM generate_series(1, {ROWS}) AS g WHERE :date IS NOT NULL",
    }
    spec = LoadSpec(
        source,
        parse_settings(source.Settings, config, boundary()),
        destination,
        parse_settings(destination.Settings, {}, boundary()),
        "warehouse",
        "big_day",
        "date",
        RefreshMode.REPLACE,
        (),
    )
    done = threading.Event()
    before = pa.total_allocated_bytes()
    thread, peak = peak_while(done)
    try:
        result = load_day(spec, RunContext(1, 1, 1, DAY, 1, 3), boundary())
    finally:
        done.set()
        thread.join()
    assert result.rows == ROWS
    day_bytes = ROWS * (8 + 4 + 100 + 4)  # id, offsets, text, date: about 88 MiB
    bound = spool.MEMORY_BYTES + (16 << 20)  # the in-memory part, and a few batches
    assert peak[0] - before < bound < day_bytes
    written = destination.read_table(spec.destination_settings, "big_day", boundary())
    assert written.num_rows == ROWS
