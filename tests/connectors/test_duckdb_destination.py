"""DuckDB specifics: one shared connection per file, idle close, another process's lock."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from opendts.connectors import paths
from opendts.connectors.base import RefreshMode, SchemaConflict, WriteRequest, parse_settings
from opendts.connectors.destinations import duckdb as duck
from opendts.engine.errors import TerminalRunError, TransientRunError
from tests.boundaries import boundary
from tests.connectors.destination_contract import day_rows

DAY = date(2024, 5, 1)


@pytest.fixture
def settings() -> Iterator[duck.DuckDBSettings]:
    yield parse_settings(duck.DuckDBSettings, {}, boundary())
    duck.close_all()


@pytest.fixture
def destination() -> duck.DuckDBDestination:
    return duck.DuckDBDestination()


def _file(settings: duck.DuckDBSettings) -> Path:
    return paths.team_path(settings.path, boundary())


def _count_in_other_process(path: Path, table: str) -> int:
    """Rows of ``table`` as a separate process sees them (fails if it cannot open the file)."""
    query = f"SELECT count(*) FROM {table}"
    script = f"import duckdb; print(duckdb.connect({str(path)!r}).execute({query!r}).fetchone()[0])"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return int(done.stdout.strip())


class Holder:
    """Another process holding the DuckDB file open until ``release``."""

    def __init__(self, path: Path) -> None:
        script = (
            "import duckdb, sys; "
            f"c = duckdb.connect({str(path)!r}); print('ready', flush=True); sys.stdin.read()"
        )
        self.process = subprocess.Popen(
            [sys.executable, "-c", script],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        assert self.process.stdout.readline().strip() == "ready"

    def release(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            self.process.wait(timeout=30)


def test_relative_path_lives_in_the_team_folder(
    settings: duck.DuckDBSettings, destination: duck.DuckDBDestination, tmp_path: Path
) -> None:
    destination.write(settings, WriteRequest("t", DAY, boundary=boundary()), day_rows(DAY, [1]))
    assert (tmp_path / "teams" / "1" / "warehouse.duckdb").is_file()
    assert not (tmp_path / "warehouse.duckdb").exists()


def test_one_connection_per_file_is_shared_and_closed_when_idle(
    settings: duck.DuckDBSettings,
    destination: duck.DuckDBDestination,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(duck, "IDLE_CLOSE_SECONDS", 0.3)
    path = _file(settings)
    destination.write(settings, WriteRequest("t", DAY, boundary=boundary()), day_rows(DAY, [1, 2]))
    first = duck._files[path].conn
    destination.write(
        settings,
        WriteRequest("t", DAY + timedelta(1), boundary=boundary()),
        day_rows(DAY + timedelta(1), [3]),
    )
    assert duck._files[path].conn is first is not None
    assert duck.is_open(path)
    deadline = time.monotonic() + 10
    while duck.is_open(path) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not duck.is_open(path), "the idle connection was not closed"
    # Now another process (a user's tool) can open the warehouse and sees the rows.
    assert _count_in_other_process(path, "t") == 3
    destination.write(settings, WriteRequest("t", DAY, boundary=boundary()), day_rows(DAY, [4]))
    assert sorted(destination.read_table(settings, "t", boundary()).column("id").to_pylist()) == [
        3,
        4,
    ]


def test_a_busy_file_is_not_closed_while_in_use(
    settings: duck.DuckDBSettings,
    destination: duck.DuckDBDestination,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(duck, "IDLE_CLOSE_SECONDS", 0.3)
    path = _file(settings)
    destination.write(settings, WriteRequest("t", DAY, boundary=boundary()), day_rows(DAY, [1]))
    conn = duck._files[path].conn
    for n in range(8):  # writes every 0.1 s keep it open
        time.sleep(0.1)
        destination.write(settings, WriteRequest("t", DAY, boundary=boundary()), day_rows(DAY, [n]))
        assert duck._files[path].conn is conn


def test_another_process_holding_the_file_is_transient(
    settings: duck.DuckDBSettings, destination: duck.DuckDBDestination
) -> None:
    path = _file(settings)
    destination.write(
        settings, WriteRequest("t", DAY, boundary=boundary()), day_rows(DAY, [1, 2, 3])
    )
    duck.close_all()
    holder = Holder(path)
    try:
        with pytest.raises(TransientRunError) as caught:
            destination.write(
                settings,
                WriteRequest("t", DAY + timedelta(1), boundary=boundary()),
                day_rows(DAY + timedelta(1), [9]),
            )
        message = str(caught.value)
        assert "Another process holds the DuckDB warehouse file" in message
        # The file as the team knows it, not the server's folder.
        assert "file warehouse.duckdb open" in message and "will be retried" in message
        assert str(path.parent) not in message
        with pytest.raises(TransientRunError, match="Another process holds"):
            destination.test_connection(settings, boundary())
    finally:
        holder.release()
    # The retry succeeds and nothing was lost or half-written.
    destination.write(
        settings,
        WriteRequest("t", DAY + timedelta(1), boundary=boundary()),
        day_rows(DAY + timedelta(1), [9]),
    )
    ids = sorted(destination.read_table(settings, "t", boundary()).column("id").to_pylist())
    assert ids == [1, 2, 3, 9]


def test_concurrent_writes_in_one_process_all_land(
    settings: duck.DuckDBSettings, destination: duck.DuckDBDestination
) -> None:
    days = [DAY + timedelta(n) for n in range(8)]
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def load(n: int) -> None:
        try:
            barrier.wait(timeout=30)
            for round_ in range(5):
                rows = 1000 + n * 10 + round_
                data = day_rows(days[n], list(range(rows)), tag=f"r{round_}")
                mode = RefreshMode.APPEND if n == 7 else RefreshMode.REPLACE
                destination.write(
                    settings, WriteRequest("t", days[n], mode=mode, boundary=boundary()), data
                )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=load, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    with duck._connection(_file(settings), "warehouse.duckdb") as (_, conn):
        counts = dict(conn.execute("SELECT date, count(*) FROM t GROUP BY date").fetchall())
    expected = {days[n]: 1000 + n * 10 + 4 for n in range(7)}
    expected[days[7]] = sum(1070 + r for r in range(5))  # appended five times
    assert counts == expected


def test_failed_write_rolls_back_data_and_columns(
    settings: duck.DuckDBSettings, destination: duck.DuckDBDestination
) -> None:
    destination.write(settings, WriteRequest("t", DAY, boundary=boundary()), day_rows(DAY, [1, 2]))
    # A new column is added and the old rows deleted before the insert fails: all undone.
    too_big = day_rows(DAY, [3], extra={"big": pa.array([2**64 - 1], pa.uint64())})
    with pytest.raises(TerminalRunError, match="DuckDB rejected the rows for table 't'"):
        destination.write(settings, WriteRequest("t", DAY, boundary=boundary()), too_big)
    back = destination.read_table(settings, "t", boundary())
    assert sorted(back.column("id").to_pylist()) == [1, 2]
    assert "big" not in back.column_names
    # The cached column list forgot the rolled-back column: the next load adds it for real.
    fine = day_rows(DAY, [4], extra={"big": pa.array([7], pa.int64())})
    destination.write(settings, WriteRequest("t", DAY, boundary=boundary()), fine)
    assert destination.read_table(settings, "t", boundary()).to_pylist()[0]["big"] == 7


def test_a_cancelled_run_writes_nothing(
    settings: duck.DuckDBSettings, destination: duck.DuckDBDestination
) -> None:
    destination.write(settings, WriteRequest("t", DAY, boundary=boundary()), day_rows(DAY, [1]))
    request = WriteRequest("t", DAY, boundary=boundary())
    request.cancelled.set()
    with pytest.raises(TransientRunError, match="interrupted"):
        destination.write(settings, request, day_rows(DAY, [2]))
    assert destination.read_table(settings, "t", boundary()).column("id").to_pylist() == [1]


def test_columns_are_matched_by_name_not_position(
    settings: duck.DuckDBSettings, destination: duck.DuckDBDestination
) -> None:
    destination.write(settings, WriteRequest("t", DAY, boundary=boundary()), day_rows(DAY, [1]))
    shuffled = day_rows(DAY + timedelta(1), [2]).select(["amount", "date", "name", "id"])
    shuffled = shuffled.rename_columns(["AMOUNT", "date", "Name", "id"])  # case differs too
    destination.write(
        settings, WriteRequest("t", DAY + timedelta(1), boundary=boundary()), shuffled
    )
    rows = sorted(
        destination.read_table(settings, "t", boundary()).to_pylist(), key=lambda r: r["id"]
    )
    assert destination.read_table(settings, "t", boundary()).column_names == [
        "id",
        "name",
        "amount",
        "date",
    ]
    assert rows[1] == {"id": 2, "name": "v-2", "amount": 3.0, "date": DAY + timedelta(1)}


def test_types_round_trip_and_widen(
    settings: duck.DuckDBSettings, destination: duck.DuckDBDestination
) -> None:
    data = pa.table(
        {
            "date": pa.array([DAY], pa.date32()),
            "flag": pa.array([True]),
            "price": pa.array([Decimal("12.345")], pa.decimal128(12, 3)),
            "at": pa.array([datetime(2024, 5, 1, 8, 0)], pa.timestamp("us")),
            "raw": pa.array([b"\xff"], pa.binary()),
            "meta": pa.array([{"k": 1}], pa.struct([("k", pa.int64())])),
            "ratio": pa.array([0.5], pa.float64()),
            "nothing": pa.nulls(1),
        }
    )
    destination.write(settings, WriteRequest("typed", DAY, boundary=boundary()), data)
    back = destination.read_table(settings, "typed", boundary())
    assert back.schema.field("price").type == pa.decimal128(12, 3)
    row = back.to_pylist()[0]
    assert row["flag"] is True and row["price"] == Decimal("12.345") and row["raw"] == b"\xff"
    assert row["at"] == datetime(2024, 5, 1, 8, 0) and row["meta"] == '{"k":1}'
    # an integer into the DOUBLE column and text into the (NULL-typed) column fit
    widened = pa.table(
        {
            "date": pa.array([DAY + timedelta(1)], pa.date32()),
            "ratio": pa.array([2], pa.int64()),
            "nothing": pa.array(["now text"]),
            "at": pa.array([datetime(2024, 5, 2, tzinfo=UTC)], pa.timestamp("us", tz="UTC")),
        }
    )
    destination.write(
        settings, WriteRequest("typed", DAY + timedelta(1), boundary=boundary()), widened
    )
    with pytest.raises(SchemaConflict, match="'flag'"):
        destination.write(
            settings,
            WriteRequest("typed", DAY, boundary=boundary()),
            pa.table({"date": pa.array([DAY], pa.date32()), "flag": pa.array(["yes"])}),
        )


def test_tables_go_in_the_configured_schema() -> None:
    try:
        settings = parse_settings(duck.DuckDBSettings, {"schema_name": "analytics"})
        destination = duck.DuckDBDestination()
        destination.write(settings, WriteRequest("t", DAY, boundary=boundary()), day_rows(DAY, [1]))
        with duck._connection(_file(settings), "warehouse.duckdb") as (_, conn):
            found = conn.execute(
                "SELECT table_schema FROM information_schema.tables WHERE table_name = 't'"
            ).fetchall()
        assert found == [("analytics",)]
        assert destination.read_table(settings, "t", boundary()).num_rows == 1
    finally:
        duck.close_all()


def test_bad_schema_name_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="schema_name"):
        parse_settings(duck.DuckDBSettings, {"schema_name": "a-b"})


def test_a_file_that_is_not_duckdb_is_terminal(
    settings: duck.DuckDBSettings, destination: duck.DuckDBDestination
) -> None:
    path = _file(settings)
    path.write_bytes(b"not a database " * 1000)
    with pytest.raises(TerminalRunError, match="is not a DuckDB database file"):
        destination.test_connection(settings, boundary())


def test_an_uncreatable_folder_is_terminal(team_folder: Path) -> None:
    (team_folder / "file").write_text("x")
    settings = parse_settings(duck.DuckDBSettings, {"path": "file/w.duckdb"})
    with pytest.raises(TerminalRunError, match="Cannot create the folder"):
        duck.DuckDBDestination().test_connection(settings, boundary())
    with pytest.raises(TerminalRunError, match="Cannot create the folder"):
        duck.DuckDBDestination().write(
            settings, WriteRequest("t", DAY, boundary=boundary()), day_rows(DAY, [1])
        )


_CRASHER = textwrap.dedent(
    """
    import sys
    from datetime import date
    from pathlib import Path
    import pyarrow as pa
    from opendts.connectors.base import WriteRequest, parse_settings
    from opendts.connectors.boundary import Boundary
    from opendts.connectors.destinations.duckdb import DuckDBDestination, DuckDBSettings

    team = Boundary(team_id=1, data_dir=Path(sys.argv[1]))
    settings = parse_settings(DuckDBSettings, {})
    destination = DuckDBDestination()
    day = date(2024, 5, 1)
    rows = 200_000
    n = 0
    while True:
        n += 1
        data = pa.table({
            "date": pa.array([day] * rows, pa.date32()),
            "generation": pa.array([n] * rows, pa.int64()),
        })
        destination.write(settings, WriteRequest("t", day, boundary=team), data)
        print(n, flush=True)
    """
)


def test_a_killed_writer_leaves_old_or_new_rows_never_a_mix(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", _CRASHER, str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert process.stdout is not None
    for _ in range(3):  # a few generations in, then kill it mid-write
        assert process.stdout.readline()
    time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    conn = duckdb.connect(str(tmp_path / "teams" / "1" / "warehouse.duckdb"))
    try:
        counts = conn.execute("SELECT generation, count(*) FROM t GROUP BY 1").fetchall()
    finally:
        conn.close()
    assert len(counts) == 1 and counts[0][1] == 200_000, counts


def _write_days(data_dir: str, first: int, count: int) -> list[str]:
    """Write ``count`` dates from DAY + ``first`` into team 1's warehouse (a child process)."""
    from opendts.connectors.boundary import Boundary

    team = Boundary(team_id=1, data_dir=Path(data_dir))
    settings = parse_settings(duck.DuckDBSettings, {})
    destination = duck.DuckDBDestination()
    written = []
    for n in range(first, first + count):
        day = DAY + timedelta(n)
        destination.write(settings, WriteRequest("t", day, boundary=team), day_rows(day, [n, -n]))
        written.append(str(day))
    return written


def test_processes_writing_one_warehouse_take_turns_and_every_date_lands(
    tmp_path: Path, settings: duck.DuckDBSettings, destination: duck.DuckDBDestination
) -> None:
    # Four processes, each writing its own six dates into the same file at the same time: DuckDB
    # lets one process open it, so without turns most writes fail with "Could not set lock".
    context = multiprocessing.get_context("spawn")
    with context.Pool(4) as pool:
        results = pool.starmap(_write_days, [(str(tmp_path), 6 * p, 6) for p in range(4)])
    assert sorted(day for days in results for day in days) == sorted(
        str(DAY + timedelta(n)) for n in range(24)
    )
    table = destination.read_table(settings, "t", boundary())
    rows = sorted(
        zip(table.column("date").to_pylist(), table.column("id").to_pylist(), strict=True)
    )
    assert rows == sorted((DAY + timedelta(n), i) for n in range(24) for i in (n, -n))
    lock = _file(settings).with_name("warehouse.duckdb.lock")
    assert lock.stat().st_mode & 0o777 == 0o600


_LOCK_HOLDER = (
    "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600); "
    "fcntl.flock(fd, fcntl.LOCK_EX); print('ready', flush=True); sys.stdin.read()"
)


def test_a_warehouse_busy_past_the_wait_is_transient(
    settings: duck.DuckDBSettings,
    destination: duck.DuckDBDestination,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    destination.write(settings, WriteRequest("t", DAY, boundary=boundary()), day_rows(DAY, [1]))
    duck.close_all()
    monkeypatch.setattr(duck, "lock_wait_seconds", lambda: 0.3)
    lock = _file(settings).with_name("warehouse.duckdb.lock")
    holder = subprocess.Popen(
        [sys.executable, "-c", _LOCK_HOLDER, str(lock)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        with pytest.raises(TransientRunError) as caught:
            destination.write(
                settings,
                WriteRequest("t", DAY + timedelta(1), boundary=boundary()),
                day_rows(DAY + timedelta(1), [2]),
            )
        message = str(caught.value)
        assert "warehouse warehouse.duckdb is busy" in message and "retried" in message
        assert str(lock.parent) not in message
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)
    destination.write(
        settings,
        WriteRequest("t", DAY + timedelta(1), boundary=boundary()),
        day_rows(DAY + timedelta(1), [2]),
    )
    ids = sorted(destination.read_table(settings, "t", boundary()).column("id").to_pylist())
    assert ids == [1, 2]
