"""Test-only sources that misbehave with a run's resources, registered by the tests that use
them (``registered``). Module-level classes: a run process imports them by name."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa
from pydantic import Field

from opendts.connectors import registry
from opendts.connectors.base import ConnectorSettings, ReadRequest


class HogSettings(ConnectorSettings):
    #: How much memory the read holds at most, in MB, taken 16 MB at a time.
    megabytes: int = Field(default=600, ge=1)


class HogSource:
    """Holds more and more memory, then yields one row (if it was not stopped)."""

    name: ClassVar[str] = "test_hog"
    title: ClassVar[str] = "Memory hog (tests)"
    Settings: ClassVar[type[ConnectorSettings]] = HogSettings

    def read(self, settings: HogSettings, request: ReadRequest) -> Iterator[pa.RecordBatch]:
        held = []
        for _ in range(settings.megabytes // 16):
            held.append(bytearray(os.urandom(1024)) * (16 * 1024))
            time.sleep(0.02)
        yield pa.RecordBatch.from_pylist([{"held_mb": 16 * len(held)}])


class SleepSettings(ConnectorSettings):
    seconds: float = Field(default=3600.0, ge=0)
    #: A file (absolute path) the read writes its process id to before it sleeps.
    pid_file: str = ""


class SleepSource:
    """Sleeps without looking at ``request.cancelled``: only killing its process stops it."""

    name: ClassVar[str] = "test_sleep"
    title: ClassVar[str] = "Hung source (tests)"
    Settings: ClassVar[type[ConnectorSettings]] = SleepSettings

    def read(self, settings: SleepSettings, request: ReadRequest) -> Iterator[pa.RecordBatch]:
        if settings.pid_file:
            Path(settings.pid_file).write_text(str(os.getpid()))
        time.sleep(settings.seconds)
        yield pa.RecordBatch.from_pylist([{"slept": settings.seconds}])


class InspectSettings(ConnectorSettings):
    #: A file (absolute path) the read writes what it found to.
    report_file: str


class InspectSource:
    """Reports what the process running it can see: its id, its environment, the boundary."""

    name: ClassVar[str] = "test_inspect"
    title: ClassVar[str] = "Environment inspector (tests)"
    Settings: ClassVar[type[ConnectorSettings]] = InspectSettings

    def read(self, settings: InspectSettings, request: ReadRequest) -> Iterator[pa.RecordBatch]:
        with open(f"/proc/{os.getpid()}/environ", "rb") as handle:
            initial = handle.read().decode(errors="replace")
        report: dict[str, Any] = {
            "pid": os.getpid(),
            "environ": dict(os.environ),
            "initial_environ": initial,
            "metadata_url": request.boundary.metadata_url,
        }
        Path(settings.report_file).write_text(json.dumps(report))
        yield pa.RecordBatch.from_pylist([{"pid": os.getpid()}])


@contextmanager
def registered(*sources: Any) -> Iterator[None]:
    """``sources`` installed for the block (then removed: the catalogue stays as it was)."""
    for source in sources:
        registry.register_source(source)
    try:
        yield
    finally:
        for source in sources:
            registry._sources.pop(source.name, None)
