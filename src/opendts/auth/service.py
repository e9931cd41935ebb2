"""Authentication (key → user → team roles) and authorisation (scope AND permission)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from opendts.auth import keys, sessions
from opendts.auth.models import ApiKey
from opendts.auth.permissions import ACCESS_RULES, ALL_SCOPES, ROLE_PERMISSIONS, Access, Role
from opendts.kit.clock import utcnow
from opendts.kit.db import Reader, get_or_not_found
from opendts.kit.driver_sql import DriverQuery
from opendts.kit.errors import Forbidden, InvalidParameter, Unauthorized
from opendts.teams.models import Membership
from opendts.teams.service import get_user

_DUMMY_HASH = keys.hash_secret("no-such-key")

# Authentication runs on every request: compiled once and fetched straight from the driver.
# Columns by position: key id, user id, secret hash, scopes, revoked at, team id, role.
_KEY_WITH_ROLES = DriverQuery(
    lambda _dialect: (
        select(
            ApiKey.id,
            ApiKey.user_id,
            ApiKey.secret_hash,
            ApiKey.scopes,
            ApiKey.revoked_at,
            Membership.team_id,
            Membership.role,
        )
        .outerjoin(Membership, Membership.user_id == ApiKey.user_id)
        .where(ApiKey.lookup_id == bindparam("lookup_id"))
    )
)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the key, its user, its scopes and the user's role in each team."""

    key_id: int
    #: The key's public lookup id: unique across installations, so budgets kept in a shared
    #: Redis never collide between two opendts databases.
    key_lookup_id: str
    user_id: int
    scopes: frozenset[str]
    roles: dict[int, Role] = field(default_factory=dict)


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer …`` header, or a 401 that says what is missing."""
    if not authorization:
        raise Unauthorized(
            "Send your API key in the header 'Authorization: Bearer <key>'.",
        )
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized(
            "Use the Bearer scheme: 'Authorization: Bearer <key>'.",
            code="UNAUTHORIZED",
        )
    return token.strip()


def _invalid_key() -> Unauthorized:
    return Unauthorized(
        "The API key is unknown or revoked. Create a new one with 'opendts admin key create'.",
        code="API_KEY_INVALID",
        message="Invalid API key",
    )


def authenticate(session: Session | Reader, authorization: str | None) -> Principal:
    """Resolve an Authorization header to a principal, or raise 401 (in a session, or on a
    ``Database.read`` connection)."""
    token = bearer_token(authorization)
    parts = keys.split(token)
    if parts is None:
        keys.matches(token, _DUMMY_HASH)  # spend the same time as a real comparison
        raise _invalid_key()
    lookup_id, secret = parts
    # On a read connection, a key unchanged since its last request is not read again; any
    # commit (a revocation, a membership change) makes the next request read it.
    rows = _KEY_WITH_ROLES.rows(session, reuse=True, lookup_id=lookup_id)
    stored_hash = rows[0][2] if rows else _DUMMY_HASH
    if not keys.matches(secret, stored_hash) or not rows or rows[0][4] is not None:
        raise _invalid_key()
    key_id, user_id, _, scopes, _, _, _ = rows[0]
    roles = {team: Role(role) for *_, team, role in rows if team is not None}
    return Principal(key_id, lookup_id, user_id, frozenset(scopes.split()), roles)


def _session_ended() -> Unauthorized:
    return Unauthorized(
        "Your dashboard session has ended (signed out, expired, or its API key was revoked). "
        "Sign in again.",
        code="SESSION_ENDED",
        message="Session ended",
    )


def authenticate_ui_session(
    session: Session, token: str, policy: sessions.SessionPolicy, now: datetime
) -> tuple[Principal, int | None]:
    """Resolve a dashboard session id to its key's principal, or raise 401.

    Also returns the session's row id when its last use should be recorded (see
    ``SessionPolicy.touch_after``), else ``None``: the caller records it in a write scope.
    """
    found = sessions.find(session, token)
    if found is None or policy.ended(found, now):
        raise _session_ended()
    rows = session.execute(
        select(
            ApiKey.lookup_id,
            ApiKey.user_id,
            ApiKey.scopes,
            ApiKey.revoked_at,
            Membership.team_id,
            Membership.role,
        )
        .outerjoin(Membership, Membership.user_id == ApiKey.user_id)
        .where(ApiKey.id == found.api_key_id)
    ).all()
    if not rows or rows[0].revoked_at is not None:
        raise _session_ended()
    lookup_id, user_id, scopes = rows[0].lookup_id, rows[0].user_id, rows[0].scopes
    roles = {row.team_id: Role(row.role) for row in rows if row.team_id is not None}
    principal = Principal(found.api_key_id, lookup_id, user_id, frozenset(scopes.split()), roles)
    stale = now - found.last_seen_at >= policy.touch_after
    return principal, found.id if stale else None


def authorize(principal: Principal, team_id: int, access: Access) -> None:
    """Require the key's scope AND the role's permission in ``team_id``, else raise 403."""
    scope, permission = ACCESS_RULES[access]
    if scope not in principal.scopes:
        raise Forbidden(
            f"This API key lacks the scope '{scope}'. Create a key with that scope.",
            code="INSUFFICIENT_SCOPE",
            message="Missing scope",
        )
    role = principal.roles.get(team_id)
    if role is None:
        raise Forbidden(
            f"You are not a member of team {team_id}. Use a key of a user in that team.",
            code="FORBIDDEN",
            message="Not a member of this team",
        )
    if permission not in ROLE_PERMISSIONS[role]:
        raise Forbidden(
            f"Your role '{role}' in team {team_id} lacks the permission '{permission}'. "
            "Ask a team admin for the editor role.",
            code="PERMISSION_ERROR",
            message="Missing permission",
        )


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A key as returned once at creation: ``plaintext`` is never shown again."""

    id: int
    user_id: int
    scopes: tuple[str, ...]
    plaintext: str


def issue_key(session: Session, user_id: int, scopes: tuple[str, ...], name: str = "") -> IssuedKey:
    """Mint a key for ``user_id`` with ``scopes``; only its hash is stored."""
    known = {scope.value for scope in ALL_SCOPES}
    unknown = [scope for scope in scopes if scope not in known]
    if unknown or not scopes:
        raise InvalidParameter(
            f"Unknown or missing scopes {unknown}; choose from {', '.join(sorted(known))}."
        )
    get_user(session, user_id)
    minted = keys.mint()
    key = ApiKey(
        lookup_id=minted.lookup_id,
        secret_hash=minted.secret_hash,
        user_id=user_id,
        name=name,
        scopes=" ".join(dict.fromkeys(scopes)),
    )
    session.add(key)
    session.flush()
    return IssuedKey(key.id, user_id, tuple(dict.fromkeys(scopes)), minted.plaintext)


def revoke_key(session: Session, key_id: int) -> ApiKey:
    """Revoke a key at once; later requests with it (or its dashboard sessions) get 401."""
    key = get_or_not_found(session, ApiKey, key_id, "API key")
    if key.revoked_at is None:
        key.revoked_at = utcnow()
    session.flush()
    sessions.close_all_of_key(session, key_id)  # its dashboard sessions end with it
    return key
