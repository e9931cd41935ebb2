"""Arrow types to warehouse column types, and what a source may send into an existing table.

Tables are created from the first load's Arrow schema. Later loads may bring new columns
(added) or leave some out (NULL). A column whose values no longer fit its type is a
``SchemaConflict``: a terminal error naming the column and what to do.
"""

from __future__ import annotations

from enum import StrEnum

import pyarrow as pa

from opendts.connectors.base import SchemaConflict


class Family(StrEnum):
    """What a column holds, whatever the dialect calls it."""

    BOOLEAN = "boolean"
    INTEGER = "integer"
    FLOAT = "float"
    DECIMAL = "decimal"
    TEXT = "text"
    DATE = "date"
    TIMESTAMP = "timestamp"
    TIMESTAMPTZ = "timestamptz"
    BINARY = "binary"
    JSON = "json"
    NULL = "null"


def family_of_arrow(arrow_type: pa.DataType) -> Family:
    """The family of an Arrow type."""
    t = pa.types
    if t.is_dictionary(arrow_type):  # dictionary-encoded values are stored decoded
        return family_of_arrow(arrow_type.value_type)
    if t.is_null(arrow_type):
        return Family.NULL
    if t.is_boolean(arrow_type):
        return Family.BOOLEAN
    if t.is_integer(arrow_type):
        return Family.INTEGER
    if t.is_floating(arrow_type):
        return Family.FLOAT
    if t.is_decimal(arrow_type):
        return Family.DECIMAL
    if t.is_string(arrow_type) or t.is_large_string(arrow_type) or t.is_string_view(arrow_type):
        return Family.TEXT
    if t.is_date(arrow_type):
        return Family.DATE
    if t.is_timestamp(arrow_type):
        return Family.TIMESTAMPTZ if arrow_type.tz is not None else Family.TIMESTAMP
    if (
        t.is_binary(arrow_type)
        or t.is_large_binary(arrow_type)
        or t.is_fixed_size_binary(arrow_type)
    ):
        return Family.BINARY
    return Family.JSON


def family_of_sql(declared: str) -> Family:
    """The family of a column type as a database reports it (DuckDB, PostgreSQL, SQLite)."""
    text = declared.strip().upper()
    if text.startswith("BOOL"):
        return Family.BOOLEAN
    if "INT" in text:  # TINYINT … HUGEINT, INTEGER, BIGINT, SMALLINT, UBIGINT
        return Family.INTEGER
    if text.startswith(("DOUBLE", "FLOAT", "REAL")):
        return Family.FLOAT
    if text.startswith(("DECIMAL", "NUMERIC")):
        return Family.DECIMAL
    if text.startswith(("TIMESTAMP WITH TIME ZONE", "TIMESTAMPTZ")):
        return Family.TIMESTAMPTZ
    if text.startswith(("TIMESTAMP", "DATETIME")):
        return Family.TIMESTAMP
    if text == "DATE":
        return Family.DATE
    if text.startswith(("BLOB", "BYTEA", "BINARY", "VARBINARY")):
        return Family.BINARY
    if text.startswith("JSON"):
        return Family.JSON
    return Family.TEXT  # VARCHAR, TEXT, CHARACTER VARYING, CHAR, anything unknown


#: Column types tables are created with, by dialect.
SQL_TYPES: dict[str, dict[Family, str]] = {
    "duckdb": {
        Family.BOOLEAN: "BOOLEAN",
        Family.INTEGER: "BIGINT",
        Family.FLOAT: "DOUBLE",
        Family.DECIMAL: "DECIMAL(38, 9)",
        Family.TEXT: "VARCHAR",
        Family.DATE: "DATE",
        Family.TIMESTAMP: "TIMESTAMP",
        Family.TIMESTAMPTZ: "TIMESTAMPTZ",
        Family.BINARY: "BLOB",
        Family.JSON: "JSON",
        Family.NULL: "VARCHAR",
    },
    "postgresql": {
        Family.BOOLEAN: "boolean",
        Family.INTEGER: "bigint",
        Family.FLOAT: "double precision",
        Family.DECIMAL: "numeric",
        Family.TEXT: "text",
        Family.DATE: "date",
        Family.TIMESTAMP: "timestamp",
        Family.TIMESTAMPTZ: "timestamptz",
        Family.BINARY: "bytea",
        Family.JSON: "jsonb",
        Family.NULL: "text",
    },
    "sqlite": {
        Family.BOOLEAN: "BOOLEAN",
        Family.INTEGER: "INTEGER",
        Family.FLOAT: "REAL",
        Family.DECIMAL: "NUMERIC",
        Family.TEXT: "TEXT",
        Family.DATE: "DATE",
        Family.TIMESTAMP: "TIMESTAMP",
        Family.TIMESTAMPTZ: "TIMESTAMP",
        Family.BINARY: "BLOB",
        Family.JSON: "TEXT",
        Family.NULL: "TEXT",
    },
}


def sql_type(arrow_type: pa.DataType, dialect: str) -> str:
    """The column type a new column of ``arrow_type`` gets in ``dialect``."""
    family = family_of_arrow(arrow_type)
    if dialect == "duckdb" and family is Family.DECIMAL:
        return f"DECIMAL({arrow_type.precision}, {arrow_type.scale})"
    return SQL_TYPES[dialect][family]


#: (existing column family, incoming value family) pairs that store without loss of meaning.
_WIDENINGS = {
    (Family.FLOAT, Family.INTEGER),
    (Family.DECIMAL, Family.INTEGER),
    (Family.FLOAT, Family.DECIMAL),
    (Family.DECIMAL, Family.FLOAT),
    (Family.TIMESTAMP, Family.DATE),
    (Family.TIMESTAMPTZ, Family.TIMESTAMP),
    (Family.TIMESTAMP, Family.TIMESTAMPTZ),
    (Family.JSON, Family.TEXT),
    (Family.TEXT, Family.JSON),
}


def fits(existing: Family, incoming: Family) -> bool:
    """Whether values of ``incoming`` family can go into a column of ``existing`` family."""
    return incoming is Family.NULL or existing is incoming or (existing, incoming) in _WIDENINGS


def plan_columns(
    table: str, existing: dict[str, str], schema: pa.Schema, dialect: str
) -> list[tuple[str, str]]:
    """Columns to add to ``table`` (name, SQL type) before loading ``schema``.

    ``existing`` maps the table's column names to their declared types. Names match
    case-insensitively, as unquoted SQL names do. Raises ``SchemaConflict`` on the first
    column whose incoming values do not fit.
    """
    by_lower = {name.lower(): (name, declared) for name, declared in existing.items()}
    to_add: list[tuple[str, str]] = []
    for arrow_field in schema:
        found = by_lower.get(arrow_field.name.lower())
        if found is None:
            to_add.append((arrow_field.name, sql_type(arrow_field.type, dialect)))
            continue
        name, declared = found
        incoming = family_of_arrow(arrow_field.type)
        if not fits(family_of_sql(declared), incoming):
            raise SchemaConflict(table, name, declared, str(arrow_field.type))
    return to_add
