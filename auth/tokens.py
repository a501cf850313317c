"""Opaque session tokens and short-lived signed markers."""

from __future__ import annotations

import hashlib
import secrets

from itsdangerous import BadSignature, URLSafeTimedSerializer

SESSION_COOKIE = "privacy_session"


def new_session_token() -> str:
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """Tokens are stored only as this hash, so a database leak yields no usable session."""
    return hashlib.sha256(token.encode()).hexdigest()


class MarkerSigner:
    """Signs small markers a client carries back, such as the age-gate refusal."""

    def __init__(self, secret_key: str, purpose: str) -> None:
        self._serializer = URLSafeTimedSerializer(secret_key, salt=purpose)

    def sign(self, value: str) -> str:
        return self._serializer.dumps(value)

    def is_valid(self, marker: str | None, value: str, max_age_seconds: int) -> bool:
        if not marker:
            return False
        try:
            return bool(self._serializer.loads(marker, max_age=max_age_seconds) == value)
        except BadSignature:
            return False
