"""Deleting an account: the request and its grace period, legal holds, and the purge that erases
everything except the proof of consent, which it keeps under a pseudonym."""

from __future__ import annotations

import enum
import hashlib
import hmac
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, delete, exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute
from sqlalchemy.sql.expression import ColumnElement, Exists

from auth.actor import Actor
from auth.rate_limits import RateLimiter
from models import (
    Account,
    AuditEntry,
    AuthSession,
    Base,
    ConsentEvent,
    DataExport,
    DeliveryStatus,
    FormerEmail,
    IdempotencyKey,
    LegalHold,
    Notification,
    NotificationKind,
    PasswordReset,
    PendingSignup,
    PrivacyRequest,
    RequestKind,
    RequestStatus,
    Role,
    utcnow,
)
from resolvers import notifications, policy, webhooks
from resolvers.account import confirm_password
from resolvers.catalogue import LegalBasis, SettingDefinition, SettingGroup, Value
from resolvers.errors import ErrorCode, Rejected
from resolvers.prepared import Prepared, Reads
from resolvers.requests import due_date, open_request

HOLD_REASON_MAX = 2000
PSEUDONYM_CONTEXT = b"erased-account:"
COMPLETED_RESOLUTION = "Account erased; the consent record is kept under a pseudonym."
# What staff wrote about an erased person is replaced by this; the record's structure stays.
ERASED_TEXT = "[erased]"
# How long the purge waits for a mailer to send the deletion notice before erasing anyway.
NOTICE_MAX_WAIT = timedelta(days=3)
# The longest grace period that can be set: no calendar month is longer (see `deletion_date`).
MAX_GRACE_DAYS = 31

# The columns outside the ledger's hashed fields that name the account, in records that outlive it.
PSEUDONYMISED: tuple[tuple[type[Base], str], ...] = (
    (ConsentEvent, "account_id"),
    (PrivacyRequest, "account_id"),
    (PrivacyRequest, "requested_by"),
    (LegalHold, "account_id"),
    (AuditEntry, "account_id"),
)


def pseudonym(secret_key: str, account_id: uuid.UUID) -> uuid.UUID:
    """The id an erased account's kept records carry instead of its own.

    A keyed hash: the same account and key always give the same pseudonym, so the records stay
    together, and without the key nobody can tell which account it was. Marked as a version 8
    (custom) UUID so it is never mistaken for a live account's random one.
    """
    digest = hmac.new(
        secret_key.encode(), PSEUDONYM_CONTEXT + account_id.bytes, hashlib.sha256
    ).digest()
    raw = bytearray(digest[:16])
    raw[6] = (raw[6] & 0x0F) | 0x80
    raw[8] = (raw[8] & 0x3F) | 0x80
    return uuid.UUID(bytes=bytes(raw))


def processing_suspended(account: Account) -> bool:
    """Whether consent-based processing is stopped: from a deletion request until it is
    cancelled (or carried out). The stored choices stay, to come back on cancel."""
    return account.deletion_due_at is not None


def holds_back(suspended: bool, setting: SettingDefinition) -> bool:
    """Whether processing that is `suspended` (`processing_suspended`) keeps this setting off,
    whatever was chosen: a consent-based message, sharing purpose or cookie category.
    Visibility is not listed: the whole profile is hidden from others instead."""
    return (
        suspended
        and setting.legal_basis is LegalBasis.CONSENT
        and setting.group is not SettingGroup.VISIBILITY
    )


@dataclass(frozen=True)
class Effective:
    """A stored choice as it takes effect now: the one place a pending deletion is applied."""

    chosen: Value
    suspended: bool  # chosen on, but held back while a deletion is pending

    @property
    def enabled(self) -> bool:
        return self.chosen is True and not self.suspended


def effective(suspended: bool, setting: SettingDefinition, chosen: Value) -> Effective:
    """The stored choice `chosen` of `setting` as it takes effect for an account whose
    processing is `suspended` (or not)."""
    return Effective(chosen, chosen is True and holds_back(suspended, setting))


def _day(moment: datetime) -> str:
    return f"{moment.day} {moment:%B %Y}"


def _when(moment: datetime) -> str:
    return f"{_day(moment)} at {moment:%H:%M} UTC"


def deletion_date(requested_at: datetime, grace_days: int) -> datetime:
    """When a deletion the person asked for at `requested_at` is carried out: after the grace
    period, and never later than their request must be answered, one calendar month from
    receipt (GDPR Art. 12(3)), so a 30-day grace period ends on 28 February for a request of
    29 January."""
    return min(requested_at + timedelta(days=grace_days), due_date(requested_at))


def _deletion_dates(due_at: datetime, *, by_privacy_team: bool) -> dict[str, object]:
    """What the deletion notice's template says."""
    return {"day": _day(due_at), "when": _when(due_at), "by_privacy_team": by_privacy_team}


async def _lock_account(session: AsyncSession, account_id: uuid.UUID) -> Account | None:
    """The account, read after taking its row lock (SQLite: the write lock).

    Requesting, cancelling, scheduling, setting a hold and purging then happen one after another
    for one account, never interleaved.
    """
    locked = await session.scalar(
        update(Account)
        .where(Account.id == account_id)
        .values(updated_at=Account.updated_at)
        .returning(Account.id)
        .execution_options(synchronize_session=False)
    )
    if locked is None:
        return None
    return await session.get(Account, account_id, populate_existing=True)


async def _sign_out_everywhere(session: AsyncSession, account_id: uuid.UUID) -> None:
    await session.execute(delete(AuthSession).where(AuthSession.account_id == account_id))


def _schedule(
    session: AsyncSession,
    account: Account,
    *,
    now: datetime,
    due_at: datetime,
    requested_by: uuid.UUID,
) -> None:
    """Set the deletion date (the earlier one, if one is set already) and record who asked."""
    if account.deletion_due_at is None or due_at < account.deletion_due_at:
        account.deletion_due_at = due_at
    account.deletion_requested_at = account.deletion_requested_at or now
    request = open_request(
        session,
        kind=RequestKind.DELETION,
        account_id=account.id,
        requested_by=requested_by,
    )
    # The request is fulfilled when the purge erases the account, on the deletion date.
    request.due_at = account.deletion_due_at


async def request_account_deletion(
    reads: Reads,
    limiter: RateLimiter,
    actor: Actor,
    *,
    password: str,
    grace_days: int,
    now: datetime | None = None,
) -> Prepared[Account]:
    """Schedule the person's own account for erasure after a grace period; sign out everywhere.

    Asking again while a deletion is pending keeps the date already set.
    """
    confirmed = await confirm_password(reads, limiter, actor, password, field="password")

    async def write(session: AsyncSession) -> Account:
        await confirmed.still_holds(session)
        return await _schedule_own_deletion(session, actor, grace_days, now or utcnow())

    return Prepared(write)


async def _schedule_own_deletion(
    session: AsyncSession, actor: Actor, grace_days: int, now: datetime
) -> Account:
    """The write of `request_account_deletion`, once the password is confirmed."""
    account = await _lock_account(session, actor.account_id)
    if account is None:
        raise Rejected.one(ErrorCode.NOT_FOUND, "This account no longer exists.")
    if account.deletion_due_at is None:
        _schedule(
            session,
            account,
            now=now,
            due_at=deletion_date(now, grace_days),
            requested_by=account.id,
        )
        assert account.deletion_due_at is not None
        await webhooks.deletion_requested(session, account, by_staff=False)
        notifications.queue(
            session,
            account,
            NotificationKind.DELETION_SCHEDULED,
            _deletion_dates(account.deletion_due_at, by_privacy_team=False),
        )
        await _tell_if_held(session, account, by_privacy_team=False)
    await _sign_out_everywhere(session, account.id)
    await session.flush()
    return account


async def _open_deletion_requests(
    session: AsyncSession, account_id: uuid.UUID
) -> list[PrivacyRequest]:
    rows = await session.scalars(
        select(PrivacyRequest).where(
            PrivacyRequest.account_id == account_id,
            PrivacyRequest.kind == RequestKind.DELETION,
            PrivacyRequest.status == RequestStatus.OPEN,
        )
    )
    return list(rows)


async def cancel_account_deletion(
    session: AsyncSession, actor: Actor, *, now: datetime | None = None
) -> Account:
    """Keep the account after all: possible before the deletion date, and only for a deletion the
    person asked for themself (not one staff decided on)."""
    now = now or utcnow()
    account = await _lock_account(session, actor.account_id)
    if account is None or account.deletion_due_at is None:
        raise Rejected.one(ErrorCode.NOT_FOUND, "No deletion is scheduled for your account.")
    if account.deletion_due_at <= now:
        raise Rejected.one(
            ErrorCode.DELETION_NOT_CANCELLABLE,
            "The deletion date has passed, so the deletion can no longer be cancelled.",
        )
    pending = await _open_deletion_requests(session, account.id)
    if any(request.requested_by != account.id for request in pending):
        raise Rejected.one(
            ErrorCode.DELETION_NOT_CANCELLABLE,
            "Our privacy team scheduled this deletion. Contact them if you think it is a mistake.",
        )
    for request in pending:
        request.status = RequestStatus.CANCELLED
        request.handled_at = now
    await _unschedule(session, account)
    await session.flush()
    return account


async def _unschedule(session: AsyncSession, account: Account) -> None:
    """The account is kept after all: no deletion date, processing on consent resumes, and the
    person gets the policy notices left out while it was pending."""
    assert account.deletion_requested_at is not None
    await policy.queue_missed_notices(session, account, account.deletion_requested_at)
    account.deletion_requested_at = None
    account.deletion_due_at = None
    await webhooks.deletion_cancelled(session, account.id)


async def keep_after_rejection(session: AsyncSession, request: PrivacyRequest) -> None:
    """A privacy officer rejected this deletion request (the caller closes it): unless another
    deletion request of the account is still open, the account is no longer to be erased and
    its suspension is lifted, as if the person had cancelled."""
    assert request.kind is RequestKind.DELETION and request.account_id is not None
    account = await _lock_account(session, request.account_id)
    # Read again under the lock: a purge may have erased the account (and completed the request)
    # since the officer's read.
    await session.refresh(request)
    if request.status is not RequestStatus.OPEN:
        raise Rejected.one(ErrorCode.INVALID_INPUT, "This request is already closed.", "id")
    if account is None or account.deletion_due_at is None:
        return
    others = await _open_deletion_requests(session, account.id)
    if any(other.id != request.id for other in others):
        return
    await _unschedule(session, account)


async def schedule_deletion(
    session: AsyncSession, account_id: uuid.UUID, *, due_at: datetime, requested_by: uuid.UUID
) -> Account:
    """Schedule an erasure staff decided on, such as after reviewing a report of a child's account.

    `due_at` may be now: no grace period. The person cannot cancel it; their sessions end at once
    and a message tells them the date. Nothing is committed: the caller's transaction writes this
    together with its own changes (the review's outcome, the audit entry).
    """
    account = await _lock_account(session, account_id)
    if account is None:
        raise Rejected.one(ErrorCode.NOT_FOUND, "No such account.", "accountId")
    _schedule(session, account, now=utcnow(), due_at=due_at, requested_by=requested_by)
    assert account.deletion_due_at is not None
    await webhooks.deletion_requested(session, account, by_staff=True)
    notifications.queue(
        session,
        account,
        NotificationKind.DELETION_SCHEDULED,
        _deletion_dates(account.deletion_due_at, by_privacy_team=True),
    )
    await _tell_if_held(session, account, by_privacy_team=True)
    await _sign_out_everywhere(session, account.id)
    return account


async def _tell_if_held(session: AsyncSession, account: Account, *, by_privacy_team: bool) -> None:
    """A deletion just scheduled will wait for a legal hold already in force: the person hears
    so now, not silently on the deletion date."""
    if await session.scalar(select(_hold_in_force(account.id))):
        _queue_held_notice(session, account, by_privacy_team=by_privacy_team)


def _queue_held_notice(session: AsyncSession, account: Account, *, by_privacy_team: bool) -> None:
    assert account.deletion_requested_at is not None
    notifications.queue(
        session,
        account,
        NotificationKind.DELETION_HELD,
        {"day": _day(account.deletion_requested_at), "by_privacy_team": by_privacy_team},
    )


def _require_privacy_officer(actor: Actor) -> None:
    # The GraphQL field checks this too; a use case must not rely on its caller alone.
    if actor.role is not Role.PRIVACY_OFFICER:
        raise PermissionError("only a privacy officer may set or release a legal hold")


async def set_legal_hold(
    session: AsyncSession, officer: Actor, account_id: uuid.UUID, reason: str
) -> LegalHold:
    """Keep an account from being erased, deletion requested or not, until the hold is released.

    An account may carry several holds (one per legal matter); it is erased only when none is in
    force.
    """
    _require_privacy_officer(officer)
    reason = reason.strip()
    if not 1 <= len(reason) <= HOLD_REASON_MAX:
        raise Rejected.one(
            ErrorCode.INVALID_INPUT,
            f"Give a reason of 1 to {HOLD_REASON_MAX} characters.",
            "reason",
        )
    # The lock makes a hold set while a purge runs wait for it: either the account is erased
    # first (and the hold is refused), or the purge sees the hold.
    account = await _lock_account(session, account_id)
    if account is None:
        raise Rejected.one(ErrorCode.NOT_FOUND, "No such account.", "accountId")
    if account.deletion_due_at is not None and not await session.scalar(
        select(_hold_in_force(account_id))
    ):
        # The deletion the person was promised now waits: they are told, once.
        pending = await _open_deletion_requests(session, account_id)
        by_privacy_team = any(request.requested_by != account_id for request in pending)
        _queue_held_notice(session, account, by_privacy_team=by_privacy_team)
    hold = LegalHold(
        account_id=account_id, reason=reason, set_by=officer.account_id, set_at=utcnow()
    )
    session.add(hold)
    await session.flush()
    return hold


async def release_legal_hold(
    session: AsyncSession, officer: Actor, hold_id: uuid.UUID
) -> LegalHold:
    """End a hold; the next purge erases the account if it is due and no other hold remains."""
    _require_privacy_officer(officer)
    hold = await session.scalar(
        update(LegalHold)
        .where(LegalHold.id == hold_id, LegalHold.released_at.is_(None))
        .values(released_by=officer.account_id, released_at=utcnow())
        .returning(LegalHold)
    )
    if hold is None:
        raise Rejected.one(ErrorCode.NOT_FOUND, "No legal hold in force with this id.", "id")
    await session.flush()
    return hold


class PurgeOutcome(enum.Enum):
    ERASED = "erased"
    HELD = "held"
    WAITING = "waiting"  # the deletion notice is unsent, and has not waited NOTICE_MAX_WAIT
    GONE = "gone"  # cancelled, or erased by another run, since the list was read


def _hold_in_force(
    account_id: ColumnElement[uuid.UUID] | InstrumentedAttribute[uuid.UUID] | uuid.UUID,
) -> Exists:
    return exists().where(LegalHold.account_id == account_id, LegalHold.released_at.is_(None))


async def due_for_purge(session: AsyncSession, now: datetime) -> list[tuple[uuid.UUID, bool]]:
    """The accounts whose deletion date has passed, oldest first, and whether a hold keeps each."""
    rows = await session.execute(
        select(Account.id, _hold_in_force(Account.id).label("held"))
        .where(Account.deletion_due_at <= now)
        .order_by(Account.deletion_due_at, Account.id)
    )
    return [(account_id, bool(held)) for account_id, held in rows]


async def purge_account(
    session: AsyncSession, account_id: uuid.UUID, secret_key: str, now: datetime
) -> PurgeOutcome:
    """Erase one account, after checking again under its lock. The caller runs this in a
    transaction of its own, so an interruption leaves the account either erased or intact."""
    locked = (
        await session.execute(
            update(Account)
            .where(Account.id == account_id, Account.deletion_due_at <= now)
            .values(updated_at=Account.updated_at)
            .returning(Account.email, Account.locale)
            .execution_options(synchronize_session=False)
        )
    ).first()
    if locked is None:
        return PurgeOutcome.GONE
    email, locale = locked
    if await session.scalar(select(_hold_in_force(account_id))):
        return PurgeOutcome.HELD
    if await session.scalar(select(_notice_unsent(account_id, now))):
        return PurgeOutcome.WAITING
    addresses = await addresses_of(session, account_id)
    await _clear_request_texts(session, account_id, addresses)
    await _erase_staff_texts(session, account_id, addresses)
    await _complete_deletion_requests(session, account_id, now)
    alias = pseudonym(secret_key, account_id)
    await _pseudonymise_references(session, account_id, alias)
    await webhooks.account_erased(session, account_id, alias, now)
    await _delete_account(session, account_id)
    notifications.queue_last_message(session, email, locale)
    return PurgeOutcome.ERASED


def _notice_unsent(account_id: uuid.UUID, now: datetime) -> Exists:
    """A deletion notice a mailer has not sent yet, queued less than NOTICE_MAX_WAIT ago: the
    person hears of the deletion before it happens, unless the mail keeps failing."""
    return exists().where(
        Notification.account_id == account_id,
        Notification.kind == NotificationKind.DELETION_SCHEDULED,
        Notification.status == DeliveryStatus.PENDING,
        Notification.created_at > now - NOTICE_MAX_WAIT,
    )


async def _complete_deletion_requests(
    session: AsyncSession, account_id: uuid.UUID, now: datetime
) -> None:
    await session.execute(
        update(PrivacyRequest)
        .where(
            PrivacyRequest.account_id == account_id,
            PrivacyRequest.kind == RequestKind.DELETION,
            PrivacyRequest.status == RequestStatus.OPEN,
        )
        .values(status=RequestStatus.COMPLETED, handled_at=now, resolution=COMPLETED_RESOLUTION)
    )


async def addresses_of(session: AsyncSession, account_id: uuid.UUID) -> list[str]:
    """Every address the account had: its email, one waiting to be confirmed and those it
    changed from, in lower case; except a former one another account has now, whose records
    are that account's."""
    row = (
        await session.execute(
            select(Account.email, Account.pending_email).where(Account.id == account_id)
        )
    ).one_or_none()
    if row is None:
        return []
    former = set(
        await session.scalars(select(FormerEmail.email).where(FormerEmail.account_id == account_id))
    )
    taken = set(
        await session.scalars(
            select(Account.email).where(Account.id != account_id, Account.email.in_(former))
        )
    )
    current = {address for address in row if address is not None}
    return sorted({address.lower() for address in current | (former - taken)})


def _names_any(
    column: InstrumentedAttribute[str] | InstrumentedAttribute[str | None], addresses: list[str]
) -> ColumnElement[bool]:
    """Free text that contains one of the addresses, in any case."""
    return or_(*(func.lower(column).contains(address, autoescape=True) for address in addresses))


async def _clear_request_texts(
    session: AsyncSession, account_id: uuid.UUID, addresses: list[str]
) -> None:
    """What the person wrote, or staff wrote about them, in requests they made or that concern
    them, and any request that gave one of their addresses as the contact (such as a signed-out
    report); in anyone else's request, each text that names one of their addresses."""
    await session.execute(
        update(PrivacyRequest)
        .where(
            or_(
                PrivacyRequest.account_id == account_id,
                PrivacyRequest.requested_by == account_id,
                func.lower(PrivacyRequest.contact_email).in_(addresses),
            )
        )
        .values(
            subject=None,
            details=None,
            contact_email=None,
            resolution=case((PrivacyRequest.resolution.is_(None), None), else_=ERASED_TEXT),
            extension_reason=case(
                (PrivacyRequest.extension_reason.is_(None), None), else_=ERASED_TEXT
            ),
        )
    )
    texts = (
        PrivacyRequest.subject,
        PrivacyRequest.details,
        PrivacyRequest.resolution,
        PrivacyRequest.extension_reason,
    )
    await session.execute(
        update(PrivacyRequest)
        .where(or_(*(_names_any(text, addresses) for text in texts)))
        .values(
            {
                text.key: case((_names_any(text, addresses), ERASED_TEXT), else_=text)
                for text in texts
            }
        )
    )


async def _erase_staff_texts(
    session: AsyncSession, account_id: uuid.UUID, addresses: list[str]
) -> None:
    """What staff wrote about the person, in the audit log and legal holds, and any entry whose
    text names one of their addresses (such as a search that found nobody then): who did what,
    when and to which (pseudonymised) account stays; the free text goes."""
    for model in (AuditEntry, LegalHold):
        await session.execute(
            update(model)
            .where(or_(model.account_id == account_id, _names_any(model.reason, addresses)))
            .values(reason=ERASED_TEXT)
        )


async def _pseudonymise_references(
    session: AsyncSession, account_id: uuid.UUID, alias: uuid.UUID
) -> None:
    for model, column in PSEUDONYMISED:
        await session.execute(
            update(model).where(getattr(model, column) == account_id).values({column: alias})
        )


async def _delete_account(session: AsyncSession, account_id: uuid.UUID) -> None:
    """The account row; the database's cascades take its sessions, settings, idempotency keys,
    exports, notifications and profile changes with it."""
    await session.execute(delete(Account).where(Account.id == account_id))


# How long what only served a moment is kept once it has served.
IDEMPOTENCY_KEYS_KEPT = timedelta(days=1)
SENT_NOTIFICATIONS_KEPT = timedelta(days=30)


@dataclass(frozen=True)
class Pruned:
    sessions: int
    exports: int
    idempotency_keys: int
    notifications: int
    # Signups never confirmed, with the name and date of birth they held; unused reset links.
    pending_signups: int = 0
    password_resets: int = 0


async def prune_expired(session: AsyncSession, now: datetime) -> Pruned:
    """Delete what is no longer needed, as the policy promises to keep data only that long:
    expired sign-ins, used or expired export links, old idempotency keys (a retry comes within
    minutes), messages a mailer sent a month ago, and signups and reset links that expired."""

    async def removed(statement: Any) -> int:
        result = await session.execute(statement)
        return int(getattr(result, "rowcount", 0) or 0)

    pruned = Pruned(
        sessions=await removed(delete(AuthSession).where(AuthSession.expires_at <= now)),
        exports=await removed(
            delete(DataExport).where(
                DataExport.downloaded_at.is_not(None) | (DataExport.expires_at <= now)
            )
        ),
        idempotency_keys=await removed(
            delete(IdempotencyKey).where(IdempotencyKey.created_at <= now - IDEMPOTENCY_KEYS_KEPT)
        ),
        notifications=await removed(
            delete(Notification).where(
                (Notification.sent_at <= now - SENT_NOTIFICATIONS_KEPT)
                | (
                    Notification.status.in_([DeliveryStatus.FAILED, DeliveryStatus.SUPPRESSED])
                    & (Notification.created_at <= now - SENT_NOTIFICATIONS_KEPT)
                )
            )
        ),
        pending_signups=await removed(delete(PendingSignup).where(PendingSignup.expires_at <= now)),
        password_resets=await removed(delete(PasswordReset).where(PasswordReset.expires_at <= now)),
    )
    return pruned
