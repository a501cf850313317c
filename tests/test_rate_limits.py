"""Rate limits: separate counters per door, shared between processes through Redis."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest

from auth.rate_limits import Door, RateLimiter, client_key
from tests.helpers import post

REQUEST_RESET = """
mutation Request($email: String!) {
  requestPasswordReset(input: {email: $email}) { ok errors { field message code retryAfter } }
}
"""


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


async def test_a_refusal_tells_the_wait_and_a_forgotten_count_starts_again(
    redis_url: str,
) -> None:
    first = RateLimiter(redis_url)
    second = RateLimiter(redis_url)
    identity = f"someone@example.com from {uuid.uuid4()}"
    door = Door.LOGIN_PER_ACCOUNT_AND_CLIENT
    for _ in range(door.limit.amount):
        assert await first.admit(door, identity) is None

    refused = await second.admit(door, identity)
    await first.forget(door, identity)

    assert refused is not None and refused.door is door
    assert 0 < refused.retry_after <= door.limit.get_expiry()
    assert await second.admit(door, identity) is None


class TestRetryAfter:
    """Every rate-limited answer says how long to wait: a Retry-After header (seconds), the
    draft RateLimit fields naming the limit, and the same number in the error, whose message
    says it in words."""

    async def test_a_mutation_refused_by_a_limit(self, client) -> None:
        allowed = Door.PASSWORD_RESET_PER_ADDRESS_AND_CLIENT.limit.amount
        for _ in range(allowed):
            answered = await post(client, REQUEST_RESET, {"email": "ada@example.com"})
            assert "retry-after" not in answered.headers

        refused = await post(client, REQUEST_RESET, {"email": "ada@example.com"})

        [error] = refused.json()["data"]["requestPasswordReset"]["errors"]
        wait = int(refused.headers["Retry-After"])
        assert 0 < wait <= Door.PASSWORD_RESET_PER_ADDRESS_AND_CLIENT.limit.get_expiry()
        assert (error["code"], error["field"], error["retryAfter"]) == (
            "RATE_LIMITED",
            "email",
            wait,
        )
        assert error["message"].startswith("Too many requests; try again in ")
        assert (
            refused.headers["RateLimit-Policy"]
            == '"password-reset-per-address-and-client";q=3;w=3600'
        )
        assert (
            refused.headers["RateLimit"] == f'"password-reset-per-address-and-client";r=0;t={wait}'
        )

    async def test_a_page_refused_by_a_limit(self, client) -> None:
        allowed = Door.SIGNUP_CONFIRMATION_PER_CLIENT.limit.amount
        for _ in range(allowed):
            answered = await client.post("/confirm-signup", data={"token": "0123.456"})
            assert answered.status_code == 404

        refused = await client.post("/confirm-signup", data={"token": "0123.456"})

        assert refused.status_code == 429
        wait = int(refused.headers["Retry-After"])
        assert 0 < wait <= Door.SIGNUP_CONFIRMATION_PER_CLIENT.limit.get_expiry()
        assert "Wait " in refused.text
        assert refused.headers["RateLimit"] == f'"signup-confirmation-per-client";r=0;t={wait}'


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


def test_the_readme_lists_every_limit_as_the_code_counts_it() -> None:
    """The README's table under "What each limit counts" names each limit and its allowance as
    the code does, so an operator reading it knows what a `RateLimit` header refers to."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme[readme.index("### What each limit counts") :]
    section = section[: section.index("\n#")]
    rows = re.findall(r"^\| `([a-z-]+)` \| ([^|]+) \|", section, re.MULTILINE)
    listed = {name: allowance.strip() for name, allowance in rows}

    assert set(listed) == {door.value[0] for door in Door}
    for door in Door:
        amount, window = door.limit.amount, door.limit.get_expiry()
        words = listed[door.value[0]]
        if door is Door.SIGNED_IN_FROM:
            assert words == f"one mark per {window // 86400} days"
        elif window == 3600:
            assert words == f"{amount} an hour", door
        elif window == 86400:
            assert words == f"{amount} a day", door
        else:
            assert words == f"{amount} per {window // 60} minutes", door
