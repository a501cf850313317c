"""Rate limits: separate counters per door, shared between processes through Redis."""

from __future__ import annotations

import uuid

from auth.rate_limits import Door, RateLimiter


async def test_doors_with_the_same_limit_count_separately() -> None:
    limiter = RateLimiter("memory://")
    assert Door.REPORT_PER_CLIENT.limit == Door.EXPORT_PER_ACCOUNT.limit
    for _ in range(5):
        assert await limiter.allow(Door.REPORT_PER_CLIENT, "someone")
    assert not await limiter.allow(Door.REPORT_PER_CLIENT, "someone")

    assert await limiter.allow(Door.EXPORT_PER_ACCOUNT, "someone")


async def test_two_processes_share_counters_through_redis() -> None:
    # Two limiters stand for two API processes; a fresh identity keeps runs independent.
    first = RateLimiter("redis://127.0.0.1:6379")
    second = RateLimiter("redis://127.0.0.1:6379")
    identity = f"client-{uuid.uuid4()}"
    for number in range(20):
        limiter = first if number % 2 else second
        assert await limiter.allow(Door.SIGNUP_PER_CLIENT, identity)

    assert not await first.allow(Door.SIGNUP_PER_CLIENT, identity)
    assert not await second.allow(Door.SIGNUP_PER_CLIENT, identity)
