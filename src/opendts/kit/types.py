"""Column types shared by every table."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, Integer
from sqlalchemy.types import TypeDecorator

from opendts.kit.clock import as_utc

# SQLite only auto-increments an INTEGER PRIMARY KEY (which is 64-bit anyway).
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UtcDateTime(TypeDecorator[object]):
    """A timestamp that always comes back timezone-aware in UTC, whatever the backend."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: object, dialect: object) -> object:
        if isinstance(value, datetime):
            return as_utc(value)
        return value

    def process_result_value(self, value: object, dialect: object) -> object:
        if isinstance(value, datetime):
            return as_utc(value)
        return value
