"""The audit log of what staff did with people's data."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from auth.actor import Actor
from models import AuditEntry, utcnow


async def audit(
    session: AsyncSession,
    staff: Actor,
    action: str,
    account_ids: Sequence[uuid.UUID | None],
    reason: str,
    request_id: str | None,
) -> None:
    """One audit entry per account touched, in a single statement; committed by the caller."""
    now = utcnow()
    rows = [
        {
            "staff_id": staff.account_id,
            "action": action,
            "account_id": account_id,
            "reason": reason,
            "occurred_at": now,
            "request_id": request_id,
        }
        for account_id in dict.fromkeys(account_ids) or [None]
    ]
    await session.execute(insert(AuditEntry), rows)
