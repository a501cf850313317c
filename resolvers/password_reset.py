"""A way back in for a person who forgot their password: a single-use link to their address.

Asking answers the same whether or not the address is registered, and does the same work up to
the point where there is an account to write for.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from auth.passwords import get_password_hash
from auth.rate_limits import Door, RateLimiter, client_key, place_and
from auth.tokens import hash_token, new_token
from models import Account, AuthSession, NotificationKind, PasswordReset, utcnow
from resolvers import notifications
from resolvers.account import Client, void_pending_changes
from resolvers.errors import ErrorCode, Rejected
from resolvers.prepared import Prepared, Reads
from resolvers.validation import email_errors, password_errors

RESET_VALID = timedelta(minutes=30)


async def request_password_reset(
    limiter: RateLimiter,
    client: Client,
    *,
    email: str,
    reset_link: Callable[[str], str],
) -> Prepared[None]:
    """Mail a reset link if the address has an account; answer the same if it has none."""
    normalized, errors = email_errors(email)
    if errors:
        raise Rejected(*errors)
    assert normalized is not None
    # Narrowest first: an attempt refused at one door counts against none wider, so requests
    # from one place cannot use up the address's limit and keep its owner from asking.
    refused = await limiter.admit(Door.PASSWORD_RESET_PER_CLIENT, client_key(client.address))
    if refused is None:
        refused = await limiter.admit(
            Door.PASSWORD_RESET_PER_ADDRESS_AND_CLIENT, place_and(client.address, normalized)
        )
    if refused is None:
        refused = await limiter.admit(Door.PASSWORD_RESET_PER_ADDRESS, normalized)
    if refused:
        raise Rejected.rate_limited("Too many requests", refused, "email")
    return Prepared(lambda session: _keep_reset(session, normalized, reset_link))


async def _keep_reset(
    session: AsyncSession, normalized: str, reset_link: Callable[[str], str]
) -> None:
    account = await session.scalar(select(Account).where(Account.email == normalized))
    # Written for an unknown address too (tied to no account, its token sent nowhere), so that
    # both requests commit a write and take as long.
    token = new_token()
    now = utcnow()
    session.add(
        PasswordReset(
            account_id=account.id if account else None,
            token_hash=hash_token(token),
            created_at=now,
            expires_at=now + RESET_VALID,
        )
    )
    if account is None:
        await session.flush()
        return
    notifications.queue(
        session,
        account,
        NotificationKind.PASSWORD_RESET,
        {
            "reset_link": reset_link(notifications.PLACEHOLDER),
            "valid_minutes": int(RESET_VALID.total_seconds()) // 60,
        },
        secret=token,
    )
    await session.flush()


def _invalid() -> Rejected:
    return Rejected.one(
        ErrorCode.NOT_FOUND,
        "This reset link is not valid, was used already or has expired.",
        "token",
    )


async def check_reset_token(session: AsyncSession, *, token: str) -> PasswordReset:
    """The reset this unexpired, unused token belongs to. Reads only."""
    if not token or len(token) > 256:
        raise _invalid()
    reset = await session.scalar(
        select(PasswordReset).where(
            PasswordReset.token_hash == hash_token(token),
            PasswordReset.expires_at > utcnow(),
            PasswordReset.account_id.is_not(None),
        )
    )
    if reset is None:
        raise _invalid()
    return reset


async def reset_password(reads: Reads, *, token: str, new_password: str) -> Prepared[Account]:
    """Set a new password with a reset link's token, once. Every session is signed out, every
    other reset link of the account and a pending email change stop working, and the person is
    told by mail."""
    async with reads() as session:
        reset = await check_reset_token(session, token=token)
        # Never None (see the check).
        email = await session.scalar(select(Account.email).where(Account.id == reset.account_id))
    problems = password_errors(new_password, email or "", field="newPassword")
    if problems:
        raise Rejected(*problems)
    new_hash = await get_password_hash(new_password)

    async def write(session: AsyncSession) -> Account:
        # Taking the row makes the link single-use: of two uses at once, the second deletes
        # nothing.
        taken = await session.execute(delete(PasswordReset).where(PasswordReset.id == reset.id))
        if not getattr(taken, "rowcount", 0):
            raise _invalid()
        account = await session.get_one(Account, reset.account_id)
        await void_pending_changes(session, account)
        account.password_hash = new_hash
        await session.execute(delete(AuthSession).where(AuthSession.account_id == account.id))
        notifications.queue(session, account, NotificationKind.PASSWORD_CHANGED)
        await session.flush()
        return account

    return Prepared(write)
