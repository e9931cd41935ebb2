"""Hot-path reads straight on the DBAPI cursor, still written as SQLAlchemy Core.

SQLAlchemy's result layer costs a few microseconds per row and per execute; on a request that
fetches 100 rows that is a good share of the whole request. A ``DriverQuery`` compiles its
statement once per dialect and runs it on the session's own DBAPI connection (inside the same
transaction), returning plain tuples. Use it only where a profile says so.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.engine.interfaces import Compiled
from sqlalchemy.orm import Session
from sqlalchemy.sql import ClauseElement

from opendts.kit.db import Reader


class DriverQuery:
    """A Core SELECT, built and compiled once per dialect, executed on the raw cursor."""

    def __init__(self, build: Callable[[str], ClauseElement]) -> None:
        self._build = build
        self._compiled: dict[str, tuple[str, Compiled]] = {}

    def rows(self, source: Session | Reader, **params: Any) -> list[tuple[Any, ...]]:
        """All rows for ``params`` (the statement's bind parameters, by name), in the session's
        transaction or on a ``Database.read`` connection."""
        if isinstance(source, Reader):
            dialect, dbapi_connection = source.dialect, source.connection
        else:
            connection = source.connection()
            dialect = connection.dialect
            dbapi_connection = connection.connection.dbapi_connection
        entry = self._compiled.get(dialect.name)
        if entry is None:
            fresh: Compiled = self._build(dialect.name).compile(dialect=dialect)
            entry = self._compiled[dialect.name] = (str(fresh), fresh)
        sql, compiled = entry
        values = compiled.construct_params(params)
        assert values is not None
        positions = getattr(compiled, "positiontup", None)
        arguments: Any = tuple(values[name] for name in positions) if positions else values
        assert dbapi_connection is not None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(sql, arguments)
            return list(cursor.fetchall())
        finally:
            cursor.close()
