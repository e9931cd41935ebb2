"""An HTTP client for a team's connectors: every connection goes to a checked address.

httpx hands each new connection to httpcore, which asks its network backend for a TCP
stream to ``(host, port)``. The backend here resolves the host itself (``network.resolve``),
refuses the connection when any answer is outside the team's boundary, and connects to the
checked address: the name is not resolved again, so a DNS answer cannot change between the
check and the connection. TLS still verifies the name (httpcore sends it as the server name).

The client does not follow redirects: callers follow them hop by hop (``redirect_target``),
each hop a request whose connection is checked again, and decide which headers another
origin gets. Environment proxies (``HTTP_PROXY``), ``.netrc`` credentials and Unix sockets
are never used for a team's requests: a proxy would connect on the team's behalf to an
address nobody checked.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Iterable

import httpcore
import httpx

from opendts.connectors import network
from opendts.connectors.boundary import Boundary

#: Addresses of one name tried in turn before a connection fails.
MAX_ADDRESSES = 4
#: Redirects followed for one request.
MAX_REDIRECTS = 10
#: Statuses that redirect (``300`` and ``304`` are answers, not redirects).
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


def safe_url(url: httpx.URL) -> str:
    """``url`` without its query string, fragment or credentials (they may hold API keys)."""
    return str(url.copy_with(query=None, fragment=None, username=None, password=None))


class UrlRedactor(logging.Filter):
    """Takes query strings and credentials out of URLs in httpx's log records.

    httpx logs every request as ``HTTP Request: GET <full URL> ...``; a team's URL may hold
    an API key in its query string. The URL stays, without its secrets.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(isinstance(a, httpx.URL) for a in record.args):
            record.args = tuple(safe_url(a) if isinstance(a, httpx.URL) else a for a in record.args)
        return True


def _quiet_httpx_logs() -> None:
    """httpx's per-request lines stay out of INFO (and never carry a query string)."""
    logger = logging.getLogger("httpx")
    if not any(isinstance(f, UrlRedactor) for f in logger.filters):
        logger.addFilter(UrlRedactor())
    for name in ("httpx", "httpcore"):
        if logging.getLogger(name).level == logging.NOTSET:
            logging.getLogger(name).setLevel(logging.WARNING)


_quiet_httpx_logs()


class CheckedBackend(httpcore.SyncBackend):
    """httpcore's network backend, connecting only to addresses the boundary allows."""

    def __init__(self, boundary: Boundary) -> None:
        self._boundary = boundary

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        try:
            addresses = network.resolve(host, port, self._boundary)
        except network.AddressRefused:
            raise
        except OSError as exc:  # the name does not resolve (now): worth retrying
            raise httpcore.ConnectError(f"cannot resolve {host} ({exc})") from None
        failure: Exception | None = None
        for address in addresses[:MAX_ADDRESSES]:
            try:
                return super().connect_tcp(
                    str(address), port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None  # resolve returns at least one address
        raise failure

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        raise network.AddressRefused(network.socket_message(path))


class CheckedTransport(httpx.HTTPTransport):
    """httpx's transport over ``CheckedBackend``: no proxy, no retries of its own."""

    def __init__(self, boundary: Boundary) -> None:
        # SSL_CERT_FILE and SSL_CERT_DIR are the operator's: they still choose the CAs.
        context: ssl.SSLContext = httpx.create_ssl_context(trust_env=True)
        super().__init__(verify=context, trust_env=False)
        self._pool = httpcore.ConnectionPool(
            ssl_context=context,
            http1=True,
            http2=False,
            network_backend=CheckedBackend(boundary),
        )


def checked_client(boundary: Boundary, timeout: float) -> httpx.Client:
    """A client whose every connection is checked against ``boundary``; no redirects."""
    return httpx.Client(
        transport=CheckedTransport(boundary),
        timeout=timeout,
        follow_redirects=False,
        trust_env=False,
    )


def same_origin(a: httpx.URL, b: httpx.URL) -> bool:
    """Whether two URLs share scheme, host and port (default ports normalised)."""
    return (a.scheme, a.host, a.port) == (b.scheme, b.host, b.port)


def redirect_target(response: httpx.Response) -> httpx.URL | None:
    """Where a redirect answer points (absolute), or ``None`` if it is not a redirect.

    Raises ``ValueError`` for a ``Location`` that is not an http(s) URL.
    """
    if response.status_code not in REDIRECT_STATUSES:
        return None
    location = response.headers.get("location")
    if not location:
        return None
    try:
        target = response.url.join(location)
    except (httpx.InvalidURL, ValueError, TypeError) as exc:
        raise ValueError(f"its Location is not a URL ({exc})") from None
    if target.scheme not in ("http", "https") or not target.host:
        raise ValueError(f"its Location is not an http(s) URL: {location[:200]}")
    return target


def redirect_method(status: int, method: str) -> str:
    """The method of the request a redirect asks for (as browsers and httpx do)."""
    if status == 303 and method != "HEAD":
        return "GET"
    if status in (301, 302) and method == "POST":
        return "GET"
    return method
