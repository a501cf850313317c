"""One-click unsubscribe (RFC 8058): a signed link per account and topic that needs no sign-in.

The link carries the account id and the topic, signed with the configured secret. It works for
180 days: long enough for a message someone reads months later, short enough that an old leaked
link stops working. Following it turns that topic off on the email channel, through the same
`change_settings` as every other change, recorded as made by the link.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from auth.tokens import Signer
from models import Account, ConsentActor, Source, utcnow
from resolvers import catalogue
from resolvers.catalogue import Channel, SettingDefinition, Topic
from resolvers.consent import Provenance
from resolvers.erasure import holds_back, processing_suspended
from resolvers.errors import ErrorCode, Rejected
from resolvers.settings import change_settings
from resolvers.validation import normalize_email

LINK_VALID_DAYS = 180
ONE_CLICK_BODY = "List-Unsubscribe=One-Click"
INVALID_LINK = "This unsubscribe link is not valid."
_PURPOSE = "unsubscribe"


@dataclass(frozen=True)
class Link:
    """What a mailer puts in a message: the link, and the headers that offer one-click."""

    url: str
    valid_until: datetime

    @property
    def headers(self) -> dict[str, str]:
        return {"List-Unsubscribe": f"<{self.url}>", "List-Unsubscribe-Post": ONE_CLICK_BODY}


@dataclass(frozen=True)
class Target:
    """Whom a valid link is for, and which setting it turns off."""

    account: Account
    topic: Topic

    @property
    def setting(self) -> SettingDefinition:
        return catalogue.communication(Channel.EMAIL, self.topic)


@cache
def _signer(secret_key: str) -> Signer:
    return Signer(secret_key, purpose=_PURPOSE)


def link_token(secret_key: str, account_id: uuid.UUID, topic: Topic) -> str:
    return _signer(secret_key).sign([account_id.hex, topic.value])


def _read_token(secret_key: str, token: str) -> tuple[uuid.UUID, Topic]:
    invalid = Rejected.one(ErrorCode.INVALID_INPUT, INVALID_LINK, "token")
    payload = _signer(secret_key).load(token, LINK_VALID_DAYS * 24 * 60 * 60)
    if not (isinstance(payload, list) and len(payload) == 2):
        raise invalid
    account_hex, topic_value = payload
    try:
        return uuid.UUID(hex=str(account_hex)), Topic(topic_value)
    except ValueError:
        raise invalid from None


async def unsubscribe_link(
    session: AsyncSession,
    *,
    secret_key: str,
    unsubscribe_link: Callable[[str], str],
    email: str,
    topic: Topic,
) -> Link:
    """The link for messages about `topic` to the account with this email."""
    setting = catalogue.communication(Channel.EMAIL, topic)
    if setting.locked:
        raise Rejected.one(
            ErrorCode.SETTING_LOCKED,
            f"{topic.name} by email cannot be turned off, so it has no unsubscribe link.",
            "topic",
        )
    normalized = normalize_email(email)
    account = None
    if normalized is not None:
        account = await session.scalar(select(Account).where(Account.email == normalized))
    if account is None:
        raise Rejected.one(ErrorCode.NOT_FOUND, "No account has this email address.", "email")
    if holds_back(processing_suspended(account), setting):
        # A mailer asks for the link to send such a message: none may go while deletion is pending.
        raise Rejected.one(
            ErrorCode.PROCESSING_SUSPENDED,
            "This account is pending deletion: send it no messages that need consent.",
            "email",
        )
    account_id = account.id
    token = link_token(secret_key, account_id, topic)
    return Link(
        url=unsubscribe_link(token),
        valid_until=utcnow() + timedelta(days=LINK_VALID_DAYS),
    )


async def check_link(session: AsyncSession, *, secret_key: str, token: str) -> Target:
    """Whom the link is for. Altered or expired: INVALID_INPUT; the account is gone: NOT_FOUND."""
    account_id, topic = _read_token(secret_key, token)
    account = await session.get(Account, account_id)
    if account is None:
        raise Rejected.one(ErrorCode.NOT_FOUND, INVALID_LINK, "token")
    return Target(account=account, topic=topic)


async def unsubscribe(
    session: AsyncSession, *, secret_key: str, token: str, request_id: str | None = None
) -> Target:
    """Turn the link's topic off on email. Following it again changes nothing more."""
    target = await check_link(session, secret_key=secret_key, token=token)
    await change_settings(
        session,
        target.account.id,
        {target.setting: False},
        Provenance(ConsentActor.LINK, Source.LINK, request_id=request_id),
        operation="unsubscribe",
    )
    return target
