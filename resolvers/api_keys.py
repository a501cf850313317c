"""API keys for machine clients: privacy officers create, list and revoke them, audited."""

from __future__ import annotations

import uuid
from collections.abc import Collection

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from auth.actor import Actor
from auth.api_keys import SHOWN_LENGTH, new_api_key
from auth.tokens import hash_token
from models import ApiKey, ApiScope, utcnow
from models.api_keys import encode_scopes
from resolvers.audit import audit
from resolvers.errors import ErrorCode, Rejected
from resolvers.paging import checked_first
from resolvers.staff import checked_reason

NAME_MAX = 100


async def create_api_key(
    session: AsyncSession,
    officer: Actor,
    *,
    name: str,
    scopes: Collection[ApiScope],
    reason: str,
    request_id: str | None,
) -> tuple[ApiKey, str]:
    """A new key with these scopes. Returns the key itself too: the only time it is seen, as
    only its hash is kept."""
    reason = checked_reason(reason)
    label = name.strip()
    if not 1 <= len(label) <= NAME_MAX:
        raise Rejected.one(
            ErrorCode.INVALID_INPUT,
            f"Name the key (1 to {NAME_MAX} characters), such as the client that will use it.",
            "name",
        )
    if not scopes:
        raise Rejected.one(ErrorCode.INVALID_INPUT, "Give the key at least one scope.", "scopes")
    secret = new_api_key()
    key = ApiKey(
        id=uuid.uuid4(),
        name=label,
        prefix=secret[:SHOWN_LENGTH],
        token_hash=hash_token(secret),
        scopes=encode_scopes(frozenset(scopes)),
        created_by=officer.account_id,
        created_at=utcnow(),
        use_count=0,
    )
    session.add(key)
    await audit(session, officer, "api_key.create", [None], _about(reason, key), request_id)
    await session.flush()
    return key, secret


async def revoke_api_key(
    session: AsyncSession,
    officer: Actor,
    *,
    key_id: uuid.UUID,
    reason: str,
    request_id: str | None,
) -> ApiKey:
    """From now on the key is refused; it stays listed, with when and by whom it was revoked."""
    reason = checked_reason(reason)
    key = await session.get(ApiKey, key_id)
    if key is None:
        raise Rejected.one(ErrorCode.NOT_FOUND, "There is no such API key.", "id")
    if key.revoked_at is not None:
        raise Rejected.one(ErrorCode.INVALID_INPUT, "This API key is already revoked.", "id")
    key.revoked_at = utcnow()
    key.revoked_by = officer.account_id
    await audit(session, officer, "api_key.revoke", [None], _about(reason, key), request_id)
    await session.flush()
    return key


def _about(reason: str, key: ApiKey) -> str:
    # The audit log names accounts; which key an entry is about goes with the reason.
    return f"{reason} [key {key.id} {key.prefix}... {key.scopes}]"


async def list_api_keys(
    session: AsyncSession, *, include_revoked: bool, first: int
) -> list[ApiKey]:
    """The newest keys first (revoked ones only when asked for)."""
    query = select(ApiKey)
    if not include_revoked:
        query = query.where(ApiKey.revoked_at.is_(None))
    limit = checked_first(first)
    return list(
        await session.scalars(query.order_by(ApiKey.created_at.desc(), ApiKey.id).limit(limit))
    )
