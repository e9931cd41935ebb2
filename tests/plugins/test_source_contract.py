"""One contract every registered source meets (built-ins and plugins alike), and plugin
discovery through entry points."""

from __future__ import annotations

import csv
import json
import sqlite3
import threading
from collections.abc import Callable, Iterator
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from pydantic import SecretStr

from opendts.connectors import registry
from opendts.connectors.base import ConfigError, ConnectorSettings, ReadRequest, parse_settings
from opendts.connectors.base import secret_fields as secrets_of
from tests.boundaries import boundary, files_dir, team_dir

DAY = date(2024, 3, 5)


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"data": [{"day": self.path.rsplit("=", 1)[-1], "clicks": 3}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def http_base() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _file_example(tmp: Path, _: str) -> dict[str, Any]:
    with (files_dir() / f"ads-{DAY}.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["day", "clicks"])
        writer.writerow([str(DAY), 3])
    return {"path": "ads-{date}.csv"}


def _sql_example(tmp: Path, _: str) -> dict[str, Any]:
    with sqlite3.connect(team_dir() / "src.db") as conn:
        conn.execute("CREATE TABLE ads (day TEXT, clicks INTEGER)")
        conn.execute("INSERT INTO ads VALUES (?, 3), ('2000-01-01', 9)", (str(DAY),))
    return {
        "url": "sqlite:///src.db",
        "query": "SELECT day, clicks FROM ads WHERE day = :date",
    }


#: A working configuration of every source this suite knows. A plugin author adds one here.
EXAMPLES: dict[str, Callable[[Path, str], dict[str, Any]]] = {
    "demo": lambda tmp, base: {"rows_per_day": 12},
    "http": lambda tmp, base: {"url": base + "/ads?day={date}", "records_path": "data"},
    "sql": _sql_example,
    "file": _file_example,
    "constant": lambda tmp, base: {"value": 3},
}


@pytest.fixture(autouse=True)
def _plugin_installed(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The fake plugin, found through its entry point, as if installed with pip."""
    point = EntryPoint(
        name="constant",
        value="tests.plugins.fake_connector:ConstantSource",
        group=registry.SOURCE_GROUP,
    )
    broken = EntryPoint(name="broken", value="tests.plugins.nowhere:Nothing", group="x")

    def fake_entry_points(*, group: str) -> list[EntryPoint]:
        return [point, broken] if group == registry.SOURCE_GROUP else []

    monkeypatch.setattr(registry, "entry_points", fake_entry_points)
    monkeypatch.setattr(registry, "_loaded", False)
    monkeypatch.setattr(registry, "_sources", {})
    monkeypatch.setattr(registry, "_destinations", {})
    yield


def test_plugins_are_found_by_entry_point_and_a_broken_one_is_skipped() -> None:
    names = set(registry.sources())
    assert {"demo", "http", "sql", "file", "constant"} <= names
    assert "broken" not in names
    assert registry.get_source("constant").title == "Constant (plugin)"
    with pytest.raises(registry.UnknownConnector, match="constant"):
        registry.get_source("nosuch")


def source_names() -> list[str]:
    """Every source installed here (built-ins and real plugins), plus the fake plugin."""
    return sorted({*registry.sources(), "constant"})


@pytest.mark.parametrize("name", source_names())
def test_every_source_meets_the_contract(name: str, tmp_path: Path, http_base: str) -> None:
    assert name in registry.sources(), f"{name} is not registered"
    source = registry.get_source(name)
    assert source.name == name and source.title
    assert issubclass(source.Settings, ConnectorSettings)
    example = EXAMPLES.get(name)
    assert example is not None, (
        f"source {name!r} has no example configuration in tests/plugins/test_source_contract.py"
        " EXAMPLES: add one so the contract suite can exercise it"
    )
    config = example(tmp_path, http_base)
    settings = parse_settings(source.Settings, config, boundary())
    # Unknown keys are refused, naming the key.
    with pytest.raises(ConfigError) as bad:
        parse_settings(source.Settings, {**config, "no_such_setting": 1})
    assert "no_such_setting" in str(bad.value)
    # Credentials are SecretStr: never in a repr.
    for field in secrets_of(source.Settings):
        assert source.Settings.model_fields[field].annotation in (SecretStr, SecretStr | None)
    # Reading one date gives record batches; reading it again gives the same rows.
    first = [b for b in source.read(settings, ReadRequest(DAY, ("acc-1",), boundary=boundary()))]
    assert first and all(isinstance(b, pa.RecordBatch) for b in first)
    again = [b for b in source.read(settings, ReadRequest(DAY, ("acc-1",), boundary=boundary()))]
    assert pa.Table.from_batches(first).equals(pa.Table.from_batches(again))
    assert sum(b.num_rows for b in first) > 0
