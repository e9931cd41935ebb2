"""The SQL source against a SQLite file and a fresh PostgreSQL database."""

from __future__ import annotations

import socket
import sqlite3
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pytest

from opendts.connectors import paths
from opendts.connectors.base import ConfigError, ReadRequest, parse_settings, secret_fields
from opendts.connectors.sources.sql import SqlSettings, SqlSource, engine_url
from opendts.engine.errors import TerminalRunError, TransientRunError
from tests import databases
from tests.boundaries import boundary

DAY = date(2024, 1, 31)
OTHER = date(2024, 2, 1)


def settings(**config: Any) -> SqlSettings:
    parsed: SqlSettings = parse_settings(SqlSettings, config)
    return parsed


def read(config: SqlSettings, request: ReadRequest | None = None) -> list[pa.RecordBatch]:
    return list(SqlSource().read(config, request or ReadRequest(DAY, boundary=boundary())))


def rows(batches: list[pa.RecordBatch]) -> list[dict[str, Any]]:
    return [row for batch in batches for row in batch.to_pylist()]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --- SQLite -------------------------------------------------------------------------------


@pytest.fixture
def sqlite_file(team_folder: Path) -> Path:
    path = team_folder / "shop.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE sales (day TEXT, shop TEXT, units INTEGER, price REAL)")
        conn.executemany(
            "INSERT INTO sales VALUES (?, ?, ?, ?)",
            [(DAY.isoformat(), f"s{n}", n, n * 1.5) for n in range(5)]
            + [(OTHER.isoformat(), "other", 99, 9.9)],
        )
    conn.close()
    return path


def test_sqlite_query_returns_only_the_dates_rows(sqlite_file: Path) -> None:
    config = settings(
        url="sqlite:///shop.db",
        query="SELECT day, shop, units, price FROM sales WHERE day = :date ORDER BY units",
    )
    batches = read(config)
    assert [row["shop"] for row in rows(batches)] == ["s0", "s1", "s2", "s3", "s4"]
    assert batches[0].schema.names == ["day", "shop", "units", "price"]
    assert batches[0].schema.field("units").type == pa.int64()
    assert batches[0].schema.field("price").type == pa.float64()
    assert rows(read(config, ReadRequest(OTHER, boundary=boundary()))) == [
        {"day": "2024-02-01", "shop": "other", "units": 99, "price": 9.9}
    ]
    assert read(config, ReadRequest(date(2030, 1, 1), boundary=boundary())) == []


def test_sqlite_chunks_become_several_batches(sqlite_file: Path) -> None:
    config = settings(
        url="sqlite:///shop.db",
        query="SELECT units FROM sales WHERE day = :date ORDER BY units",
        chunk_size=2,
    )
    batches = read(config)
    assert [b.num_rows for b in batches] == [2, 2, 1]
    assert [row["units"] for row in rows(batches)] == [0, 1, 2, 3, 4]


def test_sqlite_missing_table_is_terminal(sqlite_file: Path) -> None:
    config = settings(url="sqlite:///shop.db", query="SELECT * FROM nope WHERE d = :date")
    with pytest.raises(TerminalRunError, match="no such table: nope"):
        read(config)


def test_sqlite_missing_file_is_terminal_and_not_created(team_folder: Path) -> None:
    config = settings(url="sqlite:///absent.db", query="SELECT :date AS d")
    with pytest.raises(TerminalRunError, match=r"absent\.db does not exist"):
        read(config)
    assert not (team_folder / "absent.db").exists()


def test_relative_sqlite_path_is_in_the_team_folder(sqlite_file: Path) -> None:
    assert sqlite_file.parent == paths.team_dir(boundary())
    config = settings(
        url="sqlite:///shop.db", query="SELECT count(*) AS n FROM sales WHERE day = :date"
    )
    assert rows(read(config)) == [{"n": 5}]


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:////etc/passwd",
        "sqlite:///../../opendts.db",
        "sqlite:///~/x.db",
        "sqlite:///file:shop.db",
        "sqlite:///shop.db?uri=true",
        "sqlite:///shop.db?mode=rwc",
    ],
)
def test_sqlite_outside_the_team_folder_is_refused(url: str, sqlite_file: Path) -> None:
    found = problems({"url": url, "query": "SELECT :date"})
    assert list(found) == ["url"]
    assert "not a SQLAlchemy URL" not in found["url"]


@pytest.mark.parametrize(
    "query",
    [
        "ATTACH DATABASE 'other.db' || :date AS other",
        "VACUUM INTO 'copy-' || :date",
        "SELECT * FROM pragma_table_info('sales') WHERE :date IS NOT NULL",
        "INSERT INTO sales (day) VALUES (:date)",
        "CREATE TABLE made AS SELECT :date AS d",
    ],
)
def test_a_sqlite_query_can_only_read(query: str, sqlite_file: Path) -> None:
    config = settings(url="sqlite:///shop.db", query=query)
    with pytest.raises(TerminalRunError, match=r"not authorized|authorization denied"):
        read(config)
    assert sorted(p.name for p in sqlite_file.parent.iterdir()) == ["files", "shop.db"]
    with sqlite3.connect(sqlite_file) as conn:
        assert conn.execute("SELECT count(*) FROM sales").fetchone() == (6,)
        names = conn.execute("SELECT name FROM sqlite_master").fetchall()
    assert names == [("sales",)]


def test_sqlite_in_memory_cannot_attach_a_file(team_folder: Path) -> None:
    config = settings(url="sqlite://", query="ATTACH DATABASE 'x' || :date || '.db' AS x")
    with pytest.raises(TerminalRunError, match="not authorized"):
        read(config)
    assert not list(Path.cwd().glob("x2024-01-31.db"))


def test_cancel_stops_between_chunks(sqlite_file: Path) -> None:
    request = ReadRequest(DAY, boundary=boundary())
    config = settings(
        url="sqlite:///shop.db",
        query="SELECT units FROM sales WHERE day = :date",
        chunk_size=1,
    )
    batches = SqlSource().read(config, request)
    next(batches)
    request.cancelled.set()
    with pytest.raises(TransientRunError, match="interrupted"):
        next(batches)


# --- settings -----------------------------------------------------------------------------


def problems(config: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ConfigError) as caught:
        parse_settings(SqlSettings, config)
    return dict(caught.value.problems)


def test_query_must_bind_the_date() -> None:
    found = problems({"url": "sqlite:///x.db", "query": "SELECT * FROM t"})
    assert ":date" in found["query"]
    # A ::date cast is not the parameter.
    found = problems({"url": "sqlite:///x.db", "query": "SELECT now()::date AS d"})
    assert ":date" in found["query"]
    settings(url="sqlite:///x.db", query="SELECT * FROM t WHERE created::date = :date")


def test_bad_url_is_a_config_error_without_the_password() -> None:
    found = problems({"url": "not a url hunter2", "query": "SELECT :date"})
    assert "SQLAlchemy URL" in found["url"] and "hunter2" not in found["url"]
    found = problems({"url": "nosuchdb://u:hunter2@h/db", "query": "SELECT :date"})
    assert "driver" in found["url"] and "hunter2" not in found["url"]
    assert problems({"url": "sqlite://", "query": "SELECT :date", "x": 1})["x"] == "unknown field"


def test_url_is_a_secret_and_postgresql_uses_psycopg() -> None:
    assert secret_fields(SqlSettings) == frozenset({"url"})
    config = settings(url="postgresql://u:hunter2@h/db", query="SELECT :date")
    assert "hunter2" not in repr(config)
    assert engine_url("postgresql://u:p@h/db").drivername == "postgresql+psycopg"
    assert engine_url("postgresql+psycopg://u:p@h/db").drivername == "postgresql+psycopg"


# --- PostgreSQL ---------------------------------------------------------------------------


@pytest.fixture
def pg_source_url() -> Iterator[str]:
    """A fresh PostgreSQL database with a table of sales; its plain postgresql:// URL."""
    databases.require_pg()
    name = f"opendts_sqlsrc_{uuid.uuid4().hex[:10]}"
    admin = databases.PG_ADMIN_DSN
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = admin.rsplit("/", 1)[0] + "/" + name
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                "CREATE TABLE sales (day date, shop text, units bigint, price numeric(12, 2), "
                "sold_at timestamptz, attrs jsonb)"
            )
            for n in range(7):
                conn.execute(
                    "INSERT INTO sales VALUES (%s, %s, %s, %s, %s, %s)",
                    (
                        DAY if n < 5 else OTHER,
                        f"s{n}",
                        n,
                        Decimal(n) + Decimal("0.25"),
                        datetime(2024, 1, 31, 12, n, tzinfo=UTC),
                        psycopg.types.json.Jsonb({"n": n, "tags": ["a"]}),
                    ),
                )
        yield url
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def with_password(url: str, password: str) -> str:
    scheme, rest = url.split("://", 1)
    userinfo, host = rest.split("@", 1)
    return f"{scheme}://{userinfo.split(':')[0]}:{password}@{host}"


def test_postgresql_query_bound_to_the_date_keeps_types(pg_source_url: str) -> None:
    config = settings(
        url=pg_source_url,
        query="SELECT day, shop, units, price, sold_at, attrs FROM sales "
        "WHERE day = :date ORDER BY units",
    )
    batches = read(config)
    got = rows(batches)
    assert [row["shop"] for row in got] == ["s0", "s1", "s2", "s3", "s4"]
    schema = batches[0].schema
    assert schema.field("day").type == pa.date32()
    assert schema.field("units").type == pa.int64()
    assert pa.types.is_decimal(schema.field("price").type)
    assert pa.types.is_timestamp(schema.field("sold_at").type)
    assert schema.field("attrs").type == pa.string()
    assert got[1]["price"] == Decimal("1.25")
    assert got[1]["day"] == DAY
    assert got[1]["sold_at"] == datetime(2024, 1, 31, 12, 1, tzinfo=UTC)
    assert got[1]["attrs"] == '{"n": 1, "tags": ["a"]}'
    assert [row["shop"] for row in rows(read(config, ReadRequest(OTHER, boundary=boundary())))] == [
        "s5",
        "s6",
    ]


def test_postgresql_chunks_and_date_casts(pg_source_url: str) -> None:
    config = settings(
        url=pg_source_url,
        query="SELECT units FROM sales WHERE sold_at::date = :date ORDER BY units",
        chunk_size=3,
    )
    batches = read(config)
    assert [b.num_rows for b in batches] == [3, 3, 1]  # every row was sold on DAY


def test_a_large_chunk_size_still_yields_bounded_batches(pg_source_url: str) -> None:
    config = settings(
        url=pg_source_url,
        query="SELECT g AS n FROM generate_series(1, 150000) AS g WHERE :date IS NOT NULL",
        chunk_size=1_000_000,
    )
    sizes = [batch.num_rows for batch in read(config)]
    assert sum(sizes) == 150_000
    assert max(sizes) <= 65_536 and len(sizes) == 3


def test_postgresql_missing_table_is_terminal_without_the_password(pg_source_url: str) -> None:
    config = settings(
        url=with_password(pg_source_url, "hunter2"),
        query="SELECT * FROM no_such_table WHERE day = :date",
    )
    with pytest.raises(TerminalRunError) as caught:
        read(config)
    message = str(caught.value)
    assert 'relation "no_such_table" does not exist' in message
    assert "hunter2" not in message and "***" in message


def test_unreachable_server_is_transient_without_the_password() -> None:
    config = settings(
        url=f"postgresql://postgres:hunter2@127.0.0.1:{free_port()}/nowhere",
        query="SELECT :date AS d",
    )
    with pytest.raises(TransientRunError) as caught:
        read(config)
    message = str(caught.value)
    assert "unavailable" in message and "will retry" in message
    assert "hunter2" not in message
