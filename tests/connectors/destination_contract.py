"""The destination contract: what every registered destination must do, checked the same way.

``tests/connectors/test_destinations.py`` runs each ``check_*`` function below against every
destination in ``registry.destinations()`` (built-ins and plugins alike). A destination is
given example settings by ``CONTRACT_SETTINGS``; a registered destination without an entry
fails the suite, so a new connector cannot skip the contract.

A third-party connector's tests can reuse the checks::

    from tests.connectors import destination_contract as contract
    CONTRACT_SETTINGS["mydb"] = lambda tmp_path: {...}
    with contract.contract_case("mydb", tmp_path) as case:
        contract.check_replace_round_trip(case)
"""

from __future__ import annotations

import importlib
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pytest
from psycopg.conninfo import conninfo_to_dict

from opendts.connectors import registry
from opendts.connectors.base import (
    ConfigError,
    ConnectorSettings,
    Destination,
    RefreshMode,
    SchemaConflict,
    WriteRequest,
    parse_settings,
)
from opendts.engine.errors import TerminalRunError
from tests import databases
from tests.boundaries import boundary, use_data_dir

TABLE = "contract_rows"
DAY_A = date(2024, 3, 1)
DAY_B = date(2024, 3, 2)
DAY_C = date(2024, 3, 3)

#: Undo steps registered by settings factories (a database to drop), run after each case.
_cleanups: list[Callable[[], None]] = []


def _postgresql(tmp_path: Path) -> dict[str, Any]:
    """A fresh database on the test server, dropped after the case."""
    databases.require_pg()
    admin = conninfo_to_dict(databases.PG_ADMIN_DSN)
    name = f"opendts_contract_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(databases.PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(databases.PG_ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    _cleanups.append(drop)
    config: dict[str, Any] = {
        "host": str(admin.get("host") or "127.0.0.1"),
        "port": int(admin.get("port") or 5432),
        "database": name,
        "user": str(admin.get("user") or "postgres"),
        "schema_name": "public",
    }
    if admin.get("password"):
        config["password"] = str(admin["password"])
    return config


#: Example settings of each destination, given the test's ``tmp_path`` (the data folder while
#: the case runs: relative paths land in team 1's folder in it). Add one for a new destination.
CONTRACT_SETTINGS: dict[str, Callable[[Path], dict[str, Any]]] = {
    "duckdb": lambda tmp_path: {"path": "contract/warehouse.duckdb", "schema_name": "main"},
    "sqlite": lambda tmp_path: {"path": "warehouse.sqlite"},
    "parquet": lambda tmp_path: {"path": "lake", "compression": "zstd"},
    "postgresql": _postgresql,
}


def destination_names() -> list[str]:
    """Every registered destination's name.

    While a built-in connector module is still missing (the registry imports them all), the
    names come from the built-in list and the plugins' entry points instead.
    """
    try:
        return list(registry.destinations())
    except ImportError:
        names = set(registry.BUILTIN_DESTINATIONS)
        names.update(p.name for p in entry_points(group=registry.DESTINATION_GROUP))
        return sorted(names)


def load_destination(name: str) -> Destination:
    """The destination called ``name`` (skipped only while its built-in module is unwritten)."""
    try:
        return registry.get_destination(name)
    except ImportError:
        pass
    path = registry.BUILTIN_DESTINATIONS.get(name)
    if path is None:
        for point in entry_points(group=registry.DESTINATION_GROUP, name=name):
            loaded = point.load()
            return loaded() if isinstance(loaded, type) else loaded  # type: ignore[no-any-return]
        pytest.fail(f"destination {name!r} is not installed", pytrace=False)
    module, _, attr = path.partition(":")
    try:
        loaded = getattr(importlib.import_module(module), attr)
    except ModuleNotFoundError as exc:
        if exc.name != module:
            raise
        pytest.skip(f"built-in destination module {module} does not exist yet")
    return loaded() if isinstance(loaded, type) else loaded  # type: ignore[no-any-return]


@dataclass
class Case:
    """One destination with working example settings, and helpers to write and read rows."""

    name: str
    destination: Destination
    config: dict[str, Any]
    settings: Any

    def write(
        self,
        day: date,
        data: pa.Table | pa.RecordBatchReader,
        mode: RefreshMode = RefreshMode.REPLACE,
        table: str = TABLE,
        date_column: str = "date",
    ) -> int:
        """Write ``data``; a table is sent as a reader of 2-row batches (as a day of
        several batches reaches a destination)."""
        request = WriteRequest(table, day, date_column, mode, boundary=boundary())
        if isinstance(data, pa.Table):
            data = data.to_reader(max_chunksize=2)
        return self.destination.write(self.settings, request, data)

    def read(self, table: str = TABLE) -> pa.Table:
        return self.destination.read_table(self.settings, table, boundary())

    def rows(
        self, columns: tuple[str, ...] = ("date", "id", "name", "amount"), table: str = TABLE
    ) -> list[tuple[Any, ...]]:
        """The table's rows as tuples of ``columns`` (matched case-insensitively), sorted."""
        return sorted_rows(self.read(table), columns)


@contextmanager
def contract_case(name: str, tmp_path: Path) -> Iterator[Case]:
    """A ``Case`` for the destination ``name``, its files in ``tmp_path``."""
    factory = CONTRACT_SETTINGS.get(name)
    if factory is None:
        pytest.fail(
            f"Destination {name!r} is registered but has no example settings for the "
            "destination contract. Connector author: add an entry for it to CONTRACT_SETTINGS "
            "in tests/connectors/destination_contract.py (a function of tmp_path returning a "
            "working config), so the contract checks run against it.",
            pytrace=False,
        )
    destination = load_destination(name)
    try:
        with use_data_dir(tmp_path):
            config = factory(tmp_path)
            settings = parse_settings(destination.Settings, config, boundary())
            yield Case(name, destination, config, settings)
    finally:
        while _cleanups:
            _cleanups.pop()()


# --- data ------------------------------------------------------------------------------


def day_rows(
    day: date, ids: list[int], tag: str = "v", extra: dict[str, pa.Array] | None = None
) -> pa.Table:
    """Rows ``id``, ``name`` = ``<tag>-<id>``, ``amount`` = ``id * 1.5``, ``date`` = ``day``."""
    columns: dict[str, pa.Array] = {
        "id": pa.array(ids, pa.int64()),
        "name": pa.array([f"{tag}-{i}" for i in ids], pa.string()),
        "amount": pa.array([i * 1.5 for i in ids], pa.float64()),
        "date": pa.array([day] * len(ids), pa.date32()),
    }
    columns.update(extra or {})
    return pa.table(columns)


def expected(day: date, ids: list[int], tag: str = "v") -> list[tuple[Any, ...]]:
    """What ``day_rows(day, ids, tag)`` reads back as, in ``Case.rows`` order."""
    return [(day, i, f"{tag}-{i}", i * 1.5) for i in ids]


def sorted_rows(table: pa.Table, columns: tuple[str, ...]) -> list[tuple[Any, ...]]:
    """``columns`` of ``table`` as sorted tuples; fails naming a missing column."""
    by_lower = {name.lower(): name for name in table.column_names}
    missing = [c for c in columns if c.lower() not in by_lower]
    assert not missing, f"columns {missing} missing from {table.column_names}"
    values = [table.column(by_lower[c.lower()]).to_pylist() for c in columns]
    rows = [tuple(row) for row in zip(*values, strict=True)] if values else []
    return sorted(rows, key=lambda row: tuple((v is None, str(v)) for v in row))


def _by_expected(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return sorted(rows, key=lambda row: tuple((v is None, str(v)) for v in row))


# --- the contract ----------------------------------------------------------------------


def check_identity(case: Case) -> None:
    """The destination is registered under its own name, with a title and settings model."""
    assert case.destination.name == case.name
    assert isinstance(case.destination.title, str) and case.destination.title.strip()
    assert issubclass(case.destination.Settings, ConnectorSettings)


def check_replace_round_trip(case: Case) -> None:
    """A date written reads back exactly: values, types of dates, row count returned."""
    assert case.write(DAY_A, day_rows(DAY_A, [1, 2, 3, 4, 5])) == 5
    rows = case.rows()
    assert rows == _by_expected(expected(DAY_A, [1, 2, 3, 4, 5]))
    assert all(type(row[0]) is date for row in rows), "the date column must read back as dates"


def check_replace_twice_does_not_duplicate(case: Case) -> None:
    """Writing a date again leaves only the new rows for it."""
    case.write(DAY_A, day_rows(DAY_A, [1, 2, 3, 4, 5], tag="first"))
    assert case.write(DAY_A, day_rows(DAY_A, [2, 3, 9], tag="second")) == 3
    assert case.rows() == _by_expected(expected(DAY_A, [2, 3, 9], tag="second"))
    case.write(DAY_A, day_rows(DAY_A, [2, 3, 9], tag="second"))
    assert case.rows() == _by_expected(expected(DAY_A, [2, 3, 9], tag="second"))


def check_dates_are_independent(case: Case) -> None:
    """Writing one date leaves the others alone."""
    case.write(DAY_A, day_rows(DAY_A, [1, 2, 3], tag="a"))
    case.write(DAY_B, day_rows(DAY_B, [1, 2, 3, 4], tag="b"))
    assert case.rows() == _by_expected(
        expected(DAY_A, [1, 2, 3], tag="a") + expected(DAY_B, [1, 2, 3, 4], tag="b")
    )
    case.write(DAY_B, day_rows(DAY_B, [10, 11], tag="b2"))
    assert case.rows() == _by_expected(
        expected(DAY_A, [1, 2, 3], tag="a") + expected(DAY_B, [10, 11], tag="b2")
    )


def check_append_adds(case: Case) -> None:
    """APPEND inserts only: the same date twice holds both loads."""
    case.write(DAY_A, day_rows(DAY_A, [1, 2], tag="r"))
    assert case.write(DAY_A, day_rows(DAY_A, [1, 2, 3], tag="x"), RefreshMode.APPEND) == 3
    assert case.write(DAY_A, day_rows(DAY_A, [1, 2, 3], tag="x"), RefreshMode.APPEND) == 3
    case.write(DAY_B, day_rows(DAY_B, [7], tag="x"), RefreshMode.APPEND)
    assert case.rows() == _by_expected(
        expected(DAY_A, [1, 2], tag="r")
        + expected(DAY_A, [1, 2, 3], tag="x") * 2
        + expected(DAY_B, [7], tag="x")
    )


def check_overwrite_replaces_everything(case: Case) -> None:
    """OVERWRITE leaves only the rows just written, whatever their date."""
    case.write(DAY_A, day_rows(DAY_A, [1, 2, 3]))
    case.write(DAY_B, day_rows(DAY_B, [4, 5]))
    assert case.write(DAY_C, day_rows(DAY_C, [6, 7], tag="snap"), RefreshMode.OVERWRITE) == 2
    assert case.rows() == _by_expected(expected(DAY_C, [6, 7], tag="snap"))
    case.write(DAY_C, day_rows(DAY_C, [8], tag="snap2"), RefreshMode.OVERWRITE)
    assert case.rows() == _by_expected(expected(DAY_C, [8], tag="snap2"))


def check_new_and_missing_columns(case: Case) -> None:
    """A new source column is added (older rows NULL); a column left out is written NULL."""
    case.write(DAY_A, day_rows(DAY_A, [1, 2]))
    clicks = {"clicks": pa.array([30, 40], pa.int64())}
    case.write(DAY_B, day_rows(DAY_B, [3, 4], extra=clicks))
    assert case.rows(("date", "id", "clicks")) == _by_expected(
        [(DAY_A, 1, None), (DAY_A, 2, None), (DAY_B, 3, 30), (DAY_B, 4, 40)]
    )
    without_name = day_rows(DAY_C, [5]).drop_columns(["name"])
    case.write(DAY_C, without_name)
    assert case.rows(("date", "id", "name", "clicks")) == _by_expected(
        [
            (DAY_A, 1, "v-1", None),
            (DAY_A, 2, "v-2", None),
            (DAY_B, 3, "v-3", 30),
            (DAY_B, 4, "v-4", 40),
            (DAY_C, 5, None, None),
        ]
    )


def check_type_conflict(case: Case) -> None:
    """A column whose values no longer fit is a terminal SchemaConflict naming it."""
    case.write(DAY_A, day_rows(DAY_A, [1, 2]))
    bad = day_rows(DAY_B, [3]).set_column(2, "amount", pa.array(["lots"], pa.string()))
    with pytest.raises(SchemaConflict) as caught:
        case.write(DAY_B, bad)
    assert isinstance(caught.value, TerminalRunError)
    assert caught.value.column.lower() == "amount"
    assert "'amount'" in str(caught.value).lower()
    assert case.rows() == _by_expected(expected(DAY_A, [1, 2])), "nothing may be written"


def check_empty_replace_clears_the_date(case: Case) -> None:
    """An empty day replaces the date with nothing, and works on a table not yet created."""
    case.write(DAY_A, day_rows(DAY_A, [1, 2]))
    case.write(DAY_B, day_rows(DAY_B, [3]))
    assert case.write(DAY_A, day_rows(DAY_A, [])) == 0
    assert case.rows() == _by_expected(expected(DAY_B, [3]))
    assert case.write(DAY_A, day_rows(DAY_A, []), table="empty_first") == 0
    assert case.read("empty_first").num_rows == 0
    case.write(DAY_B, day_rows(DAY_B, [4]), table="empty_first")
    assert case.rows(table="empty_first") == _by_expected(expected(DAY_B, [4]))


def check_concurrent_dates(case: Case, threads: int = 8) -> None:
    """Eight threads writing eight dates at once: every date lands, with exact counts."""
    days = [DAY_A + timedelta(days=n) for n in range(threads)]
    barrier = threading.Barrier(threads)
    errors: list[BaseException] = []

    def load(n: int) -> None:
        try:
            barrier.wait(timeout=30)
            for round_ in range(2):  # the second round replaces the first
                ids = list(range(1, 20 * (n + 1) + 1))
                case.write(days[n], day_rows(days[n], ids, tag=f"t{n}-{round_}"))
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=load, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert not errors, errors
    counts: dict[date, int] = {}
    for day, *_ in case.rows():
        counts[day] = counts.get(day, 0) + 1
    assert counts == {day: 20 * (n + 1) for n, day in enumerate(days)}
    names = {row[2] for row in case.rows()}
    assert names == {f"t{n}-1-{i}" for n in range(threads) for i in range(1, 20 * (n + 1) + 1)}


def big_day(day: date, rows: int, tag: str, batch_rows: int = 65_536) -> pa.RecordBatchReader:
    """A day of ``rows`` rows (``id`` 1…rows) as a reader of ``batch_rows``-row batches,
    generated one batch at a time."""
    schema = day_rows(day, []).schema

    def batches() -> Iterator[pa.RecordBatch]:
        for start in range(1, rows + 1, batch_rows):
            ids = list(range(start, min(start + batch_rows, rows + 1)))
            yield from day_rows(day, ids, tag=tag).to_batches()

    return pa.RecordBatchReader.from_batches(schema, batches())


def _summary(case: Case, day: date) -> tuple[int, int, set[str]]:
    """(rows, sum of id, name prefixes) of ``day`` in the contract table."""
    table = case.read()
    by_lower = {name.lower(): name for name in table.column_names}
    dates = table.column(by_lower["date"]).to_pylist()
    ids = table.column(by_lower["id"]).to_pylist()
    names = table.column(by_lower["name"]).to_pylist()
    mine = [i for i, d in enumerate(dates) if d == day]
    return (
        len(mine),
        sum(ids[i] for i in mine),
        {names[i].split("-")[0] for i in mine},
    )


def check_day_of_many_batches(case: Case) -> None:
    """A day larger than one batch loads whole; replacing it (twice) leaves only the new rows."""
    rows = 200_000
    case.write(DAY_B, day_rows(DAY_B, [1, 2], tag="other"))
    assert case.write(DAY_A, big_day(DAY_A, rows, "first")) == rows
    assert _summary(case, DAY_A) == (rows, rows * (rows + 1) // 2, {"first"})
    for _ in range(2):
        assert case.write(DAY_A, big_day(DAY_A, 150_000, "second", 50_000)) == 150_000
        assert _summary(case, DAY_A) == (150_000, 150_000 * 150_001 // 2, {"second"})
    assert _summary(case, DAY_B) == (2, 3, {"other"})


class SourceBroke(Exception):
    """Raised by a reader in the middle of a day."""


def broken_day(day: date, good_batches: int, tag: str) -> pa.RecordBatchReader:
    """A reader that yields ``good_batches`` batches of rows, then raises ``SourceBroke``."""
    schema = day_rows(day, []).schema

    def batches() -> Iterator[pa.RecordBatch]:
        for n in range(good_batches):
            yield from day_rows(day, [100 + 2 * n, 101 + 2 * n], tag=tag).to_batches()
        raise SourceBroke("the stream broke")

    return pa.RecordBatchReader.from_batches(schema, batches())


def check_failure_mid_stream_keeps_the_date(case: Case) -> None:
    """A day whose batches fail part-way writes nothing: the date keeps its previous rows,
    in every refresh mode, and the table stays writable."""
    case.write(DAY_A, day_rows(DAY_A, [1, 2, 3]))
    case.write(DAY_B, day_rows(DAY_B, [4]))
    before = case.rows()
    for mode in RefreshMode:
        with pytest.raises(SourceBroke):
            case.write(DAY_A, broken_day(DAY_A, 3, "broken"), mode)
        assert case.rows() == before, f"a failed {mode} changed the table"
    with pytest.raises(SourceBroke):
        case.write(DAY_C, broken_day(DAY_C, 2, "broken"), table="never_created")
    assert case.read("never_created").num_rows == 0
    case.write(DAY_A, day_rows(DAY_A, [7]))
    assert case.rows() == _by_expected(expected(DAY_A, [7]) + expected(DAY_B, [4]))


def check_bad_settings(case: Case) -> None:
    """An unknown field or a value of the wrong type is a ConfigError naming the field."""
    settings_model = case.destination.Settings
    with pytest.raises(ConfigError) as unknown:
        parse_settings(settings_model, {**case.config, "no_such_field": 1})
    assert ("no_such_field", "unknown field") in unknown.value.problems
    assert "no_such_field" in str(unknown.value)
    field = next(k for k, v in case.config.items() if isinstance(v, (str, int)))
    with pytest.raises(ConfigError) as wrong:
        parse_settings(settings_model, {**case.config, field: {"not": ["a", "scalar"]}})
    assert field in [name for name, _ in wrong.value.problems]
    with pytest.raises(ConfigError):
        parse_settings(settings_model, ["not", "an", "object"])  # type: ignore[arg-type]


def check_test_connection(case: Case) -> None:
    """Good settings pass the connection test."""
    case.destination.test_connection(case.settings, boundary())


def check_table_names(case: Case) -> None:
    """A table name that is not a plain identifier is refused; a missing table reads empty."""
    with pytest.raises((ValueError, TerminalRunError), match="table name"):
        case.write(DAY_A, day_rows(DAY_A, [1]), table='x"; DROP TABLE y; --')
    with pytest.raises((ValueError, TerminalRunError), match="date column"):
        case.write(DAY_A, day_rows(DAY_A, [1]), date_column="date; --")
    assert case.read("never_written").num_rows == 0
