"""Opaque random tokens, stored only as hashes, and signed payloads a client carries back."""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer

SESSION_COOKIE = "privacy_session"


def new_token() -> str:
    """An unguessable opaque token (256 bits): a session, an email code, an export link."""
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """Tokens are stored only as this hash, so a database leak yields no usable token."""
    return hashlib.sha256(token.encode()).hexdigest()


class Signer:
    """Signs what a client carries back and cannot be allowed to forge: the age-gate marker,
    the payload of an unsubscribe link.

    The purpose salts the signature, so a token made for one use is worthless for another.
    """

    def __init__(self, secret_key: str, purpose: str) -> None:
        self._serializer = URLSafeTimedSerializer(secret_key, salt=purpose)

    def sign(self, payload: Any) -> str:
        return self._serializer.dumps(payload)

    def load(self, token: str | None, max_age_seconds: int) -> Any | None:
        """What was signed, or None when the token is missing, altered, made elsewhere or
        older than `max_age_seconds`."""
        if not token:
            return None
        try:
            return self._serializer.loads(token, max_age=max_age_seconds)
        except BadSignature:
            return None
