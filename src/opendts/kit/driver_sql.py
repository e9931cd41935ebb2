"""Hot-path reads straight on the DBAPI cursor, still written as SQLAlchemy Core.

SQLAlchemy's result layer costs a few microseconds per row and per execute; on a request that
fetches 100 rows that is a good share of the whole request. A ``DriverQuery`` compiles its
statement once per dialect and runs it on the session's own DBAPI connection (inside the same
transaction), returning plain tuples. Use it only where a profile says so.

On a ``Database.read`` connection, ``rows(..., reuse=True)`` returns the rows this connection
fetched last time for the same parameters when the database has not changed since (its
``change_token``, read before the statement would run): correct at every moment, and free
while nothing is written. Only SQLite has a cheap token; elsewhere the statement always runs.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from sqlalchemy import Dialect
from sqlalchemy.engine.interfaces import Compiled
from sqlalchemy.orm import Session
from sqlalchemy.sql import ClauseElement

from opendts.kit.db import Reader

#: Results kept per driver connection (least recently used dropped first): a few teams' lists.
MEMO_SIZE = 16
_MEMO = "opendts.driver_sql.memo"


class DriverQuery:
    """A Core SELECT, built and compiled once per dialect, executed on the raw cursor."""

    def __init__(self, build: Callable[[str], ClauseElement]) -> None:
        self._build = build
        self._compiled: dict[str, tuple[str, Compiled]] = {}

    def rows(
        self, source: Session | Reader, *, reuse: bool = False, **params: Any
    ) -> list[tuple[Any, ...]]:
        """All rows for ``params`` (the statement's bind parameters, by name), in the session's
        transaction or on a ``Database.read`` connection (with ``reuse``, maybe the rows of
        an earlier identical read on it: see the module's docstring). Do not mutate them."""
        if isinstance(source, Reader):
            token = source.change_token() if reuse else None
            if token is None:
                return self._run(source.dialect, source.connection, params)
            memo: OrderedDict[Any, Any] = source.memo.setdefault(_MEMO, OrderedDict())
            key = (id(self), tuple(sorted(params.items())))
            kept = memo.get(key)
            if kept is not None and kept[0] == token:
                memo.move_to_end(key)
                rows: list[tuple[Any, ...]] = kept[1]
                return rows
            rows = self._run(source.dialect, source.connection, params)
            memo[key] = (token, rows)
            memo.move_to_end(key)
            while len(memo) > MEMO_SIZE:
                memo.popitem(last=False)
            return rows
        connection = source.connection()
        dbapi_connection = connection.connection.dbapi_connection
        return self._run(connection.dialect, dbapi_connection, params)

    def _run(
        self, dialect: Dialect, dbapi_connection: Any, params: dict[str, Any]
    ) -> list[tuple[Any, ...]]:
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
