"""Schemathesis over every operation of the server's own ``/v1/openapi.json``, on a live server.

All checks, all phases (examples, coverage, fuzzing, and stateful sequences along the
document's links: create a transfer, backfill or destination, then read, change and delete it).
Two allowances, per operation, both written in the document:

- ``positive_data_acceptance`` also accepts 422 from createBackfill and updateBackfillStatus
  (dates in the future, overlaps, a backfill already final: business rules of the contract)
  and 400 from the transfer, destination and data-source connection writes, whose source and
  destination settings are checked by each connector and against the team's own destinations
  (400 naming the field), and from the available options, whose ``destination_id`` must be
  one of the team's destinations.
- No NUL characters are generated (``--generation-allow-x00 false``): the body rule refuses
  them in every key and string (PostgreSQL text cannot hold one), which the document says in
  its 400 but JSON Schema cannot state for free-form objects.
- ``document_hooks`` keeps valid requests in the demo team, and orders the two dates of the
  runs list and of a backfill create (rules across fields JSON Schema cannot state).

The document is checked in its strict form: every object it returns that it does not say is
open gets ``additionalProperties: false``, so a field added to a response without being
documented fails ``response_schema_conformance``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import databases
from tests.live import LiveServer, live_server

CONTRACT = Path(__file__).resolve().parent
MAX_EXAMPLES = 25
CONFIG = """
[[operations]]
include-operation-id = ["createBackfill", "updateBackfillStatus"]
[operations.checks.positive_data_acceptance]
expected-statuses = ["2xx", "401", "403", "404", "409", "422", "429"]

[[operations]]
include-operation-id = [
    "createTransfer", "updateTransfer", "createDestination", "updateDestination",
    "testDestinationConnection", "createDataSourceConnection", "updateDataSourceConnection",
    "getAvailableOptions",
]
[operations.checks.positive_data_acceptance]
expected-statuses = ["2xx", "400", "401", "403", "404", "409", "429"]
"""


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """A live server whose rate limit the run cannot reach (a 429 would hide the rest)."""
    data_dir = tmp_path_factory.mktemp("document")
    roomy = {"OPENDTS_RATE_LIMIT_PER_HOUR": "10000000"}
    if request.param == "sqlite":
        with live_server(data_dir, **roomy) as live:
            yield live
        return
    databases.require_pg()
    with databases.pg_database() as url, live_server(data_dir, url, **roomy) as live:
        yield live


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"].rsplit("/", 1)[-1]
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _closure(names: set[str], schemas: dict[str, Any]) -> set[str]:
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in seen or name not in schemas:
            continue
        seen.add(name)
        todo.extend(_refs(schemas[name]))
    return seen


def _close(node: Any) -> None:
    if isinstance(node, dict):
        if "properties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
        for value in node.values():
            _close(value)
    elif isinstance(node, list):
        for value in node:
            _close(value)


def strict(document: dict[str, Any]) -> dict[str, Any]:
    """``document`` with the objects only responses use closed to undocumented fields."""
    schemas = document["components"]["schemas"]
    operations = [op for path in document["paths"].values() for op in path.values()]
    answered = _closure({ref for op in operations for ref in _refs(op["responses"])}, schemas)
    sent = _closure(
        {ref for op in operations for ref in _refs([op.get("requestBody"), op.get("parameters")])},
        schemas,
    )
    for name in answered - sent:
        _close(schemas[name])
    return document


def run_schemathesis(
    live: LiveServer, workdir: Path
) -> tuple[subprocess.CompletedProcess[str], int]:
    document = httpx.get(f"{live.base_url}/openapi.json", timeout=30).json()
    operations = sum(len(ops) for ops in document["paths"].values())
    (workdir / "openapi.json").write_text(json.dumps(strict(document)))
    (workdir / "schemathesis.toml").write_text(CONFIG)
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "tests.contract.document_hooks",
        "PYTHONPATH": str(CONTRACT.parents[1]),
        "OPENDTS_ST_TEAM_ID": str(live.team_id),
        "OPENDTS_ST_TRANSFER_ID": str(live.transfer_id),
    }
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "run",
        str(workdir / "openapi.json"),
        "--url",
        live.base_url.removesuffix("/v1"),
        "--header",
        f"Authorization: Bearer {live.api_key}",
        "--checks",
        "all",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        "20261201",
        "--continue-on-failure",
        "--no-color",
        "--generation-allow-x00",
        "false",
        "--generation-database",
        "none",
        "--report-dir",
        str(workdir / "report"),
    ]
    result = subprocess.run(
        command, cwd=workdir, env=env, capture_output=True, text=True, timeout=900
    )
    return result, operations


@pytest.mark.timeout(960)
def test_the_server_does_what_its_document_says(server: LiveServer, tmp_path: Path) -> None:
    result, operations = run_schemathesis(server, tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-8000:]
    tested = re.search(r"Tested: (\d+)", output)
    assert tested is not None and int(tested.group(1)) == operations >= 25, output[-3000:]
    for phase in ("Examples", "Coverage", "Fuzzing", "Stateful"):
        assert re.search(rf"✅ {phase}", output), (phase, output[-3000:])
    assert re.search(r"\d+ generated, \d+ passed", output), output[-3000:]
