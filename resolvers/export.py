"""Data portability: a single-use link to download everything held about a person."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from auth.actor import Actor
from auth.rate_limits import Door, RateLimiter
from auth.tokens import hash_token
from models import DataExport, RequestKind, RequestStatus, utcnow
from resolvers.errors import ErrorCode, Rejected
from resolvers.requests import open_request

DOWNLOAD_PATH = "/exports"
TOKEN_BYTES = 32


@dataclass(frozen=True)
class ExportLink:
    url: str
    expires_at: datetime


def download_url(public_url: str, token: str) -> str:
    return f"{public_url}{DOWNLOAD_PATH}/{token}"


async def request_data_export(
    session: AsyncSession,
    limiter: RateLimiter,
    actor: Actor,
    *,
    public_url: str,
    valid_hours: int,
    due_days: int,
) -> ExportLink:
    """A new single-use link to the person's export, recorded as a completed privacy request.

    The token is kept only as its hash; the link in the answer is the one place it appears.
    """
    account_id = actor.account.id
    if not await limiter.allow(Door.EXPORT_PER_ACCOUNT, str(account_id)):
        raise Rejected.one(
            ErrorCode.RATE_LIMITED, "You have asked for several exports recently; try later."
        )
    token = secrets.token_urlsafe(TOKEN_BYTES)
    now = utcnow()
    expires_at = now + timedelta(hours=valid_hours)
    session.add(
        DataExport(
            account_id=account_id,
            token_hash=hash_token(token),
            created_at=now,
            expires_at=expires_at,
        )
    )
    open_request(
        session,
        kind=RequestKind.EXPORT,
        status=RequestStatus.COMPLETED,
        due_days=due_days,
        account_id=account_id,
        requested_by=account_id,
    )
    await session.commit()
    return ExportLink(url=download_url(public_url, token), expires_at=expires_at)
