"""The notification outbox: what a mailer would send, queued in the transaction that caused it."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Uuid, delete, insert, literal, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from models import Account, Notification, NotificationKind, utcnow


class _random_uuid(FunctionElement[uuid.UUID]):
    """A version 4 UUID made by the database, for rows inserted by INSERT ... SELECT."""

    type = Uuid()
    inherit_cache = True


@compiles(_random_uuid, "postgresql")
def _random_uuid_postgresql(element: _random_uuid, compiler: SQLCompiler, **kw: Any) -> str:
    return "gen_random_uuid()"


@compiles(_random_uuid, "sqlite")
def _random_uuid_sqlite(element: _random_uuid, compiler: SQLCompiler, **kw: Any) -> str:
    # Uuid is stored as 32 hex digits here: 12 random, version 4, 3 random, the variant
    # (8, 9, a or b), 3 random, 12 random.
    return (
        "lower(hex(randomblob(6)) || '4' || substr(hex(randomblob(2)), 2)"
        " || substr('89ab', 1 + (random() & 3), 1) || substr(hex(randomblob(2)), 2)"
        " || hex(randomblob(6)))"
    )


# Where a message's secret goes in its body. The secret itself is stored beside the body only
# until the message is sent, so the outbox keeps no working code or link once it has done its job.
PLACEHOLDER = "{secret}"
REMOVED = "[removed once sent]"


def queue(
    session: AsyncSession,
    account: Account,
    kind: NotificationKind,
    subject: str,
    body: str,
    *,
    recipient: str | None = None,
    secret: str | None = None,
) -> Notification:
    """Add a message to the outbox; it is written when the caller's transaction commits.

    A code or token goes in `secret`, never in `body`, which says where with PLACEHOLDER.
    """
    notification = Notification(
        account_id=account.id,
        kind=kind,
        recipient=recipient or account.email,
        subject=subject,
        body=body,
        secret=secret,
        created_at=utcnow(),
    )
    session.add(notification)
    return notification


def queue_to_address(
    session: AsyncSession,
    kind: NotificationKind,
    recipient: str,
    subject: str,
    body: str,
    *,
    secret: str | None = None,
) -> Notification:
    """A message to an address that has no account (yet), such as a signup's confirmation.
    Like an erased account's last message, it is deleted once sent (see `mark_sent`)."""
    notification = Notification(
        account_id=None,
        kind=kind,
        recipient=recipient,
        subject=subject,
        body=body,
        secret=secret,
        created_at=utcnow(),
    )
    session.add(notification)
    return notification


def queue_last_message(session: AsyncSession, recipient: str, subject: str, body: str) -> None:
    """The "account erased" confirmation: to the address alone, naming no account, since the
    account is gone by the time it is sent. `mark_sent` deletes it, address and all."""
    session.add(
        Notification(
            account_id=None,
            kind=NotificationKind.ACCOUNT_ERASED,
            recipient=recipient,
            subject=subject,
            body=body,
            created_at=utcnow(),
        )
    )


def render(notification: Notification) -> str:
    """The body as a mailer sends it: with its secret while unsent, without once sent."""
    return notification.body.replace(PLACEHOLDER, notification.secret or REMOVED)


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
    """Record that a mailer delivered these, and forget their secrets; returns how many were
    still unsent. A message to an address with no account (an erased account's last message, a
    signup's confirmation) is deleted instead: once it is sent, the address is not kept."""
    if not ids:
        return 0
    unsent = Notification.id.in_(ids) & Notification.sent_at.is_(None)
    last = await session.execute(
        delete(Notification).where(unsent, Notification.account_id.is_(None))
    )
    result = await session.execute(
        update(Notification).where(unsent).values(sent_at=utcnow(), secret=None)
    )
    await session.flush()
    return int(getattr(last, "rowcount", 0) or 0) + int(getattr(result, "rowcount", 0) or 0)


async def queue_for_accounts(
    session: AsyncSession,
    accounts: ColumnElement[bool],
    kind: NotificationKind,
    subject: str,
    body: str,
) -> int:
    """The same message to every account matching `accounts`, at its email address.

    One INSERT ... SELECT, so the cost does not grow with the number of accounts. Written when
    the caller's transaction commits; returns how many messages were queued.
    """
    columns = Notification.__table__.c
    messages = select(
        _random_uuid(),
        Account.id,
        literal(kind, columns.kind.type),
        Account.email,
        literal(subject, columns.subject.type),
        literal(body, columns.body.type),
        literal(utcnow(), columns.created_at.type),
    ).where(accounts)
    result = await session.execute(
        insert(Notification).from_select(
            ["id", "account_id", "kind", "recipient", "subject", "body", "created_at"], messages
        )
    )
    return int(getattr(result, "rowcount", 0) or 0)
