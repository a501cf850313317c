"""Rate limits: separate counters per door, shared between processes through Redis."""

from __future__ import annotations

import uuid

import pytest

from auth.rate_limits import Door, RateLimiter, client_key


async def test_doors_with_the_same_limit_count_separately() -> None:
    limiter = RateLimiter("memory://")
    assert Door.REPORT_PER_CLIENT.limit == Door.EXPORT_PER_ACCOUNT.limit
    for _ in range(5):
        assert await limiter.allow(Door.REPORT_PER_CLIENT, "someone")
    assert not await limiter.allow(Door.REPORT_PER_CLIENT, "someone")

    assert await limiter.allow(Door.EXPORT_PER_ACCOUNT, "someone")


async def test_two_processes_share_counters_through_redis(redis_url: str) -> None:
    # Two limiters stand for two API processes; a fresh identity keeps runs independent.
    first = RateLimiter(redis_url)
    second = RateLimiter(redis_url)
    identity = f"client-{uuid.uuid4()}"
    for number in range(20):
        limiter = first if number % 2 else second
        assert await limiter.allow(Door.SIGNUP_PER_CLIENT, identity)

    assert not await first.allow(Door.SIGNUP_PER_CLIENT, identity)
    assert not await second.allow(Door.SIGNUP_PER_CLIENT, identity)


async def test_a_sign_in_place_is_remembered_by_every_process(redis_url: str) -> None:
    first = RateLimiter(redis_url)
    second = RateLimiter(redis_url)
    place = f"someone@example.com from {uuid.uuid4()}"
    assert not await second.remembers(Door.SIGNED_IN_FROM, place)

    await first.remember(Door.SIGNED_IN_FROM, place)
    await first.remember(Door.SIGNED_IN_FROM, place)

    assert await second.remembers(Door.SIGNED_IN_FROM, place)
    assert not await second.remembers(Door.SIGNED_IN_FROM, f"{place} elsewhere")


@pytest.mark.parametrize(
    ("address", "place"),
    [
        ("198.51.100.7", "198.51.100.7"),
        ("2001:db8:1:1::1", "2001:db8:1:1::/64"),
        ("2001:db8:1:1:ffff:ffff:ffff:ffff", "2001:db8:1:1::/64"),
        ("::ffff:198.51.100.7", "198.51.100.7"),
        ("unknown", "unknown"),
    ],
)
def test_an_ipv6_network_is_one_place(address: str, place: str) -> None:
    assert client_key(address) == place
