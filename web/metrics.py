"""Prometheus metrics: what each request, the connection pool, the rate limits and the consent
ledger count as they go, and the mail and webhook workers' backlogs, read from the database
when scraped.

The hot path pays for one histogram observation per request (web/observe.py); nothing queries
the database per request. With `serve --workers N` above 1, `serve` points
PROMETHEUS_MULTIPROC_DIR at a fresh directory before the workers start, and a scrape of any one
of them adds up every worker's counts (prometheus_client's multiprocess mode).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Iterable, Iterator
from datetime import datetime
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    start_http_server,
)
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import event
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response

from auth.rate_limits import Door, RateLimiter
from models import Database, utcnow
from models.database import POOL_OVERFLOW, POOL_SIZE
from privacy_api.config import Config
from resolvers import notifications, webhooks
from resolvers.consent import EVENTS_WRITTEN

logger = logging.getLogger("privacy_api.metrics")
MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"

REQUEST_SECONDS = Histogram(
    "privacy_api_request_duration_seconds",
    "Time to answer a request, by GraphQL operation (or route) and outcome.",
    ["operation", "outcome"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
RATE_LIMIT_REFUSALS = Counter(
    "privacy_api_rate_limit_refusals",
    "Attempts refused because a rate limit was used up, by door.",
    ["door"],
)
CONSENT_EVENTS = Counter(
    "privacy_api_consent_events_written",
    "Consent ledger events committed.",
)
GRAPHQL_EXECUTIONS = Counter(
    "privacy_api_graphql_executions",
    "GraphQL operations run, by executor: `compiled` (a registered document's plan) or "
    "`general` (strawberry).",
    ["executor"],
)
DOCUMENTS_UNCOMPILED = Gauge(
    "privacy_api_trusted_documents_uncompiled",
    "Trusted documents the compiler refused, which run on the general executor (the log says "
    "why, at start).",
    multiprocess_mode="max",
)
DB_CONNECTIONS_IN_USE = Gauge(
    "privacy_api_db_connections_in_use",
    "Database connections checked out of the pool, all API processes together.",
    multiprocess_mode="livesum",
)
DB_POOL_CAPACITY = Gauge(
    "privacy_api_db_pool_capacity",
    "Connections the pools may open (pool size plus overflow), all API processes together.",
    multiprocess_mode="livesum",
)


class CountingRateLimiter(RateLimiter):
    """The rate limiter, counting each refusal by the door it came through."""

    async def allow(self, door: Door, identity: str, cost: int = 1) -> bool:
        allowed = await super().allow(door, identity, cost)
        if not allowed:
            RATE_LIMIT_REFUSALS.labels(door.value[0]).inc()
        return allowed


def watch_pool(database: Database) -> None:
    """Count connections as the pool hands them out and takes them back."""
    engine = database.engine.sync_engine
    if hasattr(engine.pool, "size"):
        DB_POOL_CAPACITY.set(POOL_SIZE + POOL_OVERFLOW)
    event.listen(engine, "checkout", lambda *_: DB_CONNECTIONS_IN_USE.inc())
    event.listen(engine, "checkin", lambda *_: DB_CONNECTIONS_IN_USE.dec())


def _events_committed(session: Session) -> None:
    if added := session.info.pop(EVENTS_WRITTEN, 0):
        CONSENT_EVENTS.inc(added)


def _events_rolled_back(session: Session, _transaction: Any = None) -> None:
    session.info.pop(EVENTS_WRITTEN, None)


def count_consent_events() -> None:
    """Count ledger events when the transaction that wrote them commits (once per process)."""
    if not event.contains(Session, "after_commit", _events_committed):
        event.listen(Session, "after_commit", _events_committed)
        event.listen(Session, "after_rollback", _events_rolled_back)


class _Snapshot(Collector):
    """Families measured just before a scrape, handed to the registry that renders it."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self.families = list(families)

    def collect(self) -> Iterator[Metric]:
        yield from self.families


def _age(oldest: datetime | None) -> float:
    return max((utcnow() - oldest).total_seconds(), 0.0) if oldest else 0.0


async def _backlogs(database: Database) -> list[Metric]:
    """What the mail and webhook workers have still to do, read from the database: whichever
    process did the work, and however many there are, the API's scrape shows it."""
    async with database.session() as session:
        mail = await notifications.backlog(session)
        hooks = await webhooks.backlog(session)
    return [
        GaugeMetricFamily(
            "privacy_api_outbox_unsent_messages",
            "Messages in the outbox that no mailer has sent yet.",
            value=mail.unsent,
        ),
        GaugeMetricFamily(
            "privacy_api_outbox_oldest_unsent_age_seconds",
            "Age of the oldest unsent message (0 when none waits).",
            value=_age(mail.oldest),
        ),
        GaugeMetricFamily(
            "privacy_api_outbox_retrying_messages",
            "Unsent messages the mail server refused at least once, waiting to be tried again.",
            value=mail.retrying,
        ),
        GaugeMetricFamily(
            "privacy_api_outbox_failed_messages",
            "Messages given up on (kept 30 days, then deleted by purge).",
            value=mail.failed,
        ),
        GaugeMetricFamily(
            "privacy_api_webhook_undelivered",
            "Webhook events not yet fanned out plus deliveries pending to enabled endpoints.",
            value=hooks.undelivered,
        ),
        GaugeMetricFamily(
            "privacy_api_webhook_oldest_undelivered_age_seconds",
            "Age of the oldest of those (0 when none waits).",
            value=_age(hooks.oldest),
        ),
        GaugeMetricFamily(
            "privacy_api_webhook_failing_deliveries",
            "Pending deliveries to enabled endpoints that failed at least once.",
            value=hooks.failing,
        ),
        GaugeMetricFamily(
            "privacy_api_webhook_disabled_endpoints",
            "Endpoints disabled after failing too long; an officer enables them again.",
            value=hooks.disabled_endpoints,
        ),
    ]


class _Live(Collector):
    """This process's own metrics, as they are at each scrape."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()


class _Backlogs(Collector):
    """The workers' backlogs for the metrics listener, read at each scrape over a connection of
    its own (the listener runs in a thread, beside the API's event loop)."""

    def __init__(self, config: Config) -> None:
        self.config = config

    def collect(self) -> Iterator[Metric]:
        try:
            yield from asyncio.run(self._read())
        except Exception:
            # The request metrics still answer: an alert on a stale backlog sees the gap.
            logger.warning("metrics: could not read the backlogs from the database", exc_info=True)

    async def _read(self) -> list[Metric]:
        database = Database(self.config.database_url, self.config.database_timeouts)
        try:
            return await _backlogs(database)
        finally:
            await database.dispose()


def listen(config: Config, host: str, port: int) -> None:
    """Serve GET /metrics on host:port from a thread of this process, the one `serve` starts
    the API workers from: every worker's counts (added up when there are several) and the
    backlogs, on a port that only the internal network reaches, never the API's."""
    registry = CollectorRegistry(auto_describe=False)
    if os.environ.get(MULTIPROCESS_DIR):
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(_Live())
    registry.register(_Backlogs(config))
    start_http_server(port, addr=host, registry=registry)


def endpoint(database: Database) -> Callable[[Request], Awaitable[Response]]:
    """GET /metrics: every worker's counts and the outbox backlog, in Prometheus text format."""

    async def metrics(request: Request) -> Response:
        registry = CollectorRegistry(auto_describe=False)
        if os.environ.get(MULTIPROCESS_DIR):
            multiprocess.MultiProcessCollector(registry)
        else:
            registry.register(_Snapshot(REGISTRY.collect()))
        registry.register(_Snapshot(await _backlogs(database)))
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return metrics
