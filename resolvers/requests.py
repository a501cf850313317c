"""Privacy requests: every exercise of a right, a complaint or a report gets a record with a
due date (GDPR Art. 12: one month), so none is forgotten."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from models import PrivacyRequest, RequestKind, RequestStatus, utcnow


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
