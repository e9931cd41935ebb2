"""API key material: ``odts_<lookup id>_<secret>``; only a SHA-256 of the secret is stored.

The secret has 256 bits of entropy, so a fast hash is the right tool (a slow password hash
would only add latency to every request without adding safety).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

PREFIX = "odts"
_KEY_PATTERN = re.compile(r"^odts_([A-Za-z0-9]{12})_([A-Za-z0-9_-]{43})$")
_ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


@dataclass(frozen=True, slots=True)
class NewKey:
    """A freshly minted key: ``plaintext`` is shown once and never stored."""

    plaintext: str
    lookup_id: str
    secret_hash: str


def hash_secret(secret: str) -> str:
    """Hex SHA-256 of a key's secret part."""
    return hashlib.sha256(secret.encode()).hexdigest()


def mint() -> NewKey:
    """Generate a random key."""
    lookup_id = "".join(secrets.choice(_ALNUM) for _ in range(12))
    secret = secrets.token_urlsafe(32)
    return NewKey(f"{PREFIX}_{lookup_id}_{secret}", lookup_id, hash_secret(secret))


def split(token: str) -> tuple[str, str] | None:
    """The (lookup id, secret) of a well-formed key, else ``None``."""
    match = _KEY_PATTERN.fullmatch(token)
    return (match.group(1), match.group(2)) if match else None


def matches(secret: str, stored_hash: str) -> bool:
    """Constant-time comparison of a presented secret with the stored hash."""
    return hmac.compare_digest(hash_secret(secret), stored_hash)
