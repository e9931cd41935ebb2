"""Acceptance through the CLI: the admin commands a user scripts against."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.live import admin_json, live_server, opendts, server_env


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return server_env(tmp_path)


def test_demo_prints_ids_and_a_key(env: dict[str, str]) -> None:
    first = admin_json(env, "demo")
    second = admin_json(env, "demo")
    assert set(first) == {
        "team_id",
        "user_id",
        "api_key",
        "transfer_id",
        "destination_id",
        "warehouse",
    }
    ids = ("team_id", "user_id", "transfer_id", "destination_id")
    assert all(isinstance(first[k], int) for k in ids)
    assert str(first["api_key"]).startswith("odts_")
    # Each call makes a new team with its own key.
    assert first["team_id"] != second["team_id"]
    assert first["api_key"] != second["api_key"]
    # ... and its own warehouse file in its own folder.
    data_dir = Path(env["OPENDTS_DATA_DIR"])
    assert first["warehouse"] == str(
        data_dir / "teams" / str(first["team_id"]) / "warehouse.duckdb"
    )
    assert first["warehouse"] != second["warehouse"]


def test_errors_are_one_line_with_a_code_and_no_traceback(env: dict[str, str]) -> None:
    result = opendts(env, "admin", "key", "create", "--user", "999", check=False)
    assert result.returncode == 1
    assert "USER_NOT_FOUND" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    as_json = opendts(env, "admin", "key", "create", "--user", "999", "--json", check=False)
    assert json.loads(as_json.stdout)["error"]["code"] == "USER_NOT_FOUND"


def test_unknown_scope_is_refused(env: dict[str, str]) -> None:
    team = admin_json(env, "team", "create", "--name", "T")
    user = admin_json(
        env, "user", "create", "--email", "a@example.com", "--team", str(team["team_id"])
    )
    result = opendts(
        env, "admin", "key", "create", "--user", str(user["user_id"]), "--scope", "root",
        check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert "dwh_transfers_read" in result.stderr


def test_scripted_setup_then_revoke_takes_effect_at_once(tmp_path: Path) -> None:
    with live_server(tmp_path) as server:
        team = server.admin("team", "create", "--name", "Analytics")
        user = server.admin(
            "user", "create", "--email", "ana@example.com", "--team", str(team["team_id"]),
            "--role", "viewer",
        )  # fmt: skip
        assert user["role"] == "viewer"
        key = server.admin(
            "key", "create", "--user", str(user["user_id"]), "--scope", "dwh_transfers_read"
        )
        assert key["scopes"] == ["dwh_transfers_read"]
        headers = {"Authorization": f"Bearer {key['api_key']}"}
        url = f"{server.base_url}/teams/{team['team_id']}/backfills"
        assert httpx.get(url, headers=headers).status_code == 200
        # A viewer cannot create, and a read-only key cannot either.
        transfer = server.admin("transfer", "create", "--team", str(team["team_id"]), "--name", "x")
        created = httpx.post(
            f"{server.base_url}/teams/{team['team_id']}/transfers/{transfer['transfer_id']}/backfills",
            json={"range_start": "2024-01-01", "range_end": "2024-01-02"},
            headers=headers,
        )
        assert created.status_code == 403
        server.admin("key", "revoke", str(key["key_id"]))
        revoked = httpx.get(url, headers=headers)
        assert revoked.status_code == 401
        assert revoked.json()["error"]["code"] == "API_KEY_INVALID"


def test_paused_and_deleted_transfers_refuse_backfills(tmp_path: Path) -> None:
    with live_server(tmp_path) as server:
        url = f"{server.base_url}/teams/{server.team_id}/transfers/{server.transfer_id}/backfills"
        body = {"range_start": "2024-01-01", "range_end": "2024-01-02"}
        server.admin("transfer", "pause", str(server.transfer_id))
        paused = httpx.post(url, json=body, headers=server.headers)
        assert (paused.status_code, paused.json()["error"]["code"]) == (422, "TRANSFER_PAUSED")
        server.admin("transfer", "unpause", str(server.transfer_id))
        assert httpx.post(url, json=body, headers=server.headers).status_code == 200
        server.admin("transfer", "delete", str(server.transfer_id))
        body = {"range_start": "2024-02-01", "range_end": "2024-02-02"}
        deleted = httpx.post(url, json=body, headers=server.headers)
        assert (deleted.status_code, deleted.json()["error"]["code"]) == (422, "TRANSFER_DELETED")


def test_unreachable_database_is_one_clear_line_with_the_password_hidden(
    env: dict[str, str],
) -> None:
    env = {**env, "OPENDTS_DATABASE_URL": "postgresql://ana:s3cret@127.0.0.1:1/opendts"}
    result = opendts(env, "admin", "demo", check=False)
    assert result.returncode == 1
    assert "DATABASE_UNAVAILABLE" in result.stderr
    assert "s3cret" not in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_on_a_taken_port_says_so(env: dict[str, str]) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = opendts(env, "serve", "--port", str(port), check=False)
    assert result.returncode == 1
    assert "ADDRESS_IN_USE" in result.stderr
    assert "--port" in result.stderr


def test_scopes_can_be_repeated_or_comma_separated(env: dict[str, str]) -> None:
    team = admin_json(env, "team", "create", "--name", "T")
    user = admin_json(
        env, "user", "create", "--email", "s@example.com", "--team", str(team["team_id"])
    )
    key = admin_json(
        env, "key", "create", "--user", str(user["user_id"]),
        "--scope", "dwh_transfers_read,dwh_transfers_write",
    )  # fmt: skip
    assert key["scopes"] == ["dwh_transfers_read", "dwh_transfers_write"]


def test_transfer_kind_config_and_parallelism(env: dict[str, str]) -> None:
    team = admin_json(env, "team", "create", "--name", "T")["team_id"]
    created = admin_json(
        env, "transfer", "create", "--team", str(team), "--name", "slow", "--kind", "fault",
        "--config", '{"latency_ms": 250, "failure_rate": 0.1}', "--max-parallel-runs", "4",
    )  # fmt: skip
    assert created["kind"] == "fault" and created["max_parallel_runs"] == 4
    assert created["config"] == {"latency_ms": 250, "failure_rate": 0.1}
    updated = admin_json(
        env, "transfer", "update", str(created["transfer_id"]), "--max-parallel-runs", "16"
    )
    assert updated["max_parallel_runs"] == 16 and updated["kind"] == "fault"
    bad_field = opendts(
        env, "admin", "transfer", "create", "--team", str(team), "--name", "x",
        "--kind", "fault", "--config", '{"latency_ms": -5}', "--json", check=False,
    )  # fmt: skip
    error = json.loads(bad_field.stdout)["error"]
    assert bad_field.returncode == 1
    assert error["code"] == "INVALID_TRANSFER_CONFIG" and "latency_ms" in error["description"]
    unknown_kind = opendts(
        env, "admin", "transfer", "create", "--team", str(team), "--name", "x", "--kind", "s3",
        check=False,
    )  # fmt: skip
    assert unknown_kind.returncode == 1
    assert "UNKNOWN_TRANSFER_KIND" in unknown_kind.stderr and "noop" in unknown_kind.stderr
    not_json = opendts(
        env, "admin", "transfer", "update", str(created["transfer_id"]), "--config", "{",
        check=False,
    )  # fmt: skip
    assert not_json.returncode == 1 and "not valid JSON" in not_json.stderr
    assert "Traceback" not in unknown_kind.stderr + not_json.stderr + bad_field.stderr


def test_a_bad_setting_is_one_line_naming_the_variable(env: dict[str, str]) -> None:
    result = opendts({**env, "OPENDTS_LEASE_SECONDS": "-1"}, "worker", check=False)
    assert result.returncode == 1
    assert "INVALID_SETTING" in result.stderr and "OPENDTS_LEASE_SECONDS" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
