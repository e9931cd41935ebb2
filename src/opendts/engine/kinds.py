"""What a run does: the one interface the executor calls, and the built-in run kinds.

A transfer names its kind (``transfers.kind``) and carries the kind's JSON settings
(``transfers.config``). ``noop`` does nothing (benchmarks measure the engine alone with it);
``fault`` sleeps, fails and hangs on demand, for tests and demos.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from opendts.engine.errors import TerminalRunError, TransientRunError


@dataclass(frozen=True, slots=True)
class RunContext:
    """Everything a run may know about itself."""

    run_id: int
    team_id: int
    transfer_id: int
    data_date: date
    attempt: int
    max_attempts: int
    #: Set when the run must stop (timeout, shutdown): long work should check it.
    cancelled: threading.Event = field(default_factory=threading.Event)


@dataclass(frozen=True, slots=True)
class RunResult:
    """What a successful run reports."""

    rows: int = 0
    message: str = ""


class RunKind(Protocol):
    """A kind of run. ``prepare`` validates a transfer's config once; ``execute`` runs a date."""

    name: str

    def prepare(self, config: dict[str, Any]) -> Any:
        """The parsed settings; raises ``ValueError`` naming the bad field."""
        ...

    def execute(self, ctx: RunContext, settings: Any) -> RunResult:
        """Load one date. Raise ``TransientRunError`` or ``TerminalRunError`` on failure."""
        ...


def _parse(model: type[BaseModel], config: dict[str, Any]) -> Any:
    try:
        return model.model_validate(config)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'config'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ValueError(problems) from None


class NoopSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NoopKind:
    """Does nothing and succeeds: the engine's own cost, measured alone."""

    name = "noop"

    def prepare(self, config: dict[str, Any]) -> Any:
        return _parse(NoopSettings, config)

    def execute(self, ctx: RunContext, settings: Any) -> RunResult:
        return RunResult(0, f"Completed {ctx.data_date}: nothing to load (noop transfer).")


class FaultSettings(BaseModel):
    """Faults on demand. Rates are probabilities per attempt; dates always misbehave."""

    model_config = ConfigDict(extra="forbid")

    latency_ms: float = Field(default=0.0, ge=0, le=3_600_000)
    latency_jitter_ms: float = Field(default=0.0, ge=0, le=3_600_000)
    rows: int = Field(default=0, ge=0)
    failure_rate: float = Field(default=0.0, ge=0, le=1)
    failure: Literal["transient", "terminal"] = "transient"
    fail_dates: list[date] = Field(default_factory=list)
    #: The first N attempts of every date fail transiently (then the date succeeds).
    fail_attempts: int = Field(default=0, ge=0)
    hang_rate: float = Field(default=0.0, ge=0, le=1)
    hang_dates: list[date] = Field(default_factory=list)
    seed: int | None = None


class FaultKind:
    """Sleeps, fails (transient or terminal) and hangs as configured."""

    name = "fault"

    def prepare(self, config: dict[str, Any]) -> Any:
        return _parse(FaultSettings, config)

    def execute(self, ctx: RunContext, settings: Any) -> RunResult:
        spec: FaultSettings = settings
        rng = (
            random.Random(f"{spec.seed}:{ctx.run_id}:{ctx.attempt}")
            if spec.seed is not None
            else random
        )
        latency = spec.latency_ms + rng.uniform(0, spec.latency_jitter_ms)
        if latency and ctx.cancelled.wait(latency / 1000):
            raise TransientRunError("The run was interrupted before it finished.")
        if ctx.data_date in spec.hang_dates or (spec.hang_rate and rng.random() < spec.hang_rate):
            ctx.cancelled.wait()
            raise TransientRunError("The run hung and was interrupted (simulated hang).")
        if ctx.attempt <= spec.fail_attempts:
            raise TransientRunError(
                f"Simulated transient failure of attempt {ctx.attempt} (fault transfer)."
            )
        if ctx.data_date in spec.fail_dates or (
            spec.failure_rate and rng.random() < spec.failure_rate
        ):
            if spec.failure == "terminal":
                raise TerminalRunError(
                    f"Simulated terminal failure for {ctx.data_date} (fault transfer)."
                )
            raise TransientRunError(
                f"Simulated transient failure for {ctx.data_date} (fault transfer)."
            )
        return RunResult(spec.rows, f"Completed {ctx.data_date}: loaded {spec.rows} rows.")


_KINDS: dict[str, RunKind] = {kind.name: kind for kind in (NoopKind(), FaultKind())}


def register(kind: RunKind) -> None:
    """Add a run kind (the connectors issue registers sources and destinations here)."""
    _KINDS[kind.name] = kind


def kind_names() -> list[str]:
    """Every registered kind, sorted."""
    return sorted(_KINDS)


def get_kind(name: str) -> RunKind:
    """The kind called ``name``; a terminal error names the known ones otherwise."""
    kind = _KINDS.get(name)
    if kind is None:
        raise TerminalRunError(
            f"This transfer's run kind {name!r} is not installed here. "
            f"Known kinds: {', '.join(kind_names())}."
        )
    return kind
