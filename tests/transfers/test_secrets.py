"""Credentials never leave in clear: not in API responses, logs, or the metadata database."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from tests.live import live_server

PASSWORD = "pw-Zq8!never-in-clear"
TOKEN = "tok-Xk3-never-in-clear"


def test_credentials_stay_out_of_responses_logs_and_the_database(tmp_path: Path) -> None:
    with live_server(
        tmp_path,
        log_level="debug",
        OPENDTS_RUN_MAX_ATTEMPTS="1",
        OPENDTS_ALLOWED_NETWORKS="127.0.0.1/32",  # the unreachable servers are on this machine
    ) as live:
        api = httpx.Client(base_url=live.base_url, headers=live.headers, timeout=30)
        team = f"/teams/{live.team_id}"
        responses = []
        # A PostgreSQL destination that cannot be reached, so runs fail and say why.
        dest = api.post(
            f"{team}/destinations",
            json={
                "type": "postgresql",
                "display_name": "Unreachable",
                "fields": {"port": 1, "database": "nowhere", "user": "u", "password": PASSWORD},
            },
        )
        assert dest.status_code == 201, dest.text
        destination_id = dest.json()["data"]["id"]
        responses.append(dest)
        transfer = api.post(
            f"{team}/transfers",
            json={
                "data_source_id": "http",
                "destination_id": destination_id,
                "display_name": "Secret API",
                "source_config": {
                    "url": "http://127.0.0.1:9/report?day={date}",
                    "token": TOKEN,
                    "max_retries": 0,
                },
            },
        )
        assert transfer.status_code == 201, transfer.text
        transfer_id = transfer.json()["data"]["transfer_id"]
        responses.append(transfer)
        responses.append(
            api.post(
                f"{team}/destinations/test-connection",
                json={"type": "postgresql", "fields": {}, "destination_id": destination_id},
            )
        )
        assert responses[-1].json()["data"]["success"] is False
        # A demo-sourced transfer into the same destination fails at the write.
        demo = api.post(
            f"{team}/transfers",
            json={"data_source_id": "demo", "destination_id": destination_id, "display_name": "D"},
        ).json()["data"]["transfer_id"]
        for tid in (transfer_id, demo):
            created = api.post(
                f"{team}/transfers/{tid}/backfills",
                json={"range_start": "2024-01-01", "range_end": "2024-01-01"},
            )
            backfill_id = created.json()["data"]["transfer_backfill_id"]
            deadline = time.monotonic() + 60
            while True:
                got = api.get(f"{team}/backfills/{backfill_id}")
                if got.json()["data"]["status"] in ("FAILED", "COMPLETED"):
                    break
                assert time.monotonic() < deadline
                time.sleep(0.1)
            assert got.json()["data"]["status"] == "FAILED"
            assert got.json()["data"]["error_report"][0]["error"]
            responses.append(got)
            runs = api.get(
                f"{team}/transfers/{tid}/runs",
                params={"start_date": "2024-01-01", "end_date": "2024-01-01"},
            )
            responses.append(runs)
            responses.append(api.get(f"{team}/transfer_runs/{runs.json()['data'][0]['id']}"))
        for url in (
            f"{team}/destinations",
            f"{team}/destinations/{destination_id}",
            f"{team}/transfers",
            f"{team}/transfers/{transfer_id}",
        ):
            responses.append(api.get(url))
    for response in responses:
        assert PASSWORD not in response.text and TOKEN not in response.text, response.url
    logs = "".join(p.read_text() for p in tmp_path.glob("serve-*.log"))
    assert "Unreachable" in logs or "backfill" in logs.lower()  # the log did capture activity
    assert PASSWORD not in logs and TOKEN not in logs
    for path in tmp_path.glob("opendts.db*"):
        raw = path.read_bytes()
        assert PASSWORD.encode() not in raw and TOKEN.encode() not in raw, path
