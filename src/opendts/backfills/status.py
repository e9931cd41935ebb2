"""The backfill state machine: the one place that knows which status may follow which."""

from __future__ import annotations

from enum import StrEnum


class BackfillStatus(StrEnum):
    """Backfill statuses, exactly as the contract spells them."""

    CREATED = "CREATED"
    SCHEDULED = "SCHEDULED"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


S = BackfillStatus

#: Listed by ``GET /teams/{team_id}/backfills`` and cancellable.
INCOMPLETE: frozenset[BackfillStatus] = frozenset({S.CREATED, S.SCHEDULED, S.RUNNING, S.FAILED})
#: Block an overlapping backfill of the same transfer.
ACTIVE: frozenset[BackfillStatus] = frozenset({S.CREATED, S.SCHEDULED, S.RUNNING})
FINAL: frozenset[BackfillStatus] = frozenset({S.COMPLETED, S.CANCELLED})

TRANSITIONS: dict[BackfillStatus, frozenset[BackfillStatus]] = {
    S.CREATED: frozenset({S.SCHEDULED, S.CANCELLED}),
    S.SCHEDULED: frozenset({S.RUNNING, S.COMPLETED, S.FAILED, S.CANCELLED}),
    S.RUNNING: frozenset({S.COMPLETED, S.FAILED, S.CANCELLED}),
    S.FAILED: frozenset({S.CANCELLED}),
    S.COMPLETED: frozenset(),
    S.CANCELLED: frozenset(),
}


def can_transition(current: BackfillStatus, target: BackfillStatus) -> bool:
    """Whether ``current`` may move to ``target``."""
    return target in TRANSITIONS[current]
