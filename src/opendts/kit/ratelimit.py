"""Per-key hourly request budget, backed by the maintained ``limits`` library.

Where the counters live decides who shares a budget: ``sqlite:///<file>`` (the default, a file
in the data folder; ``kit.ratelimit_sqlite``) is shared by every process on the machine, so
``opendts serve --workers N`` gives a key its budget once, not N times; ``redis://`` shares it
between machines; ``memory://`` keeps it in one process. ``per_minute`` makes further budgets
(failed authentications and sign-ins per client address) in the same storage, so they are
shared the same way.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass

from limits import RateLimitItem, RateLimitItemPerHour, RateLimitItemPerMinute
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter

from opendts.kit.ratelimit_sqlite import SQLiteStorage

#: The contract caps ``X-RateLimit-Limit`` and ``X-RateLimit-Remaining`` at 10,000. A larger
#: configured budget is enforced as configured, but reported capped, so strict clients still
#: parse the headers (they then under-estimate what is left, which is harmless).
HEADER_MAX = 10_000


@dataclass(frozen=True, slots=True)
class RateLimitState:
    """What the response headers report about one key's budget."""

    limit: int
    remaining: int
    retry_after: int
    allowed: bool


class RateLimiter:
    """Counts requests per API key in fixed one-hour windows."""

    def __init__(self, per_hour: int, storage_url: str = "memory://") -> None:
        self.item: RateLimitItem = RateLimitItemPerHour(per_hour)
        self.storage = storage_from_string(storage_url)
        #: Whether ``hit`` stays on this machine (no network round trip): memory, or a file.
        self.local = isinstance(self.storage, SQLiteStorage) or storage_url.startswith("memory:")
        self.strategy = FixedWindowRateLimiter(self.storage)
        #: Prefix of the identities this budget counts (``key:<lookup id>``).
        self.namespace = "key"

    def per_minute(self, amount: int, namespace: str) -> RateLimiter:
        """Another budget, ``amount`` a minute per identity of ``namespace``, kept in this
        limiter's storage."""
        other = copy.copy(self)
        other.item = RateLimitItemPerMinute(amount)
        other.namespace = namespace
        return other

    def hit(self, key: str) -> RateLimitState:
        """Spend one request of ``key``'s budget and report what is left."""
        identity = f"{self.namespace}:{key}"
        if isinstance(self.storage, SQLiteStorage):
            # One statement instead of the strategy's three (spend, read, read expiry).
            spent, reset_time = self.storage.spend(
                self.item.key_for("opendts", identity), self.item.get_expiry()
            )
            allowed, remaining = spent <= self.item.amount, self.item.amount - spent
        else:
            allowed = self.strategy.hit(self.item, "opendts", identity)
            stats = self.strategy.get_window_stats(self.item, "opendts", identity)
            reset_time, remaining = stats.reset_time, stats.remaining
        retry_after = max(1, math.ceil(reset_time - time.time()))
        return RateLimitState(
            limit=min(self.item.amount, HEADER_MAX),
            remaining=min(max(0, remaining), HEADER_MAX),
            retry_after=min(retry_after, 3600),
            allowed=allowed,
        )

    def reset(self) -> None:
        """Forget every counter (tests)."""
        self.storage.reset()
