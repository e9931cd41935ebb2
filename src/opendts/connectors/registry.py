"""Connectors by name: the built-ins plus third-party ones from Python entry points.

A package adds a connector by declaring an entry point in the group ``opendts.sources`` or
``opendts.destinations`` whose object is a ``Source`` or ``Destination`` class or instance::

    [project.entry-points."opendts.destinations"]
    bigquery = "opendts_bigquery:BigQueryDestination"
"""

from __future__ import annotations

import importlib
import logging
import threading
from importlib.metadata import entry_points
from typing import Any

from opendts.connectors.base import Destination, Source

log = logging.getLogger("opendts.connectors")

SOURCE_GROUP = "opendts.sources"
DESTINATION_GROUP = "opendts.destinations"

BUILTIN_SOURCES = {
    "demo": "opendts.connectors.sources.demo:DemoSource",
    "http": "opendts.connectors.sources.http:HttpSource",
    "sql": "opendts.connectors.sources.sql:SqlSource",
    "file": "opendts.connectors.sources.file:FileSource",
}
BUILTIN_DESTINATIONS = {
    "duckdb": "opendts.connectors.destinations.duckdb:DuckDBDestination",
    "postgresql": "opendts.connectors.destinations.postgresql:PostgreSQLDestination",
    "sqlite": "opendts.connectors.destinations.sqlite:SQLiteDestination",
    "parquet": "opendts.connectors.destinations.parquet:ParquetDestination",
}


class UnknownConnector(ValueError):
    """No connector of that name is installed."""


_lock = threading.Lock()
_sources: dict[str, Source] = {}
_destinations: dict[str, Destination] = {}
_loaded = False


def _instance(obj: Any) -> Any:
    return obj() if isinstance(obj, type) else obj


def _load_path(path: str) -> Any:
    module, _, attr = path.partition(":")
    return _instance(getattr(importlib.import_module(module), attr))


def _ensure_loaded() -> None:
    global _loaded
    if _loaded:
        return
    with _lock:
        if _loaded:
            return
        for builtins, target in (
            (BUILTIN_SOURCES, _sources),
            (BUILTIN_DESTINATIONS, _destinations),
        ):
            for name, path in builtins.items():
                try:
                    target.setdefault(name, _load_path(path))
                except ImportError:  # e.g. a driver missing on this machine
                    log.exception("built-in connector %s failed to load", name)
        for group, target in ((SOURCE_GROUP, _sources), (DESTINATION_GROUP, _destinations)):
            for point in entry_points(group=group):
                try:
                    target.setdefault(point.name, _instance(point.load()))
                except Exception:  # a broken plugin must not take the service down
                    log.exception("connector %s from %s failed to load", point.name, group)
        _loaded = True


def register_source(source: Source) -> None:
    """Add (or replace) a source at run time (tests, embedding applications)."""
    _ensure_loaded()
    _sources[source.name] = source


def register_destination(destination: Destination) -> None:
    """Add (or replace) a destination at run time."""
    _ensure_loaded()
    _destinations[destination.name] = destination


def sources() -> dict[str, Source]:
    """Every installed source by name."""
    _ensure_loaded()
    return dict(sorted(_sources.items()))


def destinations() -> dict[str, Destination]:
    """Every installed destination by name."""
    _ensure_loaded()
    return dict(sorted(_destinations.items()))


def _builtin(builtins: dict[str, str], target: dict[str, Any], name: str) -> Any:
    """A built-in connector alone (its drivers are imported only when it is used)."""
    found = target.get(name)
    if found is None and name in builtins and not _loaded:
        with _lock:
            try:
                found = target.setdefault(name, _load_path(builtins[name]))
            except ImportError:
                log.exception("built-in connector %s failed to load", name)
    return found


def get_source(name: str) -> Source:
    """The source called ``name``; ``UnknownConnector`` lists the installed ones otherwise."""
    found = _builtin(BUILTIN_SOURCES, _sources, name) or sources().get(name)
    if found is None:
        raise UnknownConnector(
            f"unknown source {name!r}; installed sources: {', '.join(sources())}"
        )
    return found


def destination_name(value: str) -> str:
    """A destination type as users write it (``duckdb``, ``DWH_POSTGRESQL``) to its name."""
    name = value.strip().lower()
    return name.removeprefix("dwh_")


def get_destination(name: str) -> Destination:
    """The destination called ``name`` (case-insensitive, ``DWH_`` prefix allowed)."""
    key = destination_name(name)
    found = _builtin(BUILTIN_DESTINATIONS, _destinations, key) or destinations().get(key)
    if found is None:
        raise UnknownConnector(
            f"unknown destination type {name!r}; installed types: {', '.join(destinations())}"
        )
    return found
