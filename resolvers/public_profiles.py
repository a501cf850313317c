"""Profiles as others see them: visibility settings enforced, not only stored."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from auth.actor import Actor
from models import Account, AccountSetting, Role
from resolvers import catalogue, erasure
from resolvers.catalogue import Audience, VisibilityField


@dataclass(frozen=True)
class PublicProfile:
    id: uuid.UUID
    display_name: str
    email: str | None
    phone: str | None
    search_engine_indexing: bool


def _may_see(audience: Audience, viewer: Actor | None, owner: bool) -> bool:
    if owner or audience is Audience.PUBLIC:
        return True
    return audience is Audience.MEMBERS and viewer is not None


async def public_profile(
    session: AsyncSession, viewer: Actor | None, account_id: uuid.UUID
) -> PublicProfile | None:
    """The profile with every field the viewer may not see left out; None when the viewer may not
    see the profile at all (or there is none: the two look the same).

    Staff see what any signed-in member sees: their reads of personal data go only through the
    staff fields, which take a reason and write an audit entry."""
    account = await session.get(Account, account_id)
    if account is None or account.role is not Role.USER:
        return None
    owner = viewer is not None and viewer.account_id == account_id
    if account.restricted_at is not None and not owner:
        return None  # reported as a child's account, until a privacy officer reviews it
    if erasure.processing_suspended(account) and not owner:
        return None  # deletion requested: shown to nobody else from then on
    keys = {catalogue.visibility(field).key: field for field in VisibilityField}
    rows = await session.execute(
        select(AccountSetting.key, AccountSetting.value).where(
            AccountSetting.account_id == account_id, AccountSetting.key.in_(keys)
        )
    )
    chosen = {keys[key]: catalogue.visibility(keys[key]).decode(value) for key, value in rows}
    values = {
        field: chosen.get(field, catalogue.visibility(field).default) for field in VisibilityField
    }

    def visible(field: VisibilityField) -> bool:
        audience = values[field]
        return isinstance(audience, Audience) and _may_see(audience, viewer, owner)

    if not visible(VisibilityField.PROFILE):
        return None
    return PublicProfile(
        id=account.id,
        display_name=account.display_name,
        email=account.email if visible(VisibilityField.EMAIL) else None,
        phone=account.phone if visible(VisibilityField.PHONE) else None,
        search_engine_indexing=(
            values[VisibilityField.SEARCH_ENGINE_INDEXING] is True
            and values[VisibilityField.PROFILE] is Audience.PUBLIC
        ),
    )
