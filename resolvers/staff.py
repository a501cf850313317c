"""What support staff and privacy officers do with people's data. Every read or change of an
account's data by staff writes an audit entry saying who, what, which account and why."""

from __future__ import annotations

import enum
import uuid
from collections.abc import Sequence
from datetime import date, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from auth.actor import Actor
from models import (
    Account,
    AuditEntry,
    ConsentActor,
    LegalHold,
    NotificationKind,
    PrivacyRequest,
    RequestKind,
    RequestStatus,
    Role,
    Source,
    utcnow,
)
from resolvers import age, erasure, notifications, settings
from resolvers.audit import audit
from resolvers.consent import Provenance
from resolvers.errors import ErrorCode, Rejected, UserError
from resolvers.paging import Keyset, Page, cut, page_of, page_request, tally_of
from resolvers.profile import record_changes
from resolvers.requests import MAX_EXTENSION_MONTHS, due_date
from resolvers.validation import country_errors, normalize_email, us_state_errors

REASON_MIN, REASON_MAX = 5, 500
# A request is due within three months at most: looking further ahead shows nothing more.
MAX_DUE_WITHIN_DAYS = 366
# Soonest due first. A cursor holds the last row's due date and id, so it stays valid as requests
# arrive; a request extended while someone pages may move to a later page.
QUEUE = Keyset("requests", (PrivacyRequest.due_at, PrivacyRequest.id), descending=False)
# The audit log's ids only grow: newest first, and a cursor stays valid as entries arrive.
AUDIT_LOG = Keyset("audit", (AuditEntry.id,), descending=True)
# Search results go by email, but a cursor names the account by id only: no email in a cursor
# (it may travel in a URL), and the email is looked up when the next page is asked for.
SEARCH = Keyset("accounts", (Account.id,), descending=False)


class ChildReportDecision(enum.Enum):
    CLEAR = "clear"  # not a child's account: the restriction is lifted
    DELETE = "delete"  # a child's account: erased without a grace period


def checked_reason(reason: str) -> str:
    text = reason.strip()
    if not REASON_MIN <= len(text) <= REASON_MAX:
        raise Rejected.one(
            ErrorCode.INVALID_INPUT,
            f"Say why, in {REASON_MIN} to {REASON_MAX} characters: it goes in the audit log.",
            "reason",
        )
    return text


async def look_up_account(
    session: AsyncSession,
    staff: Actor,
    *,
    account_id: uuid.UUID | None,
    email: str | None,
    reason: str,
    request_id: str | None,
) -> Account | None:
    """One person's account, by id or email, for support."""
    reason = checked_reason(reason)
    if (account_id is None) == (email is None):
        raise Rejected.one(ErrorCode.INVALID_INPUT, "Give either an id or an email.", "id")
    query = select(Account)
    if account_id is not None:
        query = query.where(Account.id == account_id)
    else:
        query = query.where(Account.email == (normalize_email(email or "") or ""))
    account = await session.scalar(query)
    await audit(
        session, staff, "account.read", [account.id if account else None], reason, request_id
    )
    await session.flush()
    return account


async def search_accounts(
    session: AsyncSession,
    staff: Actor,
    *,
    email_contains: str,
    first: int,
    after: str | None = None,
    last: int | None = None,
    before: str | None = None,
    reason: str,
    request_id: str | None,
) -> Page[Account]:
    """A page of the accounts whose email contains the text, by email, for support; each one
    found is audited."""
    reason = checked_reason(reason)
    needle = email_contains.strip().lower()
    if not 3 <= len(needle) <= 254:
        raise Rejected.one(
            ErrorCode.INVALID_INPUT, "Search with 3 to 254 characters.", "emailContains"
        )
    page = page_request(first, after, SEARCH, last=last, before=before)
    escaped = needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    matching = select(Account).where(Account.email.like(f"%{escaped}%", escape="\\"))
    query = matching
    if page.after is not None:
        [account_id] = page.after
        last_email = await session.scalar(select(Account.email).where(Account.id == account_id))
        if last_email is None:
            raise Rejected.one(
                ErrorCode.INVALID_INPUT,
                "The last account of that page is gone; search again from the start.",
                "before" if page.backward else "after",
            )
        query = query.where(
            Account.email < last_email if page.backward else Account.email > last_email
        )
    by_email = Account.email.desc() if page.backward else Account.email
    rows = list(await session.scalars(query.order_by(by_email).limit(page.first + 1)))
    found = page_of(rows, page, SEARCH, tally_of(matching))
    await audit(session, staff, "account.search", [a.id for a in found.items], reason, request_id)
    await session.flush()
    return found


async def accounts_by_id(
    session: AsyncSession, account_ids: Sequence[uuid.UUID]
) -> list[Account | None]:
    """For batch loading: the accounts in the order asked, None where one is gone."""
    found = {
        a.id: a for a in await session.scalars(select(Account).where(Account.id.in_(account_ids)))
    }
    return [found.get(account_id) for account_id in account_ids]


async def list_requests(
    session: AsyncSession,
    officer: Actor,
    *,
    status: RequestStatus | None,
    kind: RequestKind | None,
    overdue: bool | None = None,
    due_within_days: int | None = None,
    first: int,
    after: str | None = None,
    last: int | None = None,
    before: str | None = None,
    reason: str,
    request_id: str | None,
) -> Page[PrivacyRequest]:
    """A page of privacy requests, the soonest due first.

    `overdue` and `due_within_days` look at open requests only (a closed one is due no more):
    overdue ones are past their due date; due within N days are those due before N days from
    now, overdue ones included unless `overdue` is false.
    """
    reason = checked_reason(reason)
    if due_within_days is not None and not 0 <= due_within_days <= MAX_DUE_WITHIN_DAYS:
        raise Rejected.one(
            ErrorCode.INVALID_INPUT,
            f"Give 0 to {MAX_DUE_WITHIN_DAYS} days.",
            "dueWithinDays",
        )
    page = page_request(first, after, QUEUE, last=last, before=before)
    query = select(PrivacyRequest)
    if status is not None:
        query = query.where(PrivacyRequest.status == status)
    if kind is not None:
        query = query.where(PrivacyRequest.kind == kind)
    now = utcnow()
    if overdue is not None or due_within_days is not None:
        query = query.where(PrivacyRequest.status == RequestStatus.OPEN)
    if overdue is not None:
        query = query.where(
            PrivacyRequest.due_at <= now if overdue else PrivacyRequest.due_at > now
        )
    if due_within_days is not None:
        query = query.where(PrivacyRequest.due_at <= now + timedelta(days=due_within_days))
    rows = list(await session.scalars(cut(query, QUEUE, page)))
    found = page_of(rows, page, QUEUE, tally_of(query))
    await audit(
        session, officer, "requests.read", [r.account_id for r in found.items], reason, request_id
    )
    await session.flush()
    return found


async def _open_request(
    session: AsyncSession, request_id: uuid.UUID, *, field: str = "id"
) -> PrivacyRequest:
    request = await session.get(PrivacyRequest, request_id)
    if request is None:
        raise Rejected.one(ErrorCode.NOT_FOUND, "There is no such request.", field)
    if request.status is not RequestStatus.OPEN:
        raise Rejected.one(ErrorCode.INVALID_INPUT, "This request is already closed.", field)
    return request


def _close(request: PrivacyRequest, officer: Actor, status: RequestStatus, resolution: str) -> None:
    request.status = status
    request.handled_by = officer.account_id
    request.handled_at = utcnow()
    request.resolution = resolution


async def process_request(
    session: AsyncSession,
    officer: Actor,
    *,
    privacy_request_id: uuid.UUID,
    status: RequestStatus,
    resolution: str,
    reason: str,
    request_id: str | None,
) -> PrivacyRequest:
    """Close a request as completed or rejected, saying how."""
    reason = checked_reason(reason)
    if status not in (RequestStatus.COMPLETED, RequestStatus.REJECTED):
        raise Rejected.one(
            ErrorCode.INVALID_INPUT, "Close a request as COMPLETED or REJECTED.", "status"
        )
    request = await _open_request(session, privacy_request_id)
    if request.kind is RequestKind.CHILD_REPORT:
        raise Rejected.one(
            ErrorCode.INVALID_INPUT, "Review a report of a child's account instead.", "id"
        )
    if request.kind is RequestKind.DELETION:
        if status is RequestStatus.COMPLETED:
            # Completed means erased: the purge closes it when it erases the account.
            raise Rejected.one(
                ErrorCode.INVALID_INPUT,
                "A deletion request is completed by the purge when it erases the account; "
                "reject it to keep the account instead.",
                "status",
            )
        await erasure.keep_after_rejection(session, request)
    _close(request, officer, status, resolution.strip()[:2000])
    await audit(session, officer, "request.process", [request.account_id], reason, request_id)
    await _tell_outcome(session, request)
    await session.flush()
    return request


async def _tell_outcome(session: AsyncSession, request: PrivacyRequest) -> None:
    """Mail the person who made a request that has just been closed its outcome and the answer."""
    person = await _requester(session, request)
    if person is None:
        return
    outcome = "answered" if request.status is RequestStatus.COMPLETED else "rejected"
    notifications.queue(
        session,
        person,
        NotificationKind.REQUEST_ANSWERED,
        {
            "request": _kind_name(request),
            "day": _day(request.created_at),
            "outcome": outcome,
            "resolution": request.resolution or "",
        },
    )


def _day(moment: datetime) -> str:
    return f"{moment.day} {moment:%B %Y}"


def _kind_name(request: PrivacyRequest) -> str:
    return {
        RequestKind.ACCESS: "request for access",
        RequestKind.EXPORT: "request for an export",
        RequestKind.DELETION: "request for deletion",
        RequestKind.CORRECTION: "request for a correction",
        RequestKind.COMPLAINT: "complaint",
        RequestKind.CHILD_REPORT: "report",
    }[request.kind]


async def _requester(session: AsyncSession, request: PrivacyRequest) -> Account | None:
    """The person who made the request, to be told about it; None for an anonymous report or an
    erased account."""
    if request.requested_by is None:
        return None
    person = await session.get(Account, request.requested_by)
    return person if person is not None and person.role is Role.USER else None


async def extend_request(
    session: AsyncSession,
    officer: Actor,
    *,
    privacy_request_id: uuid.UUID,
    months: int,
    reason: str,
    request_id: str | None,
) -> PrivacyRequest:
    """Extend an open request's deadline by one or two months (at most two in all, GDPR Art.
    12(3)), before it is overdue; the reason goes in the audit log and to the person."""
    reason = checked_reason(reason)
    if months not in (1, 2):
        raise Rejected.one(ErrorCode.INVALID_INPUT, "Extend by 1 or 2 months.", "months")
    request = await _open_request(session, privacy_request_id)
    if request.due_at <= utcnow():
        raise Rejected.one(
            ErrorCode.INVALID_INPUT,
            "This request is already overdue: answer it instead of extending it.",
            "id",
        )
    if request.extended_months + months > MAX_EXTENSION_MONTHS:
        raise Rejected.one(
            ErrorCode.INVALID_INPUT,
            f"A request may be extended by {MAX_EXTENSION_MONTHS} months in all; this one has "
            f"been extended by {request.extended_months} already.",
            "months",
        )
    request.extended_months += months
    request.extension_reason = reason
    request.due_at = due_date(request.created_at, request.extended_months)
    await audit(session, officer, "request.extend", [request.account_id], reason, request_id)
    person = await _requester(session, request)
    if person is not None:
        notifications.queue(
            session,
            person,
            NotificationKind.REQUEST_EXTENDED,
            {
                "request": _kind_name(request),
                "day": _day(request.created_at),
                "due_day": _day(request.due_at),
                "reason": reason,
            },
        )
    await session.flush()
    return request


async def review_child_report(
    session: AsyncSession,
    officer: Actor,
    *,
    privacy_request_id: uuid.UUID,
    decision: ChildReportDecision,
    reason: str,
    request_id: str | None,
) -> PrivacyRequest:
    """Lift the restriction, or schedule the account's erasure at once and sign it out."""
    reason = checked_reason(reason)
    request = await _open_request(session, privacy_request_id)
    if request.kind is not RequestKind.CHILD_REPORT or request.account_id is None:
        raise Rejected.one(ErrorCode.INVALID_INPUT, "This is not a report of a child.", "id")
    account = await session.get(Account, request.account_id)
    if account is None or account.role is not Role.USER:
        raise Rejected.one(ErrorCode.NOT_FOUND, "The reported account is gone.", "id")
    now = utcnow()
    if decision is ChildReportDecision.CLEAR:
        account.restricted_at = None
        _close(request, officer, RequestStatus.COMPLETED, "Reviewed: not a child's account.")
    else:
        await erasure.schedule_deletion(
            session, account.id, due_at=now, requested_by=officer.account_id
        )
        # Hidden at once, whether or not the report had hidden it, until the purge erases it.
        account.restricted_at = account.restricted_at or now
        _close(request, officer, RequestStatus.COMPLETED, "A child's account: to be erased.")
    await audit(
        session, officer, f"child_report.{decision.value}", [account.id], reason, request_id
    )
    await session.flush()
    return request


async def opt_out_for(
    session: AsyncSession,
    staff: Actor,
    *,
    account_id: uuid.UUID,
    reason: str,
    request_id: str | None,
) -> Account:
    """A person asked support (by phone, by letter) to stop marketing: every consent-based
    message off, recorded in their ledger as done by this staff member through the admin."""
    reason = checked_reason(reason)
    account = await session.get(Account, account_id)
    if account is None or account.role is not Role.USER:
        raise Rejected.one(ErrorCode.NOT_FOUND, "There is no such account.", "accountId")
    provenance = Provenance(
        ConsentActor.STAFF, Source.ADMIN, actor_id=staff.account_id, request_id=request_id
    )
    await audit(session, staff, "settings.marketing_opt_out", [account.id], reason, request_id)
    await settings.opt_out_of_marketing(session, account.id, provenance)
    return account


async def correct_account(
    session: AsyncSession,
    officer: Actor,
    *,
    account_id: uuid.UUID,
    birth_date: date | None,
    country: str | None,
    privacy_request_id: uuid.UUID | None,
    us_state: str | None = None,
    resolution: str | None,
    reason: str,
    request_id: str | None,
) -> tuple[Account, PrivacyRequest | None]:
    """Correct what a person cannot change themself (date of birth, country, US state), once the
    facts are checked, closing the correction request it answers if one is named. An empty state
    removes it, and so does a move out of the US.

    The age rules are applied in the same transaction, in the ledger as this officer's doing: a
    correction that makes the person a minor withdraws what a minor may not have. One that ends
    the protection switches nothing on; the choices become the person's to make. A date that
    makes the person under 13 is refused: such an account is not corrected but erased.
    """
    reason = checked_reason(reason)
    if birth_date is None and country is None and us_state is None:
        raise Rejected.one(
            ErrorCode.INVALID_INPUT, "Give a date of birth, a country, a US state or several."
        )
    account = await session.get(Account, account_id)
    if account is None or account.role is not Role.USER:
        raise Rejected.one(ErrorCode.NOT_FOUND, "There is no such account.", "accountId")
    errors: list[UserError] = []
    wanted: dict[str, object] = {}
    if birth_date is not None:
        errors += _birth_date_errors(birth_date)
        wanted["birth_date"] = birth_date
    if country is not None:
        code, problems = country_errors(country)
        errors += problems
        wanted["country"] = code
    living_in = str(wanted.get("country", account.country) or "") or None
    state = account.us_state if living_in == "US" else None
    if us_state is not None:
        state, problems = us_state_errors(us_state, living_in)
        errors += problems
    if state != account.us_state or us_state is not None:
        wanted["us_state"] = state
    if errors:
        raise Rejected(*errors)
    request = None
    if privacy_request_id is not None:
        request = await _open_request(session, privacy_request_id, field="privacyRequestId")
        if request.kind is not RequestKind.CORRECTION or request.account_id != account.id:
            raise Rejected.one(
                ErrorCode.INVALID_INPUT,
                "That is not a correction request of this account.",
                "privacyRequestId",
            )
    changed = {field: value for field, value in wanted.items() if getattr(account, field) != value}
    for field, value in changed.items():
        setattr(account, field, value)
    record_changes(session, account, sorted(changed), officer, request_id)
    await session.flush()
    provenance = Provenance(
        ConsentActor.STAFF, Source.AGE_RULES, actor_id=officer.account_id, request_id=request_id
    )
    await settings.protect_if_minor(session, account.id, provenance)
    if request is not None:
        fields = " and ".join(_FIELD_NAMES[field] for field in sorted(wanted))
        answer = (resolution or "").strip()[:2000] or f"Corrected: {fields}."
        _close(request, officer, RequestStatus.COMPLETED, answer)
        await _tell_outcome(session, request)
    await audit(session, officer, "account.correct", [account.id], reason, request_id)
    await session.flush()
    return account, request


_FIELD_NAMES = {"birth_date": "date of birth", "country": "country", "us_state": "US state"}


def _birth_date_errors(birth_date: date) -> list[UserError]:
    """As at signup, but told to the officer: a child under 13 cannot hold an account."""
    today = age.today_everywhere(utcnow())
    if not age.is_plausible_birth_date(birth_date, today):
        message = "This date of birth is in the future or more than 120 years ago."
        return [UserError("birthDate", message, ErrorCode.INVALID_BIRTH_DATE)]
    if not age.is_old_enough(birth_date, today):
        message = (
            "This date makes the person under 13, who cannot have an account: report it with "
            "reportChildAccount and erase it with reviewChildReport (DELETE) instead."
        )
        return [UserError("birthDate", message, ErrorCode.AGE_RESTRICTED)]
    return []


async def hold_account(
    session: AsyncSession,
    officer: Actor,
    *,
    account_id: uuid.UUID,
    reason: str,
    request_id: str | None,
) -> LegalHold:
    """Keep an account from erasure for a legal matter; the reason is the hold's and the audit's."""
    reason = checked_reason(reason)
    await audit(session, officer, "legal_hold.set", [account_id], reason, request_id)
    return await erasure.set_legal_hold(session, officer, account_id, reason)


async def release_hold(
    session: AsyncSession,
    officer: Actor,
    *,
    hold_id: uuid.UUID,
    reason: str,
    request_id: str | None,
) -> LegalHold:
    reason = checked_reason(reason)
    hold = await session.get(LegalHold, hold_id)
    await audit(
        session,
        officer,
        "legal_hold.release",
        [hold.account_id if hold else None],
        reason,
        request_id,
    )
    return await erasure.release_legal_hold(session, officer, hold_id)


async def audit_log(
    session: AsyncSession,
    *,
    account_id: uuid.UUID | None,
    first: int,
    after: str | None = None,
    last: int | None = None,
    before: str | None = None,
) -> Page[AuditEntry]:
    """A page of the log, newest first, optionally only entries about one account."""
    page = page_request(first, after, AUDIT_LOG, last=last, before=before)
    query = select(AuditEntry)
    if account_id is not None:
        query = query.where(AuditEntry.account_id == account_id)
    rows = list(await session.scalars(cut(query, AUDIT_LOG, page)))
    return page_of(rows, page, AUDIT_LOG, tally_of(query))
