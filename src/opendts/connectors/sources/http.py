"""``http``: one date of records from a JSON API, page by page.

The URL, query parameters and POST body are templates: ``{date}`` is the date asked for
(``2024-01-31``), ``{date:%Y%m%d}`` formats it (``20240131``). ``records_path`` points at the
list of records in each answer; ``pagination`` follows a next link or counts pages.

Connections go only to addresses the team's boundary allows (``connectors.network``),
checked on the address actually connected to and on every redirect hop; redirects are
followed here, hop by hop, and the token, ``Authorization``, ``Cookie`` and the custom
headers go only to the configured URL's origin.

Rate limits and outages are retried inside the run (``429`` honours ``Retry-After``; ``5xx``,
timeouts and dropped connections back off exponentially); a wait longer than
``max_wait_seconds`` hands the date back to the engine with that delay instead of holding a
worker. Other ``4xx`` answers fail the date at once: retrying cannot fix a bad token.

The helpers for templates and JSON values live here and are shared by the other sources.
"""

from __future__ import annotations

import json
import logging
import random
import string
from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar, Literal
from urllib.parse import unquote

import httpx
import pyarrow as pa
from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from opendts.connectors import credentials, excerpts, network
from opendts.connectors.base import ConnectorSettings, ReadRequest, reveal, settings_boundary
from opendts.connectors.http_client import (
    MAX_REDIRECTS,
    checked_client,
    redirect_method,
    redirect_target,
    safe_url,
    same_origin,
)
from opendts.engine.errors import TerminalRunError, TransientRunError

log = logging.getLogger("opendts.connectors.http")

#: Characters of a JSON error answer quoted in a run message.
EXCERPT_CHARS = 120

# --- templates ------------------------------------------------------------------------------

_SAMPLE_DATE = date(2024, 1, 31)
_FORMATTER = string.Formatter()
_ONLY_DATE = "the only placeholder is {date} (e.g. {date} or {date:%Y%m%d})"


def check_template(template: str) -> str:
    """``template`` if it formats with ``date`` as its only placeholder, ``ValueError`` if not.

    Attribute and index access (``{date.year}``, ``{date[0]}``) and conversions (``!s``) are
    refused: a template is user input and must neither reach into objects nor pad a string
    to any width.
    """
    try:
        parts = list(_FORMATTER.parse(template))
    except ValueError as exc:
        raise ValueError(f"bad template ({exc}); write {{{{ and }}}} for literal braces") from None
    for _, field_name, spec, conversion in parts:
        if field_name is not None and field_name != "date":
            shown = "{" + field_name + "}"
            raise ValueError(f"unknown placeholder {shown}: {_ONLY_DATE}")
        if conversion is not None:
            raise ValueError(f"conversions such as !{conversion} are not allowed: {_ONLY_DATE}")
        if spec and ("{" in spec or "}" in spec):
            raise ValueError(f"placeholders inside a format are not allowed: {_ONLY_DATE}")
    try:
        template.format(date=_SAMPLE_DATE)
    except (KeyError, IndexError, AttributeError) as exc:
        raise ValueError(f"unknown placeholder {{{exc.args[0]}}}: {_ONLY_DATE}") from None
    except (ValueError, TypeError) as exc:
        raise ValueError(f"bad template ({exc}): {_ONLY_DATE}") from None
    return template


def render(template: str, day: date) -> str:
    """``template`` with ``{date}`` filled in (validated by ``check_template`` beforehand)."""
    return template.format(date=day)


def _walk_strings(value: Any, visit: Any) -> Any:
    if isinstance(value, str):
        return visit(value)
    if isinstance(value, dict):
        return {k: _walk_strings(v, visit) for k, v in value.items()}
    if isinstance(value, list):
        return [_walk_strings(v, visit) for v in value]
    return value


# --- JSON values to Arrow -------------------------------------------------------------------


def to_text(value: Any) -> str:
    """A value as text: JSON for nested values, numbers and booleans; ``str`` otherwise."""
    if isinstance(value, str):
        return value
    if isinstance(value, (dict, list, tuple, bool, int, float)) or value is None:
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


def plain(value: Any) -> Any:
    """A nested value (dict, list) as a JSON string; anything else unchanged."""
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, ensure_ascii=False, default=str)
    return value


def column_array(values: list[Any]) -> pa.Array:
    """Values of one column as an Arrow array, type inferred; text when types are mixed."""
    values = [plain(v) for v in values]
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError):
        return pa.array([None if v is None else to_text(v) for v in values], pa.string())


def records_to_batch(records: list[Mapping[str, Any]]) -> pa.RecordBatch:
    """JSON objects as one batch: a column per key (first-seen order), NULL where missing."""
    names: dict[str, None] = {}
    for record in records:
        for key in record:
            names.setdefault(str(key))
    columns = [column_array([record.get(name) for record in records]) for name in names]
    return pa.RecordBatch.from_arrays(columns, names=list(names))


def _is_nested(type_: pa.DataType) -> bool:
    return bool(
        pa.types.is_struct(type_)
        or pa.types.is_list(type_)
        or pa.types.is_large_list(type_)
        or pa.types.is_fixed_size_list(type_)
        or pa.types.is_map(type_)
    )


def flatten_nested(batch: pa.RecordBatch) -> pa.RecordBatch:
    """``batch`` with struct, list and map columns turned into JSON strings."""
    if not any(_is_nested(field.type) for field in batch.schema):
        return batch
    arrays = []
    for field, column in zip(batch.schema, batch.columns, strict=True):
        if _is_nested(field.type):
            items = column.to_pylist()
            if pa.types.is_map(field.type):  # maps come back as lists of (key, value) pairs
                items = [None if item is None else dict(item) for item in items]
            column = pa.array(
                [None if item is None else to_text(item) for item in items], pa.string()
            )
        arrays.append(column)
    return pa.RecordBatch.from_arrays(arrays, names=batch.schema.names)


# --- settings -------------------------------------------------------------------------------


class HttpSettings(ConnectorSettings):
    """Where the API is, how to authenticate, where the records are, how pages follow."""

    #: The token, the URL's userinfo and query values and every header and parameter value are
    #: credentials, sent only to the URL's origin (scheme, host and port).
    credential_location: ClassVar[tuple[str, ...] | None] = ()
    credential_urls: ClassVar[Mapping[str, str]] = {"url": "http"}
    credential_maps: ClassVar[tuple[str, ...]] = ("params", "headers")

    url: str = Field(
        description="URL template, e.g. https://api.example.com/report?day={date}",
    )
    method: Literal["GET", "POST"] = "GET"
    params: dict[str, str] = Field(
        default_factory=dict, description="Query parameters; values are templates."
    )
    headers: dict[str, str] = Field(default_factory=dict, description="Extra request headers.")
    body: dict[str, Any] | None = Field(
        default=None, description="JSON body of a POST; string values are templates."
    )
    token: SecretStr | None = Field(default=None, description="API token, sent in auth_header.")
    auth_header: str = Field(default="Authorization", min_length=1)
    auth_prefix: str = Field(default="Bearer ", description="Put before the token.")
    records_path: str = Field(
        default="",
        description="Dotted path to the list of records in the answer; empty: the answer.",
    )
    pagination: Literal["none", "next_link", "page_number"] = "none"
    next_link_path: str = Field(
        default="next", min_length=1, description="Dotted path to the next page's URL."
    )
    page_param: str = Field(default="page", min_length=1)
    page_start: int = 1
    page_size_param: str | None = None
    page_size: int = Field(default=100, ge=1)
    max_pages: int = Field(default=10_000, ge=1)
    timeout_seconds: float = Field(default=30, gt=0, le=3600)
    max_retries: int = Field(default=4, ge=0, le=50)
    backoff_seconds: float = Field(default=1.0, ge=0, le=3600)
    max_wait_seconds: float = Field(default=60, ge=0, le=86_400)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str, info: ValidationInfo) -> str:
        check_template(value)
        sample = render(value, _SAMPLE_DATE)
        try:
            parsed = httpx.URL(sample)
        except (httpx.InvalidURL, ValueError, TypeError) as exc:
            raise ValueError(f"not a valid URL ({exc})") from None
        if parsed.scheme not in ("http", "https"):
            raise ValueError(
                f"must start with http:// or https:// (got {parsed.scheme or 'no'} scheme)"
            )
        if not parsed.host:
            raise ValueError("must name a host, e.g. https://api.example.com/path")
        try:
            network.check_host(parsed.host, settings_boundary(info))
        except ValueError as exc:
            raise PydanticCustomError("address_refused", str(exc)) from None
        return value

    @field_validator("params")
    @classmethod
    def _params(cls, value: dict[str, str]) -> dict[str, str]:
        for key, template in value.items():
            try:
                check_template(template)
            except ValueError as exc:
                raise ValueError(f"{key}: {exc}") from None
        return value

    @field_validator("body")
    @classmethod
    def _body(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            _walk_strings(value, check_template)
        return value

    @field_validator("records_path", "next_link_path")
    @classmethod
    def _path(cls, value: str) -> str:
        if value and any(not part for part in value.split(".")):
            raise ValueError("a dotted path such as data.items (no empty parts)")
        return value


# --- reading --------------------------------------------------------------------------------


def _lookup(body: Any, path: str) -> tuple[bool, Any, str]:
    """(found, value, where it stopped) for a dotted ``path`` into a JSON value."""
    current = body
    walked: list[str] = []
    for part in path.split(".") if path else []:
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.lstrip("-").isdigit() and current:
            index = int(part)
            if not -len(current) <= index < len(current):
                return False, current, ".".join(walked)
            current = current[index]
        else:
            return False, current, ".".join(walked)
        walked.append(part)
    return True, current, path


def _describe(value: Any) -> str:
    """The shape of a JSON value, without its data (keys of an object are its shape)."""
    if isinstance(value, dict):
        keys = ", ".join(str(key)[:40] for key in list(value)[:20]) or "none"
        return f"an object with keys {keys}"
    if isinstance(value, list):
        return f"a list of {len(value)} items"
    if isinstance(value, str):
        return f"a string of {len(value):,} characters"
    if isinstance(value, bool):
        return "a boolean"
    return "null" if value is None else "a number"


def _credentials(settings: HttpSettings, day: date) -> list[str]:
    """Every credential the requests carry, as written and as sent: kept out of messages, and
    a reason not to follow a next link to another site."""
    out: set[str] = set()
    for value in credentials.secret_values(HttpSettings, reveal(settings)):
        try:
            rendered = render(value, day)
        except (ValueError, KeyError, IndexError, AttributeError):
            rendered = value
        out |= {value, rendered, unquote(rendered)}
    return sorted(out)


def _body(response: httpx.Response) -> str:
    """What kind of body an answer has, and how long it is (its content is not shown)."""
    kind = response.headers.get("content-type", "") or "no content type"
    return f"{kind}, {len(response.content):,} bytes"


def _safe_url(url: httpx.URL) -> str:
    """``url`` without its query string or credentials (they may hold API keys)."""
    return safe_url(url)


#: Headers that carry no credential: the only ones another origin gets after a redirect.
_PLAIN_HEADERS = frozenset({"accept", "accept-language", "content-type", "user-agent"})


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds the server asks us to wait, from ``Retry-After`` (seconds or an HTTP date)."""
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _hint(status: int, has_token: bool) -> str:
    if status in (401, 403):
        return "Check the source's token." if has_token else "The API may need a token."
    if status in (404, 410):
        return "Check the source's URL."
    if status in (400, 405, 422):
        return "Check the source's URL, params and body."
    return "Check the source's settings."


class _Reader:
    """One read: a client, the settings, the request, and the secret to keep out of text."""

    def __init__(self, settings: HttpSettings, request: ReadRequest, client: httpx.Client):
        self.settings = settings
        self.request = request
        self.client = client
        self.secrets = _credentials(settings, request.data_date)
        self.origin = httpx.URL(render(settings.url, request.data_date))
        self.headers = {"Accept": "application/json", **settings.headers}
        if settings.token is not None:
            self.headers[settings.auth_header] = (
                settings.auth_prefix + settings.token.get_secret_value()
            )
        # Another origin gets no credential: not the token, not a custom header.
        self.foreign_headers = {
            name: value
            for name, value in self.headers.items()
            if name.lower() in _PLAIN_HEADERS and name.lower() != settings.auth_header.lower()
        }

    def headers_for(self, url: httpx.URL) -> dict[str, str]:
        """The headers a request to ``url`` carries: credentials only for the origin."""
        return self.headers if same_origin(url, self.origin) else self.foreign_headers

    def redact(self, text: str) -> str:
        return excerpts.mask(text, self.secrets)

    def excerpt(self, response: httpx.Response) -> str:
        """A short look at an error answer: a JSON body's start with credentials masked (APIs
        explain themselves there), never another kind of body (a page, another server's data)."""
        if not response.content.strip():
            return "(empty body)"
        if "json" not in response.headers.get("content-type", "").lower():
            return f"a body of {_body(response)}, not shown"
        return excerpts.excerpt(
            response.text, secrets=self.secrets, hide_values=False, limit=EXCERPT_CHARS
        )

    def check_cancelled(self) -> None:
        if self.request.cancelled.is_set():
            raise TransientRunError("interrupted")

    def _backoff(self, attempt: int) -> float:
        base = self.settings.backoff_seconds * (2**attempt)
        return float(min(self.settings.max_wait_seconds, base * random.uniform(0.5, 1.0)))

    def _sleep(self, seconds: float) -> None:
        if seconds > 0 and self.request.cancelled.wait(seconds):
            raise TransientRunError("interrupted")

    def fetch(self, url: httpx.URL, body: Any) -> httpx.Response:
        """The answer to one request, redirects followed hop by hop (each hop's connection
        checked against the boundary, credentials dropped when a hop leaves the origin)."""
        method: str = self.settings.method
        first = url
        for _ in range(MAX_REDIRECTS + 1):
            try:
                response = self.client.request(
                    method,
                    url,
                    json=body if method == "POST" else None,
                    headers=self.headers_for(url),
                )
            except network.AddressRefused as exc:
                via = f" redirected to {_safe_url(url)}" if url != first else ""
                raise network.AddressRefused(
                    f"{self.settings.method} {_safe_url(first)}{via}: {exc}"
                ) from None
            try:
                target = redirect_target(response)
            except ValueError as exc:
                raise TerminalRunError(
                    f"{method} {_safe_url(url)} answered {response.status_code}, but {exc}."
                ) from None
            if target is None:
                return response
            response.close()
            method = redirect_method(response.status_code, method)
            body = body if method == "POST" else None
            if body is not None and not same_origin(target, self.origin):
                # A body may carry credentials as headers do: it stays with its origin.
                raise TerminalRunError(
                    f"{method} {_safe_url(url)} redirected the request and its body to "
                    f"another site ({_safe_url(target)}); opendts does not send the body "
                    "there. Use the final URL as the source's url."
                )
            url = target
        raise httpx.TooManyRedirects("too many redirects", request=response.request)

    def send(self, url: httpx.URL, params: dict[str, str] | None) -> httpx.Response:
        """The answer to one request, retried on 429, 5xx, timeouts and connection errors."""
        s = self.settings
        if params:
            # Merged into the URL's own query: httpx would otherwise replace it (even with {}).
            url = url.copy_merge_params(params)
        shown = f"{s.method} {_safe_url(url)}"
        day = self.request.data_date
        body = _walk_strings(s.body, lambda text: render(text, day)) if s.body is not None else None
        tries = s.max_retries + 1
        problem = ""
        retry_after: float | None = None
        for attempt in range(tries):
            self.check_cancelled()
            try:
                response = self.fetch(url, body)
            except httpx.TimeoutException:
                problem = f"timed out after {s.timeout_seconds:g} s"
                wait, retry_after = self._backoff(attempt), None
            except httpx.TooManyRedirects:
                raise TerminalRunError(f"{shown} redirects too many times.") from None
            except httpx.TransportError as exc:
                problem = f"could not be reached ({type(exc).__name__}: {self.redact(str(exc))})"
                wait, retry_after = self._backoff(attempt), None
            except httpx.RequestError as exc:
                problem = f"failed ({type(exc).__name__}: {self.redact(str(exc))})"
                wait, retry_after = self._backoff(attempt), None
            else:
                status = response.status_code
                if response.is_success:
                    return response
                phrase = f"{status} {response.reason_phrase}".strip()
                if status == 429 or status >= 500:
                    problem = f"answered {phrase}"
                    retry_after = _retry_after(response)
                    if retry_after is not None and retry_after > s.max_wait_seconds:
                        raise TransientRunError(
                            f"{shown} answered {phrase} and asks to wait {retry_after:.0f} s "
                            f"(more than max_wait_seconds={s.max_wait_seconds:g}); "
                            "the date will be retried after that.",
                            retry_after=retry_after,
                        )
                    wait = self._backoff(attempt) if retry_after is None else retry_after
                else:
                    raise TerminalRunError(
                        f"{shown} answered {phrase}: {self.excerpt(response)}. "
                        f"{_hint(status, s.token is not None)}"
                    )
            if attempt + 1 < tries:
                log.info("%s %s; retrying in %.1f s", shown, problem, wait)
                self._sleep(wait)
        raise TransientRunError(
            f"{shown} {problem} ({tries} attempt{'s' if tries != 1 else ''}); "
            "the date will be retried later.",
            retry_after=retry_after,
        )

    def records(self, response: httpx.Response, shown: str) -> tuple[Any, list[Any]]:
        """The parsed body and its list of records."""
        try:
            body = json.loads(response.content)
        except (ValueError, UnicodeDecodeError):
            raise TerminalRunError(
                f"{shown} answered with a body that is not JSON ({_body(response)}). "
                "Check the source's URL."
            ) from None
        path = self.settings.records_path
        found, value, where = _lookup(body, path)
        if not found:
            at = f"at {where!r}" if where else "at the top"
            raise TerminalRunError(
                f"{shown}: records_path {path!r} is not in the answer ({at} it has "
                f"{_describe(value)}). Fix the source's records_path."
            )
        if value is None:
            return body, []
        if not isinstance(value, list):
            what = f"records_path {path!r}" if path else "The answer (records_path is empty)"
            raise TerminalRunError(
                f"{shown}: {what} is {_describe(value)}, not a list of records. "
                "Fix the source's records_path."
            )
        for item in value:
            if not isinstance(item, dict):
                raise TerminalRunError(
                    f"{shown}: the records are not JSON objects (found {_describe(item)})."
                )
        return body, value

    def next_url(self, body: Any, current: httpx.URL) -> httpx.URL | None:
        found, value, _ = _lookup(body, self.settings.next_link_path)
        if not found or value is None or value == "":
            return None
        if not isinstance(value, str):
            raise TerminalRunError(
                f"next_link_path {self.settings.next_link_path!r} holds {_describe(value)}, "
                "not a URL. Fix the source's next_link_path."
            )
        try:
            target = current.join(value)
        except (httpx.InvalidURL, ValueError) as exc:
            reason = excerpts.excerpt(str(exc), secrets=self.secrets)
            raise TerminalRunError(f"The next page's link is not a URL ({reason}).") from None
        if target.scheme not in ("http", "https"):
            raise TerminalRunError(
                f"The next page's link is not an http(s) URL (scheme {target.scheme[:20]!r})."
            )
        if self.secrets and (target.scheme, target.host, target.port) != (
            self.origin.scheme,
            self.origin.host,
            self.origin.port,
        ):
            raise TerminalRunError(
                f"The next page's link points to another site ({_safe_url(target)}); "
                "the credentials are not sent there."
            )
        return target


class HttpSource:
    """Records from a JSON API over HTTP(S), one request (or series of pages) per date."""

    name: ClassVar[str] = "http"
    title: ClassVar[str] = "HTTP JSON API"
    Settings: ClassVar[type[ConnectorSettings]] = HttpSettings

    def read(self, settings: HttpSettings, request: ReadRequest) -> Iterator[pa.RecordBatch]:
        s = settings
        day = request.data_date
        params = {key: render(value, day) for key, value in s.params.items()}
        with checked_client(request.boundary, s.timeout_seconds) as client:
            reader = _Reader(s, request, client)
            url = reader.origin
            page = s.page_start
            seen: set[str] = set()
            for number in range(1, s.max_pages + 1):
                reader.check_cancelled()
                shown = f"{s.method} {_safe_url(url)}"
                if s.pagination == "page_number":
                    page_params = {**params, s.page_param: str(page)}
                    if s.page_size_param:
                        page_params[s.page_size_param] = str(s.page_size)
                    response = reader.send(url, page_params)
                else:
                    # A next link is complete: the first request's params are not added again.
                    response = reader.send(url, params if number == 1 else None)
                body, records = reader.records(response, shown)
                if records:
                    yield records_to_batch(records)
                if s.pagination == "none":
                    return
                if s.pagination == "page_number":
                    if (len(records) < s.page_size) if s.page_size_param else not records:
                        return
                    page += 1
                    continue
                following = reader.next_url(body, response.url)
                if following is None:
                    return
                seen.add(str(response.url))
                if str(following) in seen:
                    raise TerminalRunError(
                        f"The API's next link leads back to a page already read "
                        f"({_safe_url(following)}); stopping to avoid a loop."
                    )
                url = following
            raise TerminalRunError(
                f"The API has more than max_pages={s.max_pages} pages for {day}; "
                "raise the source's max_pages (or narrow the request)."
            )
