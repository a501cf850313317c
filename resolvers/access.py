"""What a person may know about how their data was handled (GDPR Art. 15): the changes to their
profile, the messages sent to them, and the staff who read or changed their data.

Each list is read a page per account in one statement (see `resolvers.paging`), newest first.
Staff are shown by role, never by name or id.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from models import Account, AuditEntry, Notification, ProfileChange, Role
from resolvers.paging import Keyset, Page, PageRequest, pages_per_account

PROFILE_CHANGES = Keyset(
    "profile-changes", (ProfileChange.changed_at, ProfileChange.id), descending=True
)
MESSAGES = Keyset("messages", (Notification.created_at, Notification.id), descending=True)
STAFF_ACCESS = Keyset("staff-access", (AuditEntry.occurred_at, AuditEntry.id), descending=True)


async def profile_changes(
    session: AsyncSession, account_ids: Sequence[uuid.UUID], page: PageRequest
) -> dict[uuid.UUID, Page[ProfileChange]]:
    """Each account's profile changes (the field, never the values), newest first."""
    return await pages_per_account(
        session,
        ProfileChange,
        ProfileChange.account_id,
        account_ids,
        keyset=PROFILE_CHANGES,
        page=page,
    )


async def messages(
    session: AsyncSession, account_ids: Sequence[uuid.UUID], page: PageRequest
) -> dict[uuid.UUID, Page[Notification]]:
    """Each account's messages in the outbox, sent or waiting, newest first."""
    return await pages_per_account(
        session, Notification, Notification.account_id, account_ids, keyset=MESSAGES, page=page
    )


@dataclass(frozen=True)
class StaffAccess:
    """One audit entry as the person sees it: the staff member's role, never who they are."""

    id: int
    occurred_at: datetime
    role: Role | None  # None once the staff account no longer exists
    action: str
    reason: str


async def staff_roles(
    session: AsyncSession, staff_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, Role]:
    if not staff_ids:
        return {}
    rows = await session.execute(
        select(Account.id, Account.role).where(Account.id.in_(set(staff_ids)))
    )
    return {row.id: row.role for row in rows}


async def staff_access(
    session: AsyncSession, account_ids: Sequence[uuid.UUID], page: PageRequest
) -> dict[uuid.UUID, Page[StaffAccess]]:
    """Each account's audit entries (one row per account touched, found through the
    `account_id` index on both databases), newest first."""
    found = await pages_per_account(
        session, AuditEntry, AuditEntry.account_id, account_ids, keyset=STAFF_ACCESS, page=page
    )
    roles = await staff_roles(
        session, [entry.staff_id for p in found.values() for entry in p.items]
    )
    return {
        account_id: Page(
            [
                StaffAccess(
                    id=entry.id,
                    occurred_at=entry.occurred_at,
                    role=roles.get(entry.staff_id),
                    action=entry.action,
                    reason=entry.reason,
                )
                for entry in p.items
            ],
            p.has_next_page,
            p.keyset,
        )
        for account_id, p in found.items()
    }
