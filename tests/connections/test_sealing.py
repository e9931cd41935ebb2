"""Rows saved before credentials in URLs and headers were recognised get them sealed on start."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import select

from opendts.connections.sealing import seal_plain_credentials
from opendts.connectors import credentials
from opendts.destinations.models import Destination
from opendts.kit.db import Database
from opendts.kit.secrets import box_for
from opendts.settings import Settings
from opendts.transfers.models import Transfer
from tests.factories import Account

KEY = "legacy-Key-31f0"
TOKEN = "legacy-Token-a9c2"
PASSWORD = "legacy-Password-6b1e"


def test_older_rows_get_their_clear_credentials_sealed_once(
    db: Database, settings: Settings, account: Account, tmp_path: Path
) -> None:
    box = box_for(settings.data_dir, settings.secret_key)
    url = f"https://api.example.com/ads?day={{date}}&api_key={KEY}"
    legacy = {"url": url, "headers": {"X-Api-Key": KEY}, "records_path": "data"}
    with db.session(write=True) as session:
        destination = Destination(
            team_id=account.team_id,
            display_name="PG",
            type="postgresql",
            fields=json.dumps({"host": "db.example.com", "database": "a", "user": "u"}),
            secrets=box.seal({"password": PASSWORD}),
        )
        session.add(destination)
        session.flush()
        transfer = Transfer(
            team_id=account.team_id,
            display_name="Legacy",
            kind="load",
            source="http",
            config=json.dumps(legacy),
            source_secrets=box.seal({"token": TOKEN}),
            destination_id=destination.id,
            table_name="ads",
        )
        session.add(transfer)
        session.flush()
        transfer_id = transfer.id
    with db.session(write=True) as session:
        assert seal_plain_credentials(session, box) == 2
    with db.session(write=True) as session:
        assert seal_plain_credentials(session, box) == 0
        row = session.get(Transfer, transfer_id)
        assert row is not None
        assert KEY not in row.config and TOKEN not in row.config
        sealed = box.open(row.source_secrets)
        assert credentials.join(json.loads(row.config), sealed) == {**legacy, "token": TOKEN}
        assert sealed[credentials.BOUND] == {"url": "https://api.example.com:443"}
        kept = session.scalars(select(Destination)).one()
        assert box.open(kept.secrets)[credentials.BOUND]["host"] == '"db.example.com"'
