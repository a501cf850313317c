"""The notification outbox: messages queued in the transaction that caused them, composed from
their templates; marked sent once a mailer has them."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Uuid,
    case,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from models import Account, DeliveryStatus, Notification, NotificationKind, utcnow
from resolvers import mail, outbox
from resolvers.mail import PLACEHOLDER as PLACEHOLDER
from resolvers.mail import REMOVED as REMOVED


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


# Messages to someone with no account here (a minor's parent): their address is kept only until
# the message is sent, or given up on.
TO_NON_MEMBERS = (NotificationKind.PARENTAL_CONSENT_REQUEST,)


def queue(
    session: AsyncSession,
    account: Account,
    kind: NotificationKind,
    values: Mapping[str, object] | None = None,
    *,
    recipient: str | None = None,
    secret: str | None = None,
) -> Notification:
    """Add a message of `kind` to the outbox, composed from its template with `values` in the
    account's language; it is written when the caller's transaction commits.

    A code or token goes in `secret`, never in `values`: templates write `{{ secret }}`, and a
    link that carries it is built around PLACEHOLDER.
    """
    composed = mail.compose(kind, account.locale, values)
    notification = Notification(
        account_id=account.id,
        kind=kind,
        recipient=recipient or account.email,
        subject=composed.subject,
        body=composed.body,
        html=composed.html,
        secret=secret,
        created_at=utcnow(),
    )
    session.add(notification)
    return notification


def queue_to_address(
    session: AsyncSession,
    kind: NotificationKind,
    recipient: str,
    values: Mapping[str, object] | None = None,
    *,
    locale: str | None = None,
    secret: str | None = None,
) -> Notification:
    """A message to an address that belongs to no account, composed like any other. Once sent
    (or given up on) it is deleted, address and all."""
    composed = mail.compose(kind, locale, values)
    notification = Notification(
        account_id=None,
        kind=kind,
        recipient=recipient,
        subject=composed.subject,
        body=composed.body,
        html=composed.html,
        secret=secret,
        created_at=utcnow(),
    )
    session.add(notification)
    return notification


def queue_last_message(session: AsyncSession, recipient: str, locale: str | None) -> None:
    """The "account erased" confirmation: to the address alone, naming no account, since the
    account is gone by the time it is sent."""
    queue_to_address(session, NotificationKind.ACCOUNT_ERASED, recipient, locale=locale)


def render(notification: Notification) -> str:
    """The body as a mailer sends it: with its secret while unsent, without once sent."""
    return mail.fill(notification.body, notification.secret)


async def pending(session: AsyncSession, *, limit: int = 100) -> Sequence[Notification]:
    """Unsent messages (waiting, or between two attempts), oldest first."""
    result = await session.scalars(
        select(Notification)
        .where(Notification.status == DeliveryStatus.PENDING)
        .order_by(Notification.created_at, Notification.id)
        .limit(limit)
    )
    return result.all()


def forget_non_member() -> ColumnElement[str]:
    """The recipient column's new value once a message is done with: removed for someone with no
    account here."""
    return case((Notification.kind.in_(TO_NON_MEMBERS), mail.REMOVED), else_=Notification.recipient)


async def mark_sent(session: AsyncSession, ids: Sequence[uuid.UUID]) -> int:
    """Record that a mailer delivered these, and forget their secrets (and the address of
    someone with no account here); returns how many were still unsent. A message to an address
    without an account (an erased account's last one) is deleted instead: once it is sent,
    nothing of that address is kept."""
    if not ids:
        return 0
    unsent = Notification.id.in_(ids) & (Notification.status == DeliveryStatus.PENDING)
    last = await session.execute(
        delete(Notification).where(unsent, Notification.account_id.is_(None))
    )
    result = await session.execute(
        update(Notification)
        .where(unsent)
        .values(
            status=DeliveryStatus.SENT,
            sent_at=utcnow(),
            secret=None,
            claimed_at=None,
            claimed_by=None,
            failure=None,
            recipient=forget_non_member(),
        )
    )
    await session.flush()
    return outbox.changed(last) + outbox.changed(result)


async def queue_for_accounts(
    session: AsyncSession,
    accounts: ColumnElement[bool],
    kind: NotificationKind,
    values: Mapping[str, object] | None = None,
) -> int:
    """The same message to every account matching `accounts`, at its email address, each in
    its language.

    One INSERT ... SELECT per translation in use (after one query for the locales, where `kind`
    has translations), so the cost does not grow with the number of accounts. Written when the
    caller's transaction commits; returns how many messages were queued.
    """
    speakers: dict[str, list[str | None]] = {mail.DEFAULT_LOCALE: []}
    if mail.translated(kind):
        speakers = {}
        query = select(Account.locale).where(accounts).distinct()
        for locale in (await session.scalars(query)).all():
            speakers.setdefault(mail.translation(kind, locale), []).append(locale)
    columns = Notification.__table__.c
    queued = 0
    for translation, spoken in sorted(speakers.items()):
        composed = mail.compose(kind, translation, values)
        known = [locale for locale in spoken if locale is not None]
        speaks: ColumnElement[bool] = Account.locale.in_(known) if known else literal(False)
        if None in spoken:
            speaks = or_(speaks, Account.locale.is_(None))
        if len(speakers) == 1:
            speaks = literal(True)
        messages = select(
            _random_uuid(),
            Account.id,
            literal(kind, columns.kind.type),
            Account.email,
            literal(composed.subject, columns.subject.type),
            literal(composed.body, columns.body.type),
            literal(composed.html, columns.html.type),
            literal(DeliveryStatus.PENDING, columns.status.type),
            literal(0, columns.attempts.type),
            literal(utcnow(), columns.created_at.type),
        ).where(accounts, speaks)
        result = await session.execute(
            insert(Notification).from_select(
                [
                    "id",
                    "account_id",
                    "kind",
                    "recipient",
                    "subject",
                    "body",
                    "html",
                    "status",
                    "attempts",
                    "created_at",
                ],
                messages,
            )
        )
        queued += int(getattr(result, "rowcount", 0) or 0)
    return queued


@dataclass(frozen=True)
class Backlog:
    """How far the mailer is behind: unsent messages, when the oldest was written, how many
    of them a server refused at least once, and how many were given up on (kept 30 days)."""

    unsent: int
    oldest: datetime | None
    retrying: int = 0
    failed: int = 0


async def backlog(session: AsyncSession) -> Backlog:
    """The outbox's unsent and failed messages, counted in one statement (status is indexed)."""
    pending = Notification.status == DeliveryStatus.PENDING
    row = (
        await session.execute(
            select(
                func.count().filter(pending),
                func.min(Notification.created_at).filter(pending),
                func.count().filter(pending, Notification.attempts > 0),
                func.count().filter(Notification.status == DeliveryStatus.FAILED),
            ).where(Notification.status.in_([DeliveryStatus.PENDING, DeliveryStatus.FAILED]))
        )
    ).one()
    return Backlog(unsent=int(row[0]), oldest=row[1], retrying=int(row[2]), failed=int(row[3]))
