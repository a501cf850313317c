"""Privacy requests: every exercise of a right, a complaint or a report gets a record with a
due date (GDPR Art. 12: one month), so none is forgotten."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import func, update
from sqlalchemy.ext.asyncio import AsyncSession

from auth.actor import Actor
from auth.rate_limits import Door, RateLimiter, client_key
from models import Account, PrivacyRequest, RequestKind, RequestStatus, Role, utcnow
from resolvers.errors import ErrorCode, Rejected, UserError
from resolvers.pages import Keyset, Page, PageRequest, pages_per_account
from resolvers.validation import email_errors


def open_request(
    session: AsyncSession,
    *,
    kind: RequestKind,
    due_days: int,
    account_id: uuid.UUID | None,
    requested_by: uuid.UUID | None,
    status: RequestStatus = RequestStatus.OPEN,
    subject: str | None = None,
    details: str | None = None,
    contact_email: str | None = None,
) -> PrivacyRequest:
    """Add a request record; it is written when the caller's transaction commits."""
    now = utcnow()
    request = PrivacyRequest(
        kind=kind,
        status=status,
        account_id=account_id,
        requested_by=requested_by,
        subject=subject,
        details=details,
        contact_email=contact_email,
        created_at=now,
        due_at=now + timedelta(days=due_days),
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
    session: AsyncSession,
    limiter: RateLimiter,
    actor: Actor,
    *,
    kind: RequestKind,
    subject: str,
    details: str,
    due_days: int,
) -> PrivacyRequest:
    """A complaint about how the person's data was handled, or a correction they cannot make
    themself (such as a wrong date of birth), answered by staff within the due date."""
    assert kind in PERSONAL_REQUESTS
    errors = _text_errors("subject", subject, SUBJECT_MAX)
    errors += _text_errors("details", details, DETAILS_MAX)
    if errors:
        raise Rejected(*errors)
    if not await limiter.allow(PERSONAL_REQUESTS[kind], str(actor.account_id)):
        raise Rejected.one(
            ErrorCode.RATE_LIMITED, "You have sent ten of these in the last hour; try later."
        )
    request = open_request(
        session,
        kind=kind,
        due_days=due_days,
        account_id=actor.account_id,
        requested_by=actor.account_id,
        subject=subject.strip(),
        details=details.strip(),
    )
    await session.flush()
    return request


async def report_child_account(
    session: AsyncSession,
    limiter: RateLimiter,
    client_address: str,
    *,
    account_id: uuid.UUID,
    details: str,
    contact_email: str | None,
    due_days: int,
) -> PrivacyRequest:
    """Anyone may report an account they believe belongs to a child under 13. Its profile is
    hidden at once, until a privacy officer reviews the report."""
    if not await limiter.allow(Door.REPORT_PER_CLIENT, client_key(client_address)):
        raise Rejected.one(ErrorCode.RATE_LIMITED, "Too many reports from here; try later.")
    errors = _text_errors("details", details, DETAILS_MAX)
    email = None
    if contact_email is not None and contact_email.strip():
        email, problems = email_errors(contact_email)
        errors += [UserError("contactEmail", p.message, p.code) for p in problems]
    if errors:
        raise Rejected(*errors)
    now = utcnow()
    restricted = await session.execute(
        update(Account)
        .where(Account.id == account_id, Account.role == Role.USER)
        .values(restricted_at=func.coalesce(Account.restricted_at, now))
        .execution_options(synchronize_session=False)
    )
    if not getattr(restricted, "rowcount", 0):
        raise Rejected.one(ErrorCode.NOT_FOUND, "There is no such account.", "accountId")
    request = open_request(
        session,
        kind=RequestKind.CHILD_REPORT,
        due_days=due_days,
        account_id=account_id,
        requested_by=None,
        details=details.strip(),
        contact_email=email,
    )
    await session.flush()
    return request


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
