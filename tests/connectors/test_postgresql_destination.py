"""The PostgreSQL destination against the local server: a fresh database for this module.

Every check reads the table back with psycopg (not through the destination), so a write that
lands wrong values, duplicates or a mix of old and new rows fails here.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import adbc_driver_manager
import psycopg
import pyarrow as pa
import pytest
from psycopg.conninfo import conninfo_to_dict

from opendts.connectors.base import (
    ConfigError,
    RefreshMode,
    SchemaConflict,
    WriteRequest,
    parse_settings,
)
from opendts.connectors.destinations import postgresql as pgdest
from opendts.connectors.destinations.postgresql import PostgreSQLDestination, PostgreSQLSettings
from opendts.engine.errors import TerminalRunError, TransientRunError
from tests import databases
from tests.boundaries import boundary

DAY = date(2024, 3, 1)
PASSWORD = "Sup3r-s3cret-pw"
DEST = PostgreSQLDestination()
ROOT = Path(__file__).resolve().parents[2]


# --- fixtures and helpers -------------------------------------------------------------------


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    databases.require_pg()
    name = f"opendts_pgdest_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(databases.PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        pgdest.close_all()
        with psycopg.connect(databases.PG_ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _admin() -> dict[str, Any]:
    return conninfo_to_dict(databases.PG_ADMIN_DSN)


def config_for(database: str, **overrides: Any) -> dict[str, Any]:
    admin = _admin()
    config: dict[str, Any] = {
        "host": str(admin.get("host") or "127.0.0.1"),
        "port": int(admin.get("port") or 5432),
        "database": database,
        "user": str(admin.get("user") or "postgres"),
    }
    if admin.get("password"):
        config["password"] = str(admin["password"])
    config.update(overrides)
    return config


@pytest.fixture
def settings(database: str) -> PostgreSQLSettings:
    parsed: PostgreSQLSettings = parse_settings(PostgreSQLSettings, config_for(database))
    return parsed


@pytest.fixture
def table(request: pytest.FixtureRequest) -> str:
    return f"t_{request.node.name.replace('[', '_').replace(']', '').replace('-', '_')}"[:60]


def dsn(database: str) -> str:
    return databases.PG_ADMIN_DSN.rsplit("/", 1)[0] + "/" + database


def sql(database: str, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn(database), autocommit=True) as conn:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else []


def day_rows(day: date, count: int, /, **columns: Any) -> pa.Table:
    """``count`` rows of ``day``: a ``date`` column, then ``columns`` (lists or arrays)."""
    data: dict[str, Any] = {"date": pa.array([day] * count, pa.date32())}
    for name, values in columns.items():
        data[name] = values if isinstance(values, pa.Array) else pa.array(values)
    return pa.table(data)


def write(
    settings: PostgreSQLSettings,
    table: str,
    data: pa.Table,
    day: date = DAY,
    mode: RefreshMode = RefreshMode.REPLACE,
) -> int:
    return DEST.write(settings, WriteRequest(table, day, "date", mode, boundary=boundary()), data)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# --- refresh modes --------------------------------------------------------------------------


def test_replace_twice_leaves_no_duplicates(
    settings: PostgreSQLSettings, database: str, table: str
) -> None:
    other = DAY + timedelta(days=1)
    assert write(settings, table, day_rows(DAY, 3, n=[1, 2, 3])) == 3
    write(settings, table, day_rows(other, 2, n=[10, 20]), day=other)
    new = day_rows(DAY, 4, n=[4, 5, 6, 7])
    assert write(settings, table, new) == 4
    assert write(settings, table, new) == 4

    rows = sql(database, f'SELECT date, n FROM "{table}" ORDER BY date, n')
    assert rows == [(DAY, 4), (DAY, 5), (DAY, 6), (DAY, 7), (other, 10), (other, 20)]
    # The table was created with an index on the date column (REPLACE's delete uses it).
    indexes = sql(database, "SELECT indexdef FROM pg_indexes WHERE tablename = %s", (table,))
    assert any('("date")' in definition or "(date)" in definition for (definition,) in indexes)
    types = dict(
        sql(
            database,
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = %s",
            (table,),
        )
    )
    assert types == {"date": "date", "n": "bigint"}


def test_replace_with_no_rows_empties_the_date(
    settings: PostgreSQLSettings, database: str, table: str
) -> None:
    write(settings, table, day_rows(DAY, 3, n=[1, 2, 3]))
    empty = day_rows(DAY, 0, n=pa.array([], pa.int64()))
    assert write(settings, table, empty) == 0
    assert sql(database, f'SELECT count(*) FROM "{table}"') == [(0,)]


def test_append_adds_and_overwrite_replaces_everything(
    settings: PostgreSQLSettings, database: str, table: str
) -> None:
    other = DAY + timedelta(days=1)
    write(settings, table, day_rows(DAY, 2, n=[1, 2]), mode=RefreshMode.APPEND)
    write(settings, table, day_rows(DAY, 2, n=[1, 2]), mode=RefreshMode.APPEND)
    assert sql(database, f'SELECT count(*) FROM "{table}"') == [(4,)]
    write(settings, table, day_rows(other, 1, n=[9]), day=other, mode=RefreshMode.OVERWRITE)
    assert sql(database, f'SELECT date, n FROM "{table}"') == [(other, 9)]


# --- schema evolution and types -------------------------------------------------------------


def test_new_column_is_added_and_missing_ones_are_null(
    settings: PostgreSQLSettings, database: str, table: str
) -> None:
    other = DAY + timedelta(days=1)
    write(settings, table, day_rows(DAY, 2, account=["a", "b"], clicks=[1, 2]))
    # Columns in another order, one left out (account), one new (cost).
    data = pa.table(
        {
            "cost": pa.array([0.5, 1.5]),
            "clicks": pa.array([3, 4]),
            "date": pa.array([other, other], pa.date32()),
        }
    )
    assert write(settings, table, data, day=other) == 2

    columns = sql(
        database,
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = %s "
        "ORDER BY ordinal_position",
        (table,),
    )
    assert columns == [
        ("date", "date"),
        ("account", "text"),
        ("clicks", "bigint"),
        ("cost", "double precision"),
    ]
    rows = sql(database, f'SELECT date, account, clicks, cost FROM "{table}" ORDER BY date, clicks')
    assert rows == [
        (DAY, "a", 1, None),
        (DAY, "b", 2, None),
        (other, None, 3, 0.5),
        (other, None, 4, 1.5),
    ]


def test_column_names_match_case_insensitively(
    settings: PostgreSQLSettings, database: str, table: str
) -> None:
    sql(database, f"CREATE TABLE {table} (date date, clicks bigint)")  # unquoted: lower case
    data = pa.table({"date": pa.array([DAY], pa.date32()), "Clicks": pa.array([5])})
    write(settings, table.upper(), data)
    assert sql(database, f"SELECT date, clicks FROM {table}") == [(DAY, 5)]
    same = sql(database, "SELECT count(*) FROM pg_class WHERE lower(relname) = %s", (table,))
    assert same == [(1,)]  # no second table "T_…", no column "Clicks"
    columns = sql(
        database,
        "SELECT column_name FROM information_schema.columns WHERE table_name = %s",
        (table,),
    )
    assert sorted(columns) == [("clicks",), ("date",)]


def test_type_conflict_names_the_column_and_keeps_the_rows(
    settings: PostgreSQLSettings, database: str, table: str
) -> None:
    write(settings, table, day_rows(DAY, 2, clicks=[1, 2]))
    bad = day_rows(DAY, 1, clicks=["many"], added=[1.0])
    with pytest.raises(SchemaConflict) as caught:
        write(settings, table, bad)
    message = str(caught.value)
    assert "'clicks'" in message and repr(table) in message
    assert "bigint" in message and "string" in message
    assert caught.value.column == "clicks"
    assert sql(database, f'SELECT clicks FROM "{table}" ORDER BY clicks') == [(1,), (2,)]
    names = sql(
        database,
        "SELECT column_name FROM information_schema.columns WHERE table_name = %s",
        (table,),
    )
    assert ("added",) not in names


def test_incoming_values_are_cast_to_the_columns_types(
    settings: PostgreSQLSettings, database: str, table: str
) -> None:
    first = pa.table(
        {
            "date": pa.array([DAY], pa.date32()),
            "big": pa.array([1], pa.int64()),
            "ratio": pa.array([0.25], pa.float64()),
            "amount": pa.array([Decimal("1.50")], pa.decimal128(12, 2)),
            "seen_at": pa.array([datetime(2024, 3, 1, 8, 30)], pa.timestamp("us")),
            "payload": pa.array([[1, 2]], pa.list_(pa.int64())),
        }
    )
    write(settings, table, first)
    types = dict(
        sql(
            database,
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = %s",
            (table,),
        )
    )
    assert types["big"] == "bigint" and types["ratio"] == "double precision"
    assert types["amount"] == "numeric" and types["payload"] == "jsonb"
    assert types["seen_at"] == "timestamp without time zone"
    # Narrower or other-family values that fit: int32 → bigint, int → double precision,
    # float → numeric, date → timestamp, JSON text → jsonb.
    second = pa.table(
        {
            "date": pa.array([DAY, DAY], pa.date32()),
            "big": pa.array([2**31 - 1, -5], pa.int32()),
            "ratio": pa.array([3, 2**40], pa.int64()),
            "amount": pa.array([2.25, None], pa.float64()),
            "seen_at": pa.array([date(2024, 3, 1), None], pa.date32()),
            "payload": pa.array(['{"a": 1}', None], pa.string()),
        }
    )
    write(settings, table, second)
    rows = sql(database, f'SELECT big, ratio, amount, seen_at, payload FROM "{table}" ORDER BY big')
    assert rows == [
        (-5, float(2**40), None, None, None),
        (2**31 - 1, 3.0, Decimal("2.25"), datetime(2024, 3, 1), {"a": 1}),
    ]


def test_arrow_types_round_trip(settings: PostgreSQLSettings, database: str, table: str) -> None:
    moment = datetime(2024, 3, 1, 12, 0, 1, 500000, tzinfo=UTC)
    data = pa.table(
        {
            "date": pa.array([DAY, DAY], pa.date32()),
            "flag": pa.array([True, None]),
            "small": pa.array([7, None], pa.int8()),
            "single": pa.array([1.5, None], pa.float32()),
            "label": pa.array(["x", "y"]).dictionary_encode(),
            "long_text": pa.array(["é", None], pa.large_string()),
            "at": pa.array([moment, None], pa.timestamp("ns", tz="Europe/Paris")),
            "blob": pa.array([b"\x00\x01", None], pa.binary()),
            "nothing": pa.array([None, None], pa.null()),
            "attrs": pa.array([{"k": "v"}, None], pa.struct([("k", pa.string())])),
        }
    )
    write(settings, table, data)
    types = dict(
        sql(
            database,
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = %s",
            (table,),
        )
    )
    assert types["label"] == "text" and types["nothing"] == "text"
    assert types["at"] == "timestamp with time zone" and types["small"] == "bigint"
    rows = sql(
        database,
        f'SELECT flag, small, single, label, long_text, at, blob, nothing, attrs FROM "{table}" '
        "ORDER BY label",
    )
    assert rows[0] == (True, 7, 1.5, "x", "é", moment, b"\x00\x01", None, {"k": "v"})
    assert rows[1] == (None, None, None, "y", None, None, None, None, None)


def test_a_column_type_opendts_cannot_write_is_terminal(
    settings: PostgreSQLSettings, database: str, table: str
) -> None:
    sql(database, f'CREATE TABLE "{table}" (date date, id uuid)')
    with pytest.raises(TerminalRunError) as caught:
        write(settings, table, day_rows(DAY, 1, id=["not-a-uuid"]))
    assert "column id" in str(caught.value) and "Change the column's type" in str(caught.value)
    assert sql(database, f'SELECT count(*) FROM "{table}"') == [(0,)]


def test_schema_is_created_and_read_table_returns_rows(database: str, table: str) -> None:
    settings = parse_settings(PostgreSQLSettings, config_for(database, schema_name="analytics"))
    assert DEST.read_table(settings, table, boundary()).num_columns == 0  # missing table: empty
    write(settings, table, day_rows(DAY, 2, n=[1, 2]))
    assert sql(database, f'SELECT n FROM analytics."{table}" ORDER BY n') == [(1,), (2,)]
    read = DEST.read_table(settings, table, boundary())
    assert read.num_rows == 2 and read.column_names == ["date", "n"]
    assert sorted(read.column("n").to_pylist()) == [1, 2]
    assert read.column("date").to_pylist() == [DAY, DAY]
    DEST.test_connection(settings, boundary())


# --- concurrency ----------------------------------------------------------------------------


def _run_threads(count: int, target: Any) -> list[BaseException]:
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            barrier.wait()
            target(index)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return errors


@pytest.mark.parametrize("round_", range(3))
def test_eight_threads_write_different_dates(
    settings: PostgreSQLSettings, database: str, table: str, round_: int
) -> None:
    days = [DAY + timedelta(days=i) for i in range(8)]

    # Step 1: all eight create the table at once. Step 2: all eight add a column at once.
    def first(i: int) -> None:
        write(settings, table, day_rows(days[i], 500, n=list(range(500))), day=days[i])

    def second(i: int) -> None:
        data = day_rows(days[i], 400, n=list(range(400)), extra=[i] * 400)
        write(settings, table, data, day=days[i])

    assert _run_threads(8, first) == []
    counts = sql(database, f'SELECT date, count(*) FROM "{table}" GROUP BY date ORDER BY date')
    assert counts == [(day, 500) for day in days]
    assert _run_threads(8, second) == []
    counts = sql(
        database,
        f'SELECT date, count(*), count(DISTINCT n), min(extra), max(extra) FROM "{table}" '
        "GROUP BY date ORDER BY date",
    )
    assert counts == [(day, 400, 400, i, i) for i, day in enumerate(days)]


def test_concurrent_replaces_of_one_date_do_not_duplicate(
    settings: PostgreSQLSettings, database: str, table: str
) -> None:
    write(settings, table, day_rows(DAY, 100, n=list(range(100)), writer=[-1] * 100))

    for round_ in range(10):

        def replace(i: int, round_: int = round_) -> None:
            columns: dict[str, Any] = {"n": list(range(300)), "writer": [i] * 300}
            if round_ % 2 and i % 2:  # some also add a column: DDL and deletes of one date
                columns[f"extra_{round_}"] = [i] * 300
            write(settings, table, day_rows(DAY, 300, **columns))

        assert _run_threads(6, replace) == []
        rows = sql(
            database,
            f'SELECT count(*), count(DISTINCT n), count(DISTINCT writer) FROM "{table}"',
        )
        assert rows == [(300, 300, 1)]


def test_pooled_connections_closed_by_the_server_are_replaced(
    settings: PostgreSQLSettings, database: str, table: str
) -> None:
    write(settings, table, day_rows(DAY, 1, n=[1]))
    killed = sql(
        database,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = current_database() AND application_name = 'opendts'",
    )
    assert killed and all(ok for (ok,) in killed)
    time.sleep(0.2)
    write(settings, table, day_rows(DAY, 1, n=[2]))
    assert sql(database, f'SELECT n FROM "{table}"') == [(2,)]


# --- errors ---------------------------------------------------------------------------------


class FakeServer:
    """Speaks just enough of the PostgreSQL protocol to ask for a password and reject it."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port: int = self.sock.getsockname()[1]
        self.passwords: list[bytes] = []
        threading.Thread(target=self._serve, daemon=True).start()

    @staticmethod
    def _read(conn: socket.socket, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = conn.recv(size - len(data))
            if not chunk:
                raise ConnectionError
            data += chunk
        return data

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn, contextlib.suppress(ConnectionError, OSError):
                self._session(conn)

    def _session(self, conn: socket.socket) -> None:
        while True:
            (length,) = struct.unpack("!i", self._read(conn, 4))
            body = self._read(conn, length - 4)
            (code,) = struct.unpack("!i", body[:4])
            if code in (80877103, 80877104):  # SSLRequest, GSSENCRequest: not here
                conn.sendall(b"N")
                continue
            break
        conn.sendall(b"R" + struct.pack("!ii", 8, 3))  # AuthenticationCleartextPassword
        kind = self._read(conn, 1)
        (length,) = struct.unpack("!i", self._read(conn, 4))
        body = self._read(conn, length - 4)
        if kind == b"p":
            self.passwords.append(body.rstrip(b"\0"))
        fields = b'SFATAL\0VFATAL\0C28P01\0Mpassword authentication failed for user "analyst"\0\0'
        conn.sendall(b"E" + struct.pack("!i", len(fields) + 4) + fields)

    def close(self) -> None:
        self.sock.close()


def test_wrong_password_is_terminal_and_never_shown() -> None:
    server = FakeServer()
    try:
        settings = parse_settings(
            PostgreSQLSettings,
            {
                "port": server.port,
                "database": "warehouse",
                "user": "analyst",
                "password": PASSWORD,
                "sslmode": "disable",
            },
        )
        with pytest.raises(TerminalRunError) as caught:
            write(settings, "t", day_rows(DAY, 1, n=[1]))
        message = str(caught.value)
        assert "PostgreSQL rejected user 'analyst' for database 'warehouse'" in message
        assert "check the destination's user and password" in message
        assert PASSWORD not in message and PASSWORD not in repr(caught.value)
        with pytest.raises(TerminalRunError) as tested:
            DEST.test_connection(settings, boundary())
        assert PASSWORD not in str(tested.value)
        assert "user and password" in str(tested.value)
        assert PASSWORD.encode() in server.passwords  # the password was really sent
    finally:
        server.close()


def test_unknown_database_is_terminal(database: str) -> None:
    name = f"missing_{uuid.uuid4().hex[:8]}"
    settings = parse_settings(PostgreSQLSettings, config_for(name, password=PASSWORD))
    with pytest.raises(TerminalRunError) as caught:
        write(settings, "t", day_rows(DAY, 1, n=[1]))
    message = str(caught.value)
    assert f"has no database {name!r}" in message and PASSWORD not in message
    with pytest.raises(TerminalRunError):
        DEST.test_connection(settings, boundary())


def test_unknown_user_is_terminal(database: str) -> None:
    settings = parse_settings(
        PostgreSQLSettings, config_for(database, user="nobody_here", password=PASSWORD)
    )
    with pytest.raises(TerminalRunError) as caught:
        DEST.test_connection(settings, boundary())
    message = str(caught.value)
    assert "rejected user 'nobody_here'" in message and "user and password" in message
    assert PASSWORD not in message


def test_unreachable_port_is_transient() -> None:
    settings = parse_settings(
        PostgreSQLSettings,
        {"port": free_port(), "database": "warehouse", "password": PASSWORD},
    )
    with pytest.raises(TransientRunError) as caught:
        write(settings, "t", day_rows(DAY, 1, n=[1]))
    message = str(caught.value)
    assert "Cannot reach PostgreSQL" in message and "refused" in message.lower()
    assert PASSWORD not in message


def test_connect_timeout_is_transient() -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts connections (the kernel does) but never answers
    try:
        settings = parse_settings(
            PostgreSQLSettings,
            {
                "port": silent.getsockname()[1],
                "database": "warehouse",
                "password": PASSWORD,
                "connect_timeout_seconds": 1,
            },
        )
        began = time.monotonic()
        with pytest.raises(TransientRunError) as caught:
            DEST.test_connection(settings, boundary())
        assert time.monotonic() - began < 15
        assert "timeout" in str(caught.value).lower() and PASSWORD not in str(caught.value)
    finally:
        silent.close()


@pytest.fixture
def role(database: str) -> Iterator[str]:
    name = f"opendts_role_{uuid.uuid4().hex[:8]}"
    sql("postgres", f'CREATE ROLE "{name}" LOGIN')
    try:
        yield name
    finally:
        pgdest.close_all()
        sql(
            database,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
            (name,),
        )
        sql(database, f'DROP OWNED BY "{name}"')
        sql("postgres", f'DROP ROLE IF EXISTS "{name}"')


def test_missing_privileges_are_terminal(database: str, table: str, role: str) -> None:
    settings = parse_settings(PostgreSQLSettings, config_for(database, user=role))
    with pytest.raises(TerminalRunError) as tested:
        DEST.test_connection(
            settings, boundary()
        )  # PostgreSQL 15: no CREATE on public for everyone
    assert f"user {role!r} may not create tables in schema 'public'" in str(tested.value)
    with pytest.raises(TerminalRunError) as caught:
        write(settings, table, day_rows(DAY, 1, n=[1]))
    assert f"user {role!r} lacks a privilege" in str(caught.value)
    assert "permission denied" in str(caught.value)
    # A table the user may read but not change.
    sql(database, f'CREATE TABLE "{table}" (date date, n bigint)')
    sql(database, f'GRANT SELECT ON "{table}" TO "{role}"')
    with pytest.raises(TerminalRunError) as denied:
        write(settings, table, day_rows(DAY, 1, n=[1]))
    assert "lacks a privilege" in str(denied.value)


def test_connection_limit_is_transient(database: str, role: str) -> None:
    sql("postgres", f'ALTER ROLE "{role}" CONNECTION LIMIT 0')
    settings = parse_settings(PostgreSQLSettings, config_for(database, user=role))
    with pytest.raises(TransientRunError) as caught:
        DEST.test_connection(settings, boundary())
    assert "no free connection slot" in str(caught.value)


@pytest.mark.parametrize(
    ("state", "transient"),
    [
        ("40001", True),  # serialization_failure
        ("40P01", True),  # deadlock_detected
        ("53300", True),  # too_many_connections
        ("57014", True),  # query_canceled (statement timeout)
        ("55P03", True),  # lock_not_available
        ("42501", False),  # insufficient_privilege
        ("22003", False),  # numeric_value_out_of_range
        ("28P01", False),  # invalid_password
    ],
)
def test_server_errors_are_classified_by_sqlstate(
    settings: PostgreSQLSettings, state: str, transient: bool
) -> None:
    import adbc_driver_postgresql.dbapi as adbc_pg

    with adbc_pg.connect(pgdest.conninfo(settings)) as conn, conn.cursor() as cur:
        with pytest.raises(adbc_driver_manager.Error) as raised:
            cur.execute(f"DO $$ BEGIN RAISE EXCEPTION 'boom' USING ERRCODE = '{state}'; END $$")
        conn.rollback()
    assert raised.value.sqlstate == state
    error = pgdest.statement_error(raised.value, settings, "t")
    assert isinstance(error, TransientRunError if transient else TerminalRunError)
    assert "boom" in str(error)


def test_settings_are_validated_and_the_password_hidden(database: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_settings(PostgreSQLSettings, {"port": 0, "schema_name": "bad name", "pwd": "x"})
    fields = {name for name, _ in caught.value.problems}
    assert fields == {"port", "schema_name", "database", "pwd"}
    with pytest.raises(ConfigError):
        parse_settings(PostgreSQLSettings, {"database": "d", "sslmode": "sometimes"})
    settings = parse_settings(PostgreSQLSettings, {"database": "d", "password": PASSWORD})
    assert PASSWORD not in repr(settings) and PASSWORD not in str(settings.model_dump())
    with pytest.raises(TerminalRunError, match="must start with a letter"):
        write(settings, "bad-table", day_rows(DAY, 1, n=[1]))


# --- a writer killed in the middle of a replace ---------------------------------------------

CHILD = textwrap.dedent(
    """
    import json, sys, time
    import numpy as np
    import pyarrow as pa
    import adbc_driver_manager.dbapi as dbapi
    from datetime import date
    from pathlib import Path
    from opendts.connectors.base import WriteRequest, parse_settings
    from opendts.connectors.boundary import Boundary
    from opendts.connectors.destinations.postgresql import (
        PostgreSQLDestination, PostgreSQLSettings,
    )

    args = json.loads(sys.argv[1])
    if args["pause_at_commit"]:
        def pause(self):
            cur = self.cursor()
            cur.execute("SELECT pg_backend_pid()")
            print("READY", cur.fetchone()[0], flush=True)
            time.sleep(600)
        dbapi.Connection.commit = pause
    day = date.fromisoformat(args["day"])
    n = args["rows"]
    data = pa.table({
        "date": pa.array(np.full(n, day.toordinal() - 719163, np.int32)).cast(pa.date32()),
        "n": pa.array(np.arange(n, dtype=np.int64)),
        "label": pa.array(np.full(n, "new-row-label-padding-padding")),
    })
    settings = parse_settings(PostgreSQLSettings, args["settings"])
    print("WRITING", flush=True)
    team = Boundary(team_id=1, data_dir=Path("."), allowed_networks=("127.0.0.0/8", "::1/128"))
    PostgreSQLDestination().write(settings, WriteRequest(args["table"], day, boundary=team), data)
    print("COMMITTED", flush=True)
    """
)


def _old_rows(settings: PostgreSQLSettings, table: str) -> None:
    other = DAY + timedelta(days=1)
    write(settings, table, day_rows(DAY, 1000, n=list(range(1000)), label=["old"] * 1000))
    write(settings, table, day_rows(other, 10, n=list(range(10)), label=["other"] * 10), other)


def _assert_old_rows(database: str, table: str) -> None:
    rows = sql(
        database,
        f'SELECT date, count(*), sum(n), min(label), max(label) FROM "{table}" '
        "GROUP BY date ORDER BY date",
    )
    assert rows == [
        (DAY, 1000, 499500, "old", "old"),
        (DAY + timedelta(days=1), 10, 45, "other", "other"),
    ]


def _spawn(tmp_path: Path, settings: PostgreSQLSettings, table: str, **args: Any) -> Any:
    script = tmp_path / "writer.py"
    script.write_text(CHILD)
    payload = {
        "settings": {**settings.model_dump(mode="json"), "password": None},
        "table": table,
        "day": DAY.isoformat(),
        **args,
    }
    if settings.password is not None:
        payload["settings"]["password"] = settings.password.get_secret_value()
    env = {**os.environ, "PGAPPNAME": f"killtest_{table}"[:60]}
    return subprocess.Popen(
        [sys.executable, str(script), json.dumps(payload)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )


def _size(database: str, table: str) -> int:
    ((size,),) = sql(database, "SELECT pg_relation_size(%s)", (f'"{table}"',))
    return int(size)


def _wait_backend_gone(database: str, pid: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if not sql(database, "SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)):
            return
        time.sleep(0.05)
    raise AssertionError(f"backend {pid} still there 20 s after its client was killed")


def test_writer_killed_before_commit_leaves_the_old_rows(
    settings: PostgreSQLSettings, database: str, table: str, tmp_path: Path
) -> None:
    _old_rows(settings, table)
    size_before = _size(database, table)
    child = _spawn(tmp_path, settings, table, pause_at_commit=True, rows=50_000)
    try:
        assert child.stdout is not None
        line = ""
        while not line.startswith("READY"):
            line = child.stdout.readline()
            assert line, f"writer exited early: {child.stderr.read() if child.stderr else ''}"
        pid = int(line.split()[1])
        # The writer deleted the old rows and copied 50,000 new ones, uncommitted.
        state = sql(database, "SELECT state FROM pg_stat_activity WHERE pid = %s", (pid,))
        assert state == [("idle in transaction",)]
        assert _size(database, table) > size_before + 1_000_000  # the new rows' pages
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
    _wait_backend_gone(database, pid)
    _assert_old_rows(database, table)
    write(settings, table, day_rows(DAY, 5, n=list(range(5)), label=["after"] * 5))
    assert sql(database, f'SELECT count(*) FROM "{table}" WHERE date = %s', (DAY,)) == [(5,)]


def test_writer_killed_during_copy_leaves_the_old_rows(
    settings: PostgreSQLSettings, database: str, table: str, tmp_path: Path
) -> None:
    _old_rows(settings, table)
    child = _spawn(tmp_path, settings, table, pause_at_commit=False, rows=3_000_000)
    app = f"killtest_{table}"[:60]
    pid = None
    try:
        deadline = time.monotonic() + 60
        while pid is None and time.monotonic() < deadline and child.poll() is None:
            found = sql(
                database,
                "SELECT pid FROM pg_stat_activity WHERE application_name = %s "
                "AND state = 'active' AND query LIKE 'COPY%%'",
                (app,),
            )
            if found:
                pid = found[0][0]
            else:
                time.sleep(0.005)
        assert pid is not None, "the writer's COPY was never seen running"
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
    assert child.returncode == -signal.SIGKILL  # killed, not finished
    _wait_backend_gone(database, pid)
    _assert_old_rows(database, table)
