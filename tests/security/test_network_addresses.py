"""Which addresses a team may reach: every spelling lands on the real address, every
special-use range is refused unless the operator allows it, and a name is judged by every
address it resolves to."""

from __future__ import annotations

from ipaddress import ip_address
from pathlib import Path

import pytest

from opendts.connectors import network
from opendts.connectors.boundary import Boundary
from opendts.connectors.network import AddressRefused, NetworkPolicy, PolicyError
from opendts.settings import Settings


def team(*allowed: str) -> Boundary:
    return Boundary(team_id=1, data_dir=Path("/nonexistent"), allowed_networks=allowed)


# --- spellings ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spelling", "address"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("0x7F.0.0.1", "127.0.0.1"),
        ("017700000001", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("127.0.1", "127.0.0.1"),
        ("127.0.0.1.", "127.0.0.1"),
        ("0", "0.0.0.0"),
        ("0x", "0.0.0.0"),
        ("169.254.43518", "169.254.169.254"),
        ("2852039166", "169.254.169.254"),
        ("[::1]", "::1"),
        ("::1", "::1"),
        ("[0:0:0:0:0:0:0:1]", "::1"),
        ("[::ffff:127.0.0.1]", "::ffff:127.0.0.1"),
        ("[::FFFF:7F00:1]", "::ffff:127.0.0.1"),
    ],
)
def test_odd_spellings_land_on_the_real_address(spelling: str, address: str) -> None:
    assert network.parse_host(spelling) == ip_address(address)


@pytest.mark.parametrize(
    ("spelling", "name"),
    [
        ("localhost.", "localhost"),
        ("LocalHost", "localhost"),
        ("API.Example.COM.", "api.example.com"),
        ("1.2.3.example", "1.2.3.example"),
        ("bücher.example", "xn--bcher-kva.example"),
    ],
)
def test_names_are_canonical(spelling: str, name: str) -> None:
    assert network.parse_host(spelling) == name


@pytest.mark.parametrize(
    "spelling",
    ["", "1.2.3.4.5", "256.0.0.1", "1.2.3.256", "127.0.0.08", "a..b", "exa mple.com", "[1.2.3.4]"],
)
def test_malformed_hosts_are_errors(spelling: str) -> None:
    with pytest.raises(ValueError):
        network.parse_host(spelling)


# --- classification -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.255.254", "loopback"),
        ("::1", "loopback"),
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.1", "private"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("fd12:3456::1", "unique-local"),
        ("224.0.0.251", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("0.1.2.3", "this network"),
        ("255.255.255.255", "broadcast"),
        ("240.0.0.1", "reserved"),
        ("192.0.2.7", "documentation"),
        ("198.51.100.7", "documentation"),
        ("203.0.113.7", "documentation"),
        ("2001:db8::1", "documentation"),
        ("198.18.0.1", "benchmarking"),
        ("192.0.0.8", "IETF protocol"),
        ("169.254.169.254", "metadata"),
        ("169.254.170.2", "metadata"),
        ("fd00:ec2::254", "metadata"),
        ("100.100.100.200", "metadata"),
        ("168.63.129.16", "metadata"),
        ("::ffff:127.0.0.1", "IPv4-mapped form of 127.0.0.1, a loopback"),
        ("::ffff:169.254.169.254", "IPv4-mapped form of 169.254.169.254, the cloud metadata"),
        ("::ffff:0:10.0.0.1", "IPv4-translated form of 10.0.0.1, a private"),
        ("::127.0.0.1", "IPv4-compatible form of 127.0.0.1"),
        ("64:ff9b::7f00:1", "NAT64 form of 127.0.0.1"),
        ("64:ff9b::a9fe:a9fe", "NAT64 form of 169.254.169.254"),
        ("64:ff9b:1::1", "local-use NAT64"),
        ("2002:7f00:1::1", "6to4 form of 127.0.0.1"),
        ("2002:a00:1::", "6to4 form of 10.0.0.1"),
        ("2001:0:4136:e378::1", "Teredo"),
        ("fec0::1", "site-local"),
        ("100::1", "discard"),
        ("4000::1", "reserved"),
    ],
)
def test_special_use_addresses_are_refused_by_default(address: str, reason: str) -> None:
    found = network.special_use(ip_address(address))
    assert found is not None and reason in found
    assert NetworkPolicy().refusal(ip_address(address)) == found


@pytest.mark.parametrize(
    "address",
    [
        "8.8.8.8",
        "93.184.216.34",
        "1.1.1.1",
        "2606:4700:4700::1111",
        "64:ff9b::808:808",
        "2002:808:808::1",
    ],
)
def test_public_addresses_are_reachable(address: str) -> None:
    assert network.special_use(ip_address(address)) is None
    assert NetworkPolicy().refusal(ip_address(address)) is None


# --- the operator's policy ----------------------------------------------------------------


def test_allowed_networks_open_what_they_name_and_nothing_else() -> None:
    rules = NetworkPolicy.parse(["127.0.0.1/32", "10.0.0.0/8", "::1/128", "db.internal"])
    assert rules.refusal(ip_address("127.0.0.1")) is None
    assert rules.refusal(ip_address("::ffff:127.0.0.1")) is None  # the same address
    assert rules.refusal(ip_address("127.0.0.2")) is not None
    assert rules.refusal(ip_address("10.9.8.7")) is None
    assert rules.refusal(ip_address("192.168.0.1")) is not None
    assert rules.refusal(ip_address("::1")) is None
    # A name the operator allowed may resolve to anything but a metadata service.
    assert rules.refusal(ip_address("192.168.0.1"), "db.internal") is None
    assert rules.refusal(ip_address("192.168.0.1"), "other.internal") is not None
    assert rules.refusal(ip_address("169.254.169.254"), "db.internal") is not None


def test_metadata_addresses_open_only_to_an_entry_naming_them_exactly() -> None:
    metadata = ip_address("169.254.169.254")
    for wide in (["169.254.0.0/16"], ["0.0.0.0/0"], ["::/0", "0.0.0.0/0"]):
        assert NetworkPolicy.parse(wide).refusal(metadata) is not None
    assert NetworkPolicy.parse(["0.0.0.0/0"]).refusal(ip_address("10.1.1.1")) is None
    assert NetworkPolicy.parse(["169.254.169.254/32"]).refusal(metadata) is None
    assert NetworkPolicy.parse(["169.254.169.254"]).refusal(metadata) is None
    mapped = ip_address("::ffff:169.254.169.254")
    assert NetworkPolicy.parse(["169.254.169.254"]).refusal(mapped) is None
    assert NetworkPolicy.parse(["::ffff:0:0/96"]).refusal(mapped) is not None


def test_wildcard_names_cover_subdomains_only() -> None:
    rules = NetworkPolicy.parse(["*.db.internal"])
    assert rules.allows_name("a.db.internal") and rules.allows_name("x.y.db.internal")
    assert not rules.allows_name("db.internal") and not rules.allows_name("evildb.internal")


@pytest.mark.parametrize(
    "entry",
    ["10.0.0.1/8", "10.0.0.0/33", "http://db.internal", "db.internal:5432", "*.", "1.2.3.4.5"],
)
def test_a_bad_entry_stops_the_server_naming_the_setting(entry: str) -> None:
    with pytest.raises(PolicyError, match="OPENDTS_ALLOWED_NETWORKS"):
        NetworkPolicy.parse([entry])
    with pytest.raises(ValueError, match="OPENDTS_ALLOWED_NETWORKS"):
        Settings(allowed_networks=f"127.0.0.1/32,{entry}")


def test_a_bad_sql_dialect_entry_names_its_setting() -> None:
    with pytest.raises(ValueError, match="OPENDTS_SQL_DIALECTS"):
        Settings(sql_dialects="postgresql,postgresql+psycopg")
    assert Settings(sql_dialects="PostgreSQL, sqlite").sql_dialect_list == ["postgresql", "sqlite"]


# --- validation (literal hosts) -----------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "2130706433",
        "0x7f.1",
        "[::1]",
        "[::ffff:127.0.0.1]",
        "localhost",
        "localhost.",
        "api.localhost",
        "169.254.169.254",
        "metadata.google.internal",
        "10.0.0.5",
    ],
)
def test_literal_and_local_hosts_are_refused_when_validated(host: str) -> None:
    with pytest.raises(ValueError, match="OPENDTS_ALLOWED_NETWORKS"):
        network.check_host(host, team())


def test_the_message_says_what_the_address_is_and_which_setting_allows_it() -> None:
    with pytest.raises(ValueError) as caught:
        network.check_host("2130706433", team())
    assert str(caught.value) == (
        "2130706433 is 127.0.0.1, a loopback address; opendts connects only to public "
        "addresses unless the operator allows more: set OPENDTS_ALLOWED_NETWORKS=127.0.0.1/32 "
        "(docs/security.md)"
    )


def test_unix_sockets_are_refused_whatever_is_allowed() -> None:
    for host in ("/var/run/postgresql", "/tmp", "@abstract"):
        with pytest.raises(ValueError, match="Unix socket"):
            network.check_host(host, team("0.0.0.0/0", "::/0"))
        with pytest.raises(AddressRefused, match="Unix socket"):
            network.resolve(host, 5432, team("0.0.0.0/0"))


def test_names_pass_validation_and_are_judged_when_resolved() -> None:
    assert network.check_host("api.example.com", team()) == "api.example.com"
    assert network.check_host("localhost", team("localhost")) == "localhost"


# --- resolving (connect time) -------------------------------------------------------------


def answers(table: dict[str, list[str]]) -> object:
    def lookup(name: str, port: int) -> list[object]:
        return [ip_address(a) for a in table[name]]

    return lookup


def test_every_answer_of_a_name_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        network,
        "lookup",
        answers({"mixed.example": ["93.184.216.34", "127.0.0.1"], "ok.example": ["93.184.216.34"]}),
    )
    with pytest.raises(AddressRefused) as caught:
        network.resolve("mixed.example", 443, team())
    assert "mixed.example resolves to 127.0.0.1, a loopback address" in str(caught.value)
    assert "OPENDTS_ALLOWED_NETWORKS=mixed.example (or 127.0.0.1/32)" in str(caught.value)
    assert network.resolve("ok.example", 443, team()) == [ip_address("93.184.216.34")]


def test_a_literal_is_not_looked_up(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(name: str, port: int) -> list[object]:
        raise AssertionError(f"looked up {name}")

    monkeypatch.setattr(network, "lookup", refuse)
    assert network.resolve("8.8.8.8", 53, team()) == [ip_address("8.8.8.8")]
    with pytest.raises(AddressRefused, match="loopback"):
        network.resolve("0x7f.1", 80, team())


def test_allowed_names_and_networks_resolve(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(network, "lookup", answers({"db.internal": ["10.1.2.3"]}))
    assert network.resolve("db.internal", 5432, team("db.internal")) == [ip_address("10.1.2.3")]
    assert network.resolve("db.internal", 5432, team("10.0.0.0/8")) == [ip_address("10.1.2.3")]
    with pytest.raises(AddressRefused, match="private"):
        network.resolve("db.internal", 5432, team("192.168.0.0/16"))


def test_the_real_resolver_answers_localhost_with_loopback() -> None:
    with pytest.raises(AddressRefused, match="loopback"):
        network.resolve("localhost", 80, team())
    assert all(a.is_loopback for a in network.resolve("localhost", 80, team("localhost")))
