"""Privacy requests: every exercise of a right, a complaint or a report gets a record with a
due date (GDPR Art. 12(3): one month from receipt), so none is forgotten."""

from __future__ import annotations

import calendar
import hashlib
import hmac
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import distinct, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from auth.actor import Actor
from auth.rate_limits import Door, RateLimiter, client_key
from models import Account, PrivacyRequest, RequestKind, RequestStatus, Role, utcnow
from resolvers.age import age_on, today_everywhere
from resolvers.errors import ErrorCode, Rejected, UserError
from resolvers.paging import Keyset, Page, PageRequest, pages_per_account
from resolvers.prepared import Prepared
from resolvers.validation import email_errors

# Art. 12(3): answered within one month of receipt, which may be extended by two further months.
ANSWER_MONTHS = 1
MAX_EXTENSION_MONTHS = 2


def add_months(moment: datetime, months: int) -> datetime:
    """The same day and time `months` calendar months later; where that month is shorter, its
    last day (31 January + 1 month = 28 or 29 February), as periods in months are counted in law."""
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    return moment.replace(
        year=year, month=month, day=min(moment.day, calendar.monthrange(year, month)[1])
    )


def due_date(received: datetime, extended_months: int = 0) -> datetime:
    """When a request received at `received` must be answered, with any extension granted.
    Always counted from receipt, so two one-month extensions of a 31 January request end on
    30 April, not on 28 April."""
    return add_months(received, ANSWER_MONTHS + extended_months)


def open_request(
    session: AsyncSession,
    *,
    kind: RequestKind,
    account_id: uuid.UUID | None,
    requested_by: uuid.UUID | None,
    status: RequestStatus = RequestStatus.OPEN,
    subject: str | None = None,
    details: str | None = None,
    contact_email: str | None = None,
    reporter_key: str | None = None,
    now: datetime | None = None,
) -> PrivacyRequest:
    """Add a request record received `now`; it is written when the caller's transaction commits."""
    now = now or utcnow()
    request = PrivacyRequest(
        kind=kind,
        status=status,
        account_id=account_id,
        requested_by=requested_by,
        subject=subject,
        details=details,
        contact_email=contact_email,
        reporter_key=reporter_key,
        created_at=now,
        due_at=due_date(now),
        extended_months=0,
        handled_at=now if status is RequestStatus.COMPLETED else None,
    )
    session.add(request)
    return request


SUBJECT_MAX = 200
DETAILS_MAX = 5000


def _text_errors(field: str, value: str, maximum: int) -> list[UserError]:
    if not value.strip() or len(value) > maximum:
        message = f"Write 1 to {maximum} characters."
        return [UserError(field, message, ErrorCode.INVALID_INPUT)]
    return []


# What a person may ask staff for in their own words (the rest has its own use case), and how
# often.
PERSONAL_REQUESTS = {
    RequestKind.COMPLAINT: Door.COMPLAINT_PER_ACCOUNT,
    RequestKind.CORRECTION: Door.CORRECTION_PER_ACCOUNT,
}


async def file_request(
    limiter: RateLimiter,
    actor: Actor,
    *,
    kind: RequestKind,
    subject: str,
    details: str,
    now: datetime | None = None,
) -> Prepared[PrivacyRequest]:
    """A complaint about how the person's data was handled, or a correction they cannot make
    themself (such as a wrong date of birth), answered by staff within the due date."""
    assert kind in PERSONAL_REQUESTS
    errors = _text_errors("subject", subject, SUBJECT_MAX)
    errors += _text_errors("details", details, DETAILS_MAX)
    if errors:
        raise Rejected(*errors)
    if refused := await limiter.admit(PERSONAL_REQUESTS[kind], str(actor.account_id)):
        raise Rejected.rate_limited("You have sent ten of these in the last hour", refused)

    async def write(session: AsyncSession) -> PrivacyRequest:
        request = open_request(
            session,
            kind=kind,
            account_id=actor.account_id,
            requested_by=actor.account_id,
            subject=subject.strip(),
            details=details.strip(),
            now=now,
        )
        await session.flush()
        return request

    return Prepared(write)


# A report hides the reported profile at once only when it is believable enough that anyone
# cannot hide anyone's profile: the account's stated age is under 16 (a child under 13 who gave a
# false date of birth most likely claimed an age just above 13), or people at two different
# clients reported it within 30 days. Either way the report waits for a privacy officer.
REPORT_BELIEVABLE_BELOW_AGE = 16
REPORT_CLIENTS_TO_HIDE = 2
REPORT_WINDOW = timedelta(days=30)
_REPORTER_CONTEXT = b"child-report-reporter:"


def reporter_key(secret_key: str, account_id: uuid.UUID, client_address: str) -> str:
    """Tells reports of one account from the same client apart from reports from different
    ones, and nothing more: a keyed hash of the client and the reported account, so neither the
    address nor the same reporter's reports of other accounts can be recovered or linked."""
    message = _REPORTER_CONTEXT + account_id.bytes + client_key(client_address).encode()
    return hmac.new(secret_key.encode(), message, hashlib.sha256).hexdigest()


async def report_child_account(
    limiter: RateLimiter,
    client_address: str,
    *,
    account_id: uuid.UUID,
    details: str,
    contact_email: str | None,
    secret_key: str,
) -> Prepared[PrivacyRequest]:
    """Anyone may report an account they believe belongs to a child under 13, anonymously. A
    privacy officer reviews every report; the profile is hidden meanwhile when the report meets
    the bar above."""
    if refused := await limiter.admit(Door.REPORT_PER_CLIENT, client_key(client_address)):
        raise Rejected.rate_limited("Too many reports from here", refused)
    errors = _text_errors("details", details, DETAILS_MAX)
    email = None
    if contact_email is not None and contact_email.strip():
        email, problems = email_errors(contact_email)
        errors += [UserError("contactEmail", p.message, p.code) for p in problems]
    if errors:
        raise Rejected(*errors)
    reporter = reporter_key(secret_key, account_id, client_address)
    return Prepared(
        lambda session: _keep_report(session, account_id, details.strip(), email, reporter)
    )


async def _keep_report(
    session: AsyncSession,
    account_id: uuid.UUID,
    details: str,
    contact_email: str | None,
    reporter: str,
) -> PrivacyRequest:
    now = utcnow()
    # Locks the reported account's row, so two reports at once are counted one after the other.
    reported = (
        await session.execute(
            update(Account)
            .where(Account.id == account_id, Account.role == Role.USER)
            .values(updated_at=Account.updated_at)
            .returning(Account.birth_date)
            .execution_options(synchronize_session=False)
        )
    ).one_or_none()
    if reported is None:
        raise Rejected.one(ErrorCode.NOT_FOUND, "There is no such account.", "accountId")
    request = open_request(
        session,
        kind=RequestKind.CHILD_REPORT,
        account_id=account_id,
        requested_by=None,
        details=details,
        contact_email=contact_email,
        reporter_key=reporter,
        now=now,
    )
    await session.flush()
    [birth_date] = reported
    young = (
        birth_date is not None
        and age_on(birth_date, today_everywhere(now)) < REPORT_BELIEVABLE_BELOW_AGE
    )
    if young or await _clients_reporting(session, account_id, now) >= REPORT_CLIENTS_TO_HIDE:
        await session.execute(
            update(Account)
            .where(Account.id == account_id)
            .values(restricted_at=func.coalesce(Account.restricted_at, now))
            .execution_options(synchronize_session=False)
        )
    return request


async def _clients_reporting(session: AsyncSession, account_id: uuid.UUID, now: datetime) -> int:
    """How many different clients reported the account in the window, among reports not yet
    reviewed (a report an officer cleared does not count again)."""
    count = await session.scalar(
        select(func.count(distinct(PrivacyRequest.reporter_key))).where(
            PrivacyRequest.kind == RequestKind.CHILD_REPORT,
            PrivacyRequest.account_id == account_id,
            PrivacyRequest.status == RequestStatus.OPEN,
            PrivacyRequest.created_at > now - REPORT_WINDOW,
        )
    )
    return int(count or 0)


# Newest first; created_at never changes, so cursors stay valid as requests arrive.
BY_AUTHOR = Keyset("my-requests", (PrivacyRequest.created_at, PrivacyRequest.id), descending=True)


async def requests_by_author(
    session: AsyncSession, account_ids: Sequence[uuid.UUID], page: PageRequest
) -> dict[uuid.UUID, Page[PrivacyRequest]]:
    """A page of each person's own requests, newest first (reports by others about them are
    not shown)."""
    return await pages_per_account(
        session,
        PrivacyRequest,
        PrivacyRequest.account_id,
        account_ids,
        keyset=BY_AUTHOR,
        page=page,
        where=lambda account_id: [PrivacyRequest.requested_by == account_id],
    )
