"""Parental consent (GDPR Art. 8(2)): a minor asks a parent to consent to settings withheld
from minors; the parent answers each through a link mailed to them, and may withdraw at any time.

What it proves: that whoever answered controls the address the minor named, nothing more (see
the README). The address is kept only as a keyed hash (`parent_email_hash`) on the request, and
in the outbox message until that is sent. A grant lapses when the minor comes of age: that is
read from the account as it is now, as `is_minor` is, and nothing is written at that moment. From
then on the settings keep the values they have, as the person's own choice.

Each request mails the parent one link, its token stored only as a hash. The link decides the
request once, until `decide_by`; for as long as a grant stands it also withdraws everything this
parent (the same address) granted this minor, so the link in any later request withdraws too.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from auth.actor import Actor
from auth.rate_limits import Door, RateLimiter
from auth.tokens import hash_token, new_token
from models import (
    Account,
    ConsentActor,
    NotificationKind,
    ParentalConsent,
    ParentalDecision,
    ParentalRequest,
    Source,
    utcnow,
)
from resolvers import catalogue, notifications
from resolvers.age import is_minor, today_everywhere
from resolvers.catalogue import SettingDefinition, Value
from resolvers.consent import Provenance
from resolvers.errors import ErrorCode, Rejected, UserError
from resolvers.prepared import Prepared, Reads
from resolvers.settings import granted_by_parent, write_settings
from resolvers.validation import normalize_email

DECISION_VALID_DAYS = 7
MAX_TOKEN_LENGTH = 256
MAX_KEYS = len(catalogue.PARENT_MAY_GRANT)

PageLink = Callable[[str], str]


class ParentalStatus(enum.Enum):
    """Where one setting of a request stands, as read now."""

    PENDING = "pending"  # the parent has not answered yet and still can
    EXPIRED = "expired"  # the parent did not answer in time; nothing changed
    GRANTED = "granted"
    REFUSED = "refused"
    WITHDRAWN = "withdrawn"
    # Granted, but the person has since come of age: their own choice stands from then on.
    LAPSED = "lapsed"


def status_of(
    decision: ParentalDecision, decide_by: datetime, *, minor: bool, now: datetime
) -> ParentalStatus:
    if decision is ParentalDecision.PENDING:
        return ParentalStatus.PENDING if decide_by > now else ParentalStatus.EXPIRED
    if decision is ParentalDecision.GRANTED and not minor:
        return ParentalStatus.LAPSED
    return ParentalStatus(decision.value)


@dataclass(frozen=True)
class ParentalConsentView:
    """One setting of one request, as the minor (and their export) sees it."""

    key: str
    status: ParentalStatus
    requested_at: datetime
    decide_by: datetime
    decided_at: datetime | None
    withdrawn_at: datetime | None


def parent_email_hash(secret_key: str, email: str) -> str:
    """Keyed, so the hash cannot be reversed by hashing guessed addresses without the key."""
    return hmac.new(
        secret_key.encode(), b"parent-email:" + email.encode(), hashlib.sha256
    ).hexdigest()


def _minor(account: Account, now: datetime) -> bool:
    return is_minor(account.birth_date, account.country, account.us_state, today_everywhere(now))


_Columns = tuple[str, ParentalDecision, datetime | None, datetime | None, datetime, datetime]


def consents_of(account_id: uuid.UUID, *, newest_first: bool = False) -> Select[*_Columns]:
    """Every setting the person asked a parent for, request by request (oldest first unless
    asked otherwise), each request's settings by key."""
    created_at, request_id = ParentalRequest.created_at, ParentalRequest.id
    order = (created_at.desc(), request_id.desc()) if newest_first else (created_at, request_id)
    return (
        select(
            ParentalConsent.key,
            ParentalConsent.decision,
            ParentalConsent.decided_at,
            ParentalConsent.withdrawn_at,
            ParentalRequest.created_at,
            ParentalRequest.decide_by,
        )
        .join(ParentalRequest, ParentalRequest.id == ParentalConsent.request_id)
        .where(ParentalConsent.account_id == account_id)
        .order_by(*order, ParentalConsent.key)
    )


def view_of(row: Sequence[Any], *, minor: bool, now: datetime) -> ParentalConsentView:
    key, decision, decided_at, withdrawn_at, requested_at, decide_by = row
    return ParentalConsentView(
        key=key,
        status=status_of(decision, decide_by, minor=minor, now=now),
        requested_at=requested_at,
        decide_by=decide_by,
        decided_at=decided_at,
        withdrawn_at=withdrawn_at,
    )


async def parental_consents(session: AsyncSession, account: Account) -> list[ParentalConsentView]:
    """What the person asked their parents for and where each stands, newest request first."""
    now = utcnow()
    minor = _minor(account, now)
    rows = await session.execute(consents_of(account.id, newest_first=True))
    return [view_of(row, minor=minor, now=now) for row in rows]


def _asked_settings(keys: Sequence[str]) -> list[SettingDefinition]:
    if not 1 <= len(keys) <= MAX_KEYS:
        raise Rejected.one(
            ErrorCode.INVALID_INPUT, f"Ask for 1 to {MAX_KEYS} settings at a time.", "keys"
        )
    settings: list[SettingDefinition] = []
    for key in dict.fromkeys(keys):
        setting = catalogue.BY_KEY.get(key)
        if setting is None or not setting.parent_may_grant:
            raise Rejected.one(
                ErrorCode.INVALID_INPUT,
                catalogue.WITHDRAWN.get(key)
                or f"{key[:64]} is not a setting a parent can agree to; see privacyCatalogue.",
                "keys",
            )
        settings.append(setting)
    return settings


async def request_parental_consent(
    reads: Reads,
    limiter: RateLimiter,
    actor: Actor,
    *,
    parent_email: str,
    keys: Sequence[str],
    secret_key: str,
    page_link: PageLink,
) -> Prepared[list[ParentalConsentView]]:
    """Mail a parent a link to consent to some of the settings withheld from the minor."""
    async with reads() as session:
        account = await session.get_one(Account, actor.account_id)
    now = utcnow()
    if not _minor(account, now):
        raise Rejected.one(
            ErrorCode.PARENTAL_CONSENT_NOT_NEEDED,
            "You can choose these settings yourself: no parent's consent is needed.",
        )
    settings = _asked_settings(keys)
    email = normalize_email(parent_email)
    if email is None:
        raise Rejected.one(ErrorCode.INVALID_EMAIL, "Enter a valid email address.", "parentEmail")
    if email == account.email:
        raise Rejected.one(
            ErrorCode.INVALID_INPUT,
            "Enter your parent's or guardian's address, not your own.",
            "parentEmail",
        )
    if not account.phone and any(setting.needs_phone for setting in settings):
        raise Rejected.one(
            ErrorCode.PHONE_REQUIRED, "Add a phone number to your account first.", "keys"
        )
    if refused := await limiter.admit(Door.PARENTAL_CONSENT_PER_ACCOUNT, str(account.id)):
        raise Rejected.rate_limited("You have sent several requests today", refused)
    if refused := await limiter.admit(Door.PARENTAL_CONSENT_PER_PARENT, email):
        raise Rejected.rate_limited(
            "This address has received several requests today", refused, "parentEmail"
        )

    async def write(session: AsyncSession) -> list[ParentalConsentView]:
        account = await session.get_one(Account, actor.account_id)
        token = new_token()
        request = ParentalRequest(
            id=uuid.uuid4(),
            account_id=account.id,
            parent_email_hash=parent_email_hash(secret_key, email),
            token_hash=hash_token(token),
            decide_by=now + timedelta(days=DECISION_VALID_DAYS),
            created_at=now,
        )
        session.add(request)
        await session.flush()  # before its consents, which refer to it
        session.add_all(
            ParentalConsent(
                request_id=request.id,
                account_id=account.id,
                key=setting.key,
                decision=ParentalDecision.PENDING,
            )
            for setting in settings
        )
        # The parent's address is kept only in this message, until it is sent (TO_NON_MEMBERS).
        notifications.queue(
            session,
            account,
            NotificationKind.PARENTAL_CONSENT_REQUEST,
            {
                "teen": account.display_name,
                "asked": settings,
                "link": page_link(notifications.PLACEHOLDER),
                "valid_days": DECISION_VALID_DAYS,
            },
            recipient=email,
            secret=token,
        )
        await session.flush()
        return [
            ParentalConsentView(
                key=setting.key,
                status=ParentalStatus.PENDING,
                requested_at=now,
                decide_by=request.decide_by,
                decided_at=None,
                withdrawn_at=None,
            )
            for setting in settings
        ]

    return Prepared(write)


class LinkProblem(enum.Enum):
    UNKNOWN = "unknown"  # never valid, copied incompletely, or its minor's account is gone
    EXPIRED = "expired"  # not answered in time
    DECIDED = "decided"  # answered already: the link now only withdraws
    # The person has come of age: they decide alone, and nothing the parent does applies.
    COME_OF_AGE = "come_of_age"


class LinkUnusable(Exception):
    def __init__(self, problem: LinkProblem, teen: str | None = None) -> None:
        super().__init__(problem.value)
        self.problem = problem
        self.teen = teen


@dataclass(frozen=True)
class ParentPage:
    """What the parent's link shows."""

    teen: str  # the minor's display name
    asked: list[tuple[SettingDefinition, ParentalStatus]]  # this request's settings
    can_decide: bool
    decide_by: datetime
    granted: list[SettingDefinition]  # everything this parent granted this minor, standing now


async def _request_for(session: AsyncSession, token: str) -> ParentalRequest:
    if not token or len(token) > MAX_TOKEN_LENGTH:
        raise LinkUnusable(LinkProblem.UNKNOWN)
    request = await session.scalar(
        select(ParentalRequest).where(ParentalRequest.token_hash == hash_token(token))
    )
    if request is None:
        raise LinkUnusable(LinkProblem.UNKNOWN)
    return request


async def _teen_of(session: AsyncSession, request: ParentalRequest, now: datetime) -> Account:
    account = await session.get_one(Account, request.account_id)
    if not _minor(account, now):
        raise LinkUnusable(LinkProblem.COME_OF_AGE, account.display_name)
    return account


def _by_this_parent(request: ParentalRequest) -> ColumnElement[bool]:
    return ParentalConsent.request_id.in_(
        select(ParentalRequest.id).where(
            ParentalRequest.account_id == request.account_id,
            ParentalRequest.parent_email_hash == request.parent_email_hash,
        )
    )


async def _granted_by_this_parent(
    session: AsyncSession, request: ParentalRequest
) -> list[SettingDefinition]:
    keys = set(
        await session.scalars(
            select(ParentalConsent.key).where(
                _by_this_parent(request), ParentalConsent.decision == ParentalDecision.GRANTED
            )
        )
    )
    return [setting for setting in catalogue.PARENT_MAY_GRANT if setting.key in keys]


async def open_page(session: AsyncSession, *, token: str) -> ParentPage:
    """What the link shows the parent; reads only. Raises LinkUnusable."""
    now = utcnow()
    request = await _request_for(session, token)
    account = await _teen_of(session, request, now)
    rows = await session.execute(
        select(ParentalConsent.key, ParentalConsent.decision).where(
            ParentalConsent.request_id == request.id
        )
    )
    decisions: dict[str, ParentalDecision] = {key: decision for key, decision in rows}
    return ParentPage(
        teen=account.display_name,
        asked=[
            (setting, status_of(decisions[setting.key], request.decide_by, minor=True, now=now))
            for setting in catalogue.PARENT_MAY_GRANT
            if setting.key in decisions
        ],
        can_decide=request.decided_at is None and request.decide_by > now,
        decide_by=request.decide_by,
        granted=await _granted_by_this_parent(session, request),
    )


def _provenance(request: ParentalRequest, request_id: str | None) -> Provenance:
    return Provenance(ConsentActor.PARENT, Source.LINK, actor_id=request.id, request_id=request_id)


@dataclass(frozen=True)
class Decision:
    teen: str
    granted: list[SettingDefinition]
    refused: list[SettingDefinition]


async def decide(
    session: AsyncSession, *, token: str, answers: Mapping[str, bool], request_id: str | None
) -> Decision:
    """The parent's answer to each setting asked: granted ones are switched on, recorded as
    done by the parent. Once per request. Raises LinkUnusable, or Rejected for an answer that
    leaves an item out or names one not asked."""
    now = utcnow()
    request = await _request_for(session, token)
    if request.decided_at is not None:
        raise LinkUnusable(LinkProblem.DECIDED)
    if request.decide_by <= now:
        raise LinkUnusable(LinkProblem.EXPIRED)
    account = await _teen_of(session, request, now)
    consents = list(
        await session.scalars(
            select(ParentalConsent).where(ParentalConsent.request_id == request.id)
        )
    )
    if {consent.key for consent in consents} != set(answers):
        raise Rejected(
            UserError("answers", "Answer each item: agree or refuse.", ErrorCode.INVALID_INPUT)
        )
    # Of two answers sent at once, only the first to mark the request decided goes on.
    claimed = await session.scalar(
        update(ParentalRequest)
        .where(ParentalRequest.id == request.id, ParentalRequest.decided_at.is_(None))
        .values(decided_at=now)
        .returning(ParentalRequest.id)
        .execution_options(synchronize_session=False)
    )
    if claimed is None:
        raise LinkUnusable(LinkProblem.DECIDED)
    for consent in consents:
        consent.decision = (
            ParentalDecision.GRANTED if answers[consent.key] else ParentalDecision.REFUSED
        )
        consent.decided_at = now
    granted = [s for s in catalogue.PARENT_MAY_GRANT if answers.get(s.key) is True]
    refused = [s for s in catalogue.PARENT_MAY_GRANT if answers.get(s.key) is False]
    # A text-message setting needs a phone number; without one (removed since the request) the
    # grant stands and the person can switch it on once they add one.
    wanted: dict[SettingDefinition, Value] = {
        setting: True for setting in granted if account.phone or not setting.needs_phone
    }
    if wanted:
        await write_settings(session, account.id, wanted, _provenance(request, request_id))
    await session.flush()
    return Decision(teen=account.display_name, granted=granted, refused=refused)


async def withdraw(
    session: AsyncSession, *, token: str, request_id: str | None
) -> tuple[str, list[SettingDefinition]]:
    """Withdraw everything this parent granted this minor: the settings go off again, recorded
    as done by the parent, unless another parent's consent still stands for them. Returns the
    minor's name and what was withdrawn (nothing the second time). Raises LinkUnusable."""
    now = utcnow()
    request = await _request_for(session, token)
    account = await _teen_of(session, request, now)
    withdrawn = set(
        (
            await session.execute(
                update(ParentalConsent)
                .where(
                    _by_this_parent(request),
                    ParentalConsent.decision == ParentalDecision.GRANTED,
                )
                .values(decision=ParentalDecision.WITHDRAWN, withdrawn_at=now)
                .returning(ParentalConsent.key)
                .execution_options(synchronize_session=False)
            )
        ).scalars()
    )
    settings = [s for s in catalogue.PARENT_MAY_GRANT if s.key in withdrawn]
    still = await granted_by_parent(session, account.id, [s.key for s in settings])
    wanted: dict[SettingDefinition, Value] = {s: False for s in settings if s.key not in still}
    if wanted:
        await write_settings(session, account.id, wanted, _provenance(request, request_id))
    await session.flush()
    return account.display_name, settings
