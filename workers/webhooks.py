"""The webhook delivery loop: fan out and claim in one transaction, send outside any, record
the outcomes in another; repeat.

Sending is at least once: a worker that dies after sending and before recording leaves a claim
that goes stale, and another worker sends the same message (same webhook-id) again.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx

from auth.sealing import Sealer
from models import Database, utcnow
from privacy_api.config import Config, webhook_sealer
from resolvers import outbox, webhooks
from resolvers.webhooks import Attempt, Destination, Job, UnsafeDestination

logger = logging.getLogger("privacy_api.webhooks")

# Attempts in flight at once, all endpoints together (each has at most
# webhooks.PER_ENDPOINT of them): for `run`, and for one `deliver_step`.
IN_FLIGHT = 20
BATCH = 20
# Every wait of one attempt is bounded, and so is the attempt as a whole.
TIMEOUT = httpx.Timeout(10.0, connect=5.0)
ATTEMPT_LIMIT = 30.0
IDLE_SECONDS = 2.0
PRUNE_EVERY = 60 * 60  # seconds
USER_AGENT = "privacy-api-webhooks/1"


@dataclass(frozen=True)
class StepReport(outbox.Report):
    """What one step (or a run) did, in numbers only."""

    fanned_out: int = 0  # new events turned into deliveries
    attempted: int = 0
    delivered: int = 0


@dataclass(frozen=True)
class Delivery:
    """How the worker reaches receivers: set from the configuration."""

    https_only: bool
    allow_private: bool
    disable_after: timedelta
    # Opens the endpoints' sealed signing secrets.
    sealer: Sealer
    # The certificate authorities trusted; None: the system's.
    trusted: ssl.SSLContext | None = None

    @classmethod
    def from_config(cls, config: Config) -> Delivery:
        """Raises ConfigError in production without PRIVACY_API_WEBHOOK_SECRET_KEY."""
        return cls(
            https_only=config.production,
            allow_private=config.webhooks_allow_private,
            disable_after=timedelta(hours=config.webhook_disable_after_hours),
            sealer=webhook_sealer(config),
        )


def _new_client(delivery: Delivery) -> httpx.AsyncClient:
    # No redirects (a receiver could point us anywhere), no proxies from the environment (the
    # checked address must be the one connected to), and no connection kept for reuse: one made
    # for a host would otherwise serve another host behind the same address, its TLS verified
    # for the wrong name.
    return httpx.AsyncClient(
        timeout=TIMEOUT,
        follow_redirects=False,
        trust_env=False,
        limits=httpx.Limits(max_keepalive_connections=0),
        verify=delivery.trusted or True,
        headers={"user-agent": USER_AGENT, "content-type": "application/json"},
    )


async def attempt(client: httpx.AsyncClient, job: Job, delivery: Delivery) -> Attempt:
    """One POST, to an address checked just now (DNS can change since registration)."""
    try:
        destination = await webhooks.resolve(
            job.url, https_only=delivery.https_only, allow_private=delivery.allow_private
        )
    except UnsafeDestination as refused:
        return Attempt(False, error=f"Refused: {refused}")
    timestamp = int(time.time())
    headers = webhooks.signed_headers(job.secrets, job.message_id, timestamp, job.payload)
    headers["host"] = destination.host_header
    try:
        async with asyncio.timeout(ATTEMPT_LIMIT):
            response = await _post(client, destination, headers, job.payload)
    except Exception as error:
        # Whatever went wrong with this one receiver (network, TLS, a URL httpx will not take)
        # is its failure to log and retry; it must not stop the step for the others.
        return Attempt(False, error=f"{type(error).__name__}: {error}"[:300])
    if 200 <= response.status_code < 300:
        return Attempt(True, status_code=response.status_code)
    return Attempt(False, status_code=response.status_code, error=f"HTTP {response.status_code}")


async def _post(
    client: httpx.AsyncClient, destination: Destination, headers: dict[str, str], body: str
) -> httpx.Response:
    """POST to the host's checked addresses in turn, until one accepts the connection; TLS is
    verified for the host named in the URL, not the address."""
    *others, last = destination.addresses
    for address in others:
        try:
            return await _post_to(client, destination, address, headers, body)
        except httpx.ConnectError:
            continue
    return await _post_to(client, destination, last, headers, body)


async def _post_to(
    client: httpx.AsyncClient,
    destination: Destination,
    address: str,
    headers: dict[str, str],
    body: str,
) -> httpx.Response:
    request = client.build_request(
        "POST",
        destination.url_for(address),
        content=body.encode(),
        headers=headers,
        extensions={"sni_hostname": destination.host},
    )
    # Only the status matters: the body is never read, however large a receiver makes it.
    response = await client.send(request, stream=True)
    await response.aclose()
    return response


class Lanes:
    """A worker's attempts in flight, at most PER_ENDPOINT per endpoint, each recorded as soon as
    it ends: a receiver that hangs holds its own lane for up to ATTEMPT_LIMIT, while the others'
    deliveries keep being claimed, sent and recorded beside it."""

    def __init__(
        self, database: Database, delivery: Delivery, client: httpx.AsyncClient, *, room: int
    ) -> None:
        self.database = database
        self.delivery = delivery
        self.client = client
        self.room = room  # attempts in flight at most, all endpoints together
        self._running: dict[asyncio.Task[Attempt], Job] = {}

    @property
    def running(self) -> int:
        return len(self._running)

    async def fill(self, now: datetime) -> tuple[int, int]:
        """Fan out new events and claim what is due for the lanes that have room (one
        transaction), and start attempting it; how many events were fanned out and how many
        deliveries claimed."""
        in_flight = Counter(job.endpoint_id for job in self._running.values())
        room = self.room - self.running
        async with self.database.transaction() as session:
            # What the last steps delivered (or gave up on) of an erased account's deletion
            # events.
            await webhooks.release_held(session)
            fanned_out = await webhooks.fan_out(session, now)
            jobs = (
                await webhooks.claim(
                    session, now, self.delivery.sealer, limit=room, in_flight=in_flight
                )
                if room > 0
                else []
            )
        for job in jobs:
            task = asyncio.create_task(attempt(self.client, job, self.delivery))
            self._running[task] = job
        return fanned_out, len(jobs)

    async def settle(self, *, wait: float | None, now: datetime | None = None) -> list[Attempt]:
        """Wait until at least one attempt ends (or `wait` seconds pass) and record every one that
        has ended, in one transaction; their outcomes."""
        if not self._running:
            return []
        done, _ = await asyncio.wait(
            self._running, timeout=wait, return_when=asyncio.FIRST_COMPLETED
        )
        outcomes = [(self._running.pop(task), task.result()) for task in done]
        if not outcomes:
            return []
        async with self.database.transaction() as session:
            await webhooks.record(
                session, outcomes, now or utcnow(), disable_after=self.delivery.disable_after
            )
        for job, outcome in outcomes:
            if not outcome.delivered:
                # Ids and the error only: no URL (it may carry a token), no payload.
                logger.warning(
                    "Webhook delivery %s to endpoint %s failed: %s",
                    job.delivery_id,
                    job.endpoint_id,
                    outcome.error,
                )
        return [outcome for _, outcome in outcomes]

    async def drain(self, now: datetime | None = None) -> list[Attempt]:
        """Record every attempt in flight as it ends; their outcomes."""
        outcomes: list[Attempt] = []
        while self._running:
            outcomes += await self.settle(wait=None, now=now)
        return outcomes


async def deliver_step(
    database: Database,
    delivery: Delivery,
    *,
    now: datetime | None = None,
    client: httpx.AsyncClient | None = None,
    limit: int = BATCH,
) -> StepReport:
    """One step: fan out new events and claim due deliveries (a transaction), attempt them
    concurrently, and record each outcome as it comes (a transaction for those that end
    together)."""
    now = now or utcnow()
    own_client = client is None
    http = client or _new_client(delivery)
    try:
        lanes = Lanes(database, delivery, http, room=limit)
        fanned_out, claimed = await lanes.fill(now)
        outcomes = await lanes.drain(now)
    finally:
        if own_client:
            await http.aclose()
    return StepReport(fanned_out, claimed, _delivered(outcomes))


async def prune(database: Database) -> int:
    """Forget events delivered everywhere long ago (see `webhooks.prune_delivered`)."""
    async with database.transaction() as session:
        return await webhooks.prune_delivered(session, utcnow())


async def run(
    database: Database, delivery: Delivery, *, once: bool, stop: asyncio.Event | None = None
) -> StepReport:
    """Deliver until `stop` is set (or, with `once`, until nothing is due); returns the totals.

    The lanes are filled again whenever an attempt ends, or every IDLE_SECONDS while attempts
    hang, so a slow receiver delays only its own deliveries. A stop lets the attempts under way
    finish and records them. A step that fails (the database is away) is logged and tried
    again after a pause, unless `once`; whatever it had claimed is claimed again once the claim
    is stale.
    """
    report = StepReport()
    pruned_at: float | None = None
    async with _new_client(delivery) as client:
        lanes = Lanes(database, delivery, client, room=IN_FLIGHT)
        try:
            while stop is None or not stop.is_set():
                try:
                    fanned_out, claimed = await lanes.fill(utcnow())
                    report += StepReport(fanned_out, claimed)
                    if lanes.running:
                        outcomes = await lanes.settle(wait=IDLE_SECONDS)
                        report += StepReport(delivered=_delivered(outcomes))
                        continue
                    if fanned_out:
                        continue
                    if pruned_at is None or time.monotonic() - pruned_at > PRUNE_EVERY:
                        await prune(database)
                        pruned_at = time.monotonic()
                except Exception:
                    if once:
                        raise
                    logger.exception("A webhook delivery step failed; trying again shortly.")
                    await outbox.idle(stop, IDLE_SECONDS)
                    continue
                if once:
                    break
                await outbox.idle(stop, IDLE_SECONDS)
        finally:
            report += StepReport(delivered=_delivered(await lanes.drain()))
    return report


def _delivered(outcomes: list[Attempt]) -> int:
    return sum(outcome.delivered for outcome in outcomes)
