from starlette.testclient import TestClient

from tests.factories import Account


def test_create_then_list(client: TestClient, account: Account) -> None:
    url = f"/v1/teams/{account.team_id}/transfers/{account.transfer_id}/backfills"
    created = client.post(
        url, json={"range_start": "2024-01-01", "range_end": "2024-01-31"}, headers=account.headers
    )
    assert created.status_code == 200, created.text
    listed = client.get(f"/v1/teams/{account.team_id}/backfills", headers=account.headers)
    assert [b["transfer_backfill_id"] for b in listed.json()["data"]] == [
        created.json()["data"]["transfer_backfill_id"]
    ]
