"""Which network addresses a team's connectors may reach, checked where they connect.

Deny by default. A connection may go to a public address; loopback, private (RFC 1918),
shared (CGNAT), link-local, unique-local, multicast, unspecified, broadcast, reserved and
documentation addresses, and the IPv6 forms that embed them (IPv4-mapped, -compatible,
-translated, NAT64, 6to4), are refused unless the operator allows them in
``OPENDTS_ALLOWED_NETWORKS`` (CIDRs, single addresses and host names). Cloud metadata
services hand out the machine's own credentials: only an entry naming their exact address
opens them, never a wider network or a host name. Unix sockets are always refused.

Three checks, from the earliest to the one that counts:

- ``NetworkPolicy.parse`` when the settings are read: a bad entry stops the server with a
  message naming ``OPENDTS_ALLOWED_NETWORKS``.
- ``check_host`` when a config is validated: literal addresses in any spelling
  (``2130706433``, ``0x7f.1``, ``[::ffff:127.0.0.1]``), local-only names (``localhost``) and
  socket paths are refused with a message that says which setting allows them.
- ``resolve`` when a connector connects: the name is resolved once, every answer is checked,
  and the caller connects to the checked addresses, never to the name again (no DNS
  rebinding window between the check and the connection).
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network

from opendts.connectors.boundary import Boundary
from opendts.engine.errors import TerminalRunError

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network

SETTING = "OPENDTS_ALLOWED_NETWORKS"
DOCS = "docs/security.md"

#: Cloud metadata services (they hand out the machine's credentials): AWS, GCP, Azure,
#: OpenStack, DigitalOcean and Oracle (169.254.169.254), ECS and EKS task credentials, AWS
#: and GCP over IPv6, Alibaba Cloud, Oracle's legacy address, Azure's WireServer (public!).
METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    ip_address(a)
    for a in (
        "169.254.169.254",
        "169.254.170.2",
        "169.254.170.23",
        "fd00:ec2::254",
        "fd00:ec2::23",
        "fd20:ce::254",
        "100.100.100.200",
        "192.0.0.192",
        "168.63.129.16",
    )
)

#: Names that only ever mean this machine (refused before resolving; ``*.localhost`` too).
_LOOPBACK_NAMES = frozenset(
    {
        "localhost",
        "localhost.localdomain",
        "localhost6",
        "localhost6.localdomain6",
        "ip6-localhost",
        "ip6-loopback",
    }
)
#: Names of cloud metadata services.
_METADATA_NAMES = frozenset(
    {"metadata.google.internal", "metadata.goog", "instance-data.ec2.internal"}
)

#: Special-use ranges and why they are refused; the first match names the reason.
_SPECIAL: tuple[tuple[IPNetwork, str], ...] = tuple(
    (ip_network(net), reason)
    for net, reason in (
        ("0.0.0.0/32", "the unspecified address"),
        ("0.0.0.0/8", "a 'this network' address (0.0.0.0/8)"),
        ("127.0.0.0/8", "a loopback address"),
        ("10.0.0.0/8", "a private address (RFC 1918)"),
        ("172.16.0.0/12", "a private address (RFC 1918)"),
        ("192.168.0.0/16", "a private address (RFC 1918)"),
        ("100.64.0.0/10", "a shared address (carrier-grade NAT, 100.64.0.0/10)"),
        ("169.254.0.0/16", "a link-local address"),
        ("192.0.0.0/24", "an IETF protocol address (192.0.0.0/24)"),
        ("192.0.2.0/24", "a documentation address"),
        ("198.51.100.0/24", "a documentation address"),
        ("203.0.113.0/24", "a documentation address"),
        ("198.18.0.0/15", "a benchmarking address"),
        ("192.88.99.0/24", "a reserved address (6to4 relay)"),
        ("224.0.0.0/4", "a multicast address"),
        ("255.255.255.255/32", "the broadcast address"),
        ("240.0.0.0/4", "a reserved address"),
        ("::/128", "the unspecified address"),
        ("::1/128", "a loopback address"),
        ("64:ff9b:1::/48", "a local-use NAT64 address"),
        ("100::/64", "a discard-only address"),
        ("2001::/32", "a Teredo tunnel address"),
        ("2001:db8::/32", "a documentation address"),
        ("3fff::/20", "a documentation address"),
        ("2001:2::/48", "a benchmarking address"),
        ("2001::/23", "an IETF protocol address (2001::/23)"),
        ("fc00::/7", "a unique-local address"),
        ("fe80::/10", "a link-local address"),
        ("fec0::/10", "a site-local address"),
        ("ff00::/8", "a multicast address"),
    )
)
_GLOBAL_UNICAST_V6 = ip_network("2000::/3")
_NAT64 = ip_network("64:ff9b::/96")
_TRANSLATED = ip_network("::ffff:0:0:0/96")
_COMPATIBLE = ip_network("::/96")


class AddressRefused(TerminalRunError):
    """A connection the tenant boundary does not allow (retrying cannot change that)."""


class PolicyError(ValueError):
    """An ``OPENDTS_ALLOWED_NETWORKS`` entry that is not a CIDR, an address or a host name."""


# --- spellings ------------------------------------------------------------------------------


def _ipv4_part(part: str) -> int | None:
    """One part of an IPv4 literal as inet_aton and browsers read it (0x hex, 0 octal)."""
    if part[:2].lower() == "0x":
        digits = part[2:]
        if digits == "":
            return 0
        return int(digits, 16) if all(c in "0123456789abcdefABCDEF" for c in digits) else None
    if len(part) > 1 and part[0] == "0":
        return int(part, 8) if all(c in "01234567" for c in part) else None
    return int(part) if part.isdecimal() and part.isascii() else None


def _ipv4(host: str) -> IPv4Address | None:
    """``host`` as an IPv4 address in any spelling inet_aton accepts (``127.1``,
    ``2130706433``, ``0x7f.1``, ``017700000001``); ``None`` if it is a name.

    Raises ``ValueError`` for a host that ends in a number but is not a valid address
    (as the WHATWG URL standard does): resolvers read such names unpredictably.
    """
    parts = host.split(".")
    last = parts[-1]
    ends_in_number = last.isascii() and last.isdigit()
    if not last or (_ipv4_part(last) is None and not ends_in_number):
        return None
    numbers = [_ipv4_part(p) if p else None for p in parts]
    if len(parts) > 4 or any(n is None for n in numbers):
        raise ValueError(f"{host} is not a valid IPv4 address")
    values = [n for n in numbers if n is not None]
    if any(n > 255 for n in values[:-1]) or values[-1] >= 256 ** (5 - len(values)):
        raise ValueError(f"{host} is not a valid IPv4 address")
    value = values[-1]
    for index, number in enumerate(values[:-1]):
        value += number << (8 * (3 - index))
    return IPv4Address(value)


def parse_host(host: str) -> IPAddress | str:
    """The address ``host`` spells, or its canonical name (lower case, no trailing dot).

    Raises ``ValueError`` for an empty or malformed host.
    """
    text = host.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
        if ":" not in text:
            raise ValueError(f"{host} is not a valid IPv6 address")
    if ":" in text:
        try:
            return IPv6Address(text.replace("%25", "%", 1))
        except ValueError:
            raise ValueError(f"{host} is not a valid host") from None
    if text.endswith("."):
        text = text[:-1]
    name = text.lower()
    if not name:
        raise ValueError("the host is empty")
    if not all(c.isalnum() or c in "-_." for c in name):
        raise ValueError(f"{host} is not a valid host name (one host, without a port)")
    address = _ipv4(name)
    if address is not None:
        return address
    if not name.isascii():
        try:
            name = name.encode("idna").decode("ascii")
        except UnicodeError:
            raise ValueError(f"{host} is not a valid host name") from None
    labels = name.split(".")
    if len(name) > 253 or any(
        not label
        or len(label) > 63
        or not all(c.isalnum() or c in "-_" for c in label)
        or label.startswith("-")
        for label in labels
    ):
        raise ValueError(f"{host} is not a valid host name")
    return name


def is_socket_path(host: str) -> bool:
    """Whether a database ``host`` names a Unix socket (libpq reads ``/…`` and ``@…`` so)."""
    return host.strip().startswith(("/", "@"))


# --- classification -------------------------------------------------------------------------


def embedded_ipv4(address: IPv6Address) -> tuple[str, IPv4Address] | None:
    """The IPv4 address an IPv6 address carries, and the form's name (IPv4-mapped,
    -translated, -compatible, NAT64, 6to4): where a connection to it ends up."""
    if address.ipv4_mapped is not None:
        return "IPv4-mapped", address.ipv4_mapped
    if address.sixtofour is not None:
        return "6to4", address.sixtofour
    if address in _NAT64:
        return "NAT64", IPv4Address(int(address) & 0xFFFFFFFF)
    if address in _TRANSLATED:
        return "IPv4-translated", IPv4Address(int(address) & 0xFFFFFFFF)
    if address in _COMPATIBLE and int(address) > 1:
        return "IPv4-compatible", IPv4Address(int(address))
    return None


def special_use(address: IPAddress) -> str | None:
    """Why ``address`` is not public (``"a loopback address"``), or ``None`` if it is."""
    address = _unscoped(address)
    if address in METADATA_ADDRESSES:
        return "the cloud metadata service (it hands out this machine's credentials)"
    if isinstance(address, IPv6Address):
        embedded = embedded_ipv4(address)
        if embedded is not None:
            form, inner = embedded
            reason = special_use(inner)
            return None if reason is None else f"the {form} form of {inner}, {reason}"
    for network, reason in _SPECIAL:
        if address.version == network.version and address in network:
            return reason
    if isinstance(address, IPv6Address) and address not in _GLOBAL_UNICAST_V6:
        return "a reserved address"
    if not address.is_global:
        return "a special-purpose address"
    return None


def effective_address(address: IPAddress) -> IPAddress:
    """Where a connection to ``address`` ends up: the IPv4 address it embeds, if any."""
    address = _unscoped(address)
    if isinstance(address, IPv6Address):
        embedded = embedded_ipv4(address)
        if embedded is not None:
            return embedded[1]
    return address


@dataclass(frozen=True, slots=True)
class NetworkPolicy:
    """The operator's allowances beyond public addresses."""

    networks: tuple[IPNetwork, ...] = ()
    #: Single-address entries: the only ones that open a cloud metadata address.
    addresses: frozenset[IPAddress] = frozenset()
    names: frozenset[str] = frozenset()
    #: ``*.example.internal`` entries, as ``.example.internal``.
    suffixes: tuple[str, ...] = ()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> NetworkPolicy:
        """The policy of ``OPENDTS_ALLOWED_NETWORKS`` entries; ``PolicyError`` names a bad one."""
        networks: list[IPNetwork] = []
        addresses: set[IPAddress] = set()
        names: set[str] = set()
        suffixes: list[str] = []
        for raw in entries:
            entry = raw.strip()
            if not entry:
                continue
            try:
                if "://" in entry:
                    raise ValueError("a URL: write only its host, e.g. db.internal")
                if "/" in entry:
                    network = _network(entry)
                    networks.append(network)
                    if network.num_addresses == 1:
                        addresses.add(network.network_address)
                elif entry.startswith("*."):
                    suffix = parse_host(entry[2:])
                    if not isinstance(suffix, str):
                        raise ValueError("a wildcard takes a domain, e.g. *.db.internal")
                    suffixes.append("." + suffix)
                else:
                    parsed = parse_host(entry)
                    if isinstance(parsed, str):
                        names.add(parsed)
                    else:
                        parsed = _unscoped(parsed)
                        networks.append(ip_network(parsed))
                        addresses.add(parsed)
            except ValueError as exc:
                raise PolicyError(
                    f"{SETTING} entry {entry!r} is not a network, an address or a host name "
                    f"({exc}); write e.g. 10.0.0.0/8, 127.0.0.1, ::1/128, db.internal or "
                    "*.db.internal, separated by commas"
                ) from None
        return cls(tuple(networks), frozenset(addresses), frozenset(names), tuple(suffixes))

    def allows_name(self, name: str) -> bool:
        """Whether the operator allowed the canonical host ``name`` (whatever it resolves to)."""
        return name in self.names or any(name.endswith(s) for s in self.suffixes)

    def refusal(self, address: IPAddress, name: str | None = None) -> str | None:
        """Why a connection to ``address`` (reached through ``name``) is refused, or ``None``."""
        reason = special_use(address)
        if reason is None:
            return None
        plain = _unscoped(address)
        inner = effective_address(address)
        if plain in METADATA_ADDRESSES or inner in METADATA_ADDRESSES:
            return None if {plain, inner} & self.addresses else reason
        if name is not None and self.allows_name(name):
            return None
        for network in self.networks:
            for candidate in (plain, inner):
                if candidate.version == network.version and candidate in network:
                    return None
        return reason


def _unscoped(address: IPAddress) -> IPAddress:
    if isinstance(address, IPv6Address) and address.scope_id:
        return IPv6Address(str(address).split("%", 1)[0])
    return address


def _network(entry: str) -> IPNetwork:
    base, _, bits = entry.partition("/")
    base = base.strip().removeprefix("[").removesuffix("]")
    try:
        return ip_network(f"{base}/{bits.strip()}", strict=True)
    except ValueError as exc:
        if "has host bits set" in str(exc):
            wider = ip_network(f"{base}/{bits.strip()}", strict=False)
            raise ValueError(f"host bits set; did you mean {wider}?") from None
        raise ValueError(str(exc)) from None


@lru_cache(maxsize=64)
def policy_of_entries(entries: tuple[str, ...]) -> NetworkPolicy:
    """The parsed policy of raw entries (cached: boundaries are built per request)."""
    return NetworkPolicy.parse(entries)


def policy(boundary: Boundary) -> NetworkPolicy:
    """The network policy of ``boundary``."""
    return policy_of_entries(tuple(boundary.allowed_networks))


# --- messages -------------------------------------------------------------------------------


def _allow_hint(entry: str) -> str:
    return (
        "opendts connects only to public addresses unless the operator allows more: "
        f"set {SETTING}={entry} ({DOCS})"
    )


def _metadata_hint(address: IPAddress) -> str:
    return (
        "opendts never connects to it unless the operator names that exact address: "
        f"{SETTING}={_single(address)} ({DOCS})"
    )


def _single(address: IPAddress) -> str:
    plain = _unscoped(address)
    return f"{plain}/{32 if plain.version == 4 else 128}"


def refusal_message(
    address: IPAddress, reason: str, *, shown: str | None = None, name: str | None = None
) -> str:
    """What to tell a user whose connection to ``address`` is refused, and what allows it."""
    plain, target = _unscoped(address), effective_address(address)
    if name is not None:
        what = f"{name} resolves to {address}, {reason}"
    elif target == plain and shown is not None and shown.strip("[]").lower() != str(plain):
        what = f"{shown} is {plain}, {reason}"  # an odd spelling: say which address it is
    else:
        what = f"{shown or address} is {reason}"
    if target in METADATA_ADDRESSES:
        return f"{what}; {_metadata_hint(target)}"
    entry = _single(target)
    if name is not None:
        entry = f"{name} (or {entry})"
    return f"{what}; {_allow_hint(entry)}"


def socket_message(host: str) -> str:
    """Why a Unix socket ``host`` is refused."""
    return (
        f"{host} is a Unix socket; teams' connections go over TCP only: use the server's "
        f"address, e.g. 127.0.0.1 (which the operator allows with {SETTING}=127.0.0.1/32, "
        f"{DOCS})"
    )


# --- checks ---------------------------------------------------------------------------------


def check_host(host: str, boundary: Boundary | None) -> str:
    """``host`` if a config may name it; ``ValueError`` saying why not and what allows it.

    Literal addresses (any spelling), local-only names and socket paths are decided here;
    other names are decided when they are resolved (``resolve``). Without a boundary only
    the spelling and sockets are checked.
    """
    if is_socket_path(host):
        raise ValueError(socket_message(host))
    target = parse_host(host)
    if boundary is None:
        return host
    rules = policy(boundary)
    if isinstance(target, str):
        if rules.allows_name(target):
            return host
        if target in _METADATA_NAMES:
            raise ValueError(
                f"{host} is a cloud metadata name; opendts never connects to the metadata "
                f"service unless the operator names its exact address in {SETTING} ({DOCS})"
            )
        if is_local_name(target):
            raise ValueError(f"{host} is a name for this machine (loopback); {_allow_hint(target)}")
        return host
    reason = rules.refusal(target)
    if reason is not None:
        raise ValueError(refusal_message(target, reason, shown=host.strip()))
    return host


def is_local_name(name: str) -> bool:
    """Whether the canonical ``name`` only ever means this machine (``localhost`` and kin)."""
    return name in _LOOPBACK_NAMES or name.endswith(".localhost")


def lookup(name: str, port: int) -> list[IPAddress]:
    """Every address ``name`` resolves to, in the resolver's order (tests replace this)."""
    answers = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    seen: dict[IPAddress, None] = {}
    for _family, _type, _proto, _canon, sockaddr in answers:
        seen.setdefault(ip_address(str(sockaddr[0])))
    return list(seen)


def resolve(host: str, port: int, boundary: Boundary) -> list[IPAddress]:
    """The checked addresses to connect to for ``host``: connect to these, not to the name.

    Raises ``AddressRefused`` when the host, or any address it resolves to, is outside the
    boundary; ``OSError`` (``socket.gaierror``) when the name does not resolve.
    """
    if is_socket_path(host):
        raise AddressRefused(socket_message(host))
    try:
        target = parse_host(host)
    except ValueError as exc:
        raise AddressRefused(str(exc)) from None
    rules = policy(boundary)
    if not isinstance(target, str):
        reason = rules.refusal(target)
        if reason is not None:
            raise AddressRefused(refusal_message(target, reason, shown=host.strip()))
        return [target]
    addresses = lookup(target, port)
    if not addresses:
        raise socket.gaierror(socket.EAI_NONAME, f"{target} has no address")
    for address in addresses:
        reason = rules.refusal(address, target)
        if reason is not None:
            raise AddressRefused(refusal_message(address, reason, name=target))
    return addresses
