"""Rate limits on the doors an attacker knocks on (sign-in, sign-up, anonymous reports) and on
costly work (exports) or work for staff (complaints, corrections).

Counters live in the storage configured (memory for one process; Redis for several processes),
keyed by a hash so that no email address reaches the store.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import math
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import cast

from limits import RateLimitItem, parse
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.storage import storage_from_string

RETRY_AFTER = "Retry-After"
# The fields of the IETF draft "RateLimit header fields for HTTP"
# (draft-ietf-httpapi-ratelimit-headers-10): each refusing door's policy, and its wait.
RATE_LIMIT = "RateLimit"
RATE_LIMIT_POLICY = "RateLimit-Policy"
# What a refusal tells the client, for CORS to let a page read it.
REFUSAL_HEADERS = (RETRY_AFTER, RATE_LIMIT, RATE_LIMIT_POLICY)


class Door(Enum):
    # Each value names its own counter: two doors with the same limit must not share one.
    # Failed sign-ins at one account from one place (see `client_key`); a success there forgets
    # them. A place the account signed up or signed in from lately is its owner's: it gets twice
    # the tries of a new place, where a guesser is likelier than the owner. Failures from one
    # place never slow another, so nobody can lock the owner out from elsewhere.
    LOGIN_PER_ACCOUNT_AND_CLIENT = ("login-per-account-and-client", "10/15 minutes")
    LOGIN_PER_ACCOUNT_AND_NEW_CLIENT = ("login-per-account-and-new-client", "5/15 minutes")
    # Not a limit but a memory: this account signed up or signed in from this place in the last
    # 30 to 60 days (one hit fills the window; the sliding window forgets it during the next).
    SIGNED_IN_FROM = ("signed-in-from", "1/30 days")
    # Re-entering the password to change something sensitive: a stolen session must not be a
    # way to guess it.
    PASSWORD_CONFIRMATION = ("password-confirmation", "10/15 minutes")
    # "Someone tried to move their account to your address": at most one an hour to its owner.
    EMAIL_CHANGE_ATTEMPT_NOTICE = ("email-change-attempt-notice", "1/hour")
    # Sign-in attempts from one place at any accounts, successful or not: a place trying many
    # accounts is working through a list of stolen passwords, and signing in to an account of
    # one's own must not reopen the door for more.
    LOGIN_PER_CLIENT = ("login-per-client", "50/15 minutes")
    SIGNUP_PER_CLIENT = ("signup-per-client", "20/hour")
    # Each signup mails the address, registered or not: a few an hour from one place is enough
    # for a person who mistyped. Counted before the address's own limit, so one place cannot use
    # that up and keep the owner (elsewhere) from signing up.
    SIGNUP_PER_ADDRESS_AND_CLIENT = ("signup-per-address-and-client", "5/hour")
    # From every place together: stops anyone from filling an inbox; keeping the owner out
    # takes signups from more than four places every hour.
    SIGNUP_PER_ADDRESS = ("signup-per-address", "20/hour")
    # "Someone tried to sign up with your address": at most one an hour to an account's owner.
    SIGNUP_ATTEMPT_NOTICE = ("signup-attempt-notice", "1/hour")
    # Guesses at a signup's short code: per place, then per address (or link) from one place,
    # counted whether or not a signup waits there, so the answer never says whether one does.
    SIGNUP_CONFIRMATION_PER_CLIENT = ("signup-confirmation-per-client", "30/15 minutes")
    SIGNUP_CONFIRMATION_PER_ADDRESS_AND_CLIENT = (
        "signup-confirmation-per-address-and-client",
        "10/hour",
    )
    # Codes compared for one address from every place together (each waiting signup's code is
    # one): bounds a guess spread over many places at 50 codes an hour, 1,200 in a signup's day
    # against 10^8 codes, however many signups wait.
    SIGNUP_CONFIRMATION_PER_ADDRESS = ("signup-confirmation-per-address", "50/hour")
    # Each reset request may mail the address: limited per place, per address from one place
    # (counted first, so one place cannot keep the owner from asking), and per address from
    # every place, which bounds the mail one inbox gets.
    PASSWORD_RESET_PER_CLIENT = ("password-reset-per-client", "10/hour")
    PASSWORD_RESET_PER_ADDRESS_AND_CLIENT = ("password-reset-per-address-and-client", "3/hour")
    PASSWORD_RESET_PER_ADDRESS = ("password-reset-per-address", "10/hour")
    REPORT_PER_CLIENT = ("report-per-client", "5/hour")
    # New visitor records (a signed-out device's first cookie choice): room for an office or a
    # school behind one address, not for a script filling the table.
    VISITOR_PER_CLIENT = ("visitor-per-client", "60/hour")
    # Each export reads the whole account; a few an hour leave room to retry a failed download.
    EXPORT_PER_ACCOUNT = ("export-per-account", "5/hour")
    # A complaint or correction is read by a person on staff: ten an hour is more than anyone
    # writes by hand, and stops a script from burying the queue.
    COMPLAINT_PER_ACCOUNT = ("complaint-per-account", "10/hour")
    CORRECTION_PER_ACCOUNT = ("correction-per-account", "10/hour")
    # Each request mails someone who has no account here: a few a day let a teen retry or ask
    # both parents, and keep the API from being a way to flood a stranger's inbox.
    PARENTAL_CONSENT_PER_ACCOUNT = ("parental-consent-per-account", "5/day")
    PARENTAL_CONSENT_PER_PARENT = ("parental-consent-per-parent", "3/day")

    @property
    def limit(self) -> RateLimitItem:
        return parse(self.value[1])


@dataclass(frozen=True)
class Refusal:
    """An attempt a door turned away, and the seconds until it would let the same identity
    through again: what the answer tells the client."""

    door: Door
    retry_after: int


def refusal_headers(refusals: Sequence[Refusal]) -> dict[str, str]:
    """The response headers for the refusals of one request: `Retry-After` (RFC 9110) with the
    longest wait, and the draft's `RateLimit-Policy` (each door's quota `q` per window `w` in
    seconds) and `RateLimit` (nothing `r` left, for `t` seconds)."""
    waits: dict[Door, int] = {}
    for refusal in refusals:
        waits[refusal.door] = max(waits.get(refusal.door, 0), refusal.retry_after)
    if not waits:
        return {}
    return {
        RETRY_AFTER: str(max(waits.values())),
        RATE_LIMIT_POLICY: ", ".join(
            f'"{door.value[0]}";q={door.limit.amount};w={door.limit.get_expiry()}' for door in waits
        ),
        RATE_LIMIT: ", ".join(f'"{door.value[0]}";r=0;t={wait}' for door, wait in waits.items()),
    }


def _key(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:32]


def place_and(address: str, identity: str) -> str:
    """One identity (such as an email address) as tried from one place (see `client_key`), for
    the doors counted per place before the identity's own limit."""
    return f"{client_key(address)} {identity}"


def client_key(address: str) -> str:
    """The place a request comes from, as per-client limits count it: an IPv4 address, or the
    /64 network of an IPv6 address, as one home or server is usually given a whole /64."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class RateLimiter:
    def __init__(self, storage_url: str) -> None:
        if not storage_url.startswith("async+"):
            storage_url = f"async+{storage_url}"
        self.shared = not storage_url.startswith("async+memory://")
        self._storage = storage_from_string(storage_url)
        self._limiter = SlidingWindowCounterRateLimiter(self._storage)

    async def check(self, within: float) -> bool:
        """Whether the shared store answers within so many seconds (memory always does)."""
        if not self.shared:
            return True
        try:
            answered = cast(Awaitable[bool], self._storage.check())
            return bool(await asyncio.wait_for(answered, within))
        except Exception:
            return False

    async def allow(self, door: Door, identity: str, cost: int = 1) -> bool:
        """Count an attempt (as `cost` of them); False, counting nothing, once the door's limit
        for that identity would be exceeded."""
        return await self._limiter.hit(door.limit, door.value[0], _key(identity), cost=cost)

    async def admit(self, door: Door, identity: str, cost: int = 1) -> Refusal | None:
        """Count an attempt (as `cost` of them): None when it may go ahead, else the refusal,
        which says how long until the door would let that identity through again (at least a
        second)."""
        if await self.allow(door, identity, cost):
            return None
        stats = await self._limiter.get_window_stats(door.limit, door.value[0], _key(identity))
        return Refusal(door, max(1, math.ceil(stats.reset_time - time.time())))

    async def forget(self, door: Door, identity: str) -> None:
        """Drop what the door counted for the identity: a sign-in that succeeded forgets the
        failures before it, so only failures use up the allowance."""
        await self._limiter.clear(door.limit, door.value[0], _key(identity))

    async def remember(self, door: Door, identity: str) -> None:
        """Mark the identity, for a door whose limit is one: a memory that expires."""
        await self._limiter.hit(door.limit, door.value[0], _key(identity))

    async def remembers(self, door: Door, identity: str) -> bool:
        """Whether `remember` marked the identity within the door's window (counts nothing)."""
        return not await self._limiter.test(door.limit, door.value[0], _key(identity))
