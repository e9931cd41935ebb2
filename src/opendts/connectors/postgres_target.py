"""A team's PostgreSQL server: reached at checked addresses, never the metadata database.

Both the ``sql`` source (psycopg) and the ``postgresql`` destination (ADBC) speak libpq.
``pin`` resolves the host once, checks every address against the boundary and returns the
libpq parameters that connect to exactly those addresses (``hostaddr``) while keeping the
name in ``host``, so TLS still verifies the name; it also turns off ``~/.pgpass``, which
would hand the server account's stored passwords to whatever host a team names.

The metadata database is never a source or a destination, even when the operator allowed
its address (a laptop's ``127.0.0.1/32``). Two checks: before connecting, the target's
(address, port, database) is compared with the metadata database's, every address of this
machine counting as one; after connecting, the server's identity (its cluster's
``system_identifier`` and ``current_database()``) is compared too, which also catches an
alias the addresses do not show (the machine's LAN address, a proxy in front).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from ipaddress import IPv4Address
from typing import Any

from opendts.connectors import network
from opendts.connectors.boundary import Boundary
from opendts.connectors.network import AddressRefused, IPAddress
from opendts.engine.errors import TransientRunError

log = logging.getLogger("opendts.connectors.postgres")

DEFAULT_PORT = 5432
#: libpq reads no password file here (a path under a file can never exist).
NO_PASSFILE = "/dev/null/opendts-no-passfile"

#: The server's identity: one query per connection checked.
IDENTITY_QUERY = (
    "SELECT current_database(), has_function_privilege('pg_catalog.pg_control_system()', 'EXECUTE')"
)
SYSTEM_ID_QUERY = "SELECT system_identifier::text FROM pg_catalog.pg_control_system()"

METADATA_REFUSAL = (
    "is opendts's own metadata database (OPENDTS_DATABASE_URL): no team may read or write "
    "it, whatever OPENDTS_ALLOWED_NETWORKS allows. Use another database."
)


@dataclass(frozen=True, slots=True)
class Identity:
    """Which database a connection reached: its name and its cluster's identifier."""

    database: str
    system_identifier: str | None


@dataclass(frozen=True, slots=True)
class _Metadata:
    addresses: frozenset[IPAddress]
    local: bool
    port: int
    database: str


@dataclass(frozen=True, slots=True)
class Pinned:
    """A host's checked addresses, and the libpq parameters that connect only to them."""

    addresses: tuple[IPAddress, ...]
    params: dict[str, str]


def pin(host: str, port: int, boundary: Boundary) -> Pinned:
    """``host`` resolved and checked once; libpq then connects to those addresses only.

    Raises ``AddressRefused`` (outside the boundary) or ``TransientRunError`` (the name does
    not resolve now).
    """
    try:
        addresses = network.resolve(host, port, boundary)
    except AddressRefused:
        raise
    except OSError as exc:
        raise TransientRunError(
            f"PostgreSQL host {host} could not be resolved ({exc}); the run will be retried."
        ) from None
    name = host.strip().strip("[]")
    params = {
        "host": ",".join([name] * len(addresses)),
        "hostaddr": ",".join(str(a) for a in addresses),
        "passfile": NO_PASSFILE,
    }
    return Pinned(tuple(addresses), params)


# --- the metadata database ------------------------------------------------------------------


@lru_cache(maxsize=1)
def _this_machine() -> frozenset[IPAddress]:
    """The addresses this machine's own names resolve to (its LAN address, 127.0.1.1)."""
    found: set[IPAddress] = set()
    try:
        for name in {socket.gethostname(), socket.getfqdn()}:
            found.update(network.lookup(name, 0))
    except OSError:
        pass
    return frozenset(found)


def _is_local(address: IPAddress, machine: frozenset[IPAddress]) -> bool:
    plain = network.effective_address(address)
    return plain.is_loopback or plain.is_unspecified or address in machine or plain in machine


@lru_cache(maxsize=8)
def _metadata(url: str) -> _Metadata | None:
    """Where the metadata database is, if it is PostgreSQL."""
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:  # an unparsable URL cannot be reached by anyone
        return None
    if parsed.get_backend_name() != "postgresql":
        return None
    query_host = parsed.query.get("host")
    host = parsed.host or (query_host if isinstance(query_host, str) else None)
    database = parsed.database or parsed.username or ""
    port = parsed.port or DEFAULT_PORT
    if not host or network.is_socket_path(host):
        return _Metadata(frozenset(), True, port, database)
    try:
        target = network.parse_host(host)
        found = [target] if not isinstance(target, str) else network.lookup(target, port)
    except (OSError, ValueError):
        found = []
    machine = _this_machine()
    local = not found or any(_is_local(a, machine) for a in found)
    return _Metadata(frozenset(found), local, port, database)


def check_not_metadata(host: str, port: int, database: str, boundary: Boundary | None) -> None:
    """``ValueError`` when a config names the metadata database by a literal address or a
    name for this machine (other names are checked when they are resolved)."""
    if boundary is None or not boundary.metadata_url:
        return
    try:
        target = network.parse_host(host)
    except ValueError:
        return
    if isinstance(target, str):
        if not network.is_local_name(target):
            return
        target = IPv4Address("127.0.0.1")
    try:
        refuse_metadata([target], port, database, boundary)
    except AddressRefused as exc:
        raise ValueError(str(exc)) from None


def refuse_metadata(
    addresses: Sequence[IPAddress], port: int, database: str, boundary: Boundary
) -> None:
    """``AddressRefused`` if (addresses, port, database) is the metadata database's."""
    if not boundary.metadata_url:
        return
    meta = _metadata(boundary.metadata_url)
    if meta is None or port != meta.port or database != meta.database:
        return
    machine = _this_machine() if meta.local else frozenset()
    same = any(a in meta.addresses or (meta.local and _is_local(a, machine)) for a in addresses)
    if same:
        raise AddressRefused(f"Database {database!r} on port {port} {METADATA_REFUSAL}")


_identities: dict[str, Identity] = {}


def _metadata_identity(url: str) -> Identity | None:
    """The metadata database's identity (``None`` if it is not PostgreSQL or is down)."""
    known = _identities.get(url)
    if known is not None or _metadata(url) is None:
        return known
    import psycopg
    from sqlalchemy.engine import make_url

    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        with psycopg.connect(dsn, connect_timeout=10) as conn:
            found = identity(lambda sql: conn.execute(sql).fetchone())
    except psycopg.Error as exc:
        log.warning("Could not read the metadata database's identity: %s", exc)
        return None
    _identities[url] = found
    return found


def identity(fetch_one: Callable[[str], Any]) -> Identity:
    """The identity of the server a connection reached (``fetch_one(sql)`` runs a query)."""
    row = fetch_one(IDENTITY_QUERY)
    database, may_read = str(row[0]), bool(row[1])
    system = str(fetch_one(SYSTEM_ID_QUERY)[0]) if may_read else None
    return Identity(database, system)


def refuse_identity(found: Identity, boundary: Boundary) -> bool:
    """``AddressRefused`` if a connection reached the metadata database after all.

    Returns whether the question was settled (``False`` when an identity is unknown: the
    metadata database is down, or a server hides its identifier).
    """
    if not boundary.metadata_url or _metadata(boundary.metadata_url) is None:
        return True
    meta = _metadata_identity(boundary.metadata_url)
    if meta is None or meta.system_identifier is None or found.system_identifier is None:
        return False
    if found == meta:
        raise AddressRefused(f"Database {found.database!r} {METADATA_REFUSAL}")
    return True
