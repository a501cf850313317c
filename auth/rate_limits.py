"""Rate limits on the doors an attacker knocks on: sign-in, sign-up, and anonymous reports.

Counters live in the storage configured (memory for one process; Redis for several processes),
keyed by a hash so that no email address reaches the store.
"""

from __future__ import annotations

import hashlib
from enum import Enum

from limits import RateLimitItem, parse
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.storage import storage_from_string


class Door(Enum):
    LOGIN_PER_ACCOUNT = parse("10/15 minutes")
    LOGIN_PER_CLIENT = parse("50/15 minutes")
    SIGNUP_PER_CLIENT = parse("20/hour")
    REPORT_PER_CLIENT = parse("5/hour")


def _key(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:32]


class RateLimiter:
    def __init__(self, storage_url: str) -> None:
        if not storage_url.startswith("async+"):
            storage_url = f"async+{storage_url}"
        self._limiter = SlidingWindowCounterRateLimiter(storage_from_string(storage_url))

    async def allow(self, door: Door, identity: str) -> bool:
        """Count one attempt; False once the door's limit for that identity is used up."""
        limit: RateLimitItem = door.value
        return await self._limiter.hit(limit, door.name, _key(identity))
