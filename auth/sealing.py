"""Secrets the API must read back but keeps encrypted at rest (webhook signing secrets): sealed
with Fernet (AES-128-CBC and HMAC-SHA256) under keys from the environment, never the database.

Several keys may be given: the first seals, every one opens, so a new key can be put in front
of the old one and what the old one sealed is sealed again with the new one (`reseal`) before
the old one is dropped.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

# Plain secrets start with this; sealed ones (Fernet tokens) never do.
_PLAIN_PREFIX = "whsec_"


class SealingKeyError(ValueError):
    """A configured key is not a Fernet key."""


class UnreadableSecret(Exception):
    """A stored secret none of the configured keys opens: the key it was sealed with is gone."""


def parse_keys(raw: str) -> tuple[str, ...]:
    """Comma-separated Fernet keys (32 bytes in URL-safe base64), the sealing one first."""
    keys = tuple(dict.fromkeys(key.strip() for key in raw.split(",") if key.strip()))
    for key in keys:
        try:
            Fernet(key)
        except ValueError:
            raise SealingKeyError(
                "each key must be 32 random bytes in URL-safe base64 (44 characters), as "
                "cryptography's Fernet.generate_key() makes"
            ) from None
    return keys


def new_key() -> str:
    return Fernet.generate_key().decode()


def development_key(data_dir: Path) -> str:
    """One generated key per checkout, so what it sealed can be opened after a restart."""
    path = data_dir / "webhook_secret_key"
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    key = new_key()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key)
    return key


class Sealer:
    """Seals and opens secrets under the configured keys."""

    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise SealingKeyError("no key to seal secrets with")
        self._fernet = MultiFernet([Fernet(key) for key in keys])

    def seal(self, plain: str) -> str:
        return self._fernet.encrypt(plain.encode()).decode()

    def open(self, sealed: str) -> str:
        try:
            return self._fernet.decrypt(sealed.encode()).decode()
        except InvalidToken:
            raise UnreadableSecret(
                "a stored secret cannot be decrypted with PRIVACY_API_WEBHOOK_SECRET_KEY: keep "
                "the key it was sealed with in the list until `privacy-api migrate` has sealed "
                "it again"
            ) from None

    def reseal(self, stored: str) -> str:
        """A stored value sealed with the first key: a plain secret (kept before secrets were
        sealed) is sealed, one sealed with another key is sealed again."""
        if stored.startswith(_PLAIN_PREFIX):
            return self.seal(stored)
        try:
            return self._fernet.rotate(stored.encode()).decode()
        except InvalidToken:
            raise UnreadableSecret(
                "a stored secret cannot be decrypted with any key in PRIVACY_API_WEBHOOK_SECRET_KEY"
            ) from None
