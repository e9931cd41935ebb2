"""Credentials inside connector settings: found, masked, restored, and bound to where they go."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import SecretStr

from opendts.connectors import credentials
from opendts.connectors.base import ConfigError, ConnectorSettings
from opendts.connectors.destinations.postgresql import PostgreSQLSettings
from opendts.connectors.secret_urls import DATABASE, HTTP, mask_url, restore_url
from opendts.connectors.sources.http import HttpSettings
from opendts.connectors.sources.sql import SqlSettings


@pytest.mark.parametrize(
    ("url", "kind", "shown"),
    [
        ("https://api.example.com/a?day={date}", HTTP, "https://api.example.com/a?day={date}"),
        (
            "https://u:p@api.example.com/a?key=k1&day={date:%Y%m%d}&key=k2#top",
            HTTP,
            "https://***:***@api.example.com/a?key=***&day={date:%Y%m%d}&key=***#top",
        ),
        ("https://sk_live_abc@api.example.com/", HTTP, "https://***@api.example.com/"),
        ("https://h/?flag&empty=", HTTP, "https://h/?flag&empty="),
        ("https://[::1]:8443/x?t=1", HTTP, "https://[::1]:8443/x?t=***"),
        (
            "postgresql://loader:pw%40x@db:5432/analytics?sslmode=require",
            DATABASE,
            "postgresql://loader:***@db:5432/analytics?sslmode=***",
        ),
        ("postgresql://loader@db/analytics", DATABASE, "postgresql://loader@db/analytics"),
        ("sqlite:///relative.db", DATABASE, "sqlite:///relative.db"),
    ],
)
def test_urls_are_masked_in_place_without_reencoding(url: str, kind: str, shown: str) -> None:
    assert mask_url(url, kind) == shown
    assert mask_url(shown, kind) == shown  # masking twice changes nothing
    restored, used, missing = restore_url(shown, url)
    assert restored == url and missing == [] and used == (shown != url)


def test_a_masked_url_part_with_nothing_stored_is_missing() -> None:
    _, used, missing = restore_url("https://***:***@h/?k=***", "https://h/?other=1")
    assert not used
    assert missing == ["its user name", "its password", "its query parameter 'k'"]


def http(**config: Any) -> dict[str, Any]:
    return credentials.settle(HttpSettings, config, None, None)


def test_split_and_join_are_inverse_and_plain_holds_no_credential() -> None:
    values = http(
        url="https://u:pw1@api.example.com/x?k=key2&d={date}",
        params={"p": "key3", "day": "{date}"},
        headers={"X-Api-Key": "key4"},
        token="key5",
    )
    plain, sealed = credentials.split(HttpSettings, values)
    assert credentials.join(plain, sealed) == values
    assert not [s for s in ("pw1", "key2", "key3", "key4", "key5") if s in repr(plain)]
    assert sealed[credentials.BOUND] == {"url": "https://api.example.com:443"}
    assert credentials.mask(HttpSettings, values) == plain
    assert sorted(credentials.secret_values(HttpSettings, values)) == [
        "key2",
        "key3",
        "key4",
        "key5",
        "pw1",
        "u",
    ]


def test_no_credential_means_nothing_sealed() -> None:
    plain, sealed = credentials.split(HttpSettings, http(url="https://h/x?day={date}"))
    assert sealed == {} and plain["url"] == "https://h/x?day={date}"


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example.com/x",  # another host
        "http://api.example.com/x",  # the same host in clear
        "https://api.example.com:444/x",  # another port
        "https://API.example.com@evil.example.com/x",  # userinfo that looks like a host
    ],
)
def test_kept_credentials_do_not_follow_the_url_elsewhere(url: str) -> None:
    stored = http(url="https://api.example.com/x", token="t0k")
    with pytest.raises(ConfigError) as caught:
        credentials.settle(HttpSettings, {"url": url}, stored, None)
    assert caught.value.problems[0][0] == "url"
    assert "send 'token' again" in caught.value.problems[0][1]


def test_the_same_origin_spelt_differently_keeps_them() -> None:
    stored = http(url="https://api.example.com/x", token="t0k")
    for url in ("HTTPS://Api.Example.com:443/y", "https://api.example.com/{date:%Y}/z"):
        kept = credentials.settle(HttpSettings, {"url": url}, stored, None)
        assert kept["token"] == "t0k"


def test_whole_credentials_are_kept_when_missing_blank_null_or_masked() -> None:
    stored = http(url="https://h/", token="t0k")
    for sent in ({}, {"token": ""}, {"token": None}, {"token": "***"}):
        kept = credentials.settle(HttpSettings, {"url": "https://h/", **sent}, stored, None)
        assert kept["token"] == "t0k"
    replaced = credentials.settle(HttpSettings, {"url": "https://h/", "token": "new"}, stored, None)
    assert replaced["token"] == "new"


def test_map_values_are_kept_only_when_sent_back_masked() -> None:
    stored = http(url="https://h/", headers={"A": "one", "B": "two"})
    kept = credentials.settle(
        HttpSettings, {"url": "https://h/", "headers": {"A": "***"}}, stored, None
    )
    assert kept["headers"] == {"A": "one"}  # B was left out: removed, not kept


def test_a_database_url_is_bound_to_all_but_its_password() -> None:
    config = {"url": "postgresql://u:pw@db/a?application_name=etl", "query": "SELECT :date"}
    stored = credentials.settle(SqlSettings, config, None, None)
    same = {"url": "postgresql://u:***@db/a?application_name=***", "query": "SELECT 1, :date"}
    assert credentials.settle(SqlSettings, same, stored, None)["url"] == config["url"]
    for elsewhere in (
        "postgresql://u:***@db/b?application_name=***",
        "postgresql://u:***@db/a?application_name=evil",
    ):
        with pytest.raises(ConfigError):
            credentials.settle(SqlSettings, {**same, "url": elsewhere}, stored, None)
    # Without a password there is nothing to carry: the URL may go anywhere.
    free = {**same, "url": "postgresql://u@other/b"}
    assert credentials.settle(SqlSettings, free, stored, None)["url"] == "postgresql://u@other/b"
    # Left out as a whole, the SecretStr URL is kept whole.
    assert (
        credentials.settle(SqlSettings, {"query": "SELECT :date"}, stored, None)["url"]
        == (config["url"])
    )


def test_postgresql_password_is_bound_to_host_port_database_user_and_sslmode() -> None:
    stored = credentials.settle(
        PostgreSQLSettings, {"host": "db", "database": "a", "password": "pw"}, None, None
    )
    plain, _ = credentials.split(PostgreSQLSettings, stored)
    ok = credentials.settle(PostgreSQLSettings, {**plain, "schema_name": "s"}, stored, None)
    assert ok["password"] == "pw"
    assert credentials.settle(PostgreSQLSettings, {**plain, "port": 5432}, stored, None)
    for change in (
        {"host": "x"},
        {"port": 1},
        {"database": "b"},
        {"user": "v"},
        {"sslmode": "disable"},
    ):
        with pytest.raises(ConfigError) as caught:
            credentials.settle(PostgreSQLSettings, {**plain, **change}, stored, None)
        assert caught.value.problems[0][0] == next(iter(change))


class PluginSettings(ConnectorSettings):
    """A third-party connector that says nothing about where its key goes."""

    endpoint: str
    table: str = "t"
    key: SecretStr | None = None


def test_a_connector_that_does_not_say_binds_its_credentials_to_every_setting() -> None:
    stored = credentials.settle(PluginSettings, {"endpoint": "e", "key": "k"}, None, None)
    with pytest.raises(ConfigError) as caught:
        credentials.settle(PluginSettings, {"endpoint": "e", "table": "u"}, stored, None)
    assert caught.value.problems[0][0] == "table"
    kept = credentials.settle(PluginSettings, {"endpoint": "e"}, stored, None)
    assert kept["key"] == "k"


def test_partial_settings_keep_only_what_was_set_and_merge_maps() -> None:
    base = credentials.settle(
        HttpSettings,
        {"url": "https://h/x", "headers": {"X-Key": "k"}},
        None,
        None,
        partial=True,
    )
    assert base == {"url": "https://h/x", "headers": {"X-Key": "k"}}
    assert credentials.unbound(HttpSettings, {"token": "t"}) == ["url"]
    with pytest.raises(ConfigError):
        credentials.settle(HttpSettings, {"url": "ftp://h"}, None, None, partial=True)
    merged = credentials.merge(
        HttpSettings, base, {"headers": {"Accept": "a"}, "url": "https://h/y"}
    )
    assert merged == {"url": "https://h/y", "headers": {"X-Key": "k", "Accept": "a"}}


def test_moved_compares_with_the_place_sealed_with_the_credentials() -> None:
    values = http(url="https://api.example.com/x", token="t0k")
    _, sealed = credentials.split(HttpSettings, values)
    assert credentials.moved(HttpSettings, sealed, values) == []
    assert credentials.moved(HttpSettings, sealed, {**values, "url": "https://evil/"}) == ["url"]
    assert credentials.moved(HttpSettings, {"token": "t0k"}, {"url": "https://evil/"}) == []
