"""Confirm-first signup: an account exists only once its address is shown to be the person's.

`start_signup` answers the same for a new and a registered address, and costs the same (one
password hash either way): a new address is kept as a pending signup and mailed a link and a
short code; the owner of a registered one is told that someone tried. `confirm_signup` redeems
the code (typed in the app with the address) or the link's token, and creates the account.
"""

from __future__ import annotations

import hmac
import secrets
import uuid
from collections.abc import Callable
from datetime import date, timedelta

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from auth.passwords import get_password_hash
from auth.rate_limits import Door, RateLimiter, client_key
from auth.tokens import hash_token
from models import Account, NotificationKind, PendingSignup, utcnow
from resolvers import notifications
from resolvers.account import Applicant, Client, SignedIn, check_applicant, open_account
from resolvers.errors import ErrorCode, Rejected
from resolvers.validation import normalize_email

SIGNUP_VALID = timedelta(hours=24)
CODE_DIGITS = 8
# A link's token is the pending signup's id and its code: "<32 hex digits>.<code>".
_TOKEN_SEPARATOR = "."  # noqa: S105 (not a secret)


def new_code() -> str:
    """A short code a person can type: CODE_DIGITS random digits."""
    return f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"


def link_token(signup_id: uuid.UUID, code: str) -> str:
    return f"{signup_id.hex}{_TOKEN_SEPARATOR}{code}"


async def start_signup(
    session: AsyncSession,
    limiter: RateLimiter,
    client: Client,
    *,
    refused_recently: bool,
    email: str,
    password: str,
    display_name: str,
    birth_date: date,
    country: str,
    accept_policy_version: str,
    confirmation_link: Callable[[str], str],
    phone: str | None = None,
    us_state: str | None = None,
    today: date | None = None,
) -> str:
    """Check the signup and mail its address; returns the address as normalised.

    Nothing in the answer or its cost says whether the address is registered: both paths pass
    the same limits, hash the password once and read the accounts once.
    """
    applicant = await check_applicant(
        session,
        limiter,
        client,
        refused_recently=refused_recently,
        email=email,
        password=password,
        display_name=display_name,
        birth_date=birth_date,
        country=country,
        accept_policy_version=accept_policy_version,
        phone=phone,
        us_state=us_state,
        today=today,
    )
    if not await limiter.allow(Door.SIGNUP_PER_ADDRESS, applicant.email):
        raise Rejected.one(
            ErrorCode.RATE_LIMITED, "Too many sign-ups with this address; try later.", "email"
        )
    password_hash = await get_password_hash(password)
    owner = await session.scalar(select(Account).where(Account.email == applicant.email))
    if owner is not None:
        if await limiter.allow(Door.SIGNUP_ATTEMPT_NOTICE, applicant.email):
            notifications.queue(session, owner, NotificationKind.SIGNUP_ATTEMPT_EXISTING)
            await session.flush()
        return applicant.email
    await _keep_pending(session, client, applicant, password_hash, confirmation_link)
    return applicant.email


async def _keep_pending(
    session: AsyncSession,
    client: Client,
    applicant: Applicant,
    password_hash: str,
    confirmation_link: Callable[[str], str],
) -> None:
    # A new signup with the same address replaces the one before: only the latest code works.
    await session.execute(delete(PendingSignup).where(PendingSignup.email == applicant.email))
    code = new_code()
    now = utcnow()
    pending = PendingSignup(
        id=uuid.uuid4(),
        email=applicant.email,
        password_hash=password_hash,
        display_name=applicant.display_name,
        phone=applicant.phone,
        birth_date=applicant.birth_date,
        country=applicant.country,
        us_state=applicant.us_state,
        accepted_policy_version=applicant.policy_version,
        code_hash=hash_token(code),
        global_privacy_control=client.global_privacy_control,
        created_at=now,
        expires_at=now + SIGNUP_VALID,
    )
    session.add(pending)
    link = confirmation_link(link_token(pending.id, notifications.PLACEHOLDER))
    notifications.queue_to_address(
        session,
        NotificationKind.SIGNUP_CONFIRMATION,
        applicant.email,
        {"confirmation_link": link, "valid_hours": int(SIGNUP_VALID.total_seconds()) // 3600},
        secret=code,
    )
    await session.flush()


def _invalid() -> Rejected:
    return Rejected.one(
        ErrorCode.NOT_FOUND, "This confirmation code is not valid or has expired.", "code"
    )


def _parse_token(token: str) -> tuple[uuid.UUID, str] | None:
    signup_id, separator, code = token.strip().partition(_TOKEN_SEPARATOR)
    if not separator or len(token) > 100:
        return None
    try:
        return uuid.UUID(hex=signup_id), code
    except ValueError:
        return None


async def _candidates(
    session: AsyncSession, *, token: str | None, email: str | None
) -> tuple[list[PendingSignup], str]:
    """The pending signups the token or the address points at, unexpired, and the code given."""
    now = utcnow()
    if token is not None:
        parsed = _parse_token(token)
        if parsed is None:
            return [], ""
        signup_id, code = parsed
        where = PendingSignup.id == signup_id
    else:
        normalized = normalize_email(email or "")
        if normalized is None:
            return [], ""
        code, where = "", PendingSignup.email == normalized
    found = await session.scalars(
        select(PendingSignup).where(where, PendingSignup.expires_at > now)
    )
    return list(found.all()), code


async def check_signup_token(session: AsyncSession, *, token: str) -> PendingSignup:
    """The pending signup a link's token confirms, unexpired and unused. Reads only."""
    candidates, code = await _candidates(session, token=token, email=None)
    for pending in candidates:
        if hmac.compare_digest(pending.code_hash, hash_token(code)):
            return pending
    raise _invalid()


async def confirm_signup(
    session: AsyncSession,
    limiter: RateLimiter,
    client: Client,
    *,
    token: str | None = None,
    email: str | None = None,
    code: str | None = None,
) -> SignedIn:
    """Redeem a signup's link token, or its address and code, once: the account is created with
    its consent events (and the Global Privacy Control signal sent with the signup or now), and
    signed in. A code or token that does not match, has expired or was used is one answer."""
    _, signed_in = await _redeem(
        session, limiter, client, token=token, email=email, code=code, sign_in=True
    )
    assert signed_in is not None
    return signed_in


async def confirm_signup_link(
    session: AsyncSession, limiter: RateLimiter, client: Client, *, token: str
) -> Account:
    """As `confirm_signup` with a link's token, from the link's page, which signs no one in: a
    page another site can post to must not sign its visitor in to an account of its choosing."""
    account, _ = await _redeem(session, limiter, client, token=token, sign_in=False)
    return account


async def _redeem(
    session: AsyncSession,
    limiter: RateLimiter,
    client: Client,
    *,
    token: str | None = None,
    email: str | None = None,
    code: str | None = None,
    sign_in: bool,
) -> tuple[Account, SignedIn | None]:
    if token is None and (email is None or code is None):
        raise Rejected.one(
            ErrorCode.INVALID_INPUT, "Give the link's token, or the email address and code.", None
        )
    if not await limiter.allow(Door.SIGNUP_CONFIRMATION_PER_CLIENT, client_key(client.address)):
        raise Rejected.one(ErrorCode.RATE_LIMITED, "Too many attempts; try again later.", "code")
    candidates, token_code = await _candidates(session, token=token, email=email)
    given = hash_token((code if token is None else token_code) or "")
    for pending in candidates:
        # Guesses at one signup's code are limited wherever they come from.
        if not await limiter.allow(Door.SIGNUP_CONFIRMATION_PER_ADDRESS, pending.email):
            raise Rejected.one(
                ErrorCode.RATE_LIMITED, "Too many attempts; try again later.", "code"
            )
        if hmac.compare_digest(pending.code_hash, given):
            return await _create_account(session, client, pending, sign_in=sign_in)
    raise _invalid()


async def _create_account(
    session: AsyncSession, client: Client, pending: PendingSignup, *, sign_in: bool
) -> tuple[Account, SignedIn | None]:
    # Taking the row is what makes the code single-use: of two confirmations at once, the second
    # deletes nothing (on PostgreSQL it waits for the first to commit) and is refused.
    taken = await session.execute(delete(PendingSignup).where(PendingSignup.id == pending.id))
    if not getattr(taken, "rowcount", 0):
        raise _invalid()
    applicant = Applicant(
        email=pending.email,
        display_name=pending.display_name,
        phone=pending.phone,
        birth_date=pending.birth_date,
        country=pending.country,
        us_state=pending.us_state,
        policy_version=pending.accepted_policy_version,
    )
    return await open_account(
        session,
        client,
        applicant,
        pending.password_hash,
        global_privacy_control=pending.global_privacy_control or client.global_privacy_control,
        sign_in=sign_in,
    )
