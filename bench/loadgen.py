"""A small, fast HTTP/1.1 keep-alive load generator (asyncio streams, no dependencies).

Python HTTP clients such as httpx spend more CPU per request than the server under test, which
would flatter the server in a ratio; a bare asyncio stream client keeps the generator cheap.
Every response must carry Content-Length (opendts and the bare app always do).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

RequestFactory = Callable[[int], bytes]


@dataclass
class LoadResult:
    """Latencies (seconds) of every request, wall time, and the status codes seen."""

    latencies: list[float]
    elapsed: float
    statuses: dict[int, int]

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.elapsed

    def percentile(self, fraction: float) -> float:
        ordered = sorted(self.latencies)
        index = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
        return ordered[index]


def build_request(
    method: str, path: str, host: str, headers: dict[str, str], body: bytes = b""
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if body or method in {"POST", "PUT", "PATCH"}:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
            break
    if length:
        await reader.readexactly(length)
    return status


async def _run(
    host: str, port: int, factory: RequestFactory, total: int, concurrency: int
) -> LoadResult:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    counter = iter(range(total))

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            for index in counter:
                payload = factory(index)
                started = time.perf_counter()
                writer.write(payload)
                status = await _read_response(reader)
                latencies.append(time.perf_counter() - started)
                statuses[status] = statuses.get(status, 0) + 1
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return LoadResult(latencies, time.perf_counter() - started, statuses)


def run_load(
    host: str, port: int, factory: RequestFactory, total: int, concurrency: int
) -> LoadResult:
    """Send ``total`` requests over ``concurrency`` keep-alive connections."""
    return asyncio.run(_run(host, port, factory, total, concurrency))
