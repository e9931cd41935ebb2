"""The engine protocol on the database: plan, claim, heartbeat, finish, reap, release.

The ``transfer_runs`` table is the queue. Every function here is one short transaction; none is
held open while a run executes. Every write to a claimed run is fenced: it applies only while
the run is still ``RUNNING`` with the same ``lease_owner`` and ``attempt``, so a worker that lost
its lease (paused, partitioned, presumed dead) can never overwrite the new owner's result.

Backfill counters move in the same transaction as the run rows they count, so a client always
reads counters equal to what the runs table says.

Lock order (PostgreSQL), to rule out deadlocks: claims take one advisory lock, then SCHEDULED
backfills, then QUEUED runs; finishes take RUNNING runs (by id) then backfills (by id); cancels
take the backfill, then its QUEUED runs. Claims skip rows another transaction holds.
"""

from __future__ import annotations

import heapq
import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import (
    CursorResult,
    Date,
    Table,
    bindparam,
    func,
    literal_column,
    select,
    text,
    true,
    tuple_,
    update,
)
from sqlalchemy.orm import Session

from opendts.backfills.models import ACTIVE_SQL, Backfill
from opendts.backfills.service import notify_workers
from opendts.backfills.status import BackfillStatus
from opendts.kit.clock import isoformat_z
from opendts.kit.types import UtcDateTime
from opendts.runs.models import RECURRING_QUEUED_SQL, RunStatus, TransferRun
from opendts.transfers.models import Transfer, TransferState

runs = cast(Table, TransferRun.__table__)
backfills = cast(Table, Backfill.__table__)
transfers = cast(Table, Transfer.__table__)

#: Any constant: the PostgreSQL advisory lock that makes claims (and their caps) exact.
CLAIM_LOCK = 7_270_002
#: The PostgreSQL channel workers LISTEN on.
CHANNEL = "opendts_work"


def _status_is(column: Any, *statuses: str) -> Any:
    # Literal, not bound: SQLite only uses a partial index when the query repeats its predicate.
    if len(statuses) == 1:
        return column == literal_column(f"'{statuses[0]}'")
    return column.in_([literal_column(f"'{s}'") for s in statuses])


QUEUED = RunStatus.QUEUED.value
RUNNING = RunStatus.RUNNING.value


@dataclass(frozen=True, slots=True)
class Caps:
    """How many runs may execute at once: everywhere, per team (per transfer is on the row)."""

    total: int
    per_team: int


@dataclass(frozen=True, slots=True)
class Claimed:
    """A run this worker now holds a lease on."""

    run_id: int
    team_id: int
    transfer_id: int
    backfill_id: int | None
    data_date: date
    attempt: int
    max_attempts: int
    kind: str
    config: str


class Result(StrEnum):
    """How an attempt ended."""

    COMPLETED = "completed"
    RETRY = "retry"
    FAILED = "failed"
    RELEASED = "released"
    #: Stopped by a cancel with ``"mode": "now"`` (or its backfill cancelled): not counted.
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class Outcome:
    """One attempt's end, to be written under the attempt's fencing token."""

    run_id: int
    owner: str
    attempt: int
    result: Result
    message: str
    error: str | None = None
    rows: int | None = None
    duration: float | None = None
    retry_at: datetime | None = None


@dataclass(slots=True)
class Applied:
    """What a batch of outcomes changed."""

    applied: set[int] = field(default_factory=set)
    lost: set[int] = field(default_factory=set)
    finished_backfills: list[tuple[int, str]] = field(default_factory=list)


def notify_sql(session: Session) -> None:
    """Wake workers listening on PostgreSQL once the current transaction commits."""
    notify_workers(session)


def _rowcount(result: Any) -> int:
    return int(cast(CursorResult[Any], result).rowcount or 0)


# -- planning ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Planned:
    """One planner step: ``created`` runs added to ``backfill_id``."""

    backfill_id: int
    created: int
    scheduled: bool


_PLAN_COLUMNS = (
    "team_id, transfer_id, backfill_id, type, data_date, status, attempt, max_attempts, "
    "available_at, created_time, queued_time, message, history"
)
_PLAN_VALUES = (
    ":team, :transfer, :backfill, 'Backfill', {date}, 'QUEUED', 0, :max_attempts, "
    ":now, :now, :now, :message, '[]'"
)
_SQLITE_DAY = "date(:newest, '-' || n || ' days')"
_PLAN_SQL = {
    "sqlite": (
        "WITH RECURSIVE seq(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM seq WHERE n + 1 < :count) "
        f"INSERT INTO transfer_runs ({_PLAN_COLUMNS}) "
        f"SELECT {_PLAN_VALUES.format(date=_SQLITE_DAY)} FROM seq"
    ),
    "postgresql": (
        f"INSERT INTO transfer_runs ({_PLAN_COLUMNS}) "
        f"SELECT {_PLAN_VALUES.format(date='CAST(:newest AS date) - n')} "
        "FROM generate_series(0, CAST(:count AS integer) - 1) AS n"
    ),
}


def _plan_sql(dialect: str) -> Any:
    return text(_PLAN_SQL[dialect]).bindparams(
        bindparam("now", type_=UtcDateTime()), bindparam("newest", type_=Date())
    )


def plan_step(
    session: Session, *, batch_size: int, max_attempts: int, now: datetime
) -> Planned | None:
    """Create the next batch of runs of one CREATED backfill, newest dates first.

    The batch and the ``runs_created`` counter commit together; the backfill becomes SCHEDULED
    in the transaction that creates its last run. Returns None when nothing is left to plan.
    """
    candidate = session.execute(
        select(
            backfills.c.id,
            backfills.c.team_id,
            backfills.c.transfer_id,
            backfills.c.range_end,
            backfills.c.runs_total,
            backfills.c.runs_created,
        )
        .where(text(ACTIVE_SQL), _status_is(backfills.c.status, BackfillStatus.CREATED.value))
        .order_by(backfills.c.id)
        .limit(1)
        .with_for_update(skip_locked=True)
    ).first()
    if candidate is None:
        return None
    count = min(batch_size, candidate.runs_total - candidate.runs_created)
    newest = candidate.range_end - timedelta(days=candidate.runs_created)
    if count > 0:
        # The dates are generated by the database: no per-row Python objects or parameters.
        session.execute(
            _plan_sql(session.get_bind().dialect.name),
            {
                "team": candidate.team_id,
                "transfer": candidate.transfer_id,
                "backfill": candidate.id,
                "newest": newest,
                "count": count,
                "max_attempts": max_attempts,
                "now": now,
                "message": "Queued: waiting for a worker.",
            },
        )
    done = candidate.runs_created + count >= candidate.runs_total
    values: dict[str, Any] = {"runs_created": backfills.c.runs_created + count}
    if done:
        values["status"] = BackfillStatus.SCHEDULED.value
    session.execute(update(backfills).where(backfills.c.id == candidate.id).values(**values))
    if done:
        notify_sql(session)
    return Planned(candidate.id, count, done)


def schedule_recurring(session: Session, *, max_attempts: int, now: datetime) -> int:
    """Queue the ``Recurring`` runs of every transfer whose schedule is due; returns how many.

    Each due transfer is taken with ``FOR UPDATE SKIP LOCKED`` and its ``next_run_at`` moved in
    the same transaction, so however many engines look, a schedule fires once. A date that
    already has a queued refresh is not queued twice; a paused transfer skips its turn.
    """
    from opendts.transfers import schedule as schedules

    due = session.execute(
        select(
            transfers.c.id,
            transfers.c.team_id,
            transfers.c.state,
            transfers.c.schedule,
            transfers.c.last_scheduled_at,
            transfers.c.created_at,
        )
        .where(transfers.c.next_run_at <= now, transfers.c.deleted_at.is_(None))
        .order_by(transfers.c.next_run_at)
        .limit(100)
        .with_for_update(skip_locked=True)
    ).all()
    created = 0
    for row in due:
        entries = schedules.entries_of(row.schedule)
        since = row.last_scheduled_at or row.created_at
        if row.state == TransferState.ACTIVE.value:
            dates = schedules.due_dates(entries, since, now)
            waiting = set(
                session.execute(
                    select(runs.c.data_date).where(
                        text(RECURRING_QUEUED_SQL), runs.c.transfer_id == row.id
                    )
                ).scalars()
            )
            fresh = [d for d in dates if d not in waiting]
            if fresh:
                session.execute(
                    runs.insert(),
                    [
                        {
                            "team_id": row.team_id,
                            "transfer_id": row.id,
                            "backfill_id": None,
                            "type": "Recurring",
                            "data_date": day,
                            "status": QUEUED,
                            "attempt": 0,
                            "max_attempts": max_attempts,
                            "available_at": now,
                            "created_time": now,
                            "queued_time": now,
                            "message": "Queued: scheduled refresh, waiting for a worker.",
                            "history": "[]",
                        }
                        for day in fresh
                    ],
                )
                created += len(fresh)
        session.execute(
            update(transfers)
            .where(transfers.c.id == row.id)
            .values(last_scheduled_at=now, next_run_at=schedules.next_run(entries, now))
        )
    if created:
        notify_sql(session)
    return created


# -- claiming ----------------------------------------------------------------------------


@dataclass(slots=True)
class _Running:
    """What executes now: counts for the caps, and which backfills (None: refreshes) run."""

    by_transfer: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    by_team: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    total: int = 0
    owners: dict[int, set[int | None]] = field(default_factory=lambda: defaultdict(set))


def _running_counts(session: Session) -> _Running:
    running = _Running()
    rows = session.execute(
        select(runs.c.team_id, runs.c.transfer_id, runs.c.backfill_id, func.count())
        .where(_status_is(runs.c.status, RUNNING))
        .group_by(runs.c.team_id, runs.c.transfer_id, runs.c.backfill_id)
    )
    for team_id, transfer_id, backfill_id, count in rows:
        running.by_transfer[transfer_id] += count
        running.by_team[team_id] += count
        running.total += count
        running.owners[transfer_id].add(backfill_id)
    return running


@dataclass(slots=True)
class _Candidate:
    transfer_id: int
    team_id: int
    max_parallel: int
    kind: str
    config: str
    backfill_ids: list[int]
    scheduled_ids: list[int]
    #: The transfer has queued ``Recurring`` runs (claimed before its backfill runs).
    recurring: bool = False


def _candidates(session: Session) -> list[_Candidate]:
    rows = session.execute(
        select(
            backfills.c.id,
            backfills.c.status,
            transfers.c.id,
            transfers.c.team_id,
            transfers.c.max_parallel_runs,
            transfers.c.kind,
            transfers.c.config,
        )
        .join(transfers, transfers.c.id == backfills.c.transfer_id)
        .where(
            text(ACTIVE_SQL),
            _status_is(
                backfills.c.status, BackfillStatus.SCHEDULED.value, BackfillStatus.RUNNING.value
            ),
            transfers.c.state == TransferState.ACTIVE.value,
            transfers.c.deleted_at.is_(None),
        )
        .order_by(backfills.c.id)
    )
    found: dict[int, _Candidate] = {}
    for backfill_id, status, transfer_id, team_id, max_parallel, kind, config in rows:
        candidate = found.get(transfer_id)
        if candidate is None:
            candidate = found[transfer_id] = _Candidate(
                transfer_id, team_id, max_parallel, kind, config, [], []
            )
        candidate.backfill_ids.append(backfill_id)
        if status == BackfillStatus.SCHEDULED.value:
            candidate.scheduled_ids.append(backfill_id)
    recurring = session.execute(
        select(
            transfers.c.id,
            transfers.c.team_id,
            transfers.c.max_parallel_runs,
            transfers.c.kind,
            transfers.c.config,
        ).where(
            transfers.c.id.in_(
                select(runs.c.transfer_id).where(text(RECURRING_QUEUED_SQL)).distinct()
            ),
            transfers.c.state == TransferState.ACTIVE.value,
            transfers.c.deleted_at.is_(None),
        )
    )
    for transfer_id, team_id, max_parallel, kind, config in recurring:
        candidate = found.get(transfer_id)
        if candidate is None:
            candidate = found[transfer_id] = _Candidate(
                transfer_id, team_id, max_parallel, kind, config, [], []
            )
        candidate.recurring = True
    return list(found.values())


def _lease(
    session: Session,
    c: _Candidate,
    backfill_ids: list[int] | None,
    limit: int,
    owner: str,
    lease_until: datetime,
    now: datetime,
    *,
    check_dates: bool,
) -> list[Any]:
    """Lease up to ``limit`` of the transfer's newest claimable runs in one statement.

    ``backfill_ids`` None means its queued ``Recurring`` runs. A date with a run already
    executing (a refresh and a backfill of the same day, or a cancelled backfill's last run)
    waits: one date is never written by two runs at once. ``check_dates`` False skips that
    look-up when the caller knows no other run of the transfer executes.
    """
    other = runs.alias("other")
    busy_date = (
        select(other.c.id)
        .where(
            other.c.transfer_id == runs.c.transfer_id,
            other.c.data_date == runs.c.data_date,
            _status_is(other.c.status, RUNNING),
        )
        .exists()
    )
    which = (
        text(RECURRING_QUEUED_SQL)
        if backfill_ids is None
        # "+ 0": filter, never index, on the backfill; the queued-runs index (transfer,
        # date) already yields rows in claim order.
        else (runs.c.backfill_id + 0).in_(backfill_ids)
    )
    chosen = (
        select(runs.c.id)
        .where(
            runs.c.transfer_id == c.transfer_id,
            _status_is(runs.c.status, QUEUED),
            runs.c.available_at <= now,
            which,
            ~busy_date if check_dates else true(),
        )
        .order_by(runs.c.data_date.desc(), runs.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    return list(
        session.execute(
            update(runs)
            .where(runs.c.id.in_(chosen))
            .values(
                status=RUNNING,
                attempt=runs.c.attempt + 1,
                lease_owner=owner,
                lease_expires_at=lease_until,
                started_time=now,
                message="Running.",
            )
            .returning(
                runs.c.id, runs.c.backfill_id, runs.c.data_date, runs.c.attempt, runs.c.max_attempts
            )
        ).all()
    )


def _room(c: _Candidate, running: _Running, caps: Caps) -> int:
    """How many more runs the transfer may start under its own and its team's caps."""
    return min(
        c.max_parallel - running.by_transfer[c.transfer_id],
        caps.per_team - running.by_team[c.team_id],
    )


def _order(c: _Candidate) -> int:
    # Refreshes only (no backfill) first, then the oldest backfill.
    return c.backfill_ids[0] if c.backfill_ids else 0


def _share(
    slots: int, candidates: list[_Candidate], running: _Running, caps: Caps, spent: set[int]
) -> dict[int, int]:
    """Deal ``slots`` one at a time, each to the team with the fewest runs executing (then
    the oldest backfill), within that team to its least busy transfer: no team is given a
    second slot while a team with work has fewer. Returns {transfer_id: slots}."""
    teams: dict[int, list[_Candidate]] = defaultdict(list)
    for c in candidates:
        if c.transfer_id not in spent and _room(c, running, caps) > 0:
            teams[c.team_id].append(c)
    load = {team: running.by_team[team] for team in teams}
    heap = [(load[team], min(_order(c) for c in cs), team) for team, cs in teams.items()]
    heapq.heapify(heap)
    given: dict[int, int] = defaultdict(int)
    while slots > 0 and heap:
        _, order, team = heapq.heappop(heap)
        open_ = [c for c in teams[team] if _room(c, running, caps) - given[c.transfer_id] > 0]
        if not open_ or load[team] >= caps.per_team:
            continue
        c = min(
            open_,
            key=lambda c: (running.by_transfer[c.transfer_id] + given[c.transfer_id], _order(c)),
        )
        given[c.transfer_id] += 1
        load[team] += 1
        slots -= 1
        heapq.heappush(heap, (load[team], order, team))
    return dict(given)


def claim(
    session: Session,
    *,
    owner: str,
    want: int,
    caps: Caps,
    lease_seconds: float,
    now: datetime,
    spare: int = 0,
) -> list[Claimed]:
    """Lease up to ``want`` runs, plus up to ``spare`` for teams with nothing executing.

    Newest dates first, within every cap, and shared fairly (docs/engine.md, "Fair share"):
    the ``want`` slots are dealt one at a time to the team with the fewest runs executing
    (counted over every engine, in this transaction), so no team gets a second slot while
    another team with work has fewer. The ``spare`` slots are this engine's reserve for teams
    that have no run executing anywhere: one run each, so a newcomer starts at this claim even
    when another team's slow runs hold every other slot.
    """
    if want <= 0 and spare <= 0:
        return []
    postgres = session.get_bind().dialect.name == "postgresql"
    if postgres:
        session.execute(text(f"SELECT pg_advisory_xact_lock({CLAIM_LOCK})"))
    candidates = _candidates(session)
    if not candidates:
        return []
    running = _running_counts(session)
    lease_until = now + timedelta(seconds=lease_seconds)
    claimed: list[Claimed] = []
    started_backfills: list[int] = []
    #: Transfers that yielded fewer runs than asked: nothing more to take from them now.
    spent: set[int] = set()
    by_id = {c.transfer_id: c for c in candidates}

    def take(c: _Candidate, count: int) -> int:
        picked = []
        if c.recurring:
            # Scheduled refreshes go first: they keep recent data fresh while backfills wait.
            picked += _lease(session, c, None, count, owner, lease_until, now, check_dates=True)
        if c.backfill_ids and count - len(picked) > 0:
            if c.scheduled_ids and postgres:
                # A cancel holds the backfill before its runs; so must we (see the module doc).
                locked = session.execute(
                    select(backfills.c.id)
                    .where(backfills.c.id.in_(c.scheduled_ids))
                    .where(_status_is(backfills.c.status, BackfillStatus.SCHEDULED.value))
                    .order_by(backfills.c.id)
                    .with_for_update()
                ).scalars()
                c.scheduled_ids = list(locked)
            # Another run may hold one of these dates only if a refresh (or a run of a backfill
            # no longer active, e.g. cancelled) executes: only then is each date looked up.
            foreign = running.owners[c.transfer_id] - set(c.backfill_ids)
            picked += _lease(
                session,
                c,
                c.backfill_ids,
                count - len(picked),
                owner,
                lease_until,
                now,
                check_dates=bool(foreign) or c.recurring,
            )
        if len(picked) < count:
            spent.add(c.transfer_id)
        picked = sorted(picked, key=lambda row: (row.data_date, -row.id), reverse=True)
        for row in picked:
            claimed.append(
                Claimed(
                    row.id,
                    c.team_id,
                    c.transfer_id,
                    row.backfill_id,
                    row.data_date,
                    row.attempt,
                    row.max_attempts,
                    c.kind,
                    c.config,
                )
            )
            running.owners[c.transfer_id].add(row.backfill_id)
        started = {row.backfill_id for row in picked}
        started_backfills.extend(b for b in c.scheduled_ids if b in started)
        running.by_transfer[c.transfer_id] += len(picked)
        running.by_team[c.team_id] += len(picked)
        running.total += len(picked)
        return len(picked)

    # The engine's slots, dealt fairly; again while a transfer came up short (its runs wait
    # for a retry time or another run's date) and other work could use what it left.
    while (slots := min(want - len(claimed), caps.total - running.total)) > 0:
        shares = _share(slots, candidates, running, caps, spent)
        asked = sum(shares.values())
        if not asked or sum(take(by_id[t], n) for t, n in shares.items()) == asked:
            break
    # The reserve: one run for each team with nothing executing, oldest backfill first.
    reserve = min(spare, caps.total - running.total)
    idle = sorted(
        (c for c in candidates if running.by_team[c.team_id] == 0 and c.transfer_id not in spent),
        key=_order,
    )
    for c in idle:
        if reserve <= 0:
            break
        if running.by_team[c.team_id] == 0 and _room(c, running, caps) > 0 and take(c, 1):
            reserve -= 1
    if started_backfills:
        session.execute(
            update(backfills)
            .where(backfills.c.id.in_(sorted(set(started_backfills))))
            .where(_status_is(backfills.c.status, BackfillStatus.SCHEDULED.value))
            .values(status=BackfillStatus.RUNNING.value, start_time=now)
        )
    return claimed


# -- heartbeats --------------------------------------------------------------------------


def heartbeat(
    session: Session,
    *,
    owner: str,
    held: Sequence[tuple[int, int]],
    lease_seconds: float,
    now: datetime,
    stop: dict[tuple[int, int], int] | None = None,
) -> set[tuple[int, int]]:
    """Extend the leases of ``held`` ``(run_id, attempt)`` pairs; returns the ones lost.

    ``stop``, if given, receives the held runs someone asked to stop (a cancel with
    ``"mode": "now"``), each with the user who asked.
    """
    if not held:
        return set()
    kept = session.execute(
        update(runs)
        .where(
            runs.c.lease_owner == owner,
            _status_is(runs.c.status, RUNNING),
            tuple_(runs.c.id, runs.c.attempt).in_(list(held)),
        )
        .values(lease_expires_at=now + timedelta(seconds=lease_seconds))
        .returning(runs.c.id, runs.c.attempt, runs.c.cancel_requested_by)
    ).all()
    if stop is not None:
        for row in kept:
            if row.cancel_requested_by is not None:
                stop[(row.id, row.attempt)] = row.cancel_requested_by
    return set(held) - {(row.id, row.attempt) for row in kept}


def stopped_message(user_id: int | None) -> str:
    """What a run stopped by a cancel with ``"mode": "now"`` says."""
    who = f"user {user_id}" if user_id is not None else "a user"
    return (
        f'Stopped while running: {who} cancelled the backfill with "mode": "now". '
        "Nothing of this run was kept: the date keeps the rows it had before."
    )


# -- finishing ---------------------------------------------------------------------------


def _history_entry(outcome: Outcome, started: datetime | None, now: datetime) -> dict[str, Any]:
    return {
        "attempt": outcome.attempt,
        "status": "FAILED",
        "error": outcome.error or outcome.message,
        "duration": outcome.duration,
        "started_time": isoformat_z(started),
        "ended_time": isoformat_z(now),
    }


def _total_duration(history: str, last: float | None) -> float | None:
    """Seconds spent over every attempt (the contract: the sum of all query durations)."""
    if last is None:
        return None
    earlier = sum(entry.get("duration") or 0.0 for entry in json.loads(history))
    return round(earlier + last, 6)


def _fenced(**values: Any) -> Any:
    """An UPDATE of one claimed run that applies only under its fencing token."""
    return (
        update(runs)
        .where(
            runs.c.id == bindparam("p_id"),
            runs.c.lease_owner == bindparam("p_owner"),
            runs.c.attempt == bindparam("p_attempt"),
            _status_is(runs.c.status, RUNNING),
        )
        .values(
            lease_owner=None,
            lease_expires_at=None,
            message=bindparam("p_message"),
            **values,
        )
    )


_NOW = bindparam("p_now", type_=UtcDateTime())
_FENCED_WRITES: dict[Result, Any] = {
    Result.COMPLETED: _fenced(
        status=RunStatus.COMPLETED.value,
        ended_time=_NOW,
        total_rows=bindparam("p_rows"),
        total_duration=bindparam("p_duration"),
        error=None,
    ),
    Result.FAILED: _fenced(
        status=RunStatus.FAILED.value,
        ended_time=_NOW,
        total_duration=bindparam("p_duration"),
        error=bindparam("p_error"),
        history=bindparam("p_history"),
    ),
    Result.RETRY: _fenced(
        status=QUEUED,
        available_at=bindparam("p_available", type_=UtcDateTime()),
        queued_time=_NOW,
        error=bindparam("p_error"),
        history=bindparam("p_history"),
    ),
    # The attempt never ran to its end: it does not count against the run's attempts.
    Result.RELEASED: _fenced(
        status=QUEUED, available_at=_NOW, queued_time=_NOW, attempt=runs.c.attempt - 1
    ),
    Result.CANCELLED: _fenced(
        status=RunStatus.CANCELLED.value,
        ended_time=_NOW,
        total_duration=bindparam("p_duration"),
    ),
}


def apply(session: Session, outcomes: Iterable[Outcome], *, now: datetime) -> Applied:
    """Write attempts' outcomes under their fencing tokens, and the backfill counters with them.

    An outcome whose run is no longer ``RUNNING`` under the same owner and attempt is dropped
    (reported in ``Applied.lost``): someone else owns the run now.
    """
    ordered = sorted(outcomes, key=lambda o: o.run_id)
    report = Applied()
    if not ordered:
        return report
    current = {
        row.id: row
        for row in session.execute(
            select(
                runs.c.id,
                runs.c.backfill_id,
                runs.c.lease_owner,
                runs.c.attempt,
                runs.c.history,
                runs.c.started_time,
                runs.c.cancel_requested_by,
                select(backfills.c.status)
                .where(backfills.c.id == runs.c.backfill_id)
                .scalar_subquery()
                .label("backfill_status"),
            )
            .where(runs.c.id.in_([o.run_id for o in ordered]), _status_is(runs.c.status, RUNNING))
            .order_by(runs.c.id)
            .with_for_update()
        )
    }
    completed: dict[int, int] = defaultdict(int)
    failed: dict[int, int] = defaultdict(int)
    batches: dict[Result, list[dict[str, Any]]] = defaultdict(list)
    for outcome in ordered:
        row = current.get(outcome.run_id)
        if row is None or row.lease_owner != outcome.owner or row.attempt != outcome.attempt:
            report.lost.add(outcome.run_id)
            continue
        outcome = _unless_cancelled(outcome, row)
        params: dict[str, Any] = {
            "p_id": outcome.run_id,
            "p_owner": outcome.owner,
            "p_attempt": outcome.attempt,
            "p_message": outcome.message,
            "p_now": now,
        }
        if outcome.result is Result.COMPLETED:
            params |= {
                "p_rows": outcome.rows,
                "p_duration": _total_duration(row.history, outcome.duration),
            }
        elif outcome.result is Result.CANCELLED:
            params["p_duration"] = _total_duration(row.history, outcome.duration)
        elif outcome.result in (Result.FAILED, Result.RETRY):
            history = [*json.loads(row.history), _history_entry(outcome, row.started_time, now)]
            params |= {
                "p_duration": _total_duration(row.history, outcome.duration),
                "p_error": outcome.error,
                "p_history": json.dumps(history),
                "p_available": outcome.retry_at or now,
            }
        batches[outcome.result].append(params)
        report.applied.add(outcome.run_id)
        if row.backfill_id is not None:
            if outcome.result is Result.COMPLETED:
                completed[row.backfill_id] += 1
            elif outcome.result is Result.FAILED:
                failed[row.backfill_id] += 1
    for result, rows in batches.items():
        # One executemany per kind of outcome; the fencing condition is in every statement.
        changed = _rowcount(session.execute(_FENCED_WRITES[result], rows))
        if changed != len(rows):  # pragma: no cover - the row locks above rule this out
            raise RuntimeError(f"fenced write changed {changed} of {len(rows)} runs")
    final = BackfillStatus.SCHEDULED.value, BackfillStatus.RUNNING.value
    for backfill_id in sorted(set(completed) | set(failed)):
        row = session.execute(
            update(backfills)
            .where(backfills.c.id == backfill_id)
            .values(
                runs_completed=backfills.c.runs_completed + completed[backfill_id],
                runs_failed=backfills.c.runs_failed + failed[backfill_id],
            )
            .returning(
                backfills.c.status,
                backfills.c.runs_total,
                backfills.c.runs_created,
                backfills.c.runs_completed,
                backfills.c.runs_failed,
            )
        ).one()
        all_final = row.runs_created == row.runs_total == row.runs_completed + row.runs_failed
        if row.status in final and all_final:
            # The transaction that writes the last run's result ends the backfill.
            status = BackfillStatus.FAILED if row.runs_failed else BackfillStatus.COMPLETED
            session.execute(
                update(backfills)
                .where(backfills.c.id == backfill_id)
                .values(status=status.value, end_time=now)
            )
            report.finished_backfills.append((backfill_id, status.value))
    return report


def _unless_cancelled(outcome: Outcome, row: Any) -> Outcome:
    """An attempt that would queue its run again ends it CANCELLED instead when someone
    asked to stop it, or when its backfill was cancelled meanwhile (nothing would claim it)."""
    if outcome.result not in (Result.RETRY, Result.RELEASED):
        return outcome
    if row.cancel_requested_by is not None:
        message = stopped_message(row.cancel_requested_by)
    elif row.backfill_status == BackfillStatus.CANCELLED.value:
        message = (
            f"Cancelled: the backfill was cancelled while attempt {outcome.attempt} ran "
            f"({outcome.error or outcome.message}); it is not retried."
        )
    else:
        return outcome
    return Outcome(
        outcome.run_id,
        outcome.owner,
        outcome.attempt,
        Result.CANCELLED,
        message,
        error=outcome.error,
        duration=outcome.duration,
    )


# -- reaping -----------------------------------------------------------------------------


def reap(session: Session, *, now: datetime, limit: int = 500) -> Applied:
    """Runs whose lease expired go back to the queue, or fail once their attempts are spent."""
    expired = session.execute(
        select(
            runs.c.id,
            runs.c.lease_owner,
            runs.c.attempt,
            runs.c.max_attempts,
            runs.c.started_time,
            runs.c.cancel_requested_by,
        )
        .where(_status_is(runs.c.status, RUNNING), runs.c.lease_expires_at < now)
        .order_by(runs.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    outcomes = []
    for row in expired:
        lost = (
            f"The worker running attempt {row.attempt} stopped responding "
            "(its lease expired without a heartbeat)."
        )
        duration = (now - row.started_time).total_seconds() if row.started_time else None
        if row.cancel_requested_by is not None:
            outcomes.append(
                Outcome(
                    row.id,
                    row.lease_owner or "",
                    row.attempt,
                    Result.CANCELLED,
                    stopped_message(row.cancel_requested_by),
                    error=lost,
                    duration=duration,
                )
            )
        elif row.attempt < row.max_attempts:
            outcomes.append(
                Outcome(
                    row.id,
                    row.lease_owner or "",
                    row.attempt,
                    Result.RETRY,
                    f"{lost} Queued again: attempt {row.attempt + 1} of {row.max_attempts}.",
                    error=lost,
                    duration=duration,
                    retry_at=now,
                )
            )
        else:
            outcomes.append(
                Outcome(
                    row.id,
                    row.lease_owner or "",
                    row.attempt,
                    Result.FAILED,
                    f"Failed after {row.attempt} attempts: {lost}",
                    error=lost,
                    duration=duration,
                )
            )
    return apply(session, outcomes, now=now)
