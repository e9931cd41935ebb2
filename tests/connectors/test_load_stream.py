"""A day flows from source to destination in bounded batches (``load_day`` and its spool).

The sources here are fakes yielding batches built on the fly; the destinations are the real
ones (through the destination contract's cases), so what lands in the warehouse is checked.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pytest

from opendts.connectors import spool
from opendts.connectors.base import ConnectorSettings, ReadRequest, RefreshMode
from opendts.connectors.load import LoadSpec, load_day
from opendts.engine.errors import TerminalRunError, TransientRunError
from opendts.engine.kinds import RunContext
from tests.boundaries import boundary
from tests.connectors import destination_contract as contract

DAY = date(2024, 5, 1)
NAMES = contract.destination_names()


class _NoSettings(ConnectorSettings):
    pass


@dataclass
class FakeSource:
    """A source whose ``read`` is ``make(request)``."""

    make: Callable[[ReadRequest], Iterator[pa.RecordBatch]]
    name: ClassVar[str] = "fake"
    title: ClassVar[str] = "Fake"
    Settings: ClassVar[type[ConnectorSettings]] = _NoSettings

    def read(self, settings: Any, request: ReadRequest) -> Iterator[pa.RecordBatch]:
        return self.make(request)


def load(
    case: contract.Case,
    source: FakeSource,
    day: date = DAY,
    mode: RefreshMode = RefreshMode.REPLACE,
    table: str = contract.TABLE,
) -> int:
    spec = LoadSpec(source, None, case.destination, case.settings, "test", table, "date", mode, ())
    return load_day(spec, RunContext(1, 1, 1, day, 1, 3), boundary()).rows


@pytest.fixture(params=NAMES)
def case(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[contract.Case]:
    with contract.contract_case(str(request.param), tmp_path) as made:
        yield made


def spools(team_dir: Path) -> list[Path]:
    return sorted(p for p in team_dir.iterdir() if p.name.startswith(spool.PREFIX))


def test_a_later_batch_adds_a_column_and_types_a_null_one(case: contract.Case) -> None:
    def pages(request: ReadRequest) -> Iterator[pa.RecordBatch]:
        yield pa.record_batch({"id": [1, 2], "note": pa.nulls(2)})
        yield pa.record_batch({"id": [3], "note": ["typed"], "clicks": [30]})
        yield pa.record_batch({"id": [4], "clicks": [40]})

    assert load(case, FakeSource(pages)) == 4
    assert case.rows(("date", "id", "note", "clicks")) == [
        (DAY, 1, None, None),
        (DAY, 2, None, None),
        (DAY, 3, "typed", 30),
        (DAY, 4, None, 40),
    ]


def test_a_spooled_day_of_many_batches_loads_whole(
    case: contract.Case, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spool, "MEMORY_BYTES", 64 << 10)  # spool after 64 KiB

    def pages(request: ReadRequest) -> Iterator[pa.RecordBatch]:
        for start in range(0, 60_000, 5_000):
            ids = pa.array(range(start, start + 5_000), pa.int64())
            columns = {"id": ids, "name": pa.array([f"n{i}" for i in range(5_000)])}
            if start >= 30_000:
                columns["late"] = pa.array([start] * 5_000, pa.int64())
            yield pa.record_batch(columns)

    assert load(case, FakeSource(pages)) == 60_000
    assert load(case, FakeSource(pages)) == 60_000  # replaced, not duplicated
    table = case.read()
    by_lower = {n.lower(): n for n in table.column_names}
    assert table.num_rows == 60_000
    assert sorted(table.column(by_lower["id"]).to_pylist()) == list(range(60_000))
    late = table.column(by_lower["late"]).to_pylist()
    assert late.count(None) == 30_000
    assert not spools(case_team_dir())


def case_team_dir() -> Path:
    return boundary().team_dir


def test_rows_of_other_dates_are_refused_with_their_count_over_all_batches(
    tmp_path: Path,
) -> None:
    with contract.contract_case("duckdb", tmp_path) as case:
        case.write(DAY, contract.day_rows(DAY, [1, 2]))

        def pages(request: ReadRequest) -> Iterator[pa.RecordBatch]:
            yield pa.record_batch({"id": [10, 11], "date": [DAY, DAY]})
            yield pa.record_batch({"id": [12, 13], "date": [DAY, DAY + timedelta(days=1)]})
            yield pa.record_batch({"id": [14], "date": pa.array([None], pa.date32())})
            yield pa.record_batch({"id": [15]})  # no date column at all: not of the day

        with pytest.raises(TerminalRunError, match=r"returned 3 of 6 rows whose 'date' is not"):
            load(case, FakeSource(pages))
        assert case.rows() == contract._by_expected(contract.expected(DAY, [1, 2]))


def test_incompatible_pages_are_refused_before_anything_is_written(tmp_path: Path) -> None:
    with contract.contract_case("duckdb", tmp_path) as case:

        def pages(request: ReadRequest) -> Iterator[pa.RecordBatch]:
            yield pa.record_batch({"id": [1]})
            yield pa.record_batch({"id": ["one"]})

        with pytest.raises(TerminalRunError, match="incompatible types"):
            load(case, FakeSource(pages))
        assert case.read().num_rows == 0


@dataclass
class Watch:
    """What a source saw of the spool while it was being read."""

    folders: list[Path] = field(default_factory=list)
    modes: dict[str, int] = field(default_factory=dict)


def spooling_source(watch: Watch, fail_after: int | None = None) -> FakeSource:
    def pages(request: ReadRequest) -> Iterator[pa.RecordBatch]:
        for n in range(20):
            if n == 10:
                found = spools(request.boundary.team_dir)
                watch.folders.extend(found)
                for folder in found:
                    watch.modes[folder.name] = stat.S_IMODE(folder.stat().st_mode)
                    for file in folder.iterdir():
                        watch.modes[file.name] = stat.S_IMODE(file.stat().st_mode)
            if fail_after is not None and n == fail_after:
                raise TerminalRunError("the source broke")
            yield pa.record_batch({"id": pa.array(range(n * 1000, n * 1000 + 1000), pa.int64())})

    return FakeSource(pages)


def test_the_spool_is_private_in_the_team_folder_and_removed_after_success(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spool, "MEMORY_BYTES", 16 << 10)
    with contract.contract_case("sqlite", tmp_path) as case:
        watch = Watch()
        assert load(case, spooling_source(watch)) == 20_000
        team_dir = boundary().team_dir
        assert [f.parent for f in watch.folders] == [team_dir]
        assert watch.modes[watch.folders[0].name] == 0o700
        files = {name: mode for name, mode in watch.modes.items() if name.endswith(".arrow")}
        assert files and set(files.values()) == {0o600}
        assert not spools(team_dir)
        spooled = [p for p in tmp_path.rglob("*") if p.suffix == ".arrow"]
        assert not spooled
        assert case.read().num_rows == 20_000


def test_the_spool_is_removed_after_a_failure_and_the_date_keeps_its_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spool, "MEMORY_BYTES", 16 << 10)
    with contract.contract_case("duckdb", tmp_path) as case:
        case.write(DAY, contract.day_rows(DAY, [1, 2, 3]))
        watch = Watch()
        with pytest.raises(TerminalRunError, match="the source broke"):
            load(case, spooling_source(watch, fail_after=15))
        assert watch.folders, "the day was spooled before the failure"
        assert not spools(boundary().team_dir)
        assert case.rows() == contract._by_expected(contract.expected(DAY, [1, 2, 3]))

        # A failure while the destination reads the spool back: removed too, nothing written.
        class Broken(Exception):
            pass

        real = spool.conform
        calls = 0

        def failing(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
            nonlocal calls
            calls += 1
            if calls == 5:
                raise Broken("the disk said no")
            return real(batch, schema)

        monkeypatch.setattr(spool, "conform", failing)
        with pytest.raises(Broken):
            load(case, spooling_source(Watch()))
        assert not spools(boundary().team_dir)
        assert case.rows() == contract._by_expected(contract.expected(DAY, [1, 2, 3]))


def test_a_dead_process_spool_is_removed_by_the_next_load_a_live_one_is_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spool, "MEMORY_BYTES", 16 << 10)
    with contract.contract_case("sqlite", tmp_path) as case:
        team_dir = boundary().team_dir
        dead = team_dir / f"{spool.PREFIX}dead"
        dead.mkdir(mode=0o700)
        (dead / "lock").touch()
        (dead / "0.arrow").write_bytes(b"x" * 100)
        old = time.time() - 3600
        os.utime(dead / "lock", (old, old))
        starting = team_dir / f"{spool.PREFIX}starting"  # lock file made, not yet locked
        starting.mkdir(mode=0o700)
        (starting / "lock").touch()
        live = team_dir / f"{spool.PREFIX}live"
        live.mkdir(mode=0o700)
        (live / "lock").touch()
        fd = os.open(live / "lock", os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            load(case, spooling_source(Watch()))
            assert spools(team_dir) == [live, starting]
        finally:
            os.close(fd)


def test_the_loader_does_not_hold_the_day(tmp_path: Path) -> None:
    """A day of 48 MiB in 1 MiB batches: Arrow memory stays near the in-memory bound
    while the source is read and while the destination writes, not near the day's size."""
    batches, rows = 48, 131_072  # int64: 1 MiB a batch
    peaks = {"read": 0, "write": 0}

    def pages(request: ReadRequest) -> Iterator[pa.RecordBatch]:
        for n in range(batches):
            peaks["read"] = max(peaks["read"], pa.total_allocated_bytes())
            yield pa.record_batch({"id": pa.array(np.arange(n * rows, (n + 1) * rows))})

    with contract.contract_case("duckdb", tmp_path) as case:
        real = case.destination

        class Watching:
            name = real.name
            title = real.title
            Settings = real.Settings

            def write(self, settings: Any, request: Any, data: pa.RecordBatchReader) -> int:
                def watched() -> Iterator[pa.RecordBatch]:
                    for batch in data:
                        peaks["write"] = max(peaks["write"], pa.total_allocated_bytes())
                        yield batch

                reader = pa.RecordBatchReader.from_batches(data.schema, watched())
                return real.write(settings, request, reader)

        case.destination = Watching()  # type: ignore[assignment]
        before = pa.total_allocated_bytes()
        assert load(case, FakeSource(pages)) == batches * rows
        day_bytes = batches * rows * 8
        bound = spool.MEMORY_BYTES + 8 * (rows * 8)  # the in-memory part and a few batches
        assert peaks["read"] - before < bound < day_bytes
        assert peaks["write"] - before < bound
        real_rows = real.read_table(case.settings, contract.TABLE, boundary()).num_rows
        assert real_rows == batches * rows


def test_a_full_disk_while_spooling_is_retried_and_leaves_no_spool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spool, "MEMORY_BYTES", 16 << 10)

    def full(*args: Any, **kwargs: Any) -> Any:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(spool.pa.ipc, "new_stream", full)
    with contract.contract_case("duckdb", tmp_path) as case:
        case.write(DAY, contract.day_rows(DAY, [1]))
        with pytest.raises(TransientRunError, match="No space left on device"):
            load(case, spooling_source(Watch()))
        assert not spools(boundary().team_dir)
        assert case.rows() == contract._by_expected(contract.expected(DAY, [1]))
