"""Signing up, signing in and out, passwords and sessions."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from auth.actor import Actor
from auth.passwords import get_password_hash, verify_password
from auth.rate_limits import Door, RateLimiter, client_key
from auth.tokens import hash_token, new_token
from models import Account, AuthSession, ConsentActor, PasswordReset, Role, Source, utcnow
from resolvers import age, visitors
from resolvers.consent import Provenance
from resolvers.errors import ErrorCode, Rejected
from resolvers.paging import Keyset, Page, PageRequest, pages_per_account
from resolvers.policy import acceptance_error, current_policy
from resolvers.prepared import Prepared, Reads
from resolvers.settings import record_initial_state
from resolvers.validation import (
    country_errors,
    display_name_errors,
    email_errors,
    normalize_email,
    password_errors,
    phone_errors,
    us_state_errors,
)

# Worded so that it neither names the threshold nor hints at which date would pass.
AGE_RESTRICTED_MESSAGE = "Sorry, we can't create an account for you right now."
SESSION_USER_AGENT_LENGTH = 255


@dataclass(frozen=True)
class SignedIn:
    account: Account
    token: str
    session_id: uuid.UUID


@dataclass(frozen=True)
class Client:
    """What the request tells about the device: kept with the session, used for rate limits."""

    address: str
    user_agent: str | None
    session_days: int
    request_id: str | None = None
    # `Sec-GPC: 1`: the person opts out of sale and sharing.
    global_privacy_control: bool = False
    # The signed-out device's id (cookie or header), whose cookie choices join the account.
    device_id: str | None = None
    # The language of ours the request's Accept-Language prefers (resolvers/languages.py), if
    # any: a signup keeps it as the account's language for messages.
    language: str | None = None


def check_age(birth_date: date, today: date, *, refused_recently: bool = False) -> None:
    """The age gate. Raises before anything else about the applicant is looked at.

    `refused_recently` is true when this client was turned away within the last day: trying
    another date of birth then changes nothing.
    """
    if refused_recently:
        raise Rejected.one(ErrorCode.AGE_RESTRICTED, AGE_RESTRICTED_MESSAGE, "birthDate")
    if not age.is_plausible_birth_date(birth_date, today):
        raise Rejected.one(
            ErrorCode.INVALID_BIRTH_DATE, "Enter your real date of birth.", "birthDate"
        )
    if not age.is_old_enough(birth_date, today):
        raise Rejected.one(ErrorCode.AGE_RESTRICTED, AGE_RESTRICTED_MESSAGE, "birthDate")


async def _open_session(session: AsyncSession, account: Account, client: Client) -> SignedIn:
    token = new_token()
    now = utcnow()
    auth_session = AuthSession(
        account_id=account.id,
        token_hash=hash_token(token),
        user_agent=(client.user_agent or "")[:SESSION_USER_AGENT_LENGTH] or None,
        created_at=now,
        last_used_at=now,
        expires_at=now + timedelta(days=client.session_days),
    )
    session.add(auth_session)
    await session.flush()
    return SignedIn(account=account, token=token, session_id=auth_session.id)


async def email_taken(session: AsyncSession, email: str) -> bool:
    """Whether an account already uses this (normalised) address."""
    return await session.scalar(select(Account.id).where(Account.email == email)) is not None


@dataclass(frozen=True)
class Applicant:
    """What a signup asked for, checked: everything an account needs but its password."""

    email: str
    display_name: str
    phone: str | None
    birth_date: date
    country: str
    us_state: str | None
    policy_version: str


async def check_applicant(
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
    phone: str | None = None,
    us_state: str | None = None,
    today: date | None = None,
) -> Applicant:
    """The checks every signup passes. Under-13s are refused before anything else is looked at;
    nothing is stored here."""
    # Every attempt counts, refused for age or not: otherwise a child could try date after date.
    if refused := await limiter.admit(Door.SIGNUP_PER_CLIENT, client_key(client.address)):
        raise Rejected.rate_limited("Too many sign-ups from here", refused)
    check_age(
        birth_date, today or age.today_everywhere(utcnow()), refused_recently=refused_recently
    )

    normalized_email, errors = email_errors(email)
    name, name_problems = display_name_errors(display_name)
    country_code, country_problems = country_errors(country)
    phone_e164, phone_problems = phone_errors(phone, None if country_problems else country_code)
    state, state_problems = us_state_errors(us_state, None if country_problems else country_code)
    errors += name_problems + country_problems + state_problems + phone_problems
    errors += password_errors(password, normalized_email)
    async with reads() as session:
        policy = await current_policy(session)
    outdated = acceptance_error(accept_policy_version, policy.version, "acceptPolicyVersion")
    if outdated is not None:
        errors.append(outdated)
    if errors:
        raise Rejected(*errors)
    assert normalized_email is not None and country_code is not None
    return Applicant(
        email=normalized_email,
        display_name=name,
        phone=phone_e164,
        birth_date=birth_date,
        country=country_code,
        us_state=state,
        policy_version=policy.version,
    )


async def open_account(
    session: AsyncSession,
    client: Client,
    applicant: Applicant,
    password_hash: str,
    *,
    global_privacy_control: bool,
    sign_in: bool = True,
    locale: str | None = None,
) -> tuple[Account, SignedIn | None]:
    """Create the account of a checked applicant with its consent events, and sign it in
    unless told not to. `locale` is the language its messages are written in.

    Refused with EMAIL_UNAVAILABLE when the address is taken (checked by the insert itself).
    """
    now = utcnow()
    account = Account(
        email=applicant.email,
        password_hash=password_hash,
        display_name=applicant.display_name,
        phone=applicant.phone,
        birth_date=applicant.birth_date,
        country=applicant.country,
        us_state=applicant.us_state,
        role=Role.USER,
        accepted_policy_version=applicant.policy_version,
        policy_accepted_at=now,
        gpc_applied_at=now if global_privacy_control else None,
        locale=locale,
        created_at=now,
        updated_at=now,
    )
    try:
        async with session.begin_nested():
            session.add(account)
    except IntegrityError:
        # Another request created an account with the same address first.
        raise Rejected.one(
            ErrorCode.EMAIL_UNAVAILABLE, "This email address already has an account.", "email"
        ) from None
    signed_in = await _open_session(session, account, client) if sign_in else None
    # The acceptance and the defaults are recorded as made through the session signup opens.
    await record_initial_state(
        session,
        account.id,
        applicant.policy_version,
        client.request_id,
        global_privacy_control=global_privacy_control,
        session_id=signed_in.session_id if signed_in else None,
        user_agent=client.user_agent,
    )
    await visitors.merge_into_account(
        session, account.id, client.device_id, _provenance(client, signed_in)
    )
    return account, signed_in


async def create_confirmed_account(
    session: AsyncSession,
    client: Client,
    *,
    email: str,
    password: str,
    display_name: str,
    birth_date: date,
    country: str,
    accept_policy_version: str,
) -> Account:
    """An account whose address needs no confirmation, as the signup checks it: the demo account
    a development server creates for its own operator."""
    applicant = await check_applicant(
        lambda: nullcontext(session),
        RateLimiter("memory://"),
        client,
        refused_recently=False,
        email=email,
        password=password,
        display_name=display_name,
        birth_date=birth_date,
        country=country,
        accept_policy_version=accept_policy_version,
    )
    account, _ = await open_account(
        session,
        client,
        applicant,
        await get_password_hash(password),
        global_privacy_control=client.global_privacy_control,
        sign_in=False,
    )
    return account


def _from_place(email: str, place: str) -> str:
    return f"{email} from {place}"


async def remember_place(limiter: RateLimiter, email: str, client: Client) -> None:
    """Count the client's place as one of the account's own (it signed up or signed in from
    there): sign-ins from it get the larger allowance of failed tries."""
    await limiter.remember(Door.SIGNED_IN_FROM, _from_place(email, client_key(client.address)))


async def login(
    reads: Reads, limiter: RateLimiter, client: Client, *, email: str, password: str
) -> Prepared[SignedIn]:
    """Sign in. An unknown email and a wrong password are the same answer in the same time.

    Rate limits are checked first: a refused attempt costs no hashing and no query. Each
    attempt is counted before the password is checked, so that tries sent at once cannot all
    pass; a sign-in that succeeds then forgets the failures of its place at the account.
    The password is verified before the session is written, against the hash read then; the
    write signs in only if the account still has that password.
    """
    invalid = Rejected.one(ErrorCode.INVALID_CREDENTIALS, "The email or password is incorrect.")
    valid_email = normalize_email(email)
    normalized = valid_email or email.strip().lower()
    place = client_key(client.address)
    from_place = _from_place(normalized, place)
    own_place = await limiter.remembers(Door.SIGNED_IN_FROM, from_place)
    tries = (
        Door.LOGIN_PER_ACCOUNT_AND_CLIENT if own_place else Door.LOGIN_PER_ACCOUNT_AND_NEW_CLIENT
    )
    # An attempt refused by the place's door is not counted at the account's, so that guesses
    # at many accounts use up no account's allowance.
    refused = await limiter.admit(Door.LOGIN_PER_CLIENT, place)
    if refused is None:
        refused = await limiter.admit(tries, from_place)
    if refused:
        raise Rejected.rate_limited("Too many sign-in attempts", refused)
    found = None
    # Every stored email is a valid one; anything else (such as a NUL byte, which PostgreSQL
    # refuses in text) is not worth a query.
    if valid_email is not None and len(password) <= 1024:
        async with reads() as session:
            found = (
                await session.execute(
                    select(Account.id, Account.password_hash).where(Account.email == valid_email)
                )
            ).one_or_none()
    matched, new_hash = await verify_password(password[:1024], found[1] if found else None)
    if found is None or not matched:
        raise invalid
    account_id, verified_hash = found

    async def write(session: AsyncSession) -> SignedIn:
        account = await _still_hashed_as(session, account_id, verified_hash)
        if account is None:
            raise invalid
        if new_hash is not None:
            account.password_hash = new_hash
        signed_in = await _open_session(session, account, client)
        await visitors.merge_into_account(
            session, account.id, client.device_id, _provenance(client, signed_in)
        )
        return signed_in

    async def then() -> None:
        await limiter.forget(tries, from_place)
        await limiter.remember(Door.SIGNED_IN_FROM, from_place)

    return Prepared(write, then)


async def _still_hashed_as(
    session: AsyncSession, account_id: uuid.UUID, verified_hash: str
) -> Account | None:
    """The account, locked, if its password is still the one verified before the transaction
    began: None once it was changed (or the account erased) in between."""
    return await session.scalar(
        select(Account)
        .where(Account.id == account_id, Account.password_hash == verified_hash)
        .with_for_update()
    )


def _provenance(client: Client, signed_in: SignedIn | None) -> Provenance:
    """The person, through the session just opened if one was (for choices carried over from
    the device)."""
    return Provenance(
        ConsentActor.PERSON,
        Source.DEVICE,
        request_id=client.request_id,
        session_id=signed_in.session_id if signed_in else None,
        user_agent=client.user_agent,
    )


@dataclass(frozen=True)
class PasswordConfirmed:
    """The signed-in person's password, verified before the transaction began."""

    account_id: uuid.UUID
    email: str
    password_hash: str
    field: str

    async def still_holds(self, session: AsyncSession) -> Account:
        """In the write: the account, locked, refused if its password changed since."""
        account = await _still_hashed_as(session, self.account_id, self.password_hash)
        if account is None:
            raise _wrong_password(self.field)
        return account


def _wrong_password(field: str) -> Rejected:
    return Rejected.one(ErrorCode.INVALID_CREDENTIALS, "Your password is incorrect.", field)


async def confirm_password(
    reads: Reads,
    limiter: RateLimiter,
    actor: Actor,
    password: str,
    field: str = "currentPassword",
) -> PasswordConfirmed:
    """The signed-in person proves it is them before something sensitive; guesses are limited.
    The write that follows checks the proof still holds (`PasswordConfirmed.still_holds`)."""
    tries = str(actor.account_id)
    if refused := await limiter.admit(Door.PASSWORD_CONFIRMATION, tries):
        raise Rejected.rate_limited("Too many attempts", refused, field)
    async with reads() as session:
        found = (
            await session.execute(
                select(Account.email, Account.password_hash).where(Account.id == actor.account_id)
            )
        ).one_or_none()
    matched, _ = await verify_password(password[:1024], found[1] if found else None)
    if found is None or not matched:
        raise _wrong_password(field)
    # Only wrong passwords use up the allowance.
    await limiter.forget(Door.PASSWORD_CONFIRMATION, tries)
    return PasswordConfirmed(actor.account_id, found[0], found[1], field)


async def logout(session: AsyncSession, actor: Actor) -> None:
    await session.execute(delete(AuthSession).where(AuthSession.id == actor.session_id))


async def change_password(
    reads: Reads,
    limiter: RateLimiter,
    actor: Actor,
    *,
    current_password: str,
    new_password: str,
) -> Prepared[Account]:
    """Set a new password, sign out every other device and void what the old password may have
    started (see `void_pending_changes`)."""
    confirmed = await confirm_password(reads, limiter, actor, current_password)
    problems = password_errors(new_password, confirmed.email, field="newPassword")
    if problems:
        raise Rejected(*problems)
    new_hash = await get_password_hash(new_password)

    async def write(session: AsyncSession) -> Account:
        account = await confirmed.still_holds(session)
        account.password_hash = new_hash
        await session.execute(
            delete(AuthSession).where(
                AuthSession.account_id == account.id, AuthSession.id != actor.session_id
            )
        )
        await void_pending_changes(session, account)
        return account

    return Prepared(write)


async def void_pending_changes(session: AsyncSession, account: Account) -> None:
    """What a new password ends besides sessions: an email change waiting for its code and every
    reset link. Whoever held the old password may have started either, and must not finish it
    once the owner has taken the account back."""
    account.pending_email = None
    account.email_token_hash = None
    account.email_token_expires_at = None
    await session.execute(delete(PasswordReset).where(PasswordReset.account_id == account.id))


# The list shows the most recently used first; pages go by sign-in time, which never changes (the
# time of last use does, which would move a session past a cursor).
BY_LAST_USE = Keyset("sessions-used", (AuthSession.last_used_at, AuthSession.id), descending=True)
BY_SIGN_IN = Keyset("sessions", (AuthSession.created_at, AuthSession.id), descending=True)


async def _sessions(
    session: AsyncSession, account_ids: Sequence[uuid.UUID], page: PageRequest, keyset: Keyset
) -> dict[uuid.UUID, Page[AuthSession]]:
    now = utcnow()
    return await pages_per_account(
        session,
        AuthSession,
        AuthSession.account_id,
        account_ids,
        keyset=keyset,
        page=page,
        where=lambda _: [AuthSession.expires_at > now],
    )


async def sessions_by_last_use(
    session: AsyncSession, account_ids: Sequence[uuid.UUID], page: PageRequest
) -> dict[uuid.UUID, Page[AuthSession]]:
    """Each account's sessions in force, the most recently used first."""
    return await _sessions(session, account_ids, page, BY_LAST_USE)


async def sessions_by_sign_in(
    session: AsyncSession, account_ids: Sequence[uuid.UUID], page: PageRequest
) -> dict[uuid.UUID, Page[AuthSession]]:
    """Each account's sessions in force, the newest sign-in first."""
    return await _sessions(session, account_ids, page, BY_SIGN_IN)


async def revoke_session(session: AsyncSession, actor: Actor, *, session_id: uuid.UUID) -> None:
    """End one of the person's own sessions; another person's is reported as not found."""
    result = await session.execute(
        delete(AuthSession).where(
            AuthSession.id == session_id, AuthSession.account_id == actor.account_id
        )
    )
    if not getattr(result, "rowcount", 0):
        raise Rejected.one(ErrorCode.NOT_FOUND, "No such session.", "id")


async def create_staff(
    session: AsyncSession, *, email: str, password: str, display_name: str, role: Role
) -> Account:
    """Create a support or privacy-officer account (from the CLI)."""
    if role is Role.USER:
        raise ValueError("staff accounts need a staff role")
    normalized_email, errors = email_errors(email)
    name, name_problems = display_name_errors(display_name)
    errors += name_problems + password_errors(password, normalized_email)
    if errors:
        raise Rejected(*errors)
    assert normalized_email is not None
    if await email_taken(session, normalized_email):
        raise Rejected.one(ErrorCode.EMAIL_UNAVAILABLE, "This email is already in use.", "email")
    now = utcnow()
    account = Account(
        email=normalized_email,
        password_hash=await get_password_hash(password),
        display_name=name,
        role=role,
        created_at=now,
        updated_at=now,
    )
    session.add(account)
    await session.flush()
    return account


async def count_accounts(session: AsyncSession) -> int:
    return int(await session.scalar(select(func.count()).select_from(Account)) or 0)
