"""One object by its id, for the `node` field Relay clients refetch with: an account, a session
or a privacy request, each only for whoever the field that lists it shows it to."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from auth.actor import STAFF_ROLES, Actor
from models import Account, AuthSession, PrivacyRequest, Role, utcnow
from resolvers.audit import audit
from resolvers.staff import checked_reason

Found = Account | AuthSession | PrivacyRequest


async def own_node(session: AsyncSession, actor: Actor, node_id: uuid.UUID) -> Found | None:
    """What `me` lists: the person's account, their sessions in force, and the requests they
    made themselves (a report about them by someone else is not theirs to see). Only reads."""
    if node_id == actor.account_id:
        return await session.get(Account, node_id)
    found: Found | None = await session.scalar(
        select(AuthSession).where(
            AuthSession.id == node_id,
            AuthSession.account_id == actor.account_id,
            AuthSession.expires_at > utcnow(),
        )
    )
    if found is None:
        found = await session.scalar(
            select(PrivacyRequest).where(
                PrivacyRequest.id == node_id,
                PrivacyRequest.account_id == actor.account_id,
                PrivacyRequest.requested_by == actor.account_id,
            )
        )
    return found


async def staff_node(
    session: AsyncSession, staff: Actor, node_id: uuid.UUID, *, reason: str, request_id: str | None
) -> Found | None:
    """What staff lists show, with the reason they must give there, audited alike: any account
    for support (as `staffAccount`), any privacy request for a privacy officer (as
    `privacyRequests`). Anyone else, or an id that names nothing, finds nothing."""
    reason = checked_reason(reason)
    if staff.role not in STAFF_ROLES:
        return None
    account = await session.get(Account, node_id)
    if account is not None:
        await audit(session, staff, "account.read", [account.id], reason, request_id)
        return account
    if staff.role is not Role.PRIVACY_OFFICER:
        return None
    request = await session.get(PrivacyRequest, node_id)
    if request is not None:
        await audit(session, staff, "requests.read", [request.account_id], reason, request_id)
    return request
