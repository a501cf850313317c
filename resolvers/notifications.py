"""The notification outbox: what a mailer would send, queued in the transaction that caused it."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from models import Account, Notification, NotificationKind, utcnow


def queue(
    session: AsyncSession,
    account: Account,
    kind: NotificationKind,
    subject: str,
    body: str,
    *,
    recipient: str | None = None,
) -> Notification:
    """Add a message to the outbox; it is written when the caller's transaction commits."""
    notification = Notification(
        account_id=account.id,
        kind=kind,
        recipient=recipient or account.email,
        subject=subject,
        body=body,
        created_at=utcnow(),
    )
    session.add(notification)
    return notification


async def pending(session: AsyncSession, *, limit: int = 100) -> Sequence[Notification]:
    """Unsent messages, oldest first."""
    result = await session.scalars(
        select(Notification)
        .where(Notification.sent_at.is_(None))
        .order_by(Notification.created_at, Notification.id)
        .limit(limit)
    )
    return result.all()


async def mark_sent(session: AsyncSession, ids: Sequence[uuid.UUID]) -> int:
    """Record that a mailer delivered these; returns how many were still unsent."""
    if not ids:
        return 0
    result = await session.execute(
        update(Notification)
        .where(Notification.id.in_(ids), Notification.sent_at.is_(None))
        .values(sent_at=utcnow())
    )
    await session.commit()
    return int(getattr(result, "rowcount", 0) or 0)
