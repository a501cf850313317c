"""Correcting one's personal data, and changing the email address with a confirmation."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta

import pycountry
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from auth.actor import Actor
from auth.rate_limits import Door, RateLimiter
from auth.tokens import hash_token, new_token
from models import (
    Account,
    ConsentActor,
    FormerEmail,
    NotificationKind,
    ProfileChange,
    Source,
    utcnow,
)
from resolvers import catalogue, notifications
from resolvers.account import confirm_password, email_taken
from resolvers.age import is_minor, today_everywhere
from resolvers.catalogue import Channel, SettingDefinition, Value
from resolvers.consent import Provenance
from resolvers.errors import ErrorCode, Rejected, UserError
from resolvers.prepared import Prepared, Reads
from resolvers.settings import protect_if_minor, write_settings
from resolvers.validation import (
    country_errors,
    display_name_errors,
    email_errors,
    phone_errors,
    us_state_errors,
)

EMAIL_TOKEN_VALID = timedelta(hours=24)
_LOCALE = re.compile(r"^([a-z]{2,3})(?:-([A-Z]{2}))?$")


def _locale_errors(raw: str) -> tuple[str, list[UserError]]:
    locale = raw.strip().replace("_", "-")
    match = _LOCALE.match(locale)
    language = match and (
        pycountry.languages.get(alpha_2=match[1]) or pycountry.languages.get(alpha_3=match[1])
    )
    region_ok = not (match and match[2]) or pycountry.countries.get(alpha_2=match[2]) is not None
    if not match or language is None or not region_ok:
        message = "Use a language tag such as en, de or pt-BR."
        return locale, [UserError("locale", message, ErrorCode.INVALID_INPUT)]
    return locale, []


def record_changes(
    session: AsyncSession, account: Account, fields: list[str], actor: Actor, request_id: str | None
) -> None:
    """One profile change per field, by name only; who changed it when it was not the person."""
    changed_by = actor.account_id if actor.account_id != account.id else None
    now = utcnow()
    session.add_all(
        ProfileChange(
            account_id=account.id,
            field=field,
            changed_by=changed_by,
            changed_at=now,
            request_id=request_id,
        )
        for field in fields
    )


async def update_profile(
    session: AsyncSession,
    actor: Actor,
    provenance: Provenance,
    *,
    display_name: str | None = None,
    phone: str | None = None,
    country: str | None = None,
    us_state: str | None = None,
    locale: str | None = None,
) -> Account:
    """Change what is given; what is left out (None) stays. An empty phone or state removes it,
    and so does a move out of the US the state.

    Each changed field is recorded by name, never with its values. Removing the phone switches
    text messages off, since they cannot reach the person any more. A move is checked against the
    age rules: one that would end a minor's protection needs staff to check the facts (a
    correction request), and one that makes the person a minor withdraws what a minor may not
    have, in the same transaction.
    """
    account = await session.get_one(Account, actor.account_id)
    errors: list[UserError] = []
    wanted: dict[str, object] = {}
    if display_name is not None:
        name, problems = display_name_errors(display_name)
        errors += problems
        wanted["display_name"] = name
    if country is not None:
        code, problems = country_errors(country)
        errors += problems
        wanted["country"] = code
    living_in = str(wanted.get("country", account.country) or "") or None
    state = account.us_state if living_in == "US" else None
    if us_state is not None:
        state, problems = us_state_errors(us_state, living_in)
        errors += problems
    wanted["us_state"] = state
    if phone is not None:
        region = str(wanted.get("country", account.country) or "") or None
        number, problems = phone_errors(phone, region)
        errors += problems
        wanted["phone"] = number
    if locale is not None:
        tag, problems = _locale_errors(locale)
        errors += problems
        wanted["locale"] = tag or None
    if errors:
        raise Rejected(*errors)
    changed = {field: value for field, value in wanted.items() if getattr(account, field) != value}
    if not changed:
        return account
    moved = "country" in changed or "us_state" in changed
    if moved and _lifts_protection(account, living_in, state):
        raise Rejected.one(
            ErrorCode.CORRECTION_REQUIRED,
            "Moving there would change what you may agree to at your age, so our staff need to "
            "check it: ask for the change with requestCorrection.",
            "country" if "country" in changed else "usState",
        )
    if "phone" in changed and changed["phone"] is None:
        texts_off: dict[SettingDefinition, Value] = {
            setting: False for setting in catalogue.CATALOGUE if setting.channel is Channel.SMS
        }
        await write_settings(session, account.id, texts_off, provenance)
    for field, value in changed.items():
        setattr(account, field, value)
    record_changes(session, account, sorted(changed), actor, provenance.request_id)
    await session.flush()
    if moved:
        await protect_if_minor(session, account.id, _by_age_rules(provenance))
    return account


def _by_age_rules(cause: Provenance) -> Provenance:
    """Changes the age rules make after a person's own edit: the system's, with that request."""
    return Provenance(ConsentActor.SYSTEM, Source.AGE_RULES, request_id=cause.request_id)


def _lifts_protection(account: Account, country: str | None, us_state: str | None) -> bool:
    today = today_everywhere(utcnow())
    return is_minor(account.birth_date, account.country, account.us_state, today) and not is_minor(
        account.birth_date, country, us_state, today
    )


async def request_email_change(
    reads: Reads,
    limiter: RateLimiter,
    actor: Actor,
    *,
    new_email: str,
    current_password: str,
    confirmation_link: Callable[[str], str],
) -> Prepared[Account]:
    """Keep the new address pending and send it a token; the current address stays in use
    until the token is redeemed.

    The answer is the same whether or not the address has an account, so that this is no way to
    learn who is registered: a taken address is kept pending too, its token sent nowhere, and
    its owner is told someone tried (at most once an hour).
    """
    confirmed = await confirm_password(reads, limiter, actor, current_password)
    email, errors = email_errors(new_email)
    if errors:
        raise Rejected(*errors)
    assert email is not None
    if email == confirmed.email:
        raise Rejected.one(ErrorCode.INVALID_INPUT, "This is already your email address.", "email")
    async with reads() as session:
        owner_id = await session.scalar(select(Account.id).where(Account.email == email))
    tell_owner = owner_id is not None and await limiter.allow(
        Door.EMAIL_CHANGE_ATTEMPT_NOTICE, email
    )

    async def write(session: AsyncSession) -> Account:
        account = await confirmed.still_holds(session)
        token = new_token()
        account.pending_email = email
        account.email_token_hash = hash_token(token)
        account.email_token_expires_at = utcnow() + EMAIL_TOKEN_VALID
        if owner_id is None:
            notifications.queue(
                session,
                account,
                NotificationKind.EMAIL_CONFIRMATION,
                {"confirmation_link": confirmation_link(notifications.PLACEHOLDER)},
                recipient=email,
                secret=token,
            )
        elif tell_owner and (owner := await session.get(Account, owner_id)) is not None:
            notifications.queue(session, owner, NotificationKind.EMAIL_CHANGE_ATTEMPT_EXISTING)
        await session.flush()
        return account

    return Prepared(write)


async def check_email_token(session: AsyncSession, *, token: str) -> Account:
    """The account whose pending address this unexpired, unused token confirms. Reads only."""
    invalid = Rejected.one(
        ErrorCode.NOT_FOUND, "This confirmation code is not valid or has expired.", "token"
    )
    if not token or len(token) > 256:
        raise invalid
    account = await session.scalar(
        select(Account).where(
            Account.email_token_hash == hash_token(token),
            Account.email_token_expires_at > utcnow(),
        )
    )
    if account is None or account.pending_email is None:
        raise invalid
    return account


async def confirm_email_change(session: AsyncSession, *, token: str) -> Account:
    """Redeem the token sent to the new address: it becomes the account's email."""
    account = await check_email_token(session, token=token)
    assert account.pending_email is not None
    if await email_taken(session, account.pending_email):
        raise Rejected.one(
            ErrorCode.EMAIL_UNAVAILABLE, "This email address cannot be used any more.", "token"
        )
    previous = account.email
    account.email = account.pending_email
    account.pending_email = None
    account.email_token_hash = None
    account.email_token_expires_at = None
    now = utcnow()
    session.add(ProfileChange(account_id=account.id, field="email", changed_at=now))
    # Requests and staff notes may name the old address: the account's erasure looks for it.
    session.add(FormerEmail(account_id=account.id, email=previous, replaced_at=now))
    notifications.queue(
        session,
        account,
        NotificationKind.EMAIL_CHANGED,
        recipient=previous,
    )
    await session.flush()
    return account


def pending_email_of(account: Account) -> str | None:
    """The address awaiting confirmation, while its token is still valid."""
    expires = account.email_token_expires_at
    return account.pending_email if expires and expires > utcnow() else None
