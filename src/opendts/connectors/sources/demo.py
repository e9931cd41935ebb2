"""``demo``: deterministic synthetic ad metrics per account, campaign and date.

The same settings and date always give the same rows (numpy's PCG64 seeded by the seed, the
date and, after the first ``CHUNK_ROWS`` rows, the chunk's number), so a test or a user can
check that a warehouse holds exactly what the source says, whatever the retries. A day is
generated ``CHUNK_ROWS`` rows at a time: a day of millions of rows never sits in memory.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from datetime import date
from typing import ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from opendts.connectors.base import ConnectorSettings, ReadRequest
from opendts.engine.errors import TransientRunError

DEFAULT_ACCOUNTS = ("demo-account-1", "demo-account-2")
#: Rows generated at a time.
CHUNK_ROWS = 65_536

SCHEMA = pa.schema(
    [
        ("date", pa.date32()),
        ("account_id", pa.string()),
        ("campaign_id", pa.string()),
        ("campaign_name", pa.string()),
        ("impressions", pa.int64()),
        ("clicks", pa.int64()),
        ("cost", pa.float64()),
        ("conversions", pa.int64()),
    ]
)

_ADJECTIVES = ("Spring", "Summer", "Autumn", "Winter", "Brand", "Search", "Retargeting", "Promo")
_NOUNS = ("Launch", "Sale", "Awareness", "Leads", "Video", "Display", "Shopping", "Apps")


class DemoSettings(ConnectorSettings):
    """How much synthetic data a day has, and how often reading it fails."""

    rows_per_day: int = Field(default=1000, ge=0, le=10_000_000)
    #: Accounts to generate rows for; the transfer's accounts, or two demo accounts, if empty.
    accounts: list[str] = Field(default_factory=list, max_length=1000)
    #: Probability that an attempt fails with a transient error (deterministic per attempt).
    failure_rate: float = Field(default=0.0, ge=0, le=1)
    #: Simulated source latency per read, in milliseconds.
    latency_ms: float = Field(default=0.0, ge=0, le=600_000)
    seed: int = 0
    batch_rows: int = Field(default=100_000, ge=1, le=10_000_000)


def _dimensions(
    start: int, stop: int, accounts: tuple[str, ...]
) -> tuple[pa.Array, pa.Array, pa.Array]:
    """account_id, campaign_id and campaign_name of rows ``start`` to ``stop`` of any date."""
    index = np.arange(start, stop)
    per_account = index % len(accounts)
    campaign = index // len(accounts)
    account_ids = pc.take(pa.array(accounts, pa.string()), pa.array(per_account))
    if not len(index):
        empty = pa.array([], pa.string())
        return account_ids, empty, empty
    first, last = int(campaign[0]), int(campaign[-1])
    numbers = range(first, last + 1)
    ids = pa.array([f"cmp-{n:06d}" for n in numbers], pa.string())
    names = pa.array(
        [
            f"{_ADJECTIVES[n % len(_ADJECTIVES)]} {_NOUNS[(n // 8) % len(_NOUNS)]} {n}"
            for n in numbers
        ],
        pa.string(),
    )
    positions = pa.array(campaign - first)
    return account_ids, pc.take(ids, positions), pc.take(names, positions)


def _chunk(
    settings: DemoSettings, day: date, accounts: tuple[str, ...], number: int, rows: int
) -> pa.RecordBatch:
    """Rows ``number * CHUNK_ROWS`` onwards (``rows`` of them) of the day."""
    key = [settings.seed & 0xFFFFFFFF, day.toordinal()] + ([number] if number else [])
    rng = np.random.Generator(np.random.PCG64(key))
    impressions = rng.integers(100, 100_000, rows, dtype=np.int64)
    ctr = rng.uniform(0.005, 0.08, rows)
    clicks = rng.binomial(impressions, ctr).astype(np.int64)
    cost = np.round(clicks * rng.uniform(0.2, 3.0, rows), 2)
    conversions = rng.binomial(clicks, 0.05).astype(np.int64)
    start = number * CHUNK_ROWS
    account_ids, campaign_ids, campaign_names = _dimensions(start, start + rows, accounts)
    dates = pa.array(np.full(rows, day.toordinal() - date(1970, 1, 1).toordinal(), np.int32))
    return pa.RecordBatch.from_arrays(
        [
            dates.cast(pa.date32()),
            account_ids,
            campaign_ids,
            campaign_names,
            pa.array(impressions),
            pa.array(clicks),
            pa.array(cost),
            pa.array(conversions),
        ],
        schema=SCHEMA,
    )


def batches(
    settings: DemoSettings, day: date, accounts: tuple[str, ...]
) -> Iterator[pa.RecordBatch]:
    """The day's rows, ``CHUNK_ROWS`` at a time (never the whole day at once)."""
    total = settings.rows_per_day
    for number in range((total + CHUNK_ROWS - 1) // CHUNK_ROWS):
        yield _chunk(settings, day, accounts, number, min(CHUNK_ROWS, total - number * CHUNK_ROWS))


def generate(settings: DemoSettings, day: date, accounts: tuple[str, ...]) -> pa.Table:
    """The day's rows, deterministic for (settings.seed, day, accounts, rows_per_day)."""
    return pa.Table.from_batches(list(batches(settings, day, accounts)), SCHEMA)


def _slices(batch: pa.RecordBatch, rows: int) -> Iterator[pa.RecordBatch]:
    for offset in range(0, batch.num_rows, rows):
        yield batch.slice(offset, rows)


class DemoSource:
    """Synthetic ad metrics: configurable volume, latency and failure rate."""

    name: ClassVar[str] = "demo"
    title: ClassVar[str] = "Demo ad metrics"
    Settings: ClassVar[type[ConnectorSettings]] = DemoSettings

    def read(self, settings: DemoSettings, request: ReadRequest) -> Iterator[pa.RecordBatch]:
        if settings.latency_ms and request.cancelled.wait(settings.latency_ms / 1000):
            raise TransientRunError("The read was interrupted before it finished.")
        if settings.failure_rate:
            key = f"{settings.seed}:{request.data_date}:{request.attempt}".encode()
            if (zlib.crc32(key) % 1_000_000) / 1_000_000 < settings.failure_rate:
                raise TransientRunError(
                    f"The demo source failed to answer for {request.data_date} "
                    "(simulated outage; it is retried)."
                )
        accounts = tuple(settings.accounts) or request.accounts or DEFAULT_ACCOUNTS
        for chunk in batches(settings, request.data_date, accounts):
            if request.cancelled.is_set():
                raise TransientRunError("The read was interrupted before it finished.")
            yield from _slices(chunk, settings.batch_rows)
