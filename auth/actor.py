"""Who is calling: credentials from the request and the signed-in account behind them."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from auth.tokens import SESSION_COOKIE, hash_token
from models import Account, AuthSession, Role

# Writing last-use on every request would turn each read into a write; a few minutes is precise
# enough for "last active" in the sessions list.
LAST_USED_PRECISION = timedelta(minutes=5)
STAFF_ROLES = frozenset({Role.SUPPORT, Role.PRIVACY_OFFICER})


@dataclass(frozen=True)
class Credentials:
    token: str
    via_cookie: bool


@dataclass(frozen=True)
class Actor:
    account: Account
    session_id: uuid.UUID

    @property
    def role(self) -> Role:
        return self.account.role

    @property
    def is_staff(self) -> bool:
        return self.account.role in STAFF_ROLES


# The request headers read here, which a web frontend on another origin must be allowed to send.
CREDENTIAL_HEADERS = ("Authorization", "Content-Type", "X-Requested-With")


def _cannot_be_a_form_post(headers: Mapping[str, str]) -> bool:
    """A cross-site HTML form can send neither a JSON content type nor a custom header."""
    content_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    return content_type == "application/json" or "x-requested-with" in headers


def credentials_from_request(
    headers: Mapping[str, str], cookies: Mapping[str, str]
) -> Credentials | None:
    """A bearer token (mobile) or the session cookie (web), when the request may use it."""
    authorization = headers.get("authorization", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return Credentials(token.strip(), via_cookie=False)
    cookie = cookies.get(SESSION_COOKIE)
    if cookie and _cannot_be_a_form_post(headers):
        return Credentials(cookie, via_cookie=True)
    return None


async def actor_for_token(session: AsyncSession, token: str, now: datetime) -> Actor | None:
    """The signed-in account for a session token, or None when it is unknown or expired."""
    if len(token) > 256:
        return None
    row = (
        await session.execute(
            select(AuthSession.id, AuthSession.last_used_at, Account)
            .join(Account, Account.id == AuthSession.account_id)
            .where(AuthSession.token_hash == hash_token(token), AuthSession.expires_at > now)
        )
    ).one_or_none()
    if row is not None and now - row.last_used_at > LAST_USED_PRECISION:
        await session.execute(
            update(AuthSession).where(AuthSession.id == row.id).values(last_used_at=now)
        )
    # End the lookup's transaction: a later write then starts from a fresh snapshot, which
    # SQLite needs to take its write lock without failing under concurrent requests.
    await session.commit()
    if row is None:
        return None
    return Actor(account=row.Account, session_id=row.id)
