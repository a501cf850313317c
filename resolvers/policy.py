"""The privacy policy versions a person accepts."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from models import PolicyVersion


async def current_policy(session: AsyncSession) -> PolicyVersion:
    """The newest published version; a migration seeds the first one, so there always is one."""
    return (
        await session.scalars(
            select(PolicyVersion).order_by(PolicyVersion.published_at.desc()).limit(1)
        )
    ).one()
