"""Who is calling: credentials from the request and the signed-in account behind them."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, inspect, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from auth.tokens import SESSION_COOKIE, hash_token
from models import Account, AuthSession, Role
from models.base import row_object
from models.driver import DriverStatement, connection_of

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
    """Who is calling: plain values read once per request, so no rollback can expire them."""

    account_id: uuid.UUID
    session_id: uuid.UUID
    role: Role
    gpc_applied: bool = False
    session_last_used_at: datetime | None = None


@dataclass(frozen=True)
class SignedInAccount:
    """The actor and the account row read with it, for the request that looked them up."""

    actor: Actor
    account: Account


# The request headers read here, which a web frontend on another origin must be allowed to send.
CREDENTIAL_HEADERS = ("Authorization", "Content-Type", "X-Requested-With")


# The header a client names itself with (web, mobile, api).
CLIENT_SOURCE_HEADER = "x-client-source"
# Headers a page on another site cannot add without the API's CORS permission (the browser asks
# first): either shows that a request is not a cross-site form or link.
_CUSTOM_HEADERS = ("x-requested-with", CLIENT_SOURCE_HEADER)
# Why a request that sent the session cookie was treated as signed out.
COOKIE_NEEDS_HEADER = (
    "The session cookie was not used: a request signed in by cookie must carry the header "
    "X-Requested-With (any value) or X-Client-Source, or a JSON Content-Type, which a form or "
    "link on another site cannot send. Clients that query over GET, such as urql, must add one "
    "of the headers."
)


def cannot_be_a_form_post(headers: Mapping[str, str]) -> bool:
    """A cross-site HTML form can send neither a JSON content type nor a custom header."""
    content_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    return content_type == "application/json" or any(name in headers for name in _CUSTOM_HEADERS)


def credentials_from_request(
    headers: Mapping[str, str], cookies: Mapping[str, str]
) -> Credentials | None:
    """A bearer token (mobile) or the session cookie (web), when the request may use it."""
    authorization = headers.get("authorization", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return Credentials(token.strip(), via_cookie=False)
    cookie = cookies.get(SESSION_COOKIE)
    if cookie and cannot_be_a_form_post(headers):
        return Credentials(cookie, via_cookie=True)
    return None


# The account's columns and the attribute each fills, in the order the lookup selects them.
_ACCOUNT_COLUMNS = tuple(Account.__table__.columns)
_ACCOUNT_ATTRIBUTES = tuple(
    inspect(Account).get_property_by_column(column).key for column in _ACCOUNT_COLUMNS
)
# Built once: every request runs it, and building a statement costs more than running it. A
# Core statement: the ORM's identity map and loading machinery would cost more than the
# statement's round trip, for a row that is only read.
_SIGNED_IN = DriverStatement(
    select(AuthSession.id, AuthSession.last_used_at, *_ACCOUNT_COLUMNS)
    .join(Account, Account.id == AuthSession.account_id)
    .where(
        AuthSession.token_hash == bindparam("token_hash"),
        AuthSession.expires_at > bindparam("now"),
    )
)


async def actor_for_token(
    session: AsyncSession | AsyncConnection, token: str, now: datetime
) -> SignedInAccount | None:
    """The signed-in account for a session token, or None when it is unknown or expired.

    Only reads: keeping the session's last use up to date is `note_session_use`, a step of its own.
    The account comes as a detached row object, belonging to no session, as a row read by the
    request's read session is once that session closes.
    """
    if len(token) > 256:
        return None
    connection = await connection_of(session)
    rows = await _SIGNED_IN.rows(connection, {"token_hash": hash_token(token), "now": now})
    if not rows:
        return None
    [row] = rows
    session_id, last_used_at, *columns = row
    account = row_object(Account, dict(zip(_ACCOUNT_ATTRIBUTES, columns, strict=True)))
    actor = Actor(
        account_id=account.id,
        session_id=session_id,
        role=account.role,
        gpc_applied=account.gpc_applied_at is not None,
        session_last_used_at=last_used_at,
    )
    return SignedInAccount(actor=actor, account=account)


def session_use_is_stale(actor: Actor, now: datetime) -> bool:
    """Whether the session's last use is older than the precision the sessions list shows."""
    last = actor.session_last_used_at
    return last is None or now - last > LAST_USED_PRECISION


async def note_session_use(session: AsyncSession, actor: Actor, now: datetime) -> None:
    """Record that the session was used now (written at most every few minutes)."""
    await session.execute(
        update(AuthSession)
        .where(AuthSession.id == actor.session_id, AuthSession.last_used_at < now)
        .values(last_used_at=now)
    )
