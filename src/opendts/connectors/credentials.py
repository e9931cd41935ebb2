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
from collections.abc import Mapping
from functools import cache
from typing import Any

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
from opendts.connectors.secret_urls import (
    HTTP,
    MASK,
    is_plain,
    mask_url,
    restore_url,
    secrets_in,
    target,
)

#: Key of the sealed credentials that holds the location they were stored for.
BOUND = "@location"


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
            shown = {key: item if is_plain(item) else MASK for key, item in value.items()}
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
            out += secrets_in(value, urls[name])
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
        out[name] = target(value, kind) if isinstance(value, str) else ""
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
            url, used, missing = restore_url(new, before if isinstance(before, str) else None)
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
