"""Prometheus metrics: runs by status, queue depth and age, run durations, API latency.

Every app and every worker builds its own ``CollectorRegistry`` (``api_registry``,
``worker_registry``): nothing is registered in prometheus_client's global registry, so a process
(a test session) may create any number of apps without duplicate-metric errors.

What is measured where:

* **From the database, at scrape time** (``QueueCollector``): ``opendts_runs{status}``,
  ``opendts_queue_depth`` and ``opendts_queue_oldest_age_seconds``. QUEUED and RUNNING are read
  on every scrape: their rows are few and sit in the partial indexes ``ix_transfer_runs_queued``
  and ``ix_transfer_runs_running`` (the predicate is repeated literally so that SQLite uses
  them). COMPLETED, FAILED and CANCELLED are the whole history: counting them is a
  ``GROUP BY`` over the table, which grows without bound, so that count is cached for
  ``FINAL_COUNTS_TTL`` (10 s) per process; a scrape every 15 s therefore pays for it at most once,
  and several API processes scraped together run it once each per period. Those three values
  may lag by up to 10 s, which is fine for a gauge graphed over minutes; for exact per-process
  rates use ``opendts_engine_runs_finished_total``, which needs no database at all.
* **In the engine, when a finished attempt is written** (``RunMetrics``, one per process, shared
  by every engine and registry of the process): ``opendts_run_duration_seconds{outcome}`` and
  ``opendts_engine_runs_finished_total{outcome}``.
* **In the API middleware** (``ApiMetrics``, one per app):
  ``opendts_http_request_duration_seconds{method, route, status}``, labelled by route template
  (``/v1/teams/{team_id}/backfills``), never by raw path.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import and_, case, func, literal_column, select, text
from sqlalchemy.exc import SQLAlchemyError

from opendts.kit.clock import as_utc, utcnow
from opendts.kit.db import Database
from opendts.runs.models import TransferRun
from opendts.transfers.models import Transfer, TransferState

#: How long the (history-sized) counts of COMPLETED, FAILED and CANCELLED runs are reused.
FINAL_COUNTS_TTL = 10.0

RUN_STATUSES = ("QUEUED", "RUNNING", "COMPLETED", "FAILED", "CANCELLED")
FINAL_STATUSES = ("COMPLETED", "FAILED", "CANCELLED")

#: Runs take from milliseconds (a day of a small source) to hours (the run timeout is 6 h).
RUN_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600)
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

DEPTH_HELP = "Queued runs a worker may claim now (due, transfer not paused)."
AGE_HELP = "How long the longest-waiting claimable queued run has waited (0: none)."

#: The route label of requests no route matched (404s): raw paths would explode cardinality.
UNMATCHED = "unmatched"


class RunMetrics:
    """What this process's engines observed as attempts finished (not registered anywhere)."""

    def __init__(self) -> None:
        self.duration = Histogram(
            "opendts_run_duration_seconds",
            "Duration of finished run attempts executed by this process, by outcome.",
            ["outcome"],
            buckets=RUN_BUCKETS,
            registry=None,
        )
        self.finished = Counter(
            "opendts_engine_runs_finished_total",
            "Run attempts this process finished and wrote, by outcome (completed, failed, "
            "retry, lost, released, cancelled).",
            ["outcome"],
            registry=None,
        )

    def observe(self, outcome: str, duration: float | None) -> None:
        """One attempt ended with ``outcome``; ``duration`` is None for a release."""
        self.finished.labels(outcome).inc()
        if duration is not None:
            self.duration.labels(outcome).observe(duration)

    def collectors(self) -> tuple[Collector, ...]:
        """The collectors to register in a registry."""
        return (self.duration, self.finished)


#: The process's run metrics: engines observe into it, every registry of the process shows it.
RUNS = RunMetrics()


class QueueCollector(Collector):
    """Runs by status, queue depth and the oldest queued run's age, read at scrape time."""

    def __init__(self, db: Database, *, ttl: float = FINAL_COUNTS_TTL) -> None:
        self.db = db
        self.ttl = ttl
        self._final: dict[str, int] = {}
        self._final_at = -float("inf")
        self._lock = threading.Lock()

    def describe(self) -> Iterable[Metric]:
        # Describing without a database query: registration must not touch the database.
        return [
            GaugeMetricFamily("opendts_runs", "Transfer runs by status.", labels=["status"]),
            GaugeMetricFamily(
                "opendts_queue_depth",
                DEPTH_HELP,
            ),
            GaugeMetricFamily(
                "opendts_queue_oldest_age_seconds",
                AGE_HELP,
            ),
            GaugeMetricFamily("opendts_metrics_database_up", "Whether the scrape read the DB."),
        ]

    def _live(self, now: datetime) -> tuple[int, int, int, datetime | None]:
        runs = TransferRun.__table__.c
        # Claimable: its (retry) time has come and its transfer is not paused (a paused
        # transfer's runs wait on purpose and must not look like a stuck queue).
        paused = select(Transfer.id).where(Transfer.state != TransferState.ACTIVE.value)
        ready = and_(runs.available_at <= now, runs.transfer_id.not_in(paused))
        # Literal predicates: SQLite uses a partial index only when the query repeats it.
        queued = select(
            func.count(),
            func.coalesce(func.sum(case((ready, 1), else_=0)), 0),
            func.min(case((ready, runs.available_at), else_=None)),
        ).where(text("status = 'QUEUED'"))
        running = select(func.count()).select_from(TransferRun).where(text("status = 'RUNNING'"))
        with self.db.session() as session:
            total, available, oldest = session.execute(queued).one()
            busy = session.execute(running).scalar_one()
        return int(total), int(available), int(busy), _as_datetime(oldest)

    def _final_counts(self) -> dict[str, int]:
        with self._lock:
            if time.monotonic() - self._final_at < self.ttl:
                return self._final
            status = TransferRun.__table__.c.status
            query = (
                select(status, func.count())
                .where(status.in_([literal_column(f"'{s}'") for s in FINAL_STATUSES]))
                .group_by(status)
            )
            with self.db.session() as session:
                counts = {str(s): int(n) for s, n in session.execute(query).all()}
            self._final = {s: counts.get(s, 0) for s in FINAL_STATUSES}
            self._final_at = time.monotonic()
            return self._final

    def collect(self) -> Iterator[Metric]:
        now = utcnow()
        up = GaugeMetricFamily("opendts_metrics_database_up", "Whether the scrape read the DB.")
        try:
            queued, available, running, oldest = self._live(now)
            final = self._final_counts()
        except SQLAlchemyError:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        by_status = GaugeMetricFamily(
            "opendts_runs",
            "Transfer runs by status (COMPLETED, FAILED, CANCELLED cached for 10 s).",
            labels=["status"],
        )
        for status, value in (("QUEUED", queued), ("RUNNING", running), *final.items()):
            by_status.add_metric([status], value)
        yield by_status
        yield GaugeMetricFamily(
            "opendts_queue_depth",
            DEPTH_HELP,
            value=available,
        )
        age = max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0
        yield GaugeMetricFamily(
            "opendts_queue_oldest_age_seconds",
            AGE_HELP,
            value=age,
        )


def _as_datetime(value: object) -> datetime | None:
    """A timestamp from a raw aggregate (SQLite returns text, PostgreSQL a datetime)."""
    if value is None:
        return None
    parsed = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return as_utc(parsed)


class ApiMetrics:
    """API request latency of one app, by method, route template and status code."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.latency = Histogram(
            "opendts_http_request_duration_seconds",
            "API request latency by method, route template and status code.",
            ["method", "route", "status"],
            buckets=HTTP_BUCKETS,
            registry=registry,
        )

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """One response was sent."""
        self.latency.labels(method, route, str(status)).observe(seconds)


def worker_registry(db: Database) -> CollectorRegistry:
    """What ``opendts worker --metrics-port`` serves: the queue and this process's runs."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(QueueCollector(db))
    for collector in RUNS.collectors():
        registry.register(collector)
    return registry


def api_registry(db: Database) -> tuple[CollectorRegistry, ApiMetrics]:
    """An app's registry (queue, runs of any in-process engine) and its request metrics."""
    registry = worker_registry(db)
    return registry, ApiMetrics(registry)
