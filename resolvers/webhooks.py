"""Webhooks: what privacy officers register, the events written to the outbox in the transaction
of each change, and the steps the delivery worker takes (fan out, claim, record).

Each change writes ONE event row, however many endpoints there are; the worker fans an event out
to one delivery per subscribed endpoint. The transaction of a change (a preference toggle is a
hot path) then costs one INSERT whatever the number of endpoints, and the per-endpoint log
(attempts, status, last error) lives in the deliveries. Payloads carry ids, never an email or
phone number.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import json
import secrets
import socket
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from urllib.parse import urlsplit

from sqlalchemy import (
    Insert,
    Table,
    and_,
    case,
    delete,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from auth.actor import Actor
from auth.sealing import Sealer
from models import (
    Account,
    ConsentEvent,
    PolicyVersion,
    Role,
    WebhookDelivery,
    WebhookDeliveryStatus,
    WebhookEndpoint,
    WebhookEvent,
    WebhookEventType,
    utcnow,
)
from resolvers import outbox
from resolvers.audit import audit
from resolvers.errors import ErrorCode, Rejected
from resolvers.outbox import Backoff
from resolvers.paging import Keyset, Page, cut, page_of, page_request, tally_of
from resolvers.prepared import Prepared

SECRET_PREFIX = "whsec_"  # noqa: S105 (the Standard Webhooks prefix, not a secret)
SECRET_BYTES = 32
URL_MAX = 2000
DESCRIPTION_MAX = 500
# A receiver has this long to switch to a rotated secret: until then both sign every message.
PREVIOUS_SECRET_KEPT = timedelta(hours=24)
# A claim older than this belongs to a worker that died: one attempt is bounded far below it.
CLAIM_TIMEOUT = timedelta(minutes=5)
# The first retry waits 30 s, each next one twice as long, up to two hours; never given up on
# (an endpoint failing too long is disabled instead).
RETRY = Backoff(first=timedelta(seconds=30), cap=timedelta(hours=2))
# At most this many attempts to one endpoint at once per worker: a slow receiver holds its own
# connections, never the ones other receivers' deliveries need.
PER_ENDPOINT = 4
# The circuit breaker: after this many failed attempts in a row an endpoint is skipped (its
# deliveries wait, their attempts not spent) for BREAKER_PAUSE, doubled with each further
# failure up to BREAKER_PAUSE_MAX; then one delivery probes it, and a success closes it.
BREAKER_AFTER = 5
BREAKER_PAUSE = timedelta(seconds=30)
BREAKER_PAUSE_MAX = timedelta(minutes=10)
DNS_TIMEOUT = 5.0
# How long events are kept once every delivery of them is done: the range a replay can reach.
EVENTS_KEPT = timedelta(days=30)
# Built once: every consent change runs it.
_INSERT_EVENTS = insert(cast(Table, WebhookEvent.__table__))
# The newest first; ids only grow, so a cursor stays valid as deliveries are made.
DELIVERY_LOG = Keyset("webhook-deliveries", (WebhookDelivery.id,), descending=True)


# -- Destinations: refuse anything but a public address, at registration and every delivery --


class UnsafeDestination(Exception):
    """A URL the API will not call; the message says why, for the officer or the log."""


@dataclass(frozen=True)
class Destination:
    scheme: str
    host: str  # as written in the URL, for the Host header and TLS
    port: int
    target: str  # path and query
    addresses: tuple[str, ...]  # what the host resolved to, all of them allowed

    def url_for(self, address: str) -> str:
        """The URL with the host replaced by one checked address, so the connection goes to
        that address and no other (a second DNS answer cannot redirect it)."""
        literal = f"[{address}]" if ":" in address else address
        return f"{self.scheme}://{literal}:{self.port}{self.target}"

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        name = f"[{self.host}]" if ":" in self.host else self.host
        return name if self.port == default else f"{name}:{self.port}"


def parse_url(url: str, *, https_only: bool) -> tuple[str, str, int, str]:
    """Scheme, host, port and target of a receiver's URL, or UnsafeDestination saying why not."""
    if not url or len(url) > URL_MAX or any(c.isspace() for c in url):
        raise UnsafeDestination(f"Give the receiver's URL in 1 to {URL_MAX} characters.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise UnsafeDestination("This is not a URL the API can call.") from None
    scheme = parts.scheme.lower()
    if scheme != "https" and not (scheme == "http" and not https_only):
        raise UnsafeDestination("Use an https:// URL.")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise UnsafeDestination("The URL has no host.")
    try:
        # An internationalised name in its ASCII form, as DNS, TLS and the Host header take it.
        host = host.encode("idna").decode("ascii")
    except UnicodeError:
        raise UnsafeDestination(f"{host} is not a host name.") from None
    if parts.username is not None or parts.password is not None:
        raise UnsafeDestination("Put no user name or password in the URL: deliveries are signed.")
    if parts.fragment:
        raise UnsafeDestination("A URL with a #fragment cannot be called.")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return scheme, host, port or (443 if scheme == "https" else 80), target


# IPv6 prefixes whose last 32 bits are an IPv4 address the packets reach: NAT64 (RFC 6052,
# and the local-use prefix of RFC 8215), IPv4-translated (RFC 2765) and IPv4-compatible (the
# deprecated ::a.b.c.d; :: and ::1 fall in it too and come out as non-public 0.0.0.x).
_CARRYING_IPV4 = tuple(
    ipaddress.IPv6Network(prefix)
    for prefix in ("64:ff9b::/96", "64:ff9b:1::/48", "::ffff:0:0:0/96", "::/96")
)

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _carried(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address leads to: mapped, NAT64, translated, compatible,
    6to4 (the router) or Teredo (its server and client); none for a plain IPv6 address."""
    if address.ipv4_mapped is not None:
        return [address.ipv4_mapped]
    if address.sixtofour is not None:
        return [address.sixtofour]
    if address.teredo is not None:
        return list(address.teredo)
    if any(address in prefix for prefix in _CARRYING_IPV4):
        return [ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)]
    return []


def is_public(address: Address) -> bool:
    """Whether an address is on the public internet: not loopback, private, link-local,
    site-local, shared, reserved or multicast. An IPv6 form that carries an IPv4 address is
    judged by the IPv4 address it leads to, since that is where a connection would go."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.is_site_local:
            return False
        carried = _carried(address)
        if carried:
            return all(is_public(inner) for inner in carried)
    return address.is_global and not address.is_multicast


async def resolve(url: str, *, https_only: bool, allow_private: bool) -> Destination:
    """Check the URL and look its host up; every address it resolves to must be public unless
    `allow_private` (development, for local receivers)."""
    scheme, host, port, target = parse_url(url, https_only=https_only)
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        loop = asyncio.get_running_loop()
        try:
            found = await asyncio.wait_for(
                loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), DNS_TIMEOUT
            )
        except (OSError, TimeoutError):
            raise UnsafeDestination(f"The host {host} could not be resolved.") from None
        addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in found))
    if not addresses:
        raise UnsafeDestination(f"The host {host} could not be resolved.")
    if not allow_private:
        for address in addresses:
            if not is_public(address):
                # Which address is not said: the answer of an internal DNS is not for the caller.
                raise UnsafeDestination(
                    f"The host {host} is a loopback, private, link-local or otherwise non-public "
                    "address, or resolves to one; webhooks go to public addresses only."
                )
    return Destination(scheme, host, port, target, tuple(str(a) for a in addresses))


# -- Signing (Standard Webhooks) --


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def signature(secret: str, message_id: str, timestamp: int, body: str) -> str:
    """`v1,` and the base64 HMAC-SHA256 of `id.timestamp.body` under the secret's bytes."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed = f"{message_id}.{timestamp}.{body}".encode()
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def signed_headers(
    secrets_in_use: Sequence[str], message_id: str, timestamp: int, body: str
) -> dict[str, str]:
    """The three Standard Webhooks headers; one signature per secret in use, space-separated."""
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(
            signature(secret, message_id, timestamp, body) for secret in secrets_in_use
        ),
    }


# -- The outbox: events written in the transaction of the change --


def _instant(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _event_row(
    kind: WebhookEventType, account_id: uuid.UUID | None, data: dict[str, Any], now: datetime
) -> dict[str, Any]:
    body = {"type": kind.value, "timestamp": _instant(now), "data": data}
    return {
        "message_id": f"msg_{uuid.uuid4().hex}",
        "type": kind,
        "account_id": account_id,
        "payload": json.dumps(body, separators=(",", ":"), ensure_ascii=True),
        "created_at": now,
    }


async def _write(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    if rows:
        await session.execute(_INSERT_EVENTS, rows)


def consent_changed(events: Sequence[ConsentEvent]) -> tuple[Insert, list[dict[str, Any]]]:
    """The outbox statement and its rows, one `consent.changed` per ledger event; the ledger
    writes them with its own."""
    return _INSERT_EVENTS, consent_changed_rows(events)


def consent_changed_rows(events: Sequence[ConsentEvent]) -> list[dict[str, Any]]:
    """The outbox rows of `consent.changed` for these ledger events (also for a migration that
    writes events, so receivers hear of them as of any other)."""
    return [
        _event_row(
            WebhookEventType.CONSENT_CHANGED,
            event.account_id,
            {
                "accountId": str(event.account_id),
                "key": event.key,
                "oldValue": event.old_value,
                "newValue": event.new_value,
                "actor": event.actor.value,
                "actorId": str(event.actor_id) if event.actor_id else None,
                "source": event.source.value,
                "policyVersion": event.policy_version,
                "occurredAt": _instant(event.occurred_at),
                "sequence": event.seq,
                "eventHash": event.hash,
            },
            event.occurred_at,
        )
        for event in events
    ]


async def deletion_requested(session: AsyncSession, account: Account, *, by_staff: bool) -> None:
    assert account.deletion_due_at is not None
    now = utcnow()
    data = {
        "accountId": str(account.id),
        "requestedBy": "staff" if by_staff else "person",
        "deletionDueAt": _instant(account.deletion_due_at),
        "occurredAt": _instant(now),
    }
    await _write(
        session, [_event_row(WebhookEventType.ACCOUNT_DELETION_REQUESTED, account.id, data, now)]
    )


async def deletion_cancelled(session: AsyncSession, account_id: uuid.UUID) -> None:
    now = utcnow()
    data = {"accountId": str(account_id), "occurredAt": _instant(now)}
    await _write(
        session, [_event_row(WebhookEventType.ACCOUNT_DELETION_CANCELLED, account_id, data, now)]
    )


def _awaited() -> Any:
    """An event some enabled endpoint may still take: not fanned out yet while an endpoint is
    enabled, or with a delivery still pending to an endpoint that is not disabled."""
    enabled = exists().where(WebhookEndpoint.disabled_at.is_(None))
    pending = (
        exists()
        .where(
            WebhookDelivery.event_id == WebhookEvent.id,
            WebhookDelivery.status == WebhookDeliveryStatus.PENDING,
            WebhookEndpoint.id == WebhookDelivery.endpoint_id,
            WebhookEndpoint.disabled_at.is_(None),
        )
        .correlate(WebhookEvent)
    )
    return or_(and_(WebhookEvent.fanned_out_at.is_(None), enabled), pending)


async def account_erased(
    session: AsyncSession, account_id: uuid.UUID, alias: uuid.UUID, now: datetime
) -> None:
    """The erasure, naming the account only by the pseudonym its kept records now carry.

    The account's other events in the outbox are pseudonymised the same way, except a deletion
    request some endpoint has yet to take: it keeps the id receivers know the account by, so
    that they can erase their copy, and takes the pseudonym once delivered (`release_held`)."""
    held = and_(WebhookEvent.type == WebhookEventType.ACCOUNT_DELETION_REQUESTED, _awaited())
    about = WebhookEvent.account_id == account_id
    await session.execute(
        update(WebhookEvent)
        .where(about, ~held)
        .values(
            account_id=alias,
            payload=func.replace(WebhookEvent.payload, str(account_id), str(alias)),
        )
        .execution_options(synchronize_session=False)
    )
    await session.execute(
        update(WebhookEvent)
        .where(about, held)
        .values(pseudonym=alias)
        .execution_options(synchronize_session=False)
    )
    data = {"pseudonym": str(alias), "occurredAt": _instant(now)}
    await _write(session, [_event_row(WebhookEventType.ACCOUNT_ERASED, alias, data, now)])


async def release_held(session: AsyncSession) -> int:
    """Pseudonymise the erased accounts' deletion events that no enabled endpoint still waits
    for (delivered, or its endpoint disabled); returns how many. Few rows, found by index."""
    rows = (
        await session.execute(
            select(WebhookEvent.id, WebhookEvent.account_id, WebhookEvent.pseudonym)
            .where(WebhookEvent.pseudonym.is_not(None), ~_awaited())
            .with_for_update(skip_locked=True)
        )
    ).all()
    for event_id, account_id, alias in rows:
        await session.execute(
            update(WebhookEvent)
            .where(WebhookEvent.id == event_id)
            .values(
                account_id=alias,
                payload=func.replace(WebhookEvent.payload, str(account_id), str(alias)),
                pseudonym=None,
            )
            .execution_options(synchronize_session=False)
        )
    return len(rows)


async def policy_published(session: AsyncSession, policy: PolicyVersion) -> None:
    data = {
        "version": policy.version,
        "material": policy.material,
        "publishedAt": _instant(policy.published_at),
    }
    await _write(
        session, [_event_row(WebhookEventType.POLICY_PUBLISHED, None, data, policy.published_at)]
    )


# -- What privacy officers do --


def _require_privacy_officer(actor: Actor) -> None:
    # The GraphQL field checks this too; a use case must not rely on its caller alone.
    if actor.role is not Role.PRIVACY_OFFICER:
        raise PermissionError("only a privacy officer may manage webhooks")


@dataclass(frozen=True)
class WithSecret:
    """An endpoint and its secret, which is shown this once."""

    endpoint: WebhookEndpoint
    secret: str


async def create_webhook(
    officer: Actor,
    *,
    url: str,
    events: Sequence[WebhookEventType],
    description: str,
    production: bool,
    allow_private: bool,
    sealer: Sealer,
    request_id: str | None,
) -> Prepared[WithSecret]:
    """Register a receiver for some event types; its signing secret is returned this once.

    The address is looked up (DNS, up to its timeout) before the write's transaction opens."""
    _require_privacy_officer(officer)
    url, description = url.strip(), description.strip()
    if len(description) > DESCRIPTION_MAX:
        raise Rejected.one(
            ErrorCode.INVALID_INPUT,
            f"Describe it in at most {DESCRIPTION_MAX} characters.",
            "description",
        )
    if not events:
        raise Rejected.one(ErrorCode.INVALID_INPUT, "Choose at least one event type.", "events")
    try:
        await resolve(url, https_only=production, allow_private=allow_private)
    except UnsafeDestination as refused:
        raise Rejected.one(ErrorCode.INVALID_INPUT, str(refused), "url") from None
    secret = new_secret()

    async def register(session: AsyncSession) -> WithSecret:
        endpoint = WebhookEndpoint(
            url=url,
            description=description,
            events=[kind.value for kind in dict.fromkeys(events)],
            secret=sealer.seal(secret),
            created_by=officer.account_id,
            created_at=utcnow(),
        )
        session.add(endpoint)
        await session.flush()
        await audit(
            session, officer, "webhook.create", [], f"Registered webhook {endpoint.id}", request_id
        )
        return WithSecret(endpoint, secret)

    return Prepared(register)


async def count_webhooks(session: AsyncSession) -> int:
    return int(await session.scalar(select(func.count()).select_from(WebhookEndpoint)) or 0)


async def list_webhooks(session: AsyncSession) -> list[WebhookEndpoint]:
    return list(
        await session.scalars(
            select(WebhookEndpoint).order_by(WebhookEndpoint.created_at, WebhookEndpoint.id)
        )
    )


async def _endpoint(session: AsyncSession, webhook_id: uuid.UUID) -> WebhookEndpoint:
    endpoint = await session.get(WebhookEndpoint, webhook_id, with_for_update=True)
    if endpoint is None:
        raise Rejected.one(ErrorCode.NOT_FOUND, "There is no such webhook.", "id")
    return endpoint


async def disable_webhook(
    session: AsyncSession, officer: Actor, webhook_id: uuid.UUID, *, request_id: str | None
) -> WebhookEndpoint:
    """Stop deliveries to an endpoint; what is pending waits until it is enabled again."""
    _require_privacy_officer(officer)
    endpoint = await _endpoint(session, webhook_id)
    if endpoint.disabled_at is None:
        endpoint.disabled_at = utcnow()
        endpoint.disabled_reason = "Disabled by a privacy officer."
    await audit(
        session, officer, "webhook.disable", [], f"Disabled webhook {endpoint.id}", request_id
    )
    await session.flush()
    return endpoint


async def enable_webhook(
    session: AsyncSession, officer: Actor, webhook_id: uuid.UUID, *, request_id: str | None
) -> WebhookEndpoint:
    """Resume deliveries; events that happened while disabled come only through a replay."""
    _require_privacy_officer(officer)
    endpoint = await _endpoint(session, webhook_id)
    endpoint.disabled_at = None
    endpoint.disabled_reason = None
    endpoint.failing_since = None
    endpoint.failures_in_a_row = 0
    endpoint.paused_until = None
    await audit(
        session, officer, "webhook.enable", [], f"Enabled webhook {endpoint.id}", request_id
    )
    await session.flush()
    return endpoint


async def rotate_secret(
    session: AsyncSession,
    officer: Actor,
    webhook_id: uuid.UUID,
    *,
    sealer: Sealer,
    request_id: str | None,
) -> WithSecret:
    """A new secret, shown this once; the old one keeps signing beside it for a day."""
    _require_privacy_officer(officer)
    endpoint = await _endpoint(session, webhook_id)
    secret = new_secret()
    endpoint.previous_secret = endpoint.secret
    endpoint.previous_secret_expires_at = utcnow() + PREVIOUS_SECRET_KEPT
    endpoint.secret = sealer.seal(secret)
    await audit(
        session,
        officer,
        "webhook.rotate_secret",
        [],
        f"Rotated the secret of webhook {endpoint.id}",
        request_id,
    )
    await session.flush()
    return WithSecret(endpoint, secret)


async def reseal_secrets(session: AsyncSession, sealer: Sealer) -> int:
    """Seal every stored secret with the first key: plain ones kept before secrets were sealed,
    and ones sealed with a key that is being retired; returns how many endpoints there are."""
    endpoints = list(await session.scalars(select(WebhookEndpoint).with_for_update()))
    for endpoint in endpoints:
        endpoint.secret = sealer.reseal(endpoint.secret)
        if endpoint.previous_secret is not None:
            endpoint.previous_secret = sealer.reseal(endpoint.previous_secret)
    await session.flush()
    return len(endpoints)


def _insert_ignoring_duplicates(session: AsyncSession) -> Any:
    """INSERT ... ON CONFLICT DO NOTHING for deliveries: a replay and a fan-out may meet."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    return dialect.insert(WebhookDelivery).on_conflict_do_nothing(
        index_elements=["endpoint_id", "event_id"]
    )


async def replay_events(
    session: AsyncSession,
    officer: Actor,
    webhook_id: uuid.UUID,
    *,
    since: datetime,
    until: datetime,
    request_id: str | None,
) -> int:
    """Send again every event from `since` (included) to `until` (excluded) of the types the
    endpoint receives, with the same webhook-id as before; returns how many. Two statements
    whatever the range: reset the deliveries made already, add the ones that never were."""
    _require_privacy_officer(officer)
    if since.tzinfo is None or until.tzinfo is None:
        raise Rejected.one(ErrorCode.INVALID_INPUT, "Give times with a time zone.", "since")
    if since >= until:
        raise Rejected.one(ErrorCode.INVALID_INPUT, "Give a `since` before `until`.", "until")
    endpoint = await _endpoint(session, webhook_id)
    now = utcnow()
    in_range = and_(
        WebhookEvent.created_at >= since,
        WebhookEvent.created_at < until,
        WebhookEvent.type.in_([WebhookEventType(kind) for kind in endpoint.events]),
        # Events not yet fanned out get their delivery from the worker.
        WebhookEvent.fanned_out_at.is_not(None),
    )
    reset = await session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.endpoint_id == endpoint.id,
            WebhookDelivery.event_id.in_(select(WebhookEvent.id).where(in_range)),
        )
        .values(
            status=WebhookDeliveryStatus.PENDING, attempts=0, next_attempt_at=now, claimed_at=None
        )
        .execution_options(synchronize_session=False)
    )
    never_made = select(
        literal(endpoint.id, WebhookDelivery.endpoint_id.type),
        WebhookEvent.id,
        literal(WebhookDeliveryStatus.PENDING, WebhookDelivery.status.type),
        literal(0),
        literal(now, WebhookDelivery.next_attempt_at.type),
        literal(now, WebhookDelivery.created_at.type),
    ).where(
        in_range,
        ~exists().where(
            WebhookDelivery.endpoint_id == endpoint.id, WebhookDelivery.event_id == WebhookEvent.id
        ),
    )
    added = await session.execute(
        _insert_ignoring_duplicates(session).from_select(
            ["endpoint_id", "event_id", "status", "attempts", "next_attempt_at", "created_at"],
            never_made,
        )
    )
    await audit(
        session,
        officer,
        "webhook.replay",
        [],
        f"Replayed events of webhook {endpoint.id} from {_instant(since)} to {_instant(until)}",
        request_id,
    )
    await session.flush()
    return sum(int(getattr(result, "rowcount", 0) or 0) for result in (reset, added))


def _new_delivery(endpoint_id: uuid.UUID, event_id: int, now: datetime) -> dict[str, Any]:
    return {
        "endpoint_id": endpoint_id,
        "event_id": event_id,
        "status": WebhookDeliveryStatus.PENDING,
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
    }


@dataclass(frozen=True)
class LogEntry:
    """One event's delivery to one endpoint, as officers read it."""

    id: int
    message_id: str
    event_type: WebhookEventType
    status: WebhookDeliveryStatus
    attempts: int
    next_attempt_at: datetime
    last_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    delivered_at: datetime | None
    created_at: datetime


async def delivery_log(
    session: AsyncSession,
    webhook_id: uuid.UUID,
    *,
    status: WebhookDeliveryStatus | None,
    first: int,
    after: str | None,
    last: int | None = None,
    before: str | None = None,
) -> Page[LogEntry]:
    """A page of an endpoint's deliveries, the newest first."""
    page = page_request(first, after, DELIVERY_LOG, last=last, before=before)
    query = (
        select(
            WebhookDelivery.id,
            WebhookEvent.message_id,
            WebhookEvent.type,
            WebhookDelivery.status,
            WebhookDelivery.attempts,
            WebhookDelivery.next_attempt_at,
            WebhookDelivery.last_attempt_at,
            WebhookDelivery.last_status_code,
            WebhookDelivery.last_error,
            WebhookDelivery.delivered_at,
            WebhookDelivery.created_at,
        )
        .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
        .where(WebhookDelivery.endpoint_id == webhook_id)
    )
    if status is not None:
        query = query.where(WebhookDelivery.status == status)
    rows = await session.execute(cut(query, DELIVERY_LOG, page))
    return page_of([LogEntry(*row) for row in rows], page, DELIVERY_LOG, tally_of(query))


# -- The worker's steps; each runs in a transaction the worker opens --


async def fan_out(session: AsyncSession, now: datetime, *, limit: int = 500) -> int:
    """Turn up to `limit` new events into one delivery per endpoint that receives them (and
    existed when the event happened); returns how many events were fanned out."""
    events = (
        await session.execute(
            select(WebhookEvent.id, WebhookEvent.type, WebhookEvent.created_at)
            .where(WebhookEvent.fanned_out_at.is_(None))
            .order_by(WebhookEvent.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    ).all()
    if not events:
        return 0
    endpoints = (
        await session.execute(
            select(WebhookEndpoint.id, WebhookEndpoint.events, WebhookEndpoint.created_at).where(
                WebhookEndpoint.disabled_at.is_(None)
            )
        )
    ).all()
    deliveries = [
        _new_delivery(endpoint_id, event_id, now)
        for event_id, kind, created_at in events
        for endpoint_id, kinds, registered_at in endpoints
        if kind.value in kinds and registered_at <= created_at
    ]
    if deliveries:
        await session.execute(_insert_ignoring_duplicates(session), deliveries)
    await session.execute(
        update(WebhookEvent)
        .where(WebhookEvent.id.in_([row.id for row in events]))
        .values(fanned_out_at=now)
    )
    return len(events)


@dataclass(frozen=True)
class Job:
    """A claimed delivery and all a worker needs to attempt it outside any transaction."""

    delivery_id: int
    claimed_at: datetime
    attempts: int
    endpoint_id: uuid.UUID
    url: str
    secrets: tuple[str, ...]
    message_id: str
    payload: str


async def claim(
    session: AsyncSession,
    now: datetime,
    sealer: Sealer,
    *,
    limit: int = 50,
    in_flight: Mapping[uuid.UUID, int] | None = None,
) -> list[Job]:
    """Take up to `limit` due deliveries to enabled endpoints for this worker, with the
    endpoints' secrets opened: the oldest due first, at most PER_ENDPOINT per endpoint less
    what `in_flight` says the worker is attempting there already, none to an endpoint whose
    circuit is open and one (the probe) to one whose pause is over.

    The lanes and the circuit breaker are this channel's own; the claim itself is
    `outbox.claim`, so racing workers take different rows.
    """
    unclaimed = outbox.unleased(WebhookDelivery.claimed_at, now, CLAIM_TIMEOUT)
    order = (WebhookDelivery.next_attempt_at, WebhookDelivery.id)
    busy = {endpoint: count for endpoint, count in (in_flight or {}).items() if count}
    allowed: Any = case((WebhookEndpoint.failures_in_a_row >= BREAKER_AFTER, 1), else_=PER_ENDPOINT)
    if busy:
        allowed = allowed - case(
            *((WebhookEndpoint.id == endpoint, count) for endpoint, count in busy.items()),
            else_=0,
        )
    ranked = (
        select(
            WebhookDelivery.id,
            WebhookDelivery.next_attempt_at,
            func.row_number()
            .over(partition_by=WebhookDelivery.endpoint_id, order_by=order)
            .label("rank"),
            allowed.label("allowed"),
        )
        .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
        .where(
            WebhookDelivery.status == WebhookDeliveryStatus.PENDING,
            WebhookDelivery.next_attempt_at <= now,
            unclaimed,
            WebhookEndpoint.disabled_at.is_(None),
            or_(WebhookEndpoint.paused_until.is_(None), WebhookEndpoint.paused_until <= now),
        )
        .subquery()
    )
    picked = (
        select(ranked.c.id)
        .where(ranked.c.rank <= ranked.c.allowed)
        .order_by(ranked.c.next_attempt_at, ranked.c.id)
        .limit(limit)
    )
    # A window function cannot be read FOR UPDATE: the rows it picked are, in a query of their own.
    claimed = await outbox.claim(
        session,
        select(WebhookDelivery.id).where(WebhookDelivery.id.in_(picked)),
        id_column=WebhookDelivery.id,
        still_free=and_(WebhookDelivery.status == WebhookDeliveryStatus.PENDING, unclaimed),
        claimed={"claimed_at": now},
        returning=WebhookDelivery.id,
    )
    if not claimed:
        return []
    rows = await session.execute(
        select(
            WebhookDelivery.id,
            WebhookDelivery.attempts,
            WebhookEndpoint.id,
            WebhookEndpoint.url,
            WebhookEndpoint.secret,
            WebhookEndpoint.previous_secret,
            WebhookEndpoint.previous_secret_expires_at,
            WebhookEvent.message_id,
            WebhookEvent.payload,
        )
        .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
        .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
        .where(WebhookDelivery.id.in_(claimed))
        .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
    )
    jobs = []
    for delivery_id, attempts, endpoint_id, url, secret, previous, expires, message, body in rows:
        sealed = (secret, previous) if previous and expires and expires > now else (secret,)
        in_use = tuple(sealer.open(each) for each in sealed)
        jobs.append(Job(delivery_id, now, attempts, endpoint_id, url, in_use, message, body))
    return jobs


@dataclass(frozen=True)
class Attempt:
    """What came of one attempt: delivered (a 2xx answer), or why not."""

    delivered: bool
    status_code: int | None = None
    error: str | None = None


async def record(
    session: AsyncSession,
    outcomes: Sequence[tuple[Job, Attempt]],
    now: datetime,
    *,
    disable_after: timedelta,
) -> int:
    """Log a step's attempts on their deliveries and endpoints; returns how many were logged.

    A delivery whose claim was lost meanwhile (a replay reset it) is left as it is. A success
    clears the endpoint's failing streak; a failure schedules a retry with backoff, and an
    endpoint is disabled once every attempt has failed for `disable_after`. Rows are updated in
    id order, so two workers recording at once wait for each other instead of deadlocking.
    """
    logged = 0
    # Per endpoint: how many attempts failed, or None once one succeeded.
    failed: dict[uuid.UUID, int | None] = {}
    for job, attempt in sorted(outcomes, key=lambda outcome: outcome[0].delivery_id):
        if await _log_attempt(session, job, attempt, now):
            logged += 1
            so_far = failed.get(job.endpoint_id, 0)
            failed[job.endpoint_id] = None if attempt.delivered or so_far is None else so_far + 1
    for endpoint_id in sorted(failed):
        await _note_endpoint(session, endpoint_id, failed[endpoint_id], now, disable_after)
    return logged


async def _log_attempt(session: AsyncSession, job: Job, attempt: Attempt, now: datetime) -> bool:
    outcome: dict[str, Any] = {
        "last_attempt_at": now,
        "last_status_code": attempt.status_code,
        "last_error": (attempt.error or "")[:300] or None,
    }
    if attempt.delivered:
        outcome.update(status=WebhookDeliveryStatus.DELIVERED, delivered_at=now)
    else:
        outcome.update(next_attempt_at=now + RETRY.delay(job.attempts + 1))
    held = and_(WebhookDelivery.id == job.delivery_id, WebhookDelivery.claimed_at == job.claimed_at)
    return await outbox.settle(session, WebhookDelivery.attempts, held=held, outcome=outcome)


def breaker_pause(failures_in_a_row: int) -> timedelta | None:
    """How long an endpoint is skipped after this many failed attempts in a row: none below
    BREAKER_AFTER, then BREAKER_PAUSE doubling with each further failure up to the maximum."""
    if failures_in_a_row < BREAKER_AFTER:
        return None
    return min(BREAKER_PAUSE * 2 ** (failures_in_a_row - BREAKER_AFTER), BREAKER_PAUSE_MAX)


def _pause_after(failures: Any, now: datetime) -> Any:
    """`paused_until` for a failure count, as SQL: one branch per doubling of the pause."""
    branches = []
    count = BREAKER_AFTER
    while (pause := breaker_pause(count)) is not None and pause < BREAKER_PAUSE_MAX:
        branches.append((failures <= count, now + pause))
        count += 1
    return case((failures < BREAKER_AFTER, None), *branches, else_=now + BREAKER_PAUSE_MAX)


async def _note_endpoint(
    session: AsyncSession,
    endpoint_id: uuid.UUID,
    failed: int | None,
    now: datetime,
    disable_after: timedelta,
) -> None:
    """One statement: a success ends the failing streak and closes the circuit; `failed`
    failures start the streak or add to it, open the circuit once BREAKER_AFTER are in a row
    and, once the streak has lasted `disable_after`, disable the endpoint."""
    endpoint = WebhookEndpoint.id == endpoint_id
    if failed is None:
        await session.execute(
            update(WebhookEndpoint)
            .where(endpoint, WebhookEndpoint.failing_since.is_not(None))
            .values(failing_since=None, failures_in_a_row=0, paused_until=None)
        )
        return
    since = func.coalesce(WebhookEndpoint.failing_since, now)
    too_long = and_(WebhookEndpoint.disabled_at.is_(None), since <= now - disable_after)
    failures = WebhookEndpoint.failures_in_a_row + failed
    await session.execute(
        update(WebhookEndpoint)
        .where(endpoint)
        .values(
            failing_since=since,
            failures_in_a_row=failures,
            paused_until=_pause_after(failures, now),
            disabled_at=case((too_long, now), else_=WebhookEndpoint.disabled_at),
            disabled_reason=case(
                (too_long, f"Every delivery failed for {_hours(disable_after)}."),
                else_=WebhookEndpoint.disabled_reason,
            ),
        )
    )


def _hours(span: timedelta) -> str:
    hours = span.total_seconds() / 3600
    return f"{hours:g} hours"


async def prune_delivered(session: AsyncSession, now: datetime) -> int:
    """Delete events older than EVENTS_KEPT that no delivery still waits for, their delivery
    log with them; returns how many."""
    waiting = exists().where(
        WebhookDelivery.event_id == WebhookEvent.id,
        WebhookDelivery.status == WebhookDeliveryStatus.PENDING,
    )
    result = await session.execute(
        delete(WebhookEvent).where(
            WebhookEvent.created_at < now - EVENTS_KEPT,
            WebhookEvent.fanned_out_at.is_not(None),
            ~waiting,
        )
    )
    return outbox.changed(result)


@dataclass(frozen=True)
class Backlog:
    """How far the webhook worker is behind, for /metrics: events and deliveries it has still
    to handle (not counting endpoints that are disabled), since when, how many of those
    deliveries failed at least once, and how many endpoints are disabled."""

    undelivered: int
    oldest: datetime | None
    failing: int
    disabled_endpoints: int


async def backlog(session: AsyncSession) -> Backlog:
    """Three counting statements (statuses and fan-out are indexed or few)."""
    waiting = await session.execute(
        select(func.count(), func.min(WebhookEvent.created_at)).where(
            WebhookEvent.fanned_out_at.is_(None)
        )
    )
    unfanned, oldest_event = waiting.one()
    pending = await session.execute(
        select(
            func.count(),
            func.min(WebhookDelivery.created_at),
            func.count().filter(WebhookDelivery.attempts > 0),
        )
        .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
        .where(
            WebhookDelivery.status == WebhookDeliveryStatus.PENDING,
            WebhookEndpoint.disabled_at.is_(None),
        )
    )
    deliveries, oldest_delivery, failing = pending.one()
    disabled = await session.scalar(
        select(func.count()).where(WebhookEndpoint.disabled_at.is_not(None))
    )
    oldest = min((t for t in (oldest_event, oldest_delivery) if t is not None), default=None)
    return Backlog(
        undelivered=int(unfanned) + int(deliveries),
        oldest=oldest,
        failing=int(failing),
        disabled_endpoints=int(disabled or 0),
    )
