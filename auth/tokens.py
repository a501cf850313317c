"""Opaque session tokens, short-lived signed markers and signed links."""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

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


class LinkSigner:
    """Signs what a link in an email carries, so the link itself is the credential.

    The purpose salts the signature: a token made for one kind of link is worthless for another.
    """

    def __init__(self, secret_key: str, purpose: str) -> None:
        self._serializer = URLSafeTimedSerializer(secret_key, salt=purpose)

    def sign(self, payload: Any) -> str:
        return self._serializer.dumps(payload)

    def load(self, token: str, max_age_seconds: int) -> Any | None:
        """What was signed, or None when the token was altered, made elsewhere or has expired."""
        try:
            return self._serializer.loads(token, max_age=max_age_seconds)
        except BadSignature:
            return None
