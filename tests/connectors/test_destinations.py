"""The destination contract, run against every registered destination; SQLite's specifics."""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest

from opendts.connectors import paths
from opendts.connectors.base import RefreshMode, WriteRequest, parse_settings
from opendts.connectors.destinations import sqlite as sqlite_module
from opendts.connectors.destinations.sqlite import SQLiteDestination
from opendts.engine.errors import TerminalRunError, TransientRunError
from tests.boundaries import boundary
from tests.connectors import destination_contract as contract

NAMES = contract.destination_names()


@pytest.fixture(params=NAMES)
def case(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[contract.Case]:
    with contract.contract_case(str(request.param), tmp_path) as made:
        yield made


def test_all_builtin_destinations_are_covered() -> None:
    assert {"duckdb", "sqlite", "parquet", "postgresql"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_every_destination_has_example_settings(name: str) -> None:
    assert name in contract.CONTRACT_SETTINGS, (
        f"add example settings for {name!r} to CONTRACT_SETTINGS in "
        "tests/connectors/destination_contract.py"
    )


def test_a_destination_without_example_settings_fails_the_suite(tmp_path: Path) -> None:
    with (
        pytest.raises(pytest.fail.Exception, match="add an entry for it to CONTRACT_SETTINGS"),
        contract.contract_case("not_a_known_destination", tmp_path),
    ):
        pass


def test_identity(case: contract.Case) -> None:
    contract.check_identity(case)


def test_replace_round_trip(case: contract.Case) -> None:
    contract.check_replace_round_trip(case)


def test_replace_twice_does_not_duplicate(case: contract.Case) -> None:
    contract.check_replace_twice_does_not_duplicate(case)


def test_dates_are_independent(case: contract.Case) -> None:
    contract.check_dates_are_independent(case)


def test_append_adds(case: contract.Case) -> None:
    contract.check_append_adds(case)


def test_overwrite_replaces_everything(case: contract.Case) -> None:
    contract.check_overwrite_replaces_everything(case)


def test_new_and_missing_columns(case: contract.Case) -> None:
    contract.check_new_and_missing_columns(case)


def test_type_conflict_names_the_column(case: contract.Case) -> None:
    contract.check_type_conflict(case)


def test_empty_replace_clears_the_date(case: contract.Case) -> None:
    contract.check_empty_replace_clears_the_date(case)


def test_a_day_of_many_batches_loads_and_replaces(case: contract.Case) -> None:
    contract.check_day_of_many_batches(case)


def test_a_failure_mid_stream_keeps_the_date(case: contract.Case) -> None:
    contract.check_failure_mid_stream_keeps_the_date(case)


def test_eight_threads_write_eight_dates(case: contract.Case) -> None:
    contract.check_concurrent_dates(case)


def test_bad_settings_name_the_field(case: contract.Case) -> None:
    contract.check_bad_settings(case)


def test_connection_succeeds_on_good_settings(case: contract.Case) -> None:
    contract.check_test_connection(case)


def test_table_names_are_checked(case: contract.Case) -> None:
    contract.check_table_names(case)


# --- SQLite specifics ------------------------------------------------------------------


@pytest.fixture
def sqlite_settings() -> sqlite_module.SQLiteSettings:
    settings: sqlite_module.SQLiteSettings = parse_settings(
        SQLiteDestination.Settings, {"path": "sub/dir/w.sqlite"}, boundary()
    )
    return settings


def _sqlite_file(settings: sqlite_module.SQLiteSettings) -> Path:
    return paths.team_path(settings.path, boundary())


def test_sqlite_relative_path_lives_in_the_team_folder(
    sqlite_settings: sqlite_module.SQLiteSettings, tmp_path: Path
) -> None:
    SQLiteDestination().write(
        sqlite_settings,
        WriteRequest("t", contract.DAY_A, boundary=boundary()),
        contract.day_rows(contract.DAY_A, [1]),
    )
    assert (tmp_path / "teams" / "1" / "sub" / "dir" / "w.sqlite").is_file()
    assert not (tmp_path / "sub").exists()


def test_sqlite_types_round_trip(sqlite_settings: sqlite_module.SQLiteSettings) -> None:
    day = contract.DAY_A
    data = pa.table(
        {
            "date": pa.array([day, day], pa.date32()),
            "flag": pa.array([True, None]),
            "price": pa.array([Decimal("1.25"), Decimal("-3.50")], pa.decimal128(10, 2)),
            "at": pa.array([datetime(2024, 3, 1, 12, 30, 5), None], pa.timestamp("us")),
            "at_utc": pa.array(
                [datetime(2024, 3, 1, 1, 0, tzinfo=UTC), None], pa.timestamp("us", tz="UTC")
            ),
            "raw": pa.array([b"\x00\x01", None], pa.binary()),
            "meta": pa.array([{"k": 1}, None], pa.struct([("k", pa.int64())])),
            "nothing": pa.nulls(2),
        }
    )
    destination = SQLiteDestination()
    destination.write(sqlite_settings, WriteRequest("typed", day, boundary=boundary()), data)
    back = destination.read_table(sqlite_settings, "typed", boundary())
    assert back.schema.field("date").type == pa.date32()
    assert back.schema.field("flag").type == pa.bool_()
    assert back.schema.field("at").type == pa.timestamp("us")
    assert back.schema.field("at_utc").type == pa.timestamp("us", tz="UTC")
    rows = sorted(back.to_pylist(), key=lambda r: r["flag"] is None)
    assert rows[0] == {
        "date": day,
        "flag": True,
        "price": 1.25,
        "at": datetime(2024, 3, 1, 12, 30, 5),
        "at_utc": datetime(2024, 3, 1, 1, 0, tzinfo=UTC),
        "raw": b"\x00\x01",
        "meta": '{"k": 1}',
        "nothing": None,
    }
    assert rows[1]["price"] == -3.5 and rows[1]["flag"] is None
    # dates are stored as ISO text, readable by any SQLite tool
    path = _sqlite_file(sqlite_settings)
    with sqlite3.connect(path) as conn:
        assert conn.execute('SELECT "date" FROM typed LIMIT 1').fetchone() == ("2024-03-01",)


def test_sqlite_creates_an_index_on_the_date_column(
    sqlite_settings: sqlite_module.SQLiteSettings,
) -> None:
    SQLiteDestination().write(
        sqlite_settings,
        WriteRequest("indexed", contract.DAY_A, "day", boundary=boundary()),
        contract.day_rows(contract.DAY_A, [1]).rename_columns(["id", "name", "amount", "day"]),
    )
    with sqlite3.connect(_sqlite_file(sqlite_settings)) as conn:
        plan = conn.execute(
            "EXPLAIN QUERY PLAN DELETE FROM indexed WHERE day = '2024-03-01'"
        ).fetchall()
    assert any("USING INDEX" in str(step) or "USING COVERING INDEX" in str(step) for step in plan)


def test_sqlite_failed_write_keeps_the_old_rows(
    sqlite_settings: sqlite_module.SQLiteSettings,
) -> None:
    destination = SQLiteDestination()
    destination.write(
        sqlite_settings,
        WriteRequest("t", contract.DAY_A, boundary=boundary()),
        contract.day_rows(contract.DAY_A, [1]),
    )
    too_big = contract.day_rows(
        contract.DAY_A, [2], extra={"big": pa.array([2**64 - 1], pa.uint64())}
    )
    with pytest.raises(TerminalRunError, match="too large"):
        destination.write(
            sqlite_settings, WriteRequest("t", contract.DAY_A, boundary=boundary()), too_big
        )
    back = destination.read_table(sqlite_settings, "t", boundary())
    assert back.column("id").to_pylist() == [1]
    assert "big" not in back.column_names  # the ALTER TABLE was rolled back too


def test_sqlite_locked_file_is_transient(
    sqlite_settings: sqlite_module.SQLiteSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    destination = SQLiteDestination()
    destination.write(
        sqlite_settings,
        WriteRequest("t", contract.DAY_A, boundary=boundary()),
        contract.day_rows(contract.DAY_A, [1]),
    )
    monkeypatch.setattr(sqlite_module, "BUSY_TIMEOUT_SECONDS", 0.2)
    holder = sqlite3.connect(_sqlite_file(sqlite_settings), isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(TransientRunError, match="locked by another writer"):
            destination.write(
                sqlite_settings,
                WriteRequest("t", contract.DAY_A, boundary=boundary()),
                contract.day_rows(contract.DAY_A, [2]),
            )
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    destination.write(
        sqlite_settings,
        WriteRequest("t", contract.DAY_A, boundary=boundary()),
        contract.day_rows(contract.DAY_A, [3]),
    )
    assert destination.read_table(sqlite_settings, "t", boundary()).column("id").to_pylist() == [3]


def test_sqlite_not_a_database_is_terminal(
    sqlite_settings: sqlite_module.SQLiteSettings,
) -> None:
    path = _sqlite_file(sqlite_settings)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"this is not a database, just some text " * 100)
    with pytest.raises(TerminalRunError, match="SQLite cannot use"):
        SQLiteDestination().test_connection(sqlite_settings, boundary())


def test_sqlite_cancelled_write_changes_nothing(
    sqlite_settings: sqlite_module.SQLiteSettings,
) -> None:
    destination = SQLiteDestination()
    request = WriteRequest("t", date(2024, 1, 1), mode=RefreshMode.REPLACE, boundary=boundary())
    request.cancelled.set()
    with pytest.raises(TransientRunError, match="interrupted"):
        destination.write(sqlite_settings, request, contract.day_rows(date(2024, 1, 1), [1]))
    assert destination.read_table(sqlite_settings, "t", boundary()).num_rows == 0


# --- embedded warehouses are private ------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "config"),
    [
        ("duckdb", {"path": "w/warehouse.duckdb"}),
        ("sqlite", {"path": "w/warehouse.sqlite"}),
        ("parquet", {"path": "w/lake"}),
    ],
)
def test_embedded_warehouse_files_are_0600_and_folders_0700(
    kind: str, config: dict[str, str], team_folder: Path
) -> None:
    from opendts.connectors import registry
    from opendts.connectors.destinations import duckdb as duck

    previous = os.umask(0o022)  # a distribution's default: 0644 files without care
    try:
        destination = registry.get_destination(kind)
        settings = parse_settings(destination.Settings, config, boundary())
        for n, mode in enumerate(RefreshMode):
            destination.write(
                settings,
                WriteRequest("t", contract.DAY_A, mode=mode, boundary=boundary()),
                contract.day_rows(contract.DAY_A, [n]),
            )
        duck.close_all()
    finally:
        os.umask(previous)
    found = [team_folder, *team_folder.rglob("*")]
    assert len(found) > 3
    for path in found:
        expected = 0o700 if path.is_dir() else 0o600
        assert stat.S_IMODE(path.stat().st_mode) == expected, path
