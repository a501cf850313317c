"""API keys: their format, the machine client behind a key, and the counting of their use.

A key is `pk_` followed by a session-token-sized random string, so it travels in the header
clients and proxies already treat as secret: `Authorization: Bearer pk_...`. Session tokens are
43 characters and keys 46 starting with `pk_`, so neither is ever taken for the other.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import case, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from auth.tokens import hash_token, new_token
from models import ApiKey, ApiScope
from models.api_keys import decode_scopes

KEY_PREFIX = "pk_"
_KEY_LENGTH = len(KEY_PREFIX) + len(new_token())
# Shown in lists: the prefix and 8 characters, enough to tell keys apart, useless to an attacker.
SHOWN_LENGTH = len(KEY_PREFIX) + 8


def new_api_key() -> str:
    return KEY_PREFIX + new_token()


def is_api_key(token: str) -> bool:
    return len(token) == _KEY_LENGTH and token.startswith(KEY_PREFIX)


@dataclass(frozen=True)
class Machine:
    """A machine client calling with a key: plain values read once per request. Not a person."""

    key_id: uuid.UUID
    name: str
    scopes: frozenset[ApiScope]


async def machine_for_key(session: AsyncSession, key: str) -> Machine | None:
    """The client behind a key, or None when the key is unknown or revoked. Only reads."""
    row = (
        await session.execute(
            select(ApiKey.id, ApiKey.name, ApiKey.scopes).where(
                ApiKey.token_hash == hash_token(key), ApiKey.revoked_at.is_(None)
            )
        )
    ).one_or_none()
    if row is None:
        return None
    return Machine(key_id=row.id, name=row.name, scopes=decode_scopes(row.scopes))


@dataclass
class Uses:
    count: int
    last_used_at: datetime


class KeyUsage:
    """The uses of each key, counted in this process and written to the database in batches.

    Writing on every call would make each read of the sender API a write transaction (on SQLite,
    one at a time for the whole database). Instead the first call after `flush_seconds` writes
    every count gathered since, in one short transaction; the app writes the rest as it stops.
    Each write adds to the stored count, so several processes count into the same row. A process
    that dies unexpectedly loses at most `flush_seconds` of its counts.
    """

    def __init__(self, flush_seconds: float) -> None:
        self.flush_seconds = flush_seconds
        self._pending: dict[uuid.UUID, Uses] = {}
        self._since = time.monotonic()

    def note(self, key_id: uuid.UUID, now: datetime) -> None:
        uses = self._pending.get(key_id)
        if uses is None:
            self._pending[key_id] = Uses(1, now)
        else:
            uses.count += 1
            uses.last_used_at = max(uses.last_used_at, now)

    def pending(self, key_id: uuid.UUID) -> Uses | None:
        """What this process counted for the key and has not written yet."""
        return self._pending.get(key_id)

    def due(self) -> bool:
        return bool(self._pending) and time.monotonic() - self._since >= self.flush_seconds

    def take(self) -> dict[uuid.UUID, Uses]:
        """Everything counted so far, to be written; the count starts again from nothing."""
        taken, self._pending = self._pending, {}
        self._since = time.monotonic()
        return taken

    def give_back(self, taken: dict[uuid.UUID, Uses]) -> None:
        """Counts whose write failed, kept for the next one."""
        for key_id, uses in taken.items():
            mine = self._pending.setdefault(key_id, Uses(0, uses.last_used_at))
            mine.count += uses.count
            mine.last_used_at = max(mine.last_used_at, uses.last_used_at)


async def record_key_uses(session: AsyncSession, taken: dict[uuid.UUID, Uses]) -> None:
    """Add counted uses to each key's stored count (one short UPDATE per key used)."""
    for key_id, uses in taken.items():
        await session.execute(
            update(ApiKey)
            .where(ApiKey.id == key_id)
            .values(
                use_count=ApiKey.use_count + uses.count,
                last_used_at=case(
                    (ApiKey.last_used_at > uses.last_used_at, ApiKey.last_used_at),
                    else_=uses.last_used_at,
                ),
            )
            .execution_options(synchronize_session=False)
        )
