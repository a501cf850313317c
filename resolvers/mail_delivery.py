"""Delivering the outbox: the steps a delivery worker takes on each message.

A worker claims a few due messages, sends them, then marks each sent (`notifications.mark_sent`)
or records the failure. Each step is a transaction of its own at the worker; these only flush.
"""

from __future__ import annotations

import html
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from models import DeliveryStatus, Notification, NotificationKind
from resolvers import catalogue, mail, notifications, outbox
from resolvers.catalogue import Channel, Topic
from resolvers.settings import read_settings


@dataclass(frozen=True)
class Outgoing:
    """A claimed message, ready to send: plain values, its secret filled in (so the address and
    texts stay out of its repr, and of any log that prints it)."""

    id: uuid.UUID
    account_id: uuid.UUID | None
    kind: NotificationKind
    recipient: str = field(repr=False)
    subject: str = field(repr=False)
    body: str = field(repr=False)
    html: str | None = field(repr=False)
    created_at: datetime
    attempts: int  # made before this one
    topic: Topic | None


@dataclass(frozen=True)
class Claimed:
    """What one claim took: messages to send, and how many were suppressed instead."""

    outgoing: list[Outgoing]
    suppressed: int


def _deliverable(now: datetime, lease: timedelta) -> ColumnElement[bool]:
    """Waiting, due, and held by no worker (or by one whose claim has expired)."""
    return and_(
        Notification.status == DeliveryStatus.PENDING,
        or_(Notification.next_attempt_at.is_(None), Notification.next_attempt_at <= now),
        outbox.unleased(Notification.claimed_at, now, lease),
    )


async def claim(
    session: AsyncSession, *, worker: str, now: datetime, lease: timedelta, limit: int
) -> Claimed:
    """Take up to `limit` due messages for `worker`, oldest first, until `now + lease`
    (`outbox.claim`: two workers never hold the same one). A message whose topic the person has
    switched off for email since it was queued is marked suppressed, not taken.
    """
    candidates = (
        select(Notification.id)
        .where(_deliverable(now, lease))
        .order_by(Notification.created_at, Notification.id)
        .limit(limit)
    )
    taken = await outbox.claim(
        session,
        candidates,
        id_column=Notification.id,
        still_free=_deliverable(now, lease),
        claimed={"claimed_at": now, "claimed_by": worker},
        returning=Notification,
    )
    if not taken:
        return Claimed([], 0)
    rows = sorted(taken, key=lambda row: (row.created_at, row.id))
    switched_off = await _switched_off(session, rows)
    if switched_off:
        await session.execute(
            update(Notification)
            .where(Notification.id.in_(switched_off))
            .values(
                status=DeliveryStatus.SUPPRESSED,
                secret=None,
                claimed_at=None,
                claimed_by=None,
            )
        )
    outgoing = [
        Outgoing(
            id=row.id,
            account_id=row.account_id,
            kind=row.kind,
            recipient=row.recipient,
            subject=row.subject,
            body=mail.fill(row.body, row.secret),
            html=None if row.html is None else mail.fill(row.html, _escaped(row.secret)),
            created_at=row.created_at,
            attempts=row.attempts,
            topic=mail.TOPICS.get(row.kind),
        )
        for row in rows
        if row.id not in switched_off
    ]
    await session.flush()
    return Claimed(outgoing, len(switched_off))


def _escaped(secret: str | None) -> str | None:
    return None if secret is None else html.escape(secret)


async def _switched_off(session: AsyncSession, rows: Sequence[Notification]) -> set[uuid.UUID]:
    """The messages among `rows` whose topic their account has switched off for email now."""
    topical = [row for row in rows if row.account_id is not None and row.kind in mail.TOPICS]
    if not topical:
        return set()
    account_ids = list({row.account_id for row in topical if row.account_id is not None})
    current = dict(zip(account_ids, await read_settings(session, account_ids), strict=True))
    off = set()
    for row in topical:
        assert row.account_id is not None
        key = catalogue.communication(Channel.EMAIL, mail.TOPICS[row.kind]).key
        if current[row.account_id][key].value is False:
            off.add(row.id)
    return off


async def record_failure(
    session: AsyncSession,
    notification_id: uuid.UUID,
    *,
    worker: str,
    reason: str,
    retry_at: datetime | None,
) -> DeliveryStatus | None:
    """After an attempt that failed: try again at `retry_at`, or with None, give up and keep
    the reason (an erased account's last message is deleted instead, address and all).

    Only while `worker` still holds the message; returns its new status, or None if it held it
    no more.
    """
    held = and_(
        Notification.id == notification_id,
        Notification.status == DeliveryStatus.PENDING,
        Notification.claimed_by == worker,
    )
    released: dict[str, Any] = {"claimed_by": None, "failure": reason[:200]}
    if retry_at is not None:
        outcome = {"next_attempt_at": retry_at, **released}
        status = DeliveryStatus.PENDING
    else:
        await session.execute(delete(Notification).where(held, Notification.account_id.is_(None)))
        outcome = {
            "status": DeliveryStatus.FAILED,
            "secret": None,
            "recipient": notifications.forget_non_member(),
            **released,
        }
        status = DeliveryStatus.FAILED
    recorded = await outbox.settle(session, Notification.attempts, held=held, outcome=outcome)
    await session.flush()
    return status if recorded else None
