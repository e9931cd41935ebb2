"""Per-key hourly request budget, backed by the maintained ``limits`` library.

In-memory storage serves one API process; a ``redis://`` URL shares the budget between
several API processes. ``per_minute`` makes further budgets (failed authentications and
sign-ins per client address) in the same storage, so they are shared the same way.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass

from limits import RateLimitItem, RateLimitItemPerHour, RateLimitItemPerMinute
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter

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
        #: Whether ``hit`` stays in this process (no network round trip).
        self.local = storage_url.startswith("memory://")
        self.storage = storage_from_string(storage_url)
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
        allowed = self.strategy.hit(self.item, "opendts", identity)
        stats = self.strategy.get_window_stats(self.item, "opendts", identity)
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        return RateLimitState(
            limit=min(self.item.amount, HEADER_MAX),
            remaining=min(max(0, stats.remaining), HEADER_MAX),
            retry_after=min(retry_after, 3600),
            allowed=allowed,
        )

    def reset(self) -> None:
        """Forget every counter (tests)."""
        self.storage.reset()
