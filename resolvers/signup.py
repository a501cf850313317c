"""Confirm-first signup: an account exists only once its address is shown to be the person's.

`start_signup` answers the same for a new and a registered address, and costs the same (one
password hash either way): a new address is kept as a pending signup and mailed a link and a
short code; the owner of a registered one is told that someone tried. `confirm_signup` redeems
the code (typed in the app with the address) or the link's token, and creates the account.

Anyone can sign up with any address, so several signups may wait for one address, each with a
code of its own: a code creates the account its own signup asked for (with that signup's
password), and a stranger's signup neither replaces nor uses up the owner's.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy import delete, exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from auth.passwords import get_password_hash
from auth.rate_limits import Door, RateLimiter, client_key, place_and
from models import Account, NotificationKind, PendingSignup, utcnow
from resolvers import notifications
from resolvers.account import (
    Applicant,
    Client,
    SignedIn,
    check_applicant,
    open_account,
    remember_place,
)
from resolvers.errors import ErrorCode, Rejected
from resolvers.prepared import Prepared, Reads
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


def code_hash(secret_key: str, email: str, code: str) -> str:
    """A signup's code as stored: keyed with the secret key, so that a copy of the table is no
    way to try the 10^8 codes offline, and bound to the address it was mailed to."""
    message = f"signup-code\0{email}\0{code}".encode()
    return hmac.new(secret_key.encode(), message, hashlib.sha256).hexdigest()


async def start_signup(
    reads: Reads,
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
    secret_key: str,
    phone: str | None = None,
    us_state: str | None = None,
    today: date | None = None,
) -> Prepared[str]:
    """Check the signup and mail its address; the write answers the address as normalised.

    Nothing in the answer or its cost says whether the address is registered: both paths pass
    the same limits, hash the password once and read the accounts once, before the write.
    """
    applicant = await check_applicant(
        reads,
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
    # From this place first: refused here, an attempt counts against no wider limit, so one
    # place cannot use up the address's and keep its owner from signing up elsewhere.
    refused = await limiter.admit(
        Door.SIGNUP_PER_ADDRESS_AND_CLIENT, place_and(client.address, applicant.email)
    )
    if refused is None:
        refused = await limiter.admit(Door.SIGNUP_PER_ADDRESS, applicant.email)
    if refused:
        raise Rejected.rate_limited("Too many sign-ups with this address", refused, "email")
    password_hash = await get_password_hash(password)
    async with reads() as session:
        owner_id = await session.scalar(select(Account.id).where(Account.email == applicant.email))
    tell_owner = owner_id is not None and await limiter.allow(
        Door.SIGNUP_ATTEMPT_NOTICE, applicant.email
    )

    async def write(session: AsyncSession) -> str:
        if owner_id is None:
            await _keep_pending(
                session, client, applicant, password_hash, confirmation_link, secret_key
            )
        elif tell_owner and (owner := await session.get(Account, owner_id)) is not None:
            notifications.queue(session, owner, NotificationKind.SIGNUP_ATTEMPT_EXISTING)
            await session.flush()
        return applicant.email

    return Prepared(write)


async def _keep_pending(
    session: AsyncSession,
    client: Client,
    applicant: Applicant,
    password_hash: str,
    confirmation_link: Callable[[str], str],
    secret_key: str,
) -> None:
    # Signups waiting for the same address stay: whoever reads the mailbox confirms their own
    # with its code. Codes differ among them, so that a code names exactly one signup.
    code = new_code()
    while await _code_in_use(
        session, applicant.email, code_hash(secret_key, applicant.email, code)
    ):
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
        code_hash=code_hash(secret_key, applicant.email, code),
        global_privacy_control=client.global_privacy_control,
        locale=client.language,
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
        locale=client.language,
        secret=code,
    )
    await session.flush()


async def _code_in_use(session: AsyncSession, email: str, hashed: str) -> bool:
    waiting = exists().where(PendingSignup.email == email, PendingSignup.code_hash == hashed)
    return bool(await session.scalar(select(waiting)))


def _invalid() -> Rejected:
    return Rejected.one(
        ErrorCode.NOT_FOUND, "This confirmation code is not valid or has expired.", "code"
    )


@dataclass(frozen=True)
class _Attempt:
    """A confirmation as given: what it is aimed at and the code it offers."""

    # The address typed with the code, or the signup a link names (its id).
    target: str
    code: str
    email: str | None = None
    signup_id: uuid.UUID | None = None


def _attempt(*, token: str | None, email: str | None, code: str | None) -> _Attempt | None:
    """The attempt a token, or an address and a code, make; None when they cannot be one."""
    if token is not None:
        signup_id, separator, token_code = token.strip().partition(_TOKEN_SEPARATOR)
        if not separator or len(token) > 100:
            return None
        try:
            parsed = uuid.UUID(hex=signup_id)
        except ValueError:
            return None
        return _Attempt(target=parsed.hex, code=token_code, signup_id=parsed)
    normalized = normalize_email(email or "")
    if normalized is None:
        return None
    return _Attempt(target=normalized, code=code or "", email=normalized)


async def _waiting(session: AsyncSession, attempt: _Attempt) -> list[PendingSignup]:
    """The unexpired signups an attempt could confirm: the link's one, or the address's."""
    if attempt.signup_id is not None:
        where = PendingSignup.id == attempt.signup_id
    else:
        where = PendingSignup.email == attempt.email
    found = await session.scalars(
        select(PendingSignup).where(where, PendingSignup.expires_at > utcnow())
    )
    return list(found.all())


def _confirmed_by(
    secret_key: str, candidates: list[PendingSignup], code: str
) -> PendingSignup | None:
    """The one signup among the candidates whose code this is."""
    for pending in candidates:
        if hmac.compare_digest(pending.code_hash, code_hash(secret_key, pending.email, code)):
            return pending
    return None


async def check_signup_token(
    session: AsyncSession, *, secret_key: str, token: str
) -> PendingSignup:
    """The pending signup a link's token confirms, unexpired and unused. Reads only."""
    attempt = _attempt(token=token, email=None, code=None)
    if attempt is None:
        raise _invalid()
    pending = _confirmed_by(secret_key, await _waiting(session, attempt), attempt.code)
    if pending is None:
        raise _invalid()
    return pending


async def confirm_signup(
    reads: Reads,
    limiter: RateLimiter,
    client: Client,
    *,
    secret_key: str,
    token: str | None = None,
    email: str | None = None,
    code: str | None = None,
) -> Prepared[SignedIn]:
    """Redeem a signup's link token, or its address and code, once: the account that signup
    asked for is created with its consent events (and the Global Privacy Control signal sent
    with the signup or now), and signed in. A code or token that does not match, has expired or
    was used is one answer."""
    redeemed = await _redeem(
        reads, limiter, client, secret_key=secret_key, token=token, email=email, code=code
    )

    async def write(session: AsyncSession) -> SignedIn:
        _, signed_in = await _create_account(session, client, redeemed.pending, sign_in=True)
        assert signed_in is not None
        return signed_in

    return Prepared(write, redeemed.then)


async def confirm_signup_link(
    reads: Reads, limiter: RateLimiter, client: Client, *, secret_key: str, token: str
) -> Prepared[Account]:
    """As `confirm_signup` with a link's token, from the link's page, which signs no one in: a
    page another site can post to must not sign its visitor in to an account of its choosing."""
    redeemed = await _redeem(reads, limiter, client, secret_key=secret_key, token=token)

    async def write(session: AsyncSession) -> Account:
        account, _ = await _create_account(session, client, redeemed.pending, sign_in=False)
        return account

    return Prepared(write, redeemed.then)


@dataclass(frozen=True)
class _Redeemed:
    """The signup a code or token confirms, found and checked before the transaction."""

    pending: PendingSignup
    limiter: RateLimiter
    client: Client

    async def then(self) -> None:
        # Where the owner confirmed is one of their places from now on.
        await remember_place(self.limiter, self.pending.email, self.client)


async def _redeem(
    reads: Reads,
    limiter: RateLimiter,
    client: Client,
    *,
    secret_key: str,
    token: str | None = None,
    email: str | None = None,
    code: str | None = None,
) -> _Redeemed:
    if token is None and (email is None or code is None):
        raise Rejected.one(
            ErrorCode.INVALID_INPUT, "Give the link's token, or the email address and code.", None
        )
    if refused := await limiter.admit(
        Door.SIGNUP_CONFIRMATION_PER_CLIENT, client_key(client.address)
    ):
        raise Rejected.rate_limited("Too many attempts", refused, "code")
    attempt = _attempt(token=token, email=email, code=code)
    if attempt is None:
        raise _invalid()
    # Counted before anything is read, and alike whether or not a signup waits, so that neither
    # the answer nor when it turns to RATE_LIMITED tells whether one does.
    if refused := await limiter.admit(
        Door.SIGNUP_CONFIRMATION_PER_ADDRESS_AND_CLIENT, place_and(client.address, attempt.target)
    ):
        raise Rejected.rate_limited("Too many attempts", refused, "code")
    async with reads() as session:
        candidates = await _waiting(session, attempt)
    # A typed code is compared with the code of every signup waiting for the address: each
    # counts, so that signups made to be guessed at do not multiply the guesses. A link names
    # one signup, whose id only its mail holds.
    if refused := await limiter.admit(
        Door.SIGNUP_CONFIRMATION_PER_ADDRESS, attempt.target, cost=max(1, len(candidates))
    ):
        raise Rejected.rate_limited("Too many attempts", refused, "code")
    pending = _confirmed_by(secret_key, candidates, attempt.code)
    if pending is None:
        raise _invalid()
    return _Redeemed(pending, limiter, client)


async def _create_account(
    session: AsyncSession, client: Client, pending: PendingSignup, *, sign_in: bool
) -> tuple[Account, SignedIn | None]:
    # Taking the row is what makes the code single-use: of two confirmations at once, the second
    # deletes nothing (on PostgreSQL it waits for the first to commit) and is refused.
    taken = await session.execute(delete(PendingSignup).where(PendingSignup.id == pending.id))
    if not getattr(taken, "rowcount", 0):
        raise _invalid()
    # The address now has its account: the other signups that waited for it can create none.
    await session.execute(delete(PendingSignup).where(PendingSignup.email == pending.email))
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
        # The language of the signup, not of the device that confirms it: the person chose
        # nothing else, and the confirmation may come from a mail client's browser.
        locale=pending.locale,
    )
