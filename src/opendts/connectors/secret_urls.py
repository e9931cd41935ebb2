"""URLs with credentials inside, taken apart without re-encoding anything (templates stay
templates): their credentials masked as ``***`` and restored, and where they send them.

An ``"http"`` URL's credentials are its userinfo and query values (a value that is only a date
placeholder such as ``{date}`` is none); it sends them to its scheme, host and port. A
``"database"`` URL's credentials are its password and query values; it sends them to the rest
of the URL (a database URL's query can name another host).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import date

import httpx

#: What a credential looks like in anything shown; sent back, it means "keep the stored one".
MASK = "***"
HTTP = "http"
DATABASE = "database"

_PLACEHOLDERS = re.compile(r"(?:\{date(?::[^{}]*)?\})+")
_SAMPLE_DATE = date(2024, 1, 31)
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True)
class _Url:
    head: str  # "scheme://", or "" for a URL without an authority
    userinfo: str | None
    host: str  # host[:port]
    path: str
    query: str | None
    fragment: str | None

    @classmethod
    def parse(cls, url: str) -> _Url:
        rest, hashed, fragment = url.partition("#")
        rest, asked, query = rest.partition("?")
        scheme, sep, after = rest.partition("://")
        if not sep:
            return cls("", None, "", rest, query if asked else None, fragment if hashed else None)
        authority, slash, path = after.partition("/")
        userinfo, at, host = authority.rpartition("@")
        return cls(
            scheme + sep,
            userinfo if at else None,
            host,
            slash + path,
            query if asked else None,
            fragment if hashed else None,
        )

    def __str__(self) -> str:
        return (
            self.head
            + (f"{self.userinfo}@" if self.userinfo is not None else "")
            + self.host
            + self.path
            + (f"?{self.query}" if self.query is not None else "")
            + (f"#{self.fragment}" if self.fragment is not None else "")
        )


def is_plain(value: object) -> bool:
    """A map or query value that is no credential: empty, the mask, or only date placeholders."""
    return isinstance(value, str) and (
        value in ("", MASK) or _PLACEHOLDERS.fullmatch(value) is not None
    )


def mask_url(url: str, kind: str) -> str:
    """``url`` with its credentials shown as ``***`` (userinfo, query values)."""
    parts = _Url.parse(url)
    userinfo = parts.userinfo
    if userinfo:
        user, colon, _ = userinfo.partition(":")
        shown_user = MASK if kind == HTTP else user
        userinfo = shown_user + (f":{MASK}" if colon else "")
    query = parts.query
    if query:
        pairs = []
        for pair in query.split("&"):
            key, eq, value = pair.partition("=")
            pairs.append(key + eq + (value if not eq or is_plain(value) else MASK))
        query = "&".join(pairs)
    return str(replace(parts, userinfo=userinfo, query=query))


def restore_url(new: str, old: str | None) -> tuple[str, bool, list[str]]:
    """``new`` with its masked parts taken from ``old``: (url, whether any was, what is missing)."""
    parts = _Url.parse(new)
    before = _Url.parse(old) if old else None
    used = False
    missing: list[str] = []
    userinfo = parts.userinfo
    if userinfo is not None:
        user, colon, password = userinfo.partition(":")
        had = before is not None and before.userinfo is not None
        old_user, old_colon, old_password = (
            (before.userinfo or "").partition(":") if before is not None else ("", "", "")
        )
        if user == MASK:
            if had and old_user:
                user, used = old_user, True
            else:
                missing.append("its user name")
        if colon and password == MASK:
            if had and old_colon and old_password:
                password, used = old_password, True
            else:
                missing.append("its password")
        userinfo = user + (f":{password}" if colon else "")
    query = parts.query
    if query:
        stored: dict[str, list[str]] = {}
        for pair in (before.query or "").split("&") if before else []:
            key, _, value = pair.partition("=")
            stored.setdefault(key, []).append(value)
        seen: dict[str, int] = {}
        pairs = []
        for pair in query.split("&"):
            key, eq, value = pair.partition("=")
            index = seen[key] = seen.get(key, -1) + 1
            if eq and value == MASK:
                olds = stored.get(key, [])
                if index < len(olds) and olds[index] != MASK:
                    value, used = olds[index], True
                else:
                    missing.append(f"its query parameter {key!r}")
            pairs.append(key + eq + value)
        query = "&".join(pairs)
    return str(replace(parts, userinfo=userinfo, query=query)), used, missing


def target(url: str, kind: str) -> str:
    """Where a URL sends its credentials: an HTTP origin, or a database URL minus its password."""
    if kind == HTTP:
        try:
            rendered = url.format(date=_SAMPLE_DATE)
        except (ValueError, KeyError, IndexError, AttributeError, TypeError):
            rendered = url
        try:
            # Parsed by the client that sends the requests, so both agree on the host.
            parsed = httpx.URL(rendered)
        except (httpx.InvalidURL, ValueError, TypeError):
            return rendered  # not a URL one can take apart: any change counts
        scheme = parsed.scheme.lower()
        return f"{scheme}://{parsed.host}:{parsed.port or _DEFAULT_PORTS.get(scheme, '')}"
    parts = _Url.parse(url)
    if parts.userinfo is not None:
        parts = replace(parts, userinfo=parts.userinfo.partition(":")[0])
    return str(parts)


def secrets_in(url: str, kind: str) -> list[str]:
    """The credentials written in ``url`` (userinfo parts, query values)."""
    parts = _Url.parse(url)
    out: list[str] = []
    if parts.userinfo:
        user, _, password = parts.userinfo.partition(":")
        out += [user, password] if kind == HTTP else [password]
    for pair in (parts.query or "").split("&"):
        _, eq, item = pair.partition("=")
        if eq and not is_plain(item):
            out.append(item)
    return [item for item in out if item]
