"""Credentials encrypted at rest (Fernet: AES-128-CBC + HMAC-SHA256).

The key comes from ``OPENDTS_SECRET_KEY`` or, failing that, from ``secret.key`` in the data
folder, generated once with mode 0600 (an existing key file is narrowed to 0600). Several
processes on several machines (PostgreSQL) must share one key: set ``OPENDTS_SECRET_KEY`` on
all of them.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

from opendts.kit.private import FILE_MODE, private_files, private_folder

log = logging.getLogger("opendts.secrets")

KEY_FILE = "secret.key"
PREFIX = "fernet:"


class SecretKeyError(RuntimeError):
    """The key is malformed, or does not decrypt what was stored."""


class SecretBox:
    """Encrypts and decrypts JSON objects of secrets."""

    def __init__(self, key: str | bytes) -> None:
        try:
            self._fernet = Fernet(key.encode() if isinstance(key, str) else key)
        except (ValueError, TypeError):
            raise SecretKeyError(
                "OPENDTS_SECRET_KEY is not a valid key: it must be 32 url-safe base64-encoded "
                "bytes, as printed by `python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())'`."
            ) from None

    @staticmethod
    def new_key() -> str:
        """A fresh random key."""
        return Fernet.generate_key().decode()

    def seal(self, secrets: dict[str, Any]) -> str:
        """``secrets`` encrypted (an empty dict stays an empty string)."""
        if not secrets:
            return ""
        token = self._fernet.encrypt(json.dumps(secrets, sort_keys=True).encode())
        return PREFIX + token.decode()

    def open(self, sealed: str | None) -> dict[str, Any]:
        """The secrets ``seal`` encrypted."""
        if not sealed:
            return {}
        if not sealed.startswith(PREFIX):
            raise SecretKeyError("A stored secret is not in the expected format.")
        try:
            plain = self._fernet.decrypt(sealed[len(PREFIX) :].encode())
        except InvalidToken:
            raise SecretKeyError(
                "Stored credentials cannot be decrypted with this process's secret key. Every "
                "opendts process must use the same OPENDTS_SECRET_KEY (or the same "
                f"{KEY_FILE} in the data folder)."
            ) from None
        value: dict[str, Any] = json.loads(plain)
        return value


def load_key(data_dir: Path, configured: str | None) -> str:
    """The configured key, else the data folder's key file, created on first use."""
    if configured:
        return configured
    path = data_dir / KEY_FILE
    if path.exists():
        private_files(path)
        return path.read_text().strip()
    private_folder(data_dir)
    key = Fernet.generate_key().decode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:  # another process won the race: use its key
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    log.info("generated a secret key for stored credentials in %s", path)
    return key


_boxes: dict[tuple[str, str | None], SecretBox] = {}
_boxes_lock = threading.Lock()


def box_for(data_dir: Path, configured: str | None) -> SecretBox:
    """The process's box for this data folder and configured key (created once)."""
    key = (str(data_dir.resolve()), configured)
    with _boxes_lock:
        box = _boxes.get(key)
        if box is None:
            box = _boxes[key] = SecretBox(load_key(data_dir, configured))
        return box
