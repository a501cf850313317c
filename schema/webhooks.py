"""Webhooks: privacy officers register the endpoints that hear of consent changes, deletions and
policy versions, and read each endpoint's delivery log."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TypeVar

import strawberry

from auth.permissions import IsPrivacyOfficer
from models import WebhookDeliveryStatus, WebhookEventType
from models import WebhookEndpoint as WebhookEndpointModel
from resolvers import webhooks
from resolvers.webhooks import LogEntry, WithSecret
from schema.connections import Before, Connection, Last, connection
from schema.context import RequestContext
from schema.errors import UserErrorType
from schema.ids import parse_id
from schema.mutations import mutate, mutate_prepared

Info = strawberry.Info[RequestContext]
T = TypeVar("T")
P = TypeVar("P")
strawberry.enum(
    WebhookEventType,
    name="WebhookEventType",
    description="What a webhook endpoint can hear of; the payload's `type` is the value, such as "
    "consent.changed.",
)
strawberry.enum(
    WebhookDeliveryStatus,
    name="WebhookDeliveryStatus",
    description="PENDING: waiting for its next attempt; DELIVERED: the endpoint answered 2xx.",
)


@strawberry.type(name="WebhookDelivery", description="One event on its way to one endpoint.")
class WebhookDeliveryType:
    id: strawberry.ID
    message_id: str = strawberry.field(
        description="The webhook-id header: the same for every retry and replay of the event."
    )
    event_type: WebhookEventType = strawberry.field(description="The event's `type`.")
    status: WebhookDeliveryStatus
    attempts: int = strawberry.field(description="How many times it was sent so far.")
    next_attempt_at: datetime = strawberry.field(description="When a pending one is tried next.")
    last_attempt_at: datetime | None = strawberry.field(description="When it was last sent.")
    last_status_code: int | None = strawberry.field(description="The receiver's HTTP status.")
    last_error: str | None = strawberry.field(
        description="Why the last attempt failed: the HTTP status, a network or TLS error, or "
        "an address refused."
    )
    delivered_at: datetime | None = strawberry.field(description="When the receiver took it.")
    created_at: datetime

    @classmethod
    def from_entry(cls, entry: LogEntry) -> WebhookDeliveryType:
        return cls(
            id=strawberry.ID(str(entry.id)),
            message_id=entry.message_id,
            event_type=entry.event_type,
            status=entry.status,
            attempts=entry.attempts,
            next_attempt_at=entry.next_attempt_at,
            last_attempt_at=entry.last_attempt_at,
            last_status_code=entry.last_status_code,
            last_error=entry.last_error,
            delivered_at=entry.delivered_at,
            created_at=entry.created_at,
        )


@strawberry.type(name="Webhook", description="An endpoint that receives signed events.")
class WebhookType:
    id: strawberry.ID
    url: str = strawberry.field(description="Where events are POSTed.")
    description: str = strawberry.field(description="What it is for, as its officer wrote.")
    events: list[WebhookEventType] = strawberry.field(description="The event types it receives.")
    created_at: datetime
    failing_since: datetime | None = strawberry.field(
        description="Since when every delivery has failed; disabled once this lasts too long."
    )
    paused_until: datetime | None = strawberry.field(
        description="Skipped by the circuit breaker until then, after several failed attempts "
        "in a row (its deliveries wait); then one delivery probes it. Null when not paused."
    )
    disabled_at: datetime | None = strawberry.field(
        description="Since when nothing is sent to it; null while it is enabled."
    )
    disabled_reason: str | None = strawberry.field(
        description="Why: an officer disabled it, or every delivery failed for too long."
    )

    @classmethod
    def from_model(cls, model: WebhookEndpointModel) -> WebhookType:
        return cls(
            id=strawberry.ID(str(model.id)),
            url=model.url,
            description=model.description,
            events=[WebhookEventType(kind) for kind in model.events],
            created_at=model.created_at,
            failing_since=model.failing_since,
            paused_until=model.paused_until,
            disabled_at=model.disabled_at,
            disabled_reason=model.disabled_reason,
        )


@strawberry.input(description="An endpoint to register.")
class CreateWebhookInput:
    url: str = strawberry.field(
        description="https:// and a public host; checked again before every delivery."
    )
    events: list[WebhookEventType] = strawberry.field(
        description="The event types to send it (at least one)."
    )
    description: str = strawberry.field(
        default="", description="What it is for, up to 500 characters."
    )


@strawberry.input(description="The events to send an endpoint again.")
class ReplayWebhookEventsInput:
    webhook_id: strawberry.ID = strawberry.field(description="The endpoint.")
    since: datetime = strawberry.field(description="From this time, included.")
    until: datetime = strawberry.field(description="To this time, excluded.")


@strawberry.type(description="The endpoint as it now is, or why the change was refused.")
class WebhookPayload:
    webhook: WebhookType | None = strawberry.field(description="Null when refused.")
    errors: list[UserErrorType]


@strawberry.type(description="The endpoint and its new signing secret, or why it was refused.")
class WebhookSecretPayload:
    webhook: WebhookType | None = strawberry.field(description="Null when refused.")
    secret: str | None = strawberry.field(
        description="The signing secret (whsec_...). Shown this once: store it now."
    )
    errors: list[UserErrorType]


@strawberry.type(description="How many events will be sent again, or why the replay was refused.")
class ReplayWebhookEventsPayload:
    replayed: int | None = strawberry.field(
        description="How many events are queued to be sent again."
    )
    errors: list[UserErrorType]


def _with_secret(found: WithSecret | None, errors: list[UserErrorType]) -> WebhookSecretPayload:
    if found is None:
        return WebhookSecretPayload(webhook=None, secret=None, errors=errors)
    return WebhookSecretPayload(
        webhook=WebhookType.from_model(found.endpoint), secret=found.secret, errors=errors
    )


def _payload(found: WebhookEndpointModel | None, errors: list[UserErrorType]) -> WebhookPayload:
    return WebhookPayload(webhook=WebhookType.from_model(found) if found else None, errors=errors)


@strawberry.type
class WebhooksQuery:
    @strawberry.field(
        permission_classes=[IsPrivacyOfficer],
        description="Every registered endpoint, oldest first. Secrets are never shown again.",
    )
    async def webhooks(self, info: Info) -> list[WebhookType]:
        found = await info.context.answer(webhooks.list_webhooks)
        return [WebhookType.from_model(model) for model in found]

    @strawberry.field(
        permission_classes=[IsPrivacyOfficer],
        description="An endpoint's delivery log, newest first: attempts, status, the receiver's "
        "last HTTP status and the last error.",
    )
    async def webhook_deliveries(
        self,
        info: Info,
        webhook_id: strawberry.ID,
        status: WebhookDeliveryStatus | None = None,
        first: int = 50,
        after: str | None = None,
        last: Last = None,
        before: Before = None,
    ) -> Connection[WebhookDeliveryType]:
        found = await info.context.answer(
            lambda session: webhooks.delivery_log(
                session,
                parse_id(webhook_id),
                status=status,
                first=first,
                after=after,
                last=last,
                before=before,
            )
        )
        return connection(found, WebhookDeliveryType.from_entry)


async def _change_endpoint(
    info: Info,
    change: Callable[..., Awaitable[T]],
    id: strawberry.ID,
    answer: Callable[[T | None, list[UserErrorType]], P],
) -> P:
    """One officer's change to one endpoint (`change(session, officer, endpoint_id,
    request_id=...)`), answered by `answer`."""
    return await mutate(
        info,
        lambda work: change(work.session, work.actor, parse_id(id), request_id=work.request_id),
        answer,
    )


@strawberry.type
class WebhooksMutation:
    @strawberry.mutation(
        permission_classes=[IsPrivacyOfficer],
        description="Register an endpoint for some event types. The answer holds its signing "
        "secret, shown this once. Audited.",
    )
    async def create_webhook(self, info: Info, input: CreateWebhookInput) -> WebhookSecretPayload:
        services = info.context.services
        return await mutate_prepared(
            info,
            lambda preparation: webhooks.create_webhook(
                preparation.actor,
                url=input.url,
                events=input.events,
                description=input.description,
                production=services.config.production,
                allow_private=services.config.webhooks_allow_private,
                sealer=services.webhook_sealer,
                request_id=preparation.provenance.request_id,
            ),
            _with_secret,
        )

    @strawberry.mutation(
        permission_classes=[IsPrivacyOfficer],
        description="A new signing secret, shown this once; the old one keeps signing beside it "
        "for 24 hours. Audited.",
    )
    async def rotate_webhook_secret(self, info: Info, id: strawberry.ID) -> WebhookSecretPayload:
        rotate = functools.partial(
            webhooks.rotate_secret, sealer=info.context.services.webhook_sealer
        )
        return await _change_endpoint(info, rotate, id, _with_secret)

    @strawberry.mutation(
        permission_classes=[IsPrivacyOfficer],
        description="Stop deliveries to an endpoint. Audited.",
    )
    async def disable_webhook(self, info: Info, id: strawberry.ID) -> WebhookPayload:
        return await _change_endpoint(info, webhooks.disable_webhook, id, _payload)

    @strawberry.mutation(
        permission_classes=[IsPrivacyOfficer],
        description="Resume deliveries to a disabled endpoint; replay what it missed. Audited.",
    )
    async def enable_webhook(self, info: Info, id: strawberry.ID) -> WebhookPayload:
        return await _change_endpoint(info, webhooks.enable_webhook, id, _payload)

    @strawberry.mutation(
        permission_classes=[IsPrivacyOfficer],
        description="Send again every event of the endpoint's types in a time range, with the "
        "webhook-id each had. Audited.",
    )
    async def replay_webhook_events(
        self, info: Info, input: ReplayWebhookEventsInput
    ) -> ReplayWebhookEventsPayload:
        return await mutate(
            info,
            lambda work: webhooks.replay_events(
                work.session,
                work.actor,
                parse_id(input.webhook_id),
                since=input.since,
                until=input.until,
                request_id=work.request_id,
            ),
            lambda replayed, errors: ReplayWebhookEventsPayload(replayed=replayed, errors=errors),
        )
