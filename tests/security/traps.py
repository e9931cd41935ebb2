"""Servers on loopback that record what a connector sends them: a stand-in for the host an
attacker points a saved destination or transfer at."""

from __future__ import annotations

import json
import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_SSL_REQUEST = 80877103
_GSSENC_REQUEST = 80877104


def _exactly(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


@dataclass
class PostgresTrap:
    """A fake PostgreSQL server: asks every client for its password in clear, and records it."""

    port: int = 0
    passwords: list[str] = field(default_factory=list)
    connections: int = 0

    def serve(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(10)
            try:
                while True:
                    length, code = struct.unpack("!II", _exactly(conn, 8))
                    if code in (_SSL_REQUEST, _GSSENC_REQUEST):
                        conn.sendall(b"N")  # no TLS, no GSS: go on in clear
                        continue
                    _exactly(conn, length - 8)  # the startup parameters
                    break
                conn.sendall(b"R" + struct.pack("!II", 8, 3))  # AuthenticationCleartextPassword
                kind = _exactly(conn, 1)
                (length,) = struct.unpack("!I", _exactly(conn, 4))
                body = _exactly(conn, length - 4)
                if kind == b"p":
                    self.passwords.append(body.rstrip(b"\0").decode())
                fields = b"SFATAL\0C28P01\0Mpassword authentication failed\0\0"
                conn.sendall(b"E" + struct.pack("!I", len(fields) + 4) + fields)
            except (ConnectionError, TimeoutError, OSError):
                pass


@contextmanager
def postgres_trap() -> Iterator[PostgresTrap]:
    """A ``PostgresTrap`` listening on 127.0.0.1 for the duration of the block."""
    trap = PostgresTrap()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.2)
    trap.port = listener.getsockname()[1]
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            trap.connections += 1
            threading.Thread(target=trap.serve, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield trap
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


@dataclass
class Seen:
    """One request an ``HttpTrap`` received."""

    path: str
    headers: dict[str, str]


@dataclass
class HttpTrap:
    """A web server on loopback that records every request and answers as told."""

    base: str = ""
    seen: list[Seen] = field(default_factory=list)
    status: int = 200
    content_type: str = "application/json"
    body: bytes = b'{"data": []}'

    def everything(self) -> str:
        """Every path and header value received, as one text to search."""
        return json.dumps([[s.path, s.headers] for s in self.seen])


@contextmanager
def http_trap() -> Iterator[HttpTrap]:
    """An ``HttpTrap`` listening on 127.0.0.1 for the duration of the block."""
    trap = HttpTrap()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            trap.seen.append(Seen(self.path, dict(self.headers.items())))
            self.send_response(trap.status)
            self.send_header("Content-Type", trap.content_type)
            self.send_header("Content-Length", str(len(trap.body)))
            self.end_headers()
            self.wfile.write(trap.body)

        do_GET = do_POST = _answer

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    trap.base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield trap
    finally:
        server.shutdown()
        server.server_close()
