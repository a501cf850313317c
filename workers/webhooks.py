"""The webhook delivery loop: fan out and claim in one transaction, send outside any, record
the outcomes in another; repeat.

Sending is at least once: a worker that dies after sending and before recording leaves a claim
that goes stale, and another worker sends the same message (same webhook-id) again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx

from auth.sealing import Sealer
from config import Config, webhook_sealer
from models import Database, utcnow
from resolvers import webhooks
from resolvers.webhooks import Attempt, Destination, Job, UnsafeDestination

logger = logging.getLogger("privacy_api.webhooks")

# A batch is sent in at most two rounds of attempts, well within a claim's timeout.
BATCH = 20
CONCURRENCY = 10
# Every wait of one attempt is bounded, and so is the attempt as a whole.
TIMEOUT = httpx.Timeout(10.0, connect=5.0)
ATTEMPT_LIMIT = 30.0
IDLE_SECONDS = 2.0
PRUNE_EVERY = 60 * 60  # seconds
USER_AGENT = "privacy-api-webhooks/1"


@dataclass(frozen=True)
class StepReport:
    """What one step did, in numbers only."""

    fanned_out: int  # new events turned into deliveries
    attempted: int
    delivered: int


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


async def deliver_step(
    database: Database,
    delivery: Delivery,
    *,
    now: datetime | None = None,
    client: httpx.AsyncClient | None = None,
    limit: int = BATCH,
) -> StepReport:
    """One step: fan out new events and claim due deliveries (a transaction), attempt them
    concurrently, then record every outcome (another transaction)."""
    now = now or utcnow()
    async with database.transaction() as session:
        # What the last steps delivered (or gave up on) of an erased account's deletion events.
        await webhooks.release_held(session)
        fanned_out = await webhooks.fan_out(session, now)
        jobs = await webhooks.claim(session, now, delivery.sealer, limit=limit)
    if not jobs:
        return StepReport(fanned_out, 0, 0)
    own_client = client is None
    http = client or _new_client(delivery)
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(job: Job) -> Attempt:
        async with gate:
            return await attempt(http, job, delivery)

    try:
        outcomes = await asyncio.gather(*(one(job) for job in jobs))
    finally:
        if own_client:
            await http.aclose()
    async with database.transaction() as session:
        await webhooks.record(
            session,
            list(zip(jobs, outcomes, strict=True)),
            now,
            disable_after=delivery.disable_after,
        )
    for job, outcome in zip(jobs, outcomes, strict=True):
        if not outcome.delivered:
            # Ids and the error only: no URL (it may carry a token), no payload.
            logger.warning(
                "Webhook delivery %s to endpoint %s failed: %s",
                job.delivery_id,
                job.endpoint_id,
                outcome.error,
            )
    delivered = sum(outcome.delivered for outcome in outcomes)
    return StepReport(fanned_out, len(jobs), delivered)


async def prune(database: Database) -> int:
    """Forget events delivered everywhere long ago (see `webhooks.prune_delivered`)."""
    async with database.transaction() as session:
        return await webhooks.prune_delivered(session, utcnow())


async def _pause(stop: asyncio.Event | None) -> None:
    """Wait a moment between steps, or less when asked to stop."""
    if stop is None:
        await asyncio.sleep(IDLE_SECONDS)
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), IDLE_SECONDS)


async def run(
    database: Database, delivery: Delivery, *, once: bool, stop: asyncio.Event | None = None
) -> StepReport:
    """Deliver until `stop` is set (or, with `once`, until nothing is due); returns the totals.

    A stop lets the step under way finish and record what it sent. A step that fails (the
    database is away) is logged and tried again after a pause, unless `once`; whatever it had
    claimed is claimed again once the claim is stale.
    """
    totals = StepReport(0, 0, 0)
    pruned_at: float | None = None
    async with _new_client(delivery) as client:
        while stop is None or not stop.is_set():
            try:
                report = await deliver_step(database, delivery, client=client)
                idle = report.attempted == 0 and report.fanned_out == 0
                if idle and (pruned_at is None or time.monotonic() - pruned_at > PRUNE_EVERY):
                    await prune(database)
                    pruned_at = time.monotonic()
            except Exception:
                if once:
                    raise
                logger.exception("A webhook delivery step failed; trying again shortly.")
                await _pause(stop)
                continue
            totals = StepReport(
                totals.fanned_out + report.fanned_out,
                totals.attempted + report.attempted,
                totals.delivered + report.delivered,
            )
            if idle:
                if once:
                    return totals
                await _pause(stop)
    return totals
