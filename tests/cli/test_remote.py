"""Acceptance of the HTTP commands (``opendts backfill|run|transfer|destination|login``).

Every command runs as a subprocess against a real ``opendts serve``, with an environment the
test controls (no ``OPENDTS_*`` from outside, ``HOME`` and ``OPENDTS_CONFIG`` in a tmp folder).
"""

from __future__ import annotations

import itertools
import json
import os
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from opendts.client import ApiError, Client
from tests.live import LiveServer, admin_json, free_port, live_server

pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with live_server(tmp_path_factory.mktemp("remote")) as server:
        yield server


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path


def base_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENDTS_")}
    env["HOME"] = str(home)
    env["OPENDTS_CONFIG"] = str(home / "opendts" / "config.json")
    env["COLUMNS"] = "200"
    env.update(extra)
    return env


def server_url(live: LiveServer) -> str:
    return live.base_url.removesuffix("/v1")


def flags(live: LiveServer, team: int | None = None) -> list[str]:
    return [
        "--server", server_url(live), "--api-key", live.api_key,
        "--team", str(team or live.team_id),
    ]  # fmt: skip


def cli(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "opendts", *args],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    return result


def ok_json(env: dict[str, str], *args: str) -> Any:
    result = cli(env, *args, "--json")
    assert result.returncode == 0, result.stderr + result.stdout
    return json.loads(result.stdout)


def remote(live: LiveServer, home: Path, *args: str, team: int | None = None) -> Any:
    """A ``--json`` command with explicit flags; its parsed output."""
    return ok_json(base_env(home), *args, *flags(live, team))


def fault_transfer(live: LiveServer, name: str, config: dict[str, Any]) -> int:
    created = admin_json(
        live.env, "transfer", "create", "--team", str(live.team_id), "--name", name,
        "--kind", "fault", "--config", json.dumps(config),
    )  # fmt: skip
    transfer_id = created["transfer_id"]
    assert isinstance(transfer_id, int)
    return transfer_id


def test_create_then_watch_completes(live: LiveServer, home: Path) -> None:
    env = base_env(home)
    created = remote(
        live, home, "backfill", "create", "--transfer", str(live.transfer_id),
        "--start", "2024-01-01", "--end", "2024-01-31",
    )  # fmt: skip
    assert created["status"] == "CREATED" and created["transfer_runs_total"] == 31
    backfill_id = str(created["transfer_backfill_id"])

    watched = cli(env, "backfill", "watch", backfill_id, *flags(live))
    assert watched.returncode == 0, watched.stderr
    assert f"backfill {backfill_id} COMPLETED: 31 of 31 runs completed, 0 failed" in watched.stdout

    got = remote(live, home, "backfill", "get", backfill_id)
    assert got["status"] == "COMPLETED" and got["transfer_runs_completed"] == 31
    latest = remote(live, home, "backfill", "latest", "--transfer", str(live.transfer_id))
    assert latest["transfer_backfill_id"] == created["transfer_backfill_id"]
    human = cli(env, "backfill", "get", backfill_id, *flags(live))
    assert human.returncode == 0
    assert "COMPLETED" in human.stdout and "2024-01-01 .. 2024-01-31" in human.stdout
    # Complete backfills are not in the list of incomplete ones.
    listed = remote(live, home, "backfill", "list")
    assert created["transfer_backfill_id"] not in [b["transfer_backfill_id"] for b in listed]


def test_create_with_watch_and_json_prints_one_line_per_change(
    live: LiveServer, home: Path
) -> None:
    result = cli(
        base_env(home), "backfill", "create", "--transfer", str(live.transfer_id),
        "--start", "2024-02-01", "--end", "2024-02-29", "--watch", "--json", *flags(live),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert lines[0]["status"] == "CREATED" and lines[0]["transfer_runs_total"] == 29
    assert lines[-1]["status"] == "COMPLETED" and lines[-1]["transfer_runs_completed"] == 29
    # Only changes are printed: no two consecutive lines are equal.
    assert all(a != b for a, b in itertools.pairwise(lines))
    assert {line["transfer_backfill_id"] for line in lines} == {lines[0]["transfer_backfill_id"]}


def test_create_with_watch_shows_progress_then_completed(live: LiveServer, home: Path) -> None:
    result = cli(
        base_env(home), "backfill", "create", "--transfer", str(live.transfer_id),
        "--start", "2024-03-01", "--end", "2024-03-10", "--watch", *flags(live),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "created backfill" in result.stdout and "(10 runs)" in result.stdout
    assert "COMPLETED: 10 of 10 runs completed" in result.stdout
    assert "10/10" in result.stderr  # the progress bar's final frame


def test_watch_of_a_failing_backfill_exits_1_with_the_failed_date(
    live: LiveServer, home: Path
) -> None:
    transfer = fault_transfer(live, "fails", {"fail_dates": ["2024-01-02"], "failure": "terminal"})
    created = remote(
        live, home, "backfill", "create", "--transfer", str(transfer),
        "--start", "2024-01-01", "--end", "2024-01-03",
    )  # fmt: skip
    backfill_id = str(created["transfer_backfill_id"])
    watched = cli(base_env(home), "backfill", "watch", backfill_id, *flags(live))
    assert watched.returncode == 1, watched.stdout + watched.stderr
    assert "FAILED: 2 of 3 runs completed, 1 failed" in watched.stdout
    assert "2024-01-02" in watched.stdout  # the error report
    as_json = cli(base_env(home), "backfill", "watch", backfill_id, "--json", *flags(live))
    assert as_json.returncode == 1
    final = json.loads(as_json.stdout.splitlines()[-1])
    assert final["status"] == "FAILED"
    assert [e["transfer_run_date"] for e in final["error_report"]] == ["2024-01-02"]
    # FAILED counts as incomplete.
    listed = remote(live, home, "backfill", "list")
    assert created["transfer_backfill_id"] in [b["transfer_backfill_id"] for b in listed]
    issues = remote(
        live, home, "run", "list", "--transfer", str(transfer),
        "--start", "2024-01-01", "--end", "2024-01-03", "--issues-only",
    )  # fmt: skip
    assert [(r["data_date"], r["status"]) for r in issues] == [("2024-01-02", "FAILED")]


def test_list_cancel_and_watch_of_a_cancelled_backfill(live: LiveServer, home: Path) -> None:
    transfer = fault_transfer(live, "slow", {"latency_ms": 60000})
    created = remote(
        live, home, "backfill", "create", "--transfer", str(transfer),
        "--start", "2024-01-01", "--end", "2024-01-05",
    )  # fmt: skip
    backfill_id = created["transfer_backfill_id"]
    listed = remote(live, home, "backfill", "list")
    mine = [b for b in listed if b["transfer_backfill_id"] == backfill_id]
    assert len(mine) == 1 and mine[0]["status"] in {"CREATED", "SCHEDULED", "RUNNING"}
    table = cli(base_env(home), "backfill", "list", *flags(live))
    assert table.returncode == 0 and "2024-01-01..2024-01-05" in table.stdout

    cancelled = remote(live, home, "backfill", "cancel", str(backfill_id))
    assert cancelled["status"] == "CANCELLED" and cancelled["removed_time"] is not None
    watched = cli(base_env(home), "backfill", "watch", str(backfill_id), *flags(live))
    assert watched.returncode == 2, watched.stdout + watched.stderr
    assert "CANCELLED" in watched.stdout
    again = cli(base_env(home), "backfill", "cancel", str(backfill_id), *flags(live))
    assert again.returncode == 1
    assert "BACKFILL_NOT_CANCELLABLE" in again.stderr and "HTTP 422" in again.stderr


def test_run_list_and_get(live: LiveServer, home: Path) -> None:
    env = base_env(home)
    created = cli(
        env, "backfill", "create", "--transfer", str(live.transfer_id),
        "--start", "2024-04-01", "--end", "2024-04-05", "--watch", *flags(live),
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    window = ["--transfer", str(live.transfer_id), "--start", "2024-04-01", "--end", "2024-04-05"]
    runs = remote(live, home, "run", "list", *window)
    assert [r["data_date"] for r in runs] == [f"2024-04-0{d}" for d in (5, 4, 3, 2, 1)]
    assert {r["status"] for r in runs} == {"COMPLETED"}
    page = remote(
        live, home, "run", "list", *window, "--direction", "ASC", "--limit", "2", "--offset", "1"
    )
    assert [r["data_date"] for r in page] == ["2024-04-02", "2024-04-03"]
    assert remote(live, home, "run", "list", *window, "--issues-only") == []

    run = remote(live, home, "run", "get", str(runs[0]["id"]))
    assert run["id"] == runs[0]["id"] and run["data_date"] == "2024-04-05"
    assert run["query_details"][0]["status"] == "COMPLETED"
    table = cli(env, "run", "list", *window, *flags(live))
    assert table.returncode == 0 and "2024-04-03" in table.stdout
    detail = cli(env, "run", "get", str(runs[0]["id"]), *flags(live))
    assert detail.returncode == 0 and "Attempts" in detail.stdout and "1000" in detail.stdout
    missing = cli(env, "run", "get", "987654", *flags(live))
    assert missing.returncode == 1 and "TRANSFER_RUN_NOT_FOUND" in missing.stderr


def test_transfers_and_destinations(live: LiveServer, home: Path) -> None:
    env = base_env(home)
    transfers = remote(live, home, "transfer", "list")
    demo = next(t for t in transfers if t["dwh_transfer_id"] == live.transfer_id)
    assert demo["display_name"] == "Demo ad metrics"
    table = cli(env, "transfer", "list", *flags(live))
    assert table.returncode == 0 and "Demo ad metrics" in table.stdout
    one = remote(live, home, "transfer", "get", str(live.transfer_id))
    assert one["transfer_id"] == live.transfer_id and one["table"] == "demo_ad_metrics"

    destinations = remote(live, home, "destination", "list")
    destination = demo["destination"]["id"]
    assert destination in [d["id"] for d in destinations]
    assert remote(live, home, "destination", "get", str(destination))["type"] == "duckdb"
    usage = remote(live, home, "destination", "usage", str(destination))
    assert usage["is_used"] is True
    assert live.transfer_id in [t["transfer_id"] for t in usage["transfers"]]
    in_use = cli(env, "destination", "delete", str(destination), "--yes", *flags(live))
    assert in_use.returncode == 1 and "DESTINATION_IN_USE" in in_use.stderr
    unconfirmed = cli(env, "destination", "delete", str(destination), *flags(live))
    assert unconfirmed.returncode == 1 and "CONFIRMATION_REQUIRED" in unconfirmed.stderr

    # Pause refuses new backfills, unpause allows them, delete hides the transfer.
    transfer = fault_transfer(live, "steer", {})
    assert remote(live, home, "transfer", "pause", str(transfer))["state"] == "PAUSED"
    refused = cli(
        env, "backfill", "create", "--transfer", str(transfer), "--start", "2024-01-01",
        "--end", "2024-01-01", *flags(live),
    )  # fmt: skip
    assert refused.returncode == 1 and "TRANSFER_PAUSED" in refused.stderr
    assert remote(live, home, "transfer", "unpause", str(transfer))["state"] == "ACTIVE"
    assert remote(live, home, "transfer", "delete", str(transfer), "--yes")["deleted"] is True
    gone = cli(env, "transfer", "get", str(transfer), *flags(live))
    assert gone.returncode == 1 and "TRANSFER_NOT_FOUND" in gone.stderr


def test_bad_key_is_one_line_with_the_code(live: LiveServer, home: Path) -> None:
    env = base_env(home)
    bad = ["--server", server_url(live), "--api-key", "odts_nope", "--team", str(live.team_id)]
    result = cli(env, "backfill", "list", *bad)
    assert result.returncode == 1
    assert result.stderr.startswith("error: API_KEY_INVALID: ")
    assert "HTTP 401" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert result.stdout == ""
    as_json = cli(env, "backfill", "list", *bad, "--json")
    assert as_json.returncode == 1
    error = json.loads(as_json.stdout)["error"]
    assert (error["status"], error["code"]) == (401, "API_KEY_INVALID")
    assert error["request_id"]


def test_unknown_backfill_is_404(live: LiveServer, home: Path) -> None:
    result = cli(base_env(home), "backfill", "get", "987654", *flags(live))
    assert result.returncode == 1
    assert "BACKFILL_NOT_FOUND" in result.stderr and "HTTP 404" in result.stderr
    watch = cli(base_env(home), "backfill", "watch", "987654", *flags(live))
    assert watch.returncode == 1 and "BACKFILL_NOT_FOUND" in watch.stderr


def test_unreachable_and_non_json_servers(home: Path) -> None:
    env = base_env(home, OPENDTS_API_KEY="odts_x", OPENDTS_TEAM="1")
    down = cli(env, "backfill", "list", "--server", f"http://127.0.0.1:{free_port()}")
    assert down.returncode == 1 and down.stderr.startswith("error: CONNECTION_FAILED: ")

    class Html(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"<html>not an API</html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = HTTPServer(("127.0.0.1", 0), Html)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}"
        html = cli(env, "backfill", "list", "--server", url)
        assert html.returncode == 1 and html.stderr.startswith("error: BAD_RESPONSE: ")
        with Client(url, "odts_x", team=1) as client, pytest.raises(ApiError) as caught:
            client.list_transfers()
        assert (caught.value.code, caught.value.status) == ("BAD_RESPONSE", 200)
    finally:
        httpd.shutdown()
        httpd.server_close()
    missing = cli(base_env(home), "backfill", "list")
    assert missing.returncode == 1 and "API_KEY_REQUIRED" in missing.stderr


def test_login_writes_a_private_config_that_later_commands_use(
    live: LiveServer, home: Path
) -> None:
    env = base_env(home)
    config = Path(env["OPENDTS_CONFIG"])
    refused = cli(
        env, "login", "--server", server_url(live), "--api-key", "odts_nope",
        "--team", str(live.team_id),
    )  # fmt: skip
    assert refused.returncode == 1 and "API_KEY_INVALID" in refused.stderr
    assert not config.exists()

    logged_in = cli(env, "login", *flags(live))
    assert logged_in.returncode == 0, logged_in.stderr
    assert live.api_key not in logged_in.stdout
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    saved = json.loads(config.read_text())
    assert saved == {"server": server_url(live), "api_key": live.api_key, "team": live.team_id}
    transfers = ok_json(env, "transfer", "list")  # no flags, no environment: the config
    assert live.transfer_id in [t["dwh_transfer_id"] for t in transfers]


def test_flags_override_environment_which_overrides_config(live: LiveServer, home: Path) -> None:
    env = base_env(home)
    assert cli(env, "login", *flags(live)).returncode == 0
    other_team = admin_json(live.env, "team", "create", "--name", "Elsewhere")["team_id"]

    # Environment over config: each variable, on its own, wins.
    bad_key = cli({**env, "OPENDTS_API_KEY": "odts_nope"}, "transfer", "list")
    assert bad_key.returncode == 1 and "API_KEY_INVALID" in bad_key.stderr
    other = cli({**env, "OPENDTS_TEAM": str(other_team)}, "transfer", "list")
    assert other.returncode == 1 and "FORBIDDEN" in other.stderr
    down = f"http://127.0.0.1:{free_port()}"
    unreachable = cli({**env, "OPENDTS_SERVER": down}, "transfer", "list")
    assert unreachable.returncode == 1 and "CONNECTION_FAILED" in unreachable.stderr

    # Flags over environment.
    wrong_env = {
        **env,
        "OPENDTS_API_KEY": "odts_nope",
        "OPENDTS_TEAM": str(other_team),
        "OPENDTS_SERVER": down,
    }
    assert cli(wrong_env, "transfer", "list").returncode == 1
    assert ok_json(wrong_env, "transfer", "list", *flags(live))[0]["dwh_transfer_id"]
    # The environment alone, without any config file, is enough too.
    env_only = base_env(
        home / "elsewhere",
        OPENDTS_SERVER=server_url(live),
        OPENDTS_API_KEY=live.api_key,
        OPENDTS_TEAM=str(live.team_id),
    )
    assert isinstance(ok_json(env_only, "destination", "list"), list)


def test_python_client_write_endpoints(live: LiveServer, tmp_path: Path) -> None:
    with Client(live.base_url, live.api_key, team=live.team_id) as client:
        destination = client.create_destination(
            {
                "type": "duckdb",
                "display_name": "Scratch",
                "fields": {"path": "scratch.duckdb"},
            }
        )
        destination_id = int(destination["id"])
        renamed = client.update_destination(
            destination_id,
            {
                "type": "duckdb",
                "display_name": "Scratch 2",
                "fields": {"path": "scratch.duckdb"},
            },
        )
        assert renamed["display_name"] == "Scratch 2"
        tested = client.test_destination_connection(
            {"type": "duckdb", "display_name": "t", "fields": {"path": "t.duckdb"}}
        )
        assert tested["success"] is True
        created = client.create_transfer(
            {
                "data_source_id": "demo",
                "destination_id": destination_id,
                "display_name": "Scratch load",
                "table": "scratch",
            }
        )
        transfer_id = int(created["transfer_id"])
        assert client.get_transfer(transfer_id)["display_name"] == "Scratch load"
        assert client.set_transfer_state(transfer_id, "pause")["state"] == "PAUSED"
        assert client.destination_usage(destination_id)["is_used"] is True
        client.delete_transfer(transfer_id)
        client.delete_destination(destination_id)
        with pytest.raises(ApiError) as caught:
            client.get_destination(destination_id)
        assert (caught.value.status, caught.value.code) == (404, "DESTINATION_NOT_FOUND")
        assert caught.value.request_id
        with pytest.raises(ApiError) as no_team:
            Client(live.base_url, live.api_key).list_transfers()
        assert no_team.value.code == "TEAM_REQUIRED"


def test_watch_follows_several_backfills_and_exits_as_the_worst_ended(
    live: LiveServer, home: Path
) -> None:
    env = base_env(home)
    failing = fault_transfer(
        live, "one bad day", {"latency_ms": 20, "fail_dates": ["2024-05-02"], "failure": "terminal"}
    )
    fine = fault_transfer(live, "fine", {"latency_ms": 20})
    window = ["--start", "2024-05-01", "--end", "2024-05-04"]
    bad = remote(live, home, "backfill", "create", "--transfer", str(failing), *window)
    good = remote(live, home, "backfill", "create", "--transfer", str(fine), *window)
    ids = [str(bad["transfer_backfill_id"]), str(good["transfer_backfill_id"])]

    watched = cli(env, "backfill", "watch", *ids, *flags(live))
    assert watched.returncode == 1, watched.stdout + watched.stderr
    assert f"backfill {ids[0]} FAILED: 3 of 4 runs completed, 1 failed" in watched.stdout
    assert f"backfill {ids[1]} COMPLETED: 4 of 4 runs completed, 0 failed" in watched.stdout
    assert "2024-05-02" in watched.stdout  # the failed one's error report
    # One progress bar per backfill.
    assert f"backfill {ids[0]}" in watched.stderr and f"backfill {ids[1]}" in watched.stderr

    lines = cli(env, "backfill", "watch", *ids, "--json", *flags(live))
    assert lines.returncode == 1
    last = {
        b["transfer_backfill_id"]: b["status"] for b in map(json.loads, lines.stdout.splitlines())
    }
    assert last == {int(ids[0]): "FAILED", int(ids[1]): "COMPLETED"}
    # Completed and cancelled together: 2.
    slow = fault_transfer(live, "slow to cancel", {"latency_ms": 60000})
    stopped = remote(live, home, "backfill", "create", "--transfer", str(slow), *window)
    remote(live, home, "backfill", "cancel", str(stopped["transfer_backfill_id"]))
    mixed = cli(
        env, "backfill", "watch", ids[1], str(stopped["transfer_backfill_id"]), *flags(live)
    )
    assert mixed.returncode == 2, mixed.stdout + mixed.stderr


def test_watch_without_ids_follows_what_is_running(live: LiveServer, home: Path) -> None:
    env = base_env(home)
    # Three runs of 1.5 s one after the other: still running when the watch starts.
    transfer = fault_transfer(live, "short", {"latency_ms": 1500})
    created = remote(
        live, home, "backfill", "create", "--transfer", str(transfer),
        "--start", "2024-06-01", "--end", "2024-06-03",
    )  # fmt: skip
    watched = cli(env, "backfill", "watch", "--json", *flags(live))
    assert watched.returncode == 0, watched.stdout + watched.stderr
    seen = [json.loads(line) for line in watched.stdout.splitlines()]
    mine = [b for b in seen if b["transfer_backfill_id"] == created["transfer_backfill_id"]]
    assert mine and mine[-1]["status"] == "COMPLETED"
    # Nothing running: says so and exits 0.
    idle = cli(env, "backfill", "watch", *flags(live))
    assert idle.returncode == 0 and "No backfill is running." in idle.stdout


def test_list_filters_by_status_and_transfer(live: LiveServer, home: Path) -> None:
    transfer = fault_transfer(live, "listed", {})
    created = remote(
        live, home, "backfill", "create", "--transfer", str(transfer),
        "--start", "2024-07-01", "--end", "2024-07-02",
    )  # fmt: skip
    backfill_id = created["transfer_backfill_id"]
    watched = cli(base_env(home), "backfill", "watch", str(backfill_id), *flags(live))
    assert watched.returncode == 0, watched.stdout + watched.stderr
    mine = remote(live, home, "backfill", "list", "--transfer", str(transfer), "--status", "all")
    assert [(b["transfer_id"], b["status"]) for b in mine] == [(transfer, "COMPLETED")]
    assert mine[0]["transfer_backfill_id"] == backfill_id
    assert remote(live, home, "backfill", "list", "--transfer", str(transfer)) == mine
    none = remote(live, home, "backfill", "list", "--transfer", str(transfer), "--status", "FAILED")
    assert none == []
    bad = cli(base_env(home), "backfill", "list", "--status", "DONE", *flags(live))
    assert bad.returncode == 1 and "INVALID_PARAMETER" in bad.stderr and "'status'" in bad.stderr


def test_transfer_and_destination_from_files(live: LiveServer, home: Path, tmp_path: Path) -> None:
    env = base_env(home)

    def write(name: str, body: Any) -> str:
        path = tmp_path / name
        path.write_text(json.dumps(body))
        return str(path)

    warehouse = "cli.duckdb"
    destination_body = {
        "type": "duckdb",
        "display_name": "CLI warehouse",
        "fields": {"path": warehouse},
    }
    tested = cli(
        env, "destination", "test", "--file", write("d.json", destination_body), *flags(live)
    )
    assert tested.returncode == 0 and "connection succeeded" in tested.stdout
    team_folder = Path(live.env["OPENDTS_DATA_DIR"]) / "teams" / str(live.team_id)
    team_folder.mkdir(parents=True, exist_ok=True)
    (team_folder / "junk.duckdb").write_bytes(b"not a database " * 100)
    unusable = {"type": "duckdb", "display_name": "x", "fields": {"path": "junk.duckdb"}}
    failed = cli(env, "destination", "test", "-f", write("bad.json", unusable), *flags(live))
    assert failed.returncode == 1 and "connection failed" in failed.stdout
    outside = {"type": "duckdb", "display_name": "x", "fields": {"path": str(tmp_path)}}
    refused = cli(env, "destination", "test", "-f", write("out.json", outside), *flags(live))
    assert refused.returncode == 1 and "absolute paths are not allowed" in refused.stderr
    destination = remote(live, home, "destination", "create", "--file", str(tmp_path / "d.json"))
    destination_id = destination["id"]
    renamed = {**destination_body, "display_name": "CLI warehouse 2"}
    remote(
        live, home, "destination", "update", str(destination_id), "-f", write("d2.json", renamed)
    )
    assert remote(live, home, "destination", "get", str(destination_id))["display_name"] == (
        "CLI warehouse 2"
    )

    transfer_body = {
        "display_name": "CLI demo",
        "data_source_id": "demo",
        "destination_id": destination_id,
        "table": "cli_demo",
        "source_config": {"rows_per_day": 10},
    }
    valid = remote(live, home, "transfer", "validate", "--file", write("t.json", transfer_body))
    assert valid["is_valid"] is True
    broken = {**transfer_body, "source_config": {"rows_per_day": -1}}
    invalid = cli(env, "transfer", "validate", "-f", write("t_bad.json", broken), *flags(live))
    assert invalid.returncode == 1 and "rows_per_day" in invalid.stdout
    created = remote(live, home, "transfer", "create", "--file", str(tmp_path / "t.json"))
    transfer_id = created["transfer_id"]
    update = {**transfer_body, "display_name": "CLI demo renamed"}
    remote(live, home, "transfer", "update", str(transfer_id), "-f", write("t2.json", update))
    assert remote(live, home, "transfer", "get", str(transfer_id))["display_name"] == (
        "CLI demo renamed"
    )
    # The source catalogue, and data loaded by a backfill of the new transfer.
    sources = remote(live, home, "transfer", "sources")
    assert "demo" in [s["data_source_id"] for s in sources["data_sources"]]
    ran = cli(
        env, "backfill", "create", "--transfer", str(transfer_id), "--start", "2024-01-01",
        "--end", "2024-01-03", "--watch", *flags(live),
    )  # fmt: skip
    assert ran.returncode == 0, ran.stdout + ran.stderr

    # Bad files are named, with what is wrong, never a traceback.
    (tmp_path / "not.json").write_text("{nope")
    not_json = cli(env, "transfer", "create", "--file", str(tmp_path / "not.json"), *flags(live))
    assert not_json.returncode == 1 and "INVALID_FILE" in not_json.stderr
    assert "not.json is not valid JSON" in not_json.stderr
    missing = cli(env, "destination", "create", "--file", str(tmp_path / "nope"), *flags(live))
    assert missing.returncode == 1 and "INVALID_FILE" in missing.stderr
    a_list = cli(env, "transfer", "create", "--file", write("list.json", [1]), *flags(live))
    assert a_list.returncode == 1 and "must hold a JSON object" in a_list.stderr
    refused = cli(env, "transfer", "create", "--file", str(tmp_path / "t_bad.json"), *flags(live))
    assert refused.returncode == 1 and "HTTP 400" in refused.stderr


def test_a_broken_config_is_named_and_flags_work_around_it(live: LiveServer, home: Path) -> None:
    env = base_env(home)
    config = Path(env["OPENDTS_CONFIG"])
    config.parent.mkdir(parents=True)
    config.write_text("{not json")
    broken = cli(env, "transfer", "list")
    assert broken.returncode == 1 and "CONFIG_INVALID" in broken.stderr
    assert str(config) in broken.stderr and "opendts login" in broken.stderr
    # Everything given by flags: the file is not needed, so not read.
    assert isinstance(ok_json(env, "transfer", "list", *flags(live)), list)
    # A team that is not a number is named with where it came from.
    keyed = ["--server", server_url(live), "--api-key", live.api_key]
    bad_team = cli({**env, "OPENDTS_TEAM": "marketing"}, "transfer", "list", *keyed)
    assert bad_team.returncode == 1 and "INVALID_SETTING" in bad_team.stderr
    assert "OPENDTS_TEAM must be an integer team id, got 'marketing'" in bad_team.stderr
    # login replaces it.
    assert cli(env, "login", *flags(live)).returncode == 0
    assert isinstance(ok_json(env, "transfer", "list"), list)
