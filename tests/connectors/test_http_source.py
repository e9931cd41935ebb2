"""The HTTP JSON source against a local, scripted HTTP server."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pyarrow as pa
import pytest

from opendts.connectors.base import ConfigError, ReadRequest, parse_settings, secret_fields
from opendts.connectors.sources.http import HttpSettings, HttpSource, _retry_after
from opendts.engine.errors import TerminalRunError, TransientRunError
from tests.boundaries import boundary

DAY = date(2024, 1, 31)
TOKEN = "s3cr3t-token-value"


@dataclass
class Seen:
    """One request the server received."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    at: float


@dataclass
class Reply:
    status: int = 200
    body: Any = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None
    delay: float = 0.0


class Server:
    """A threaded HTTP server on 127.0.0.1 whose answers a test scripts."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self.script: Callable[[Seen], Reply] = lambda req: Reply()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                req = Seen(
                    self.command,
                    parts.path,
                    {k: v[-1] for k, v in parse_qs(parts.query).items()},
                    {k.lower(): v for k, v in self.headers.items()},
                    json.loads(raw) if raw else None,
                    time.monotonic(),
                )
                server.seen.append(req)
                reply = server.script(req)
                if reply.delay:
                    time.sleep(reply.delay)
                payload = reply.raw if reply.raw is not None else json.dumps(reply.body).encode()
                try:
                    self.send_response(reply.status)
                    content_type = "text/html" if reply.raw is not None else "application/json"
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(payload)))
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

            do_GET = _answer
            do_POST = _answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    def replies(self, *replies: Reply) -> None:
        """Answer with ``replies`` in order, then repeat the last one."""
        queue = list(replies)

        def script(req: Seen) -> Reply:
            return queue.pop(0) if len(queue) > 1 else queue[0]

        self.script = script

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def server() -> Iterator[Server]:
    srv = Server()
    try:
        yield srv
    finally:
        srv.close()


def settings(**config: Any) -> HttpSettings:
    config.setdefault("backoff_seconds", 0.01)
    parsed: HttpSettings = parse_settings(HttpSettings, config)
    return parsed


def read(config: HttpSettings, request: ReadRequest | None = None) -> list[pa.RecordBatch]:
    return list(HttpSource().read(config, request or ReadRequest(DAY, boundary=boundary())))


def rows(batches: list[pa.RecordBatch]) -> list[dict[str, Any]]:
    return [row for batch in batches for row in batch.to_pylist()]


# --- records ------------------------------------------------------------------------------


def test_records_path_picks_the_list_out_of_the_answer(server: Server) -> None:
    server.replies(
        Reply(body={"meta": {"n": 2}, "data": {"items": [{"id": 1, "v": 2.5}, {"id": 2}]}})
    )
    batches = read(settings(url=server.base + "/report", records_path="data.items"))
    assert len(batches) == 1
    assert rows(batches) == [{"id": 1, "v": 2.5}, {"id": 2, "v": None}]
    assert batches[0].schema.field("id").type == pa.int64()
    assert batches[0].schema.field("v").type == pa.float64()


def test_whole_body_is_the_list_when_records_path_is_empty(server: Server) -> None:
    server.replies(Reply(body=[{"a": "x"}, {"a": "y"}]))
    assert rows(read(settings(url=server.base))) == [{"a": "x"}, {"a": "y"}]


def test_nested_values_become_json_strings_and_missing_keys_null(server: Server) -> None:
    server.replies(
        Reply(
            body=[
                {"id": 1, "tags": ["a", "b"], "geo": {"country": "FI", "city": None}},
                {"id": 2, "extra": True},
            ]
        )
    )
    batch = read(settings(url=server.base))[0]
    assert batch.schema.field("tags").type == pa.string()
    assert batch.schema.field("geo").type == pa.string()
    got = batch.to_pylist()
    assert json.loads(got[0]["tags"]) == ["a", "b"]
    assert json.loads(got[0]["geo"]) == {"country": "FI", "city": None}
    assert got[0]["extra"] is None
    assert got[1] == {"id": 2, "tags": None, "geo": None, "extra": True}


def test_mixed_types_in_a_column_become_text(server: Server) -> None:
    server.replies(Reply(body=[{"v": 1}, {"v": "n/a"}, {"v": None}]))
    batch = read(settings(url=server.base))[0]
    assert batch.schema.field("v").type == pa.string()
    assert batch.column("v").to_pylist() == ["1", "n/a", None]


def test_empty_answer_yields_nothing(server: Server) -> None:
    server.replies(Reply(body={"data": []}))
    assert read(settings(url=server.base, records_path="data")) == []


def test_answer_that_is_not_json_fails_the_date(server: Server) -> None:
    server.replies(Reply(raw=b"<html>maintenance</html>"))
    with pytest.raises(TerminalRunError, match=r"not JSON \(text/html, 24 bytes\)") as caught:
        read(settings(url=server.base + "/x"))
    assert "maintenance" not in str(caught.value)  # another server's page is not echoed


def test_records_path_not_in_the_answer_fails_the_date(server: Server) -> None:
    server.replies(Reply(body={"data": {"rows": []}}))
    with pytest.raises(TerminalRunError, match=r"records_path 'data.items'.*keys rows"):
        read(settings(url=server.base, records_path="data.items"))


def test_records_path_that_is_not_a_list_fails_the_date(server: Server) -> None:
    server.replies(Reply(body={"data": {"id": 1}}))
    with pytest.raises(TerminalRunError, match="is an object with keys id, not a list"):
        read(settings(url=server.base, records_path="data"))


# --- pagination ---------------------------------------------------------------------------


def test_next_link_pagination_follows_relative_and_absolute_links(server: Server) -> None:
    def script(req: Seen) -> Reply:
        cursor = req.query.get("cursor")
        if cursor is None:  # relative to the current URL
            return Reply(body={"items": [{"n": 1}, {"n": 2}], "links": {"next": "?cursor=2"}})
        if cursor == "2":  # absolute
            nxt = f"{server.base}/v1/items?cursor=3"
            return Reply(body={"items": [{"n": 3}], "links": {"next": nxt}})
        if cursor == "3":  # a page with nothing, still a next link
            return Reply(body={"items": [], "links": {"next": "/v1/items?cursor=4"}})
        return Reply(body={"items": [{"n": 4}], "links": {"next": None}})

    server.script = script
    batches = read(
        settings(
            url=server.base + "/v1/items",
            params={"day": "{date}"},
            records_path="items",
            pagination="next_link",
            next_link_path="links.next",
        )
    )
    assert [b.num_rows for b in batches] == [2, 1, 1]  # the empty page is skipped
    assert rows(batches) == [{"n": 1}, {"n": 2}, {"n": 3}, {"n": 4}]
    assert [(s.path, s.query) for s in server.seen] == [
        ("/v1/items", {"day": "2024-01-31"}),
        ("/v1/items", {"cursor": "2"}),
        ("/v1/items", {"cursor": "3"}),
        ("/v1/items", {"cursor": "4"}),
    ]


def test_next_link_loop_is_stopped(server: Server) -> None:
    server.replies(Reply(body={"items": [{"n": 1}], "next": "/same"}))
    with pytest.raises(TerminalRunError, match="already read"):
        read(settings(url=server.base + "/same", records_path="items", pagination="next_link"))
    assert len(server.seen) == 1


def test_token_is_not_sent_to_another_host(server: Server) -> None:
    server.replies(Reply(body={"items": [{"n": 1}], "next": f"http://localhost:{server.port}/p2"}))
    with pytest.raises(TerminalRunError, match="another site"):
        read(
            settings(
                url=server.base,
                records_path="items",
                pagination="next_link",
                token=TOKEN,
            )
        )
    assert len(server.seen) == 1


def test_page_number_pagination_stops_at_a_short_page(server: Server) -> None:
    data = [{"n": n} for n in range(5)]

    def script(req: Seen) -> Reply:
        page, size = int(req.query["p"]), int(req.query["size"])
        return Reply(body={"rows": data[page * size : (page + 1) * size]})

    server.script = script
    batches = read(
        settings(
            url=server.base,
            records_path="rows",
            pagination="page_number",
            page_param="p",
            page_start=0,
            page_size_param="size",
            page_size=2,
        )
    )
    assert rows(batches) == data
    assert [s.query for s in server.seen] == [
        {"p": "0", "size": "2"},
        {"p": "1", "size": "2"},
        {"p": "2", "size": "2"},
    ]


def test_page_number_pagination_without_page_size_stops_at_an_empty_page(
    server: Server,
) -> None:
    def script(req: Seen) -> Reply:
        page = int(req.query["page"])
        return Reply(body=[{"page": page}] * (3 if page <= 2 else 0))

    server.script = script
    batches = read(settings(url=server.base, pagination="page_number", params={"d": "{date}"}))
    assert [b.num_rows for b in batches] == [3, 3]
    assert [s.query for s in server.seen] == [
        {"d": "2024-01-31", "page": "1"},
        {"d": "2024-01-31", "page": "2"},
        {"d": "2024-01-31", "page": "3"},
    ]


def test_more_pages_than_max_pages_fails_instead_of_truncating(server: Server) -> None:
    server.script = lambda req: Reply(body=[{"page": req.query["page"]}])
    with pytest.raises(TerminalRunError, match="max_pages=3"):
        read(settings(url=server.base, pagination="page_number", max_pages=3))
    assert len(server.seen) == 3


# --- retries and failures -----------------------------------------------------------------


def test_429_retry_after_is_honoured_then_the_read_succeeds(server: Server) -> None:
    server.replies(
        Reply(429, {"error": "slow down"}, headers={"Retry-After": "1"}),
        Reply(body=[{"ok": 1}]),
    )
    assert rows(read(settings(url=server.base, backoff_seconds=0.01))) == [{"ok": 1}]
    assert len(server.seen) == 2
    waited = server.seen[1].at - server.seen[0].at
    assert 0.9 <= waited < 3


def test_retry_after_as_an_http_date() -> None:
    when = datetime.now(UTC) + timedelta(seconds=30)
    response = httpx.Response(429, headers={"Retry-After": format_datetime(when, usegmt=True)})
    wait = _retry_after(response)
    assert wait is not None and 27 <= wait <= 31
    assert _retry_after(httpx.Response(429, headers={"Retry-After": "7"})) == 7
    assert _retry_after(httpx.Response(429)) is None


def test_429_longer_than_max_wait_hands_the_date_back_with_retry_after(server: Server) -> None:
    server.replies(Reply(429, {}, headers={"Retry-After": "3600"}))
    began = time.monotonic()
    with pytest.raises(TransientRunError, match="3600") as caught:
        read(settings(url=server.base, max_wait_seconds=60))
    assert caught.value.retry_after == 3600
    assert time.monotonic() - began < 2
    assert len(server.seen) == 1


def test_503_twice_then_200_succeeds(server: Server) -> None:
    server.replies(Reply(503, {}), Reply(503, {}), Reply(body=[{"ok": True}]))
    assert rows(read(settings(url=server.base, max_retries=4))) == [{"ok": True}]
    assert len(server.seen) == 3


def test_500_forever_is_transient_after_max_retries(server: Server) -> None:
    server.replies(Reply(500, {"error": "boom"}))
    config = settings(url=server.base + "/r", params={"api_key": "qsecret"}, max_retries=2)
    with pytest.raises(TransientRunError) as caught:
        read(config)
    message = str(caught.value)
    assert len(server.seen) == 3
    assert "500" in message and "3 attempts" in message and "retried later" in message
    assert f"{server.base}/r" in message
    assert "qsecret" not in message


def test_timeouts_are_retried(server: Server) -> None:
    server.replies(Reply(body=[{"late": 1}], delay=0.6), Reply(body=[{"ok": 1}]))
    assert rows(read(settings(url=server.base, timeout_seconds=0.2))) == [{"ok": 1}]
    assert len(server.seen) == 2


def test_connection_refused_is_transient_after_retries() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(TransientRunError, match="could not be reached"):
        read(settings(url=f"http://127.0.0.1:{port}/x", max_retries=1))


def test_401_fails_at_once_without_showing_the_token(server: Server) -> None:
    server.replies(Reply(401, {"error": f"invalid token {TOKEN}"}))
    with pytest.raises(TerminalRunError) as caught:
        read(settings(url=server.base + "/api", token=TOKEN))
    message = str(caught.value)
    assert f"GET {server.base}/api answered 401 Unauthorized" in message
    assert "invalid token" in message and "Check the source's token" in message
    assert TOKEN not in message
    assert len(server.seen) == 1  # not retried


def test_404_fails_at_once(server: Server) -> None:
    server.replies(Reply(404, {"error": "no such report"}))
    with pytest.raises(TerminalRunError, match=r"404 Not Found.*no such report"):
        read(settings(url=server.base, max_retries=3))
    assert len(server.seen) == 1


def test_cancel_interrupts_a_wait(server: Server) -> None:
    request = ReadRequest(DAY, boundary=boundary())

    def script(req: Seen) -> Reply:
        request.cancelled.set()
        return Reply(429, {}, headers={"Retry-After": "5"})

    server.script = script
    began = time.monotonic()
    with pytest.raises(TransientRunError, match="interrupted"):
        read(settings(url=server.base), request)
    assert time.monotonic() - began < 2


# --- requests -----------------------------------------------------------------------------


def test_auth_header_is_prefix_plus_token(server: Server) -> None:
    read(settings(url=server.base, token=TOKEN))
    read(settings(url=server.base, token=TOKEN, auth_header="X-Api-Key", auth_prefix="Key "))
    read(settings(url=server.base))
    assert server.seen[0].headers["authorization"] == f"Bearer {TOKEN}"
    assert server.seen[1].headers["x-api-key"] == f"Key {TOKEN}"
    assert "authorization" not in server.seen[1].headers
    assert "authorization" not in server.seen[2].headers


def test_date_is_templated_in_url_params_and_post_body(server: Server) -> None:
    server.replies(Reply(body=[{"x": 1}]))
    config = settings(
        url=server.base + "/day/{date:%Y%m%d}",
        method="POST",
        params={"from": "{date}", "fixed": "a"},
        headers={"X-Client": "opendts"},
        body={"range": {"start": "{date}", "days": 1}, "tags": ["{date:%d.%m.%Y}", 2]},
    )
    read(config, ReadRequest(date(2024, 2, 29), boundary=boundary()))
    (seen,) = server.seen
    assert seen.method == "POST"
    assert seen.path == "/day/20240229"
    assert seen.query == {"from": "2024-02-29", "fixed": "a"}
    assert seen.headers["x-client"] == "opendts"
    assert seen.body == {"range": {"start": "2024-02-29", "days": 1}, "tags": ["29.02.2024", 2]}


# --- settings -----------------------------------------------------------------------------


def problems(config: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ConfigError) as caught:
        parse_settings(HttpSettings, config)
    return dict(caught.value.problems)


def test_settings_errors_name_the_field() -> None:
    assert "unknown placeholder {day}" in problems({"url": "https://x.test/{day}"})["url"]
    assert "http:// or https://" in problems({"url": "ftp://x.test/{date}"})["url"]
    assert problems({"url": "https://x.test", "colour": "red"})["colour"] == "unknown field"
    assert "{when}" in problems({"url": "https://x.test", "params": {"d": "{when}"}})["params"]
    assert "placeholder" in problems({"url": "https://x.test", "body": {"a": ["{x}"]}})["body"]
    assert "bad template" in problems({"url": "https://x.test/{date"})["url"]
    assert "method" in problems({"url": "https://x.test", "method": "PUT"})
    assert problems({})["url"] == "required"


def test_token_is_a_secret_and_not_in_repr() -> None:
    assert secret_fields(HttpSettings) == frozenset({"token"})
    config = settings(url="https://x.test", token=TOKEN)
    assert TOKEN not in repr(config) and TOKEN not in str(config.model_dump())
