"""The engine: planner, dispatcher, executor pool, heartbeats and reaper of one process.

One loop thread talks to the queue (plan a batch, write finished attempts, claim runs); a pool
of threads executes runs; a housekeeping thread renews leases and reaps expired ones; on
PostgreSQL a listener thread turns ``NOTIFY`` into wake-ups. Nothing holds a database
transaction while a run executes.
"""

from __future__ import annotations

import json
import logging
import os
import queue as stdqueue
import random
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from secrets import token_hex
from typing import Any, TypeVar

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from opendts.engine import queue
from opendts.engine.errors import TerminalRunError, classify
from opendts.engine.kinds import RunContext, RunKind, get_kind
from opendts.engine.processes import RunProcesses
from opendts.kit import logs, metrics
from opendts.kit.clock import utcnow
from opendts.kit.db import Database
from opendts.settings import Settings

log = logging.getLogger("opendts.engine")
T = TypeVar("T")


def new_owner_id() -> str:
    """A worker identity that is unique per process start: host, pid and a random tag."""
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{token_hex(4)}"


def backoff_seconds(
    attempt: int, base: float, cap: float, rng: random.Random | None = None
) -> float:
    """Exponential back-off with "equal jitter": half fixed, half random."""
    delay = float(min(cap, base * 2.0 ** max(0, attempt - 1)))
    jitter: float = (rng or random).uniform(0, delay / 2)
    return delay / 2 + jitter


@dataclass(slots=True)
class _InFlight:
    claimed: queue.Claimed
    context: RunContext
    deadline: float
    #: ``time.monotonic()`` when the attempt was handed to the pool.
    started: float = 0.0
    future: Future[None] | None = None
    #: Set once the engine stopped waiting for this attempt (timeout, lost lease, shutdown).
    abandoned: bool = False
    #: Set once the attempt produced its outcome (written at the loop's next turn).
    finished: bool = False


class _LazyLoadKind:
    """The ``load`` kind, imported at its first run: Arrow and the drivers weigh ~60 MB, and
    an engine that only runs ``noop`` or ``fault`` transfers never needs them."""

    name = "load"

    def __init__(self, db: Database, settings: Settings, processes: RunProcesses) -> None:
        self._db = db
        self._settings = settings
        self._processes = processes
        self._kind: RunKind | None = None
        self._lock = threading.Lock()

    def _get(self) -> RunKind:
        with self._lock:
            if self._kind is None:
                from opendts.connectors.boundary import Boundary
                from opendts.connectors.load import LoadKind
                from opendts.kit.secrets import box_for

                settings = self._settings
                self._kind = LoadKind(
                    self._db,
                    lambda: box_for(settings.data_dir, settings.secret_key),
                    lambda team_id: Boundary.for_team(settings, team_id),
                    self._processes if settings.run_processes else None,
                )
            return self._kind

    def prepare(self, config: dict[str, Any]) -> Any:
        return self._get().prepare(config)

    def execute(self, ctx: RunContext, settings: Any) -> Any:
        return self._get().execute(ctx, settings)


def _process_kinds(db: Database, settings: Settings, processes: RunProcesses) -> dict[str, RunKind]:
    """Run kinds bound to this engine's database and data folder (data transfers, loaded in
    the engine's run processes)."""
    return {"load": _LazyLoadKind(db, settings, processes)}


@dataclass(slots=True)
class EngineStats:
    """Counters a process exposes (tests, benchmarks, metrics)."""

    claimed: int = 0
    completed: int = 0
    failed: int = 0
    retried: int = 0
    lost: int = 0
    released: int = 0
    #: Attempts written CANCELLED, and runs this engine stopped for a cancel "now".
    cancelled: int = 0
    stopped: int = 0
    planned: int = 0
    scheduled: int = 0
    reaped: int = 0
    db_errors: int = 0
    #: Queue transactions (finished attempts written and runs claimed), and time spent in them.
    cycles: int = 0
    cycle_seconds: float = 0.0
    first_claim_at: datetime | None = None


class Engine:
    """Runs transfer runs from the queue until stopped."""

    def __init__(self, db: Database, settings: Settings, *, owner: str | None = None) -> None:
        self.db = db
        self.settings = settings
        self.owner = owner or new_owner_id()
        self.concurrency = settings.worker_concurrency
        #: Extra slots for teams with nothing executing (queue.claim's ``spare``).
        self.spare = settings.worker_spare_slots
        self.caps = queue.Caps(settings.max_running_runs, settings.max_running_runs_per_team)
        self.stats = EngineStats()
        self._done: stdqueue.SimpleQueue[queue.Outcome] = stdqueue.SimpleQueue()
        self._pending: list[queue.Outcome] = []
        self._inflight: dict[int, _InFlight] = {}
        self._lock = threading.Lock()
        self._event = threading.Event()
        self._plan_hint = True
        self._claim_hint = True
        #: New work was announced: a claim with only spare slots free may find a newcomer.
        self._spare_hint = True
        self._stopping = threading.Event()
        self._closed = threading.Event()
        #: A cancel "now" was committed in this process: look for runs to stop at once.
        self._stops_hint = threading.Event()
        self._grace_until: float | None = None
        self._pool = ThreadPoolExecutor(
            max_workers=self.concurrency * 2 + self.spare, thread_name_prefix="opendts-run"
        )
        self._prepared: dict[tuple[str, str], Any] = {}
        #: Data runs execute in these child processes (started at the first data run).
        self.processes = RunProcesses(
            self.concurrency + self.spare, settings.run_memory_mb, settings
        )
        self._kinds = _process_kinds(db, settings, self.processes)
        self._threads: list[threading.Thread] = []

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Start the loop, housekeeping and (PostgreSQL) listener threads."""
        targets: list[tuple[str, Callable[[], None]]] = [
            ("opendts-engine", self._loop),
            ("opendts-housekeeping", self._housekeeping),
        ]
        if self.db.dialect == "postgresql":
            targets.append(("opendts-listen", self._listen))
        for name, target in targets:
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        log.info(
            "engine %s started: %d slots (+%d for teams with nothing running), lease %.0fs",
            self.owner,
            self.concurrency,
            self.spare,
            self.settings.lease_seconds,
        )

    def wake(self) -> None:
        """Look at the queue now (new backfill, freed slot): the in-process wake-up."""
        self._plan_hint = True
        self._claim_hint = True
        self._spare_hint = True
        self._event.set()

    def check_stops(self) -> None:
        """A backfill was cancelled with ``"mode": "now"``: stop its runs held here now, not
        at the next heartbeat (the in-process wake-up; other engines see it at theirs)."""
        self._stops_hint.set()

    def stop(self, grace: float | None = None) -> None:
        """Stop claiming; let in-flight runs finish for ``grace`` seconds; release the rest."""
        grace = self.settings.shutdown_grace_seconds if grace is None else grace
        self._grace_until = time.monotonic() + grace
        self._stopping.set()
        self._event.set()
        for thread in self._threads:
            if thread.name == "opendts-engine":
                thread.join()
        self._closed.set()
        self._stops_hint.set()
        for thread in self._threads:
            thread.join(timeout=5)
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.processes.close()
        log.info("engine %s stopped", self.owner)

    @property
    def busy(self) -> int:
        """Runs executing now in this process."""
        with self._lock:
            return sum(1 for f in self._inflight.values() if not f.abandoned)

    # -- the loop ------------------------------------------------------------------------

    def _write(self, work: Callable[[Session], T]) -> T:
        with self.db.session(write=True) as session:
            return work(session)

    def _loop(self) -> None:
        next_poll = 0.0
        failures = 0
        while True:
            progressed = False
            try:
                self._expire_overdue()
                now = time.monotonic()
                polling = now >= next_poll
                if polling:
                    next_poll = now + self.settings.poll_seconds
                progressed = self._cycle(polling)
                if self._stopping.is_set() and not self._pending and self._drained():
                    break
                failures = 0
            except Exception as exc:
                failures += 1
                self.stats.db_errors += 1
                delay = min(5.0, 0.1 * 2**failures)
                if isinstance(exc, SQLAlchemyError):
                    log.warning(
                        "engine: database unavailable (%s); retrying in %.1fs",
                        exc.__class__.__name__,
                        delay,
                    )
                else:
                    log.exception("engine: unexpected error; retrying in %.1fs", delay)
                self._event.wait(delay)
                self._event.clear()
                self._plan_hint = self._claim_hint = True
                if self._stopping.is_set() and self._grace_over():
                    break
                continue
            if progressed:
                continue
            timeout = max(0.0, next_poll - time.monotonic())
            with self._lock:
                deadlines = [f.deadline for f in self._inflight.values() if not f.abandoned]
            if deadlines:
                timeout = min(timeout, max(0.0, min(deadlines) - time.monotonic()))
            if self._stopping.is_set():
                timeout = min(timeout, 0.05)
            if self._event.wait(timeout):
                self._event.clear()

    def _cycle(self, polling: bool) -> bool:
        """One turn: plan a batch if asked, then write finished attempts and claim new runs
        in one transaction (one commit per turn, whatever the batch sizes)."""
        while True:
            try:
                self._pending.append(self._done.get_nowait())
            except stdqueue.Empty:
                break
        progressed = False
        if not self._stopping.is_set() and polling:
            self._schedule()
        if not self._stopping.is_set() and (self._plan_hint or polling):
            self._plan_hint = False
            progressed = self._plan()
        batch = self._pending
        if progressed and not batch:
            return True  # keep planning first: a backfill's runs are claimable once all exist
        with self._lock:
            finishing = sum(1 for o in batch if o.run_id in self._inflight)
            busy = len(self._inflight) - finishing
        want = max(0, self.concurrency - busy)
        spare = max(0, min(self.spare, self.concurrency + self.spare - busy))
        # Finished attempts free capacity (this process's, the transfer's, the team's): refill.
        wanted = self._claim_hint or polling or bool(batch)
        # With only spare slots free, look when new work was announced, a spare slot freed up
        # (a run finished, yet every regular slot is still busy) or at each poll; not after
        # every full claim, which brings no team that had nothing running.
        room = want > 0 or (spare > 0 and (self._spare_hint or polling or bool(batch)))
        claiming = not self._stopping.is_set() and room and wanted
        if not batch and not claiming:
            return progressed
        self._claim_hint = False
        if claiming:
            self._spare_hint = False
        now = utcnow()
        began = time.perf_counter()

        def work(session: Session) -> tuple[queue.Applied | None, list[queue.Claimed]]:
            applied = queue.apply(session, batch, now=now) if batch else None
            claimed = (
                queue.claim(
                    session,
                    owner=self.owner,
                    want=want,
                    spare=spare,
                    caps=self.caps,
                    lease_seconds=self.settings.lease_seconds,
                    now=now,
                )
                if claiming
                else []
            )
            return applied, claimed

        applied, claimed = self._write(work)
        self.stats.cycles += 1
        self.stats.cycle_seconds += time.perf_counter() - began
        self._pending = []
        if applied is not None:
            self._applied(batch, applied)
        if claimed:
            self._start(claimed, now)
            # A full batch means more may be waiting.
            self._claim_hint = len(claimed) >= want
        return progressed or bool(batch) or bool(claimed)

    def _applied(self, batch: list[queue.Outcome], result: queue.Applied) -> None:
        for outcome in batch:
            kind = outcome.result
            lost = outcome.run_id in result.lost
            metrics.RUNS.observe("lost" if lost else kind.value, outcome.duration)
            if lost:
                self.stats.lost += 1
                log.warning(
                    "run %d attempt %d: lease lost, result dropped", outcome.run_id, outcome.attempt
                )
            elif kind is queue.Result.COMPLETED:
                self.stats.completed += 1
            elif kind is queue.Result.FAILED:
                self.stats.failed += 1
            elif kind is queue.Result.RETRY:
                self.stats.retried += 1
            elif kind is queue.Result.CANCELLED:
                self.stats.cancelled += 1
            else:
                self.stats.released += 1
        with self._lock:
            for outcome in batch:
                item = self._inflight.get(outcome.run_id)
                if item is not None and item.claimed.attempt == outcome.attempt:
                    del self._inflight[outcome.run_id]
        for backfill_id, status in result.finished_backfills:
            log.info("backfill %d %s", backfill_id, status)

    def _schedule(self) -> None:
        """Queue the recurring refreshes that are due (a cheap indexed look when none is)."""
        created = self._write(
            lambda s: queue.schedule_recurring(
                s, max_attempts=self.settings.run_max_attempts, now=utcnow()
            )
        )
        if created:
            self.stats.scheduled += created
            self._claim_hint = self._spare_hint = True

    def _plan(self) -> bool:
        planned = self._write(
            lambda s: queue.plan_step(
                s,
                batch_size=self.settings.plan_batch_size,
                max_attempts=self.settings.run_max_attempts,
                now=utcnow(),
            )
        )
        if planned is None:
            return False
        self.stats.planned += planned.created
        # More of this backfill (or another) may wait to be planned; a finished plan can run.
        self._plan_hint = True
        self._claim_hint = self._claim_hint or planned.scheduled
        self._spare_hint = self._spare_hint or planned.scheduled
        return True

    def _start(self, claimed: list[queue.Claimed], now: datetime) -> None:
        if self.stats.first_claim_at is None:
            self.stats.first_claim_at = now
        self.stats.claimed += len(claimed)
        deadline = time.monotonic() + self.settings.run_timeout_seconds
        for run in claimed:
            context = RunContext(
                run.run_id,
                run.team_id,
                run.transfer_id,
                run.data_date,
                run.attempt,
                run.max_attempts,
            )
            item = _InFlight(run, context, deadline, time.monotonic())
            with self._lock:
                self._inflight[run.run_id] = item
            item.future = self._pool.submit(self._execute, item)

    # -- executing -----------------------------------------------------------------------

    def _settings_for(self, kind_name: str, config: str) -> Any:
        key = (kind_name, config)
        if key not in self._prepared:
            kind = self._kind(kind_name)
            try:
                parsed = json.loads(config or "{}")
                if not isinstance(parsed, dict):
                    raise ValueError("the transfer's config must be a JSON object")
                self._prepared[key] = kind.prepare(parsed)
            except ValueError as exc:
                self._prepared[key] = TerminalRunError(
                    f"The transfer's {kind_name} settings are invalid: {exc}. "
                    "Fix the transfer's config, then backfill again."
                )
        value = self._prepared[key]
        if isinstance(value, TerminalRunError):
            raise value
        return value

    def _kind(self, name: str) -> RunKind:
        return self._kinds.get(name) or get_kind(name)

    def _execute(self, item: _InFlight) -> None:
        run = item.claimed
        # Log records of this run (in this pool thread) carry its ids.
        with logs.context(run_id=run.run_id, backfill_id=run.backfill_id, team_id=run.team_id):
            self._execute_run(item)

    def _execute_run(self, item: _InFlight) -> None:
        run = item.claimed
        started = time.perf_counter()
        try:
            kind = self._kind(run.kind)
            result = kind.execute(item.context, self._settings_for(run.kind, run.config))
            duration = time.perf_counter() - started
            message = result.message or f"Completed {run.data_date}."
            if run.attempt > 1:
                message += f" Succeeded on attempt {run.attempt} of {run.max_attempts}."
            outcome = queue.Outcome(
                run.run_id,
                self.owner,
                run.attempt,
                queue.Result.COMPLETED,
                message,
                rows=result.rows,
                duration=round(duration, 6),
            )
        except BaseException as exc:
            duration = time.perf_counter() - started
            outcome = self._failure(run, exc, duration)
        if item.abandoned:
            return
        item.finished = True
        self._done.put(outcome)
        self._event.set()

    def _failure(self, run: queue.Claimed, exc: BaseException, duration: float) -> queue.Outcome:
        verdict = classify(exc)
        if verdict.transient and run.attempt < run.max_attempts:
            delay = (
                verdict.retry_after
                if verdict.retry_after is not None
                else backoff_seconds(
                    run.attempt, self.settings.retry_base_seconds, self.settings.retry_max_seconds
                )
            )
            retry_at = utcnow() + timedelta(seconds=delay)
            message = (
                f"Attempt {run.attempt} of {run.max_attempts} failed: {verdict.message} "
                f"Retrying in {delay:.1f} s, at {retry_at:%H:%M:%S} UTC."
            )
            return queue.Outcome(
                run.run_id,
                self.owner,
                run.attempt,
                queue.Result.RETRY,
                message,
                error=verdict.message,
                duration=round(duration, 6),
                retry_at=retry_at,
            )
        if verdict.transient:
            error = f"{verdict.message} (failed {run.attempt} attempts)"
            message = (
                f"Failed after {run.attempt} attempts: {verdict.message} "
                f"Backfill {run.data_date} again once the cause is fixed."
            )
        else:
            error = verdict.message
            message = (
                f"Failed: {verdict.message} This error is not retried; "
                f"fix the cause, then backfill {run.data_date} again."
            )
        return queue.Outcome(
            run.run_id,
            self.owner,
            run.attempt,
            queue.Result.FAILED,
            message,
            error=error,
            duration=round(duration, 6),
        )

    def _expire_overdue(self) -> None:
        """Fail (or retry) attempts that ran past the run timeout, and free their slots."""
        now = time.monotonic()
        with self._lock:
            overdue = [f for f in self._inflight.values() if not f.abandoned and f.deadline <= now]
            for item in overdue:
                item.abandoned = True
                item.context.cancelled.set()
                del self._inflight[item.claimed.run_id]
        for item in overdue:
            timeout = self.settings.run_timeout_seconds
            error = TimeoutError(
                f"the run did not finish within {timeout:g} seconds, the run time limit "
                "(OPENDTS_RUN_TIMEOUT_SECONDS), and was stopped."
            )
            self._pending.append(self._failure(item.claimed, error, timeout))

    def _grace_over(self) -> bool:
        return self._grace_until is not None and time.monotonic() >= self._grace_until

    def _drained(self) -> bool:
        """During shutdown: True once nothing is in flight (releasing what outlived the grace)."""
        with self._lock:
            left = [f for f in self._inflight.values() if not f.abandoned]
        if not left:
            return True
        if not self._grace_over():
            return False
        with self._lock:
            for item in left:
                item.abandoned = True
                item.context.cancelled.set()
                self._inflight.pop(item.claimed.run_id, None)
        released = [
            queue.Outcome(
                f.claimed.run_id,
                self.owner,
                f.claimed.attempt,
                queue.Result.RELEASED,
                "Released by a worker that was shutting down; queued to run again.",
            )
            for f in left
        ]
        self._write(lambda s: queue.apply(s, released, now=utcnow()))
        self.stats.released += len(released)
        for _ in released:
            metrics.RUNS.observe("released", None)
        log.info("engine: released %d runs still executing after the grace period", len(released))
        return True

    # -- housekeeping --------------------------------------------------------------------

    def _housekeeping(self) -> None:
        interval = self.settings.heartbeat_seconds
        due = time.monotonic() + interval
        while True:
            poked = self._stops_hint.wait(max(0.0, due - time.monotonic()))
            if self._closed.is_set():
                return
            if poked:
                self._stops_hint.clear()
                try:
                    self._heartbeat()  # renews the leases early, and stops what was marked
                except SQLAlchemyError as exc:
                    self.stats.db_errors += 1
                    log.warning("heartbeat: database unavailable (%s)", exc.__class__.__name__)
                except Exception:
                    log.exception("heartbeat: unexpected error")
                continue
            due = time.monotonic() + interval
            try:
                self._heartbeat()
                reaped = self._write(lambda s: queue.reap(s, now=utcnow()))
                if reaped.applied:
                    self.stats.reaped += len(reaped.applied)
                    log.warning(
                        "reaper: %d runs had lost their worker; re-queued", len(reaped.applied)
                    )
                    self.wake()
            except SQLAlchemyError as exc:
                self.stats.db_errors += 1
                log.warning("housekeeping: database unavailable (%s)", exc.__class__.__name__)
            except Exception:
                log.exception("housekeeping: unexpected error")

    def _heartbeat(self) -> None:
        with self._lock:
            held = [
                (f.claimed.run_id, f.claimed.attempt)
                for f in self._inflight.values()
                if not f.abandoned
            ]
        if not held:
            return
        stop: dict[tuple[int, int], int] = {}
        lost = self._write(
            lambda s: queue.heartbeat(
                s,
                owner=self.owner,
                held=held,
                lease_seconds=self.settings.lease_seconds,
                now=utcnow(),
                stop=stop,
            )
        )
        if stop:
            self._stop_runs(stop)
        if not lost:
            return
        abandoned = 0
        with self._lock:
            for run_id, attempt in lost:
                item = self._inflight.get(run_id)
                # A run that finished meanwhile was written by the loop (no longer RUNNING):
                # not lost. Its outcome, if really fenced out, is counted lost by ``apply``.
                if item is None or item.claimed.attempt != attempt or item.finished:
                    continue
                item.abandoned = True
                item.context.cancelled.set()
                del self._inflight[run_id]
                abandoned += 1
        if abandoned:
            self.stats.lost += abandoned
            log.warning(
                "engine: lost the lease of %d runs; their results will be dropped", abandoned
            )

    def _stop_runs(self, stop: dict[tuple[int, int], int]) -> None:
        """Stop runs whose backfill was cancelled with ``"mode": "now"``: their processes are
        killed (their threads told to stop), and they are written CANCELLED."""
        outcomes = []
        with self._lock:
            for (run_id, attempt), user_id in stop.items():
                item = self._inflight.get(run_id)
                if item is None or item.claimed.attempt != attempt or item.finished:
                    continue  # finished meanwhile: its own outcome is written
                item.abandoned = True
                item.context.cancelled.set()
                del self._inflight[run_id]
                elapsed = time.monotonic() - item.started
                outcomes.append(
                    queue.Outcome(
                        run_id,
                        self.owner,
                        attempt,
                        queue.Result.CANCELLED,
                        queue.stopped_message(user_id),
                        duration=round(elapsed, 6),
                    )
                )
        for outcome in outcomes:
            self._done.put(outcome)
        if outcomes:
            self.stats.stopped += len(outcomes)
            log.info("engine: stopped %d runs of cancelled backfills", len(outcomes))
            self._event.set()

    def _listen(self) -> None:
        """PostgreSQL LISTEN: a hint to look now; polling stays the fallback."""
        import psycopg

        url = self.db.engine.url.set(drivername="postgresql")
        dsn = url.render_as_string(hide_password=False)
        delay = 0.5
        while not self._closed.is_set():
            try:
                with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {queue.CHANNEL}")
                    delay = 0.5
                    self.wake()  # whatever was announced while we were not listening
                    while not self._closed.is_set():
                        for _ in conn.notifies(timeout=1.0, stop_after=1):
                            self.wake()
            except psycopg.Error as exc:
                log.info("listener: %s; reconnecting in %.1fs", exc.__class__.__name__, delay)
                self._closed.wait(delay)
                delay = min(10.0, delay * 2)
