"""Structured logs: JSON lines for machines, text for people, with request and run context.

``configure`` is called once by ``opendts serve`` and ``opendts worker``. Every record gets the
``request_id``, ``team_id``, ``backfill_id`` and ``run_id`` known where it was logged, from
context variables: the API's envelope middleware sets the request's (``bind`` in the request's
task, inherited by the threads it hands work to), the engine sets a run's around executing it
(in the run's thread). Nothing here logs request bodies or settings: secrets stay out of logs.
"""

from __future__ import annotations

import json as jsonlib
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from typing import Any

#: The context fields every record carries when known, in output order.
FIELDS = ("request_id", "team_id", "backfill_id", "run_id")

_FIELD_SET = frozenset(FIELDS)
_VARS: dict[str, ContextVar[Any]] = {
    name: ContextVar(f"opendts_{name}", default=None) for name in FIELDS
}

#: ``LogRecord`` attributes that are not ``extra=`` fields.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}

#: ``extra=`` fields left out of JSON lines: uvicorn's copy of its message with ANSI colours.
_DROPPED = frozenset({"color_message"})


def bind(**values: Any) -> dict[str, Token[Any]]:
    """Set context fields (``request_id``, ``team_id``, ...) for this task or thread."""
    return {name: _VARS[name].set(value) for name, value in values.items()}


def unbind(tokens: dict[str, Token[Any]]) -> None:
    """Restore the fields ``bind`` changed."""
    for name, token in tokens.items():
        _VARS[name].reset(token)


@contextmanager
def context(**values: Any) -> Iterator[None]:
    """Context fields for the duration of a block."""
    tokens = bind(**values)
    try:
        yield
    finally:
        unbind(tokens)


def current() -> dict[str, Any]:
    """The context fields set here, without the unknown ones."""
    return {name: var.get() for name, var in _VARS.items() if var.get() is not None}


class ContextFilter(logging.Filter):
    """Copies the context fields onto each record (an explicit ``extra=`` value wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, var in _VARS.items():
            if getattr(record, name, None) is None:
                setattr(record, name, var.get())
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, context, extra, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        for key, value in record.__dict__.items():
            if key in _STANDARD or key in _FIELD_SET or key in _DROPPED or key.startswith("_"):
                continue
            entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return jsonlib.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message [request_id=… run_id=…]`` for a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        known = [
            f"{n}={getattr(record, n)}" for n in FIELDS if getattr(record, n, None) is not None
        ]
        if not known:
            return text
        first, newline, rest = text.partition("\n")
        return f"{first} [{' '.join(known)}]{newline}{rest}"


def wants_json(stream: Any = None) -> bool:
    """``OPENDTS_LOG_FORMAT`` (``json`` or ``text``) if set, else JSON unless on a terminal."""
    forced = os.environ.get("OPENDTS_LOG_FORMAT", "").strip().lower()
    if forced in ("json", "text"):
        return forced == "json"
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return not (callable(isatty) and isatty())


def configure(level: str | int = "info", json: bool | None = None) -> logging.Handler:
    """Send every log record to stderr, as JSON lines or text (``json=None``: ``wants_json``).

    Replaces the root logger's handlers (as ``logging.basicConfig(force=True)`` would), quiets
    Alembic's per-migration chatter and httpx's request lines. Returns the handler.
    """
    use_json = wants_json() if json is None else json
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if use_json else TextFormatter())
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # httpx logs each request's full URL at INFO, and a source's URL may carry credentials in
    # its query string: the http source logs what it does in its own words, URLs made safe.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
    return handler
