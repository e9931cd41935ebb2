"""TransferSchedule: when recurring refreshes run, and which dates they reload.

``daily`` runs every day at ``run_hour`` (UTC), ``weekly`` on ``run_weekday`` (1 = Monday),
``monthly`` on ``run_day`` (clamped to the month's last day), ``hourly`` at the top of every
hour. A refresh reloads the last ``refresh_window`` days (1 by default): the days ending
yesterday, or ending today for ``hourly`` schedules, whose day is still filling up.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

INTERVALS = ("daily", "hourly", "weekly", "monthly")
MAX_REFRESH_WINDOW = 366


@dataclass(frozen=True, slots=True)
class Entry:
    """One parsed TransferSchedule."""

    run_interval: str = "daily"
    run_hour: int = 0
    refresh_window: int = 1
    run_weekday: int | None = None
    run_day: int | None = None

    def wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "run_interval": self.run_interval,
            "run_hour": self.run_hour,
            "refresh_window": self.refresh_window,
        }
        if self.run_weekday is not None:
            out["run_weekday"] = self.run_weekday
        if self.run_day is not None:
            out["run_day"] = self.run_day
        return out


def _int(
    item: dict[str, Any], key: str, low: int, high: int, where: str, errors: list[Any]
) -> int | None:
    value = item.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        errors.append(
            (f"{where}.{key}", "invalidValue", f"must be an integer from {low} to {high}")
        )
        return None
    return value


def parse(value: Any) -> tuple[list[Entry], list[tuple[str, str, str]]]:
    """Entries, and ``(field_id, error_code, message)`` for every problem."""
    errors: list[tuple[str, str, str]] = []
    if value is None:
        return [], errors
    if not isinstance(value, list):
        return [], [("schedule", "invalidType", "must be a JSON array of schedules")]
    entries = []
    for i, item in enumerate(value):
        where = f"schedule[{i}]"
        if not isinstance(item, dict):
            errors.append((where, "invalidType", "must be a JSON object"))
            continue
        unknown = set(item) - {
            "run_interval",
            "run_hour",
            "refresh_window",
            "run_weekday",
            "run_day",
        }
        if unknown:
            errors.append((f"{where}.{sorted(unknown)[0]}", "unknown", "unknown field"))
        interval = item.get("run_interval")
        if interval is None:
            interval = "daily"
        if interval not in INTERVALS:
            errors.append(
                (f"{where}.run_interval", "invalidValue", f"must be one of {', '.join(INTERVALS)}")
            )
            continue
        hour = _int(item, "run_hour", 0, 23, where, errors)
        window = _int(item, "refresh_window", 1, MAX_REFRESH_WINDOW, where, errors)
        weekday = _int(item, "run_weekday", 1, 7, where, errors)
        day = _int(item, "run_day", 1, 31, where, errors)
        # A null is missing; an invalid value was reported by _int already.
        if interval == "weekly" and item.get("run_weekday") is None:
            errors.append((f"{where}.run_weekday", "isEmpty", "is required for weekly schedules"))
        if interval == "monthly" and item.get("run_day") is None:
            errors.append((f"{where}.run_day", "isEmpty", "is required for monthly schedules"))
        entries.append(Entry(interval, hour or 0, window or 1, weekday, day))
    return entries, errors


def next_after(entry: Entry, after: datetime) -> datetime:
    """The first time strictly after ``after`` at which ``entry`` is due."""
    after = after.astimezone(UTC)
    if entry.run_interval == "hourly":
        return after.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    day = after.date()
    for offset in range(0, 400):
        candidate_day = day + timedelta(days=offset)
        if entry.run_interval == "weekly" and candidate_day.isoweekday() != entry.run_weekday:
            continue
        if entry.run_interval == "monthly":
            last = calendar.monthrange(candidate_day.year, candidate_day.month)[1]
            if candidate_day.day != min(entry.run_day or 1, last):
                continue
        at = datetime.combine(candidate_day, datetime.min.time(), UTC) + timedelta(
            hours=entry.run_hour
        )
        if at > after:
            return at
    raise AssertionError("a schedule is due within 400 days")  # pragma: no cover


def next_run(entries: list[Entry], after: datetime) -> datetime | None:
    """When the earliest entry is next due (None without a schedule)."""
    return min((next_after(e, after) for e in entries), default=None)


def due_dates(entries: list[Entry], since: datetime, now: datetime) -> list[date]:
    """Dates to refresh for every entry due in ``(since, now]``, newest first."""
    dates: set[date] = set()
    for entry in entries:
        if next_after(entry, since) > now:
            continue
        last = now.astimezone(UTC).date() - (
            timedelta(0) if entry.run_interval == "hourly" else timedelta(days=1)
        )
        dates.update(last - timedelta(days=i) for i in range(entry.refresh_window))
    return sorted(dates, reverse=True)


def entries_of(stored: str) -> list[Entry]:
    """Entries of a transfer's stored schedule JSON (already validated)."""
    import json

    entries, _ = parse(json.loads(stored or "[]"))
    return entries
