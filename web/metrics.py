"""Prometheus metrics: what each request, the connection pool, the rate limits and the consent
ledger count as they go, and the outbox backlog, read from the database when scraped.

The hot path pays for one histogram observation per request (web/observe.py); nothing queries
the database per request. With `serve --workers N` above 1, `serve` points
PROMETHEUS_MULTIPROC_DIR at a fresh directory before the workers start, and a scrape of any one
of them adds up every worker's counts (prometheus_client's multiprocess mode).
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Iterable, Iterator
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
)
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import event
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response

from auth.rate_limits import Door, RateLimiter
from models import ConsentEvent, Database, utcnow
from models.database import POOL_OVERFLOW, POOL_SIZE
from resolvers import notifications

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

    async def allow(self, door: Door, identity: str) -> bool:
        allowed = await super().allow(door, identity)
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


_PENDING_EVENTS = "privacy_api_consent_events"


def _events_flushed(session: Session, _context: Any) -> None:
    added = sum(isinstance(instance, ConsentEvent) for instance in session.new)
    if added:
        session.info[_PENDING_EVENTS] = session.info.get(_PENDING_EVENTS, 0) + added


def _events_committed(session: Session) -> None:
    if added := session.info.pop(_PENDING_EVENTS, 0):
        CONSENT_EVENTS.inc(added)


def _events_rolled_back(session: Session, _transaction: Any = None) -> None:
    session.info.pop(_PENDING_EVENTS, None)


def count_consent_events() -> None:
    """Count ledger events when the transaction that wrote them commits (once per process)."""
    if not event.contains(Session, "after_flush", _events_flushed):
        event.listen(Session, "after_flush", _events_flushed)
        event.listen(Session, "after_commit", _events_committed)
        event.listen(Session, "after_rollback", _events_rolled_back)


class _Snapshot(Collector):
    """Families measured just before a scrape, handed to the registry that renders it."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self.families = list(families)

    def collect(self) -> Iterator[Metric]:
        yield from self.families


async def _outbox(database: Database) -> list[Metric]:
    async with database.session() as session:
        waiting = await notifications.backlog(session)
    age = (utcnow() - waiting.oldest).total_seconds() if waiting.oldest else 0.0
    return [
        GaugeMetricFamily(
            "privacy_api_outbox_unsent_messages",
            "Messages in the outbox that no mailer has sent yet.",
            value=waiting.unsent,
        ),
        GaugeMetricFamily(
            "privacy_api_outbox_oldest_unsent_age_seconds",
            "Age of the oldest unsent message (0 when none waits).",
            value=max(age, 0.0),
        ),
    ]


def endpoint(database: Database) -> Callable[[Request], Awaitable[Response]]:
    """GET /metrics: every worker's counts and the outbox backlog, in Prometheus text format."""

    async def metrics(request: Request) -> Response:
        registry = CollectorRegistry(auto_describe=False)
        if os.environ.get(MULTIPROCESS_DIR):
            multiprocess.MultiProcessCollector(registry)
        else:
            registry.register(_Snapshot(REGISTRY.collect()))
        registry.register(_Snapshot(await _outbox(database)))
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return metrics
