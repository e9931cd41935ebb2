"""Credentials inside connector settings: which values are secret, how they are kept, where they go.

A connector's ``Settings`` model says where its credentials are (``ConnectorSettings``):

- a field typed ``SecretStr`` (``token``, ``password``): left out of what is shown;
- a URL field in ``credential_urls``: an ``"http"`` URL's userinfo and query values, or a
  ``"database"`` URL's password and query values, masked in place as ``***``;
- a string map in ``credential_maps`` (request headers, query parameters): every value is a
  credential except a bare date placeholder (``{date}``, ``{date:%Y%m%d}``), masked as ``***``.

``split`` divides settings into what is stored and shown in clear (credentials left out or
masked) and what is sealed; ``join`` puts them back together; ``mask`` masks stored plain
settings again before they are shown (rows saved by older versions were not masked).

A stored credential is only ever sent where it was stored for. Its **location** is the
connector's ``credential_location`` fields plus each credential URL's target (an HTTP URL's
scheme, host and port; a database URL without its password). ``restore`` fills in the
credentials a new config leaves out or sends back masked; ``check_kept`` refuses the config when
one was kept and the location changed, naming the field and the credential to send again.
``split`` seals the location with the credentials (``BOUND``) and ``moved`` compares it with
the settings a run is about to use, so the rule also holds where the credentials are used.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date
from functools import cache
from typing import Any
from urllib.parse import urlsplit

from pydantic import create_model
from pydantic.fields import FieldInfo

from opendts.connectors.base import (
    ConfigError,
    ConnectorSettings,
    parse_settings,
    reveal,
    secret_fields,
)
from opendts.connectors.boundary import Boundary

#: What a credential looks like in anything shown; sent back, it means "keep the stored one".
MASK = "***"
#: Key of the sealed credentials that holds the location they were stored for.
BOUND = "@location"
HTTP = "http"
DATABASE = "database"

_PLACEHOLDERS = re.compile(r"(?:\{date(?::[^{}]*)?\})+")
_SAMPLE_DATE = date(2024, 1, 31)
_DEFAULT_PORTS = {"http": 80, "https": 443}


# --- what a connector declares ----------------------------------------------------------------


def _urls(model: type[ConnectorSettings]) -> Mapping[str, str]:
    return model.credential_urls


def _maps(model: type[ConnectorSettings]) -> tuple[str, ...]:
    return model.credential_maps


def _whole(model: type[ConnectorSettings]) -> frozenset[str]:
    """``SecretStr`` fields that are credentials as a whole (not URLs masked in place)."""
    return secret_fields(model) - set(_urls(model))


def _location_fields(model: type[ConnectorSettings]) -> tuple[str, ...]:
    if model.credential_location is not None:
        return model.credential_location
    # A connector that does not say: its credentials are bound to every other setting.
    hidden = secret_fields(model) | set(_urls(model)) | set(_maps(model))
    return tuple(name for name in model.model_fields if name not in hidden)


def unbound(model: type[ConnectorSettings], values: Mapping[str, Any]) -> list[str]:
    """Required fields that decide where credentials go, missing from partial ``values``."""
    names = [*_location_fields(model), *_urls(model)]
    fields = model.model_fields
    return [n for n in names if n not in values and n in fields and fields[n].is_required()]


def has_credentials(model: type[ConnectorSettings]) -> bool:
    """Whether settings of ``model`` can hold credentials at all."""
    return bool(secret_fields(model) or _urls(model) or _maps(model))


# --- URLs, taken apart without re-encoding anything (templates stay templates) ----------------


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


def _is_plain(value: object) -> bool:
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
            pairs.append(key + eq + (value if not eq or _is_plain(value) else MASK))
        query = "&".join(pairs)
    return str(replace(parts, userinfo=userinfo, query=query))


def _restore_url(new: str, old: str | None) -> tuple[str, bool, list[str]]:
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


def _target(url: str, kind: str) -> str:
    """Where a URL sends its credentials: an HTTP origin, or a database URL minus its password."""
    if kind == HTTP:
        try:
            rendered = url.format(date=_SAMPLE_DATE)
        except (ValueError, KeyError, IndexError, AttributeError, TypeError):
            rendered = url
        try:
            split_url = urlsplit(rendered)
            port = split_url.port
        except ValueError:
            return rendered  # not a URL one can take apart: any change counts
        scheme = split_url.scheme.lower()
        return f"{scheme}://{split_url.hostname or ''}:{port or _DEFAULT_PORTS.get(scheme, '')}"
    parts = _Url.parse(url)
    if parts.userinfo is not None:
        parts = replace(parts, userinfo=parts.userinfo.partition(":")[0])
    return str(parts)


# --- splitting, joining, masking ----------------------------------------------------------------


def split(
    model: type[ConnectorSettings], values: Mapping[str, Any], bound: dict[str, str] | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(plain, sealed)`` of revealed settings: plain has no credential, sealed holds them.

    ``sealed`` also records the location the credentials are for (``BOUND``): ``bound`` if
    given (a transfer's own credentials used with a connection's URL), else ``values``' own.
    """
    urls, maps, whole = _urls(model), _maps(model), _whole(model)
    plain: dict[str, Any] = {}
    sealed: dict[str, Any] = {}
    for name, value in values.items():
        if name in urls and isinstance(value, str):
            masked = mask_url(value, urls[name])
            plain[name] = masked
            if masked != value:
                sealed[name] = value
        elif name in whole:
            if value not in (None, ""):
                sealed[name] = value
        elif name in maps and isinstance(value, dict):
            shown = {key: item if _is_plain(item) else MASK for key, item in value.items()}
            plain[name] = shown
            hidden = {key: item for key, item in value.items() if shown[key] != item}
            if hidden:
                sealed[name] = hidden
        else:
            plain[name] = value
    if sealed:
        sealed[BOUND] = bound if bound is not None else location(model, values)
    return plain, sealed


def join(plain: Mapping[str, Any], sealed: Mapping[str, Any]) -> dict[str, Any]:
    """The settings ``split`` took apart (maps merged key by key)."""
    out = dict(plain)
    for name, value in sealed.items():
        if name == BOUND:
            continue
        current = out.get(name)
        if isinstance(value, dict) and isinstance(current, dict):
            value = {**current, **value}
        out[name] = value
    return out


def mask(model: type[ConnectorSettings], plain: Mapping[str, Any]) -> dict[str, Any]:
    """Stored plain settings as they may be shown: credentials left out or masked."""
    return split(model, plain)[0]


def merge(
    model: type[ConnectorSettings], base: Mapping[str, Any], over: Mapping[str, Any]
) -> dict[str, Any]:
    """``over`` on top of ``base`` (a connection's settings under a transfer's); credential
    maps merge key by key."""
    out = dict(base)
    maps = _maps(model)
    for name, value in over.items():
        current = out.get(name)
        if name in maps and isinstance(value, dict) and isinstance(current, dict):
            out[name] = {**current, **value}
        else:
            out[name] = value
    return out


def secret_values(model: type[ConnectorSettings], values: Mapping[str, Any]) -> list[str]:
    """Every credential in ``values`` as written (templates unrendered), to mask in messages."""
    urls = _urls(model)
    out: list[str] = []
    for name, value in split(model, values)[1].items():
        if name == BOUND:
            continue
        if isinstance(value, dict):
            out += [item for item in value.values() if isinstance(item, str)]
        elif name in urls and isinstance(value, str):
            parts = _Url.parse(value)
            if parts.userinfo:
                user, _, password = parts.userinfo.partition(":")
                out += [user, password] if urls[name] == HTTP else [password]
            for pair in (parts.query or "").split("&"):
                _, eq, item = pair.partition("=")
                if eq and not _is_plain(item):
                    out.append(item)
        elif isinstance(value, str):
            out.append(value)
    return [item for item in out if item]


# --- where credentials may go ---------------------------------------------------------------------


def _default(model: type[ConnectorSettings], name: str) -> Any:
    info = model.model_fields.get(name)
    if info is None or info.is_required():
        return None
    return info.get_default(call_default_factory=True)


def location(model: type[ConnectorSettings], values: Mapping[str, Any]) -> dict[str, str]:
    """Where settings send their credentials, one comparable text per field that decides it."""
    out: dict[str, str] = {}
    for name in _location_fields(model):
        value = values[name] if name in values else _default(model, name)
        out[name] = json.dumps(value, sort_keys=True, default=str)
    for name, kind in _urls(model).items():
        value = values.get(name)
        out[name] = _target(value, kind) if isinstance(value, str) else ""
    return out


def describe_location(model: type[ConnectorSettings]) -> str:
    """The fields that decide where credentials go, in words."""
    parts = list(_location_fields(model))
    for name, kind in _urls(model).items():
        parts.append(
            f"{name}'s scheme, host and port" if kind == HTTP else f"{name} (all but its password)"
        )
    return _words(parts) or "place"


def _words(items: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    if len(items) < 2:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def changed(before: Mapping[str, str], after: Mapping[str, str]) -> list[str]:
    """The fields whose location differs between two ``location`` results."""
    return [name for name in after if before.get(name) != after[name]]


def moved(
    model: type[ConnectorSettings], sealed: Mapping[str, Any], values: Mapping[str, Any]
) -> list[str]:
    """Fields of ``values`` that point elsewhere than where ``sealed``'s credentials were stored
    for (none when the credentials carry no location: stored by an older version)."""
    bound = sealed.get(BOUND)
    if not isinstance(bound, dict):
        return []
    return changed(bound, location(model, values))


def restore(
    model: type[ConnectorSettings], config: Mapping[str, Any], stored: Mapping[str, Any] | None
) -> tuple[dict[str, Any], list[str]]:
    """``config`` with the credentials it leaves out, or sends masked, taken from ``stored``.

    A whole credential (``token``) is kept when missing, null, blank or ``***``; one inside a
    URL or a map only when sent as ``***``. Returns the config and the credentials kept
    (``token``, ``headers.X-Api-Key``, ``url``); ``ConfigError`` for a ``***`` with nothing stored.
    """
    out = dict(config)
    old = dict(stored or {})
    kept: list[str] = []
    problems: list[tuple[str, str]] = []
    unknown = f"is '{MASK}', which stands for a stored value, but none is stored: send the value"
    secret = secret_fields(model)
    for name in sorted(_whole(model)):
        new = out.get(name)
        if new in (None, "", MASK):
            if old.get(name) not in (None, ""):
                out[name] = old[name]
                kept.append(name)
            elif new == MASK:
                problems.append((name, unknown))
    for name in _urls(model):
        new, before = out.get(name), old.get(name)
        if name in secret and new in (None, "", MASK):
            if isinstance(before, str) and before:
                out[name] = before
                kept.append(name)
            elif new == MASK:
                problems.append((name, unknown))
            continue
        if isinstance(new, str):
            url, used, missing = _restore_url(new, before if isinstance(before, str) else None)
            out[name] = url
            if used:
                kept.append(name)
            problems += [
                (name, f"{what} is '{MASK}', but none is stored: send the value")
                for what in missing
            ]
    for name in _maps(model):
        new, before = out.get(name), old.get(name)
        if not isinstance(new, dict):
            continue
        previous = before if isinstance(before, dict) else {}
        restored = dict(new)
        for key, value in new.items():
            if value != MASK:
                continue
            if previous.get(key) not in (None, MASK):
                restored[key] = previous[key]
                kept.append(f"{name}.{key}")
            else:
                problems.append((f"{name}.{key}", unknown))
        out[name] = restored
    if problems:
        raise ConfigError(problems)
    return out, kept


def check_kept(
    model: type[ConnectorSettings],
    stored: Mapping[str, Any],
    values: Mapping[str, Any],
    kept: list[str],
) -> None:
    """``ConfigError`` naming the changed field if credentials were kept but would go elsewhere."""
    if not kept:
        return
    fields = changed(location(model, stored), location(model, values))
    if fields:
        names = _words([f"'{name}'" for name in dict.fromkeys(kept)])
        raise ConfigError(
            [
                (
                    fields[0],
                    f"changed; send {names} again: stored credentials are only sent to the "
                    f"{describe_location(model)} they were saved with",
                )
            ]
        )


# --- validating with credentials carried over ----------------------------------------------------


@cache
def _partial(model: type[ConnectorSettings]) -> type[ConnectorSettings]:
    """``model`` with every field optional (validators and constraints unchanged)."""
    overrides: dict[str, Any] = {
        name: (info.annotation, FieldInfo.merge_field_infos(info, default=None))
        for name, info in model.model_fields.items()
        if info.is_required()
    }
    partial: type[ConnectorSettings] = create_model(
        f"Partial{model.__name__}", __base__=model, **overrides
    )
    return partial


def settle(
    model: type[ConnectorSettings],
    config: Mapping[str, Any],
    stored: Mapping[str, Any] | None,
    boundary: Boundary | None,
    *,
    partial: bool = False,
) -> dict[str, Any]:
    """Revealed, validated settings of ``config``, credentials carried over from ``stored``
    where left out and still bound to where they were stored for (``ConfigError`` otherwise).

    ``partial``: only the fields ``config`` sets (a connection's settings, or a transfer's own
    on top of a connection's), each validated as ``model`` would.
    """
    restored, kept = restore(model, config, stored)
    if not partial:
        values = reveal(parse_settings(model, restored, boundary))
    else:
        parsed = parse_settings(_partial(model), restored, boundary)
        values = {k: v for k, v in reveal(parsed).items() if k in parsed.model_fields_set}
    check_kept(model, stored or {}, values, kept)
    return values
