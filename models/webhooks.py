"""The webhook outbox: endpoints privacy officers registered, the events written in the
transaction of each change, and one delivery per (event, endpoint) made by the worker."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, text_enum, utcnow, uuid_pk


class WebhookEventType(enum.Enum):
    CONSENT_CHANGED = "consent.changed"
    ACCOUNT_DELETION_REQUESTED = "account.deletion_requested"
    ACCOUNT_DELETION_CANCELLED = "account.deletion_cancelled"
    ACCOUNT_ERASED = "account.erased"
    POLICY_PUBLISHED = "policy.published"


class WebhookDeliveryStatus(enum.Enum):
    PENDING = "pending"  # waiting for its (next) attempt
    DELIVERED = "delivered"  # the endpoint answered 2xx


class WebhookEndpoint(Base):
    __tablename__ = "webhook_endpoints"

    id: Mapped[uuid.UUID] = uuid_pk()
    url: Mapped[str] = mapped_column(String(2000))
    description: Mapped[str] = mapped_column(String(500))
    # The event type values (WebhookEventType) the endpoint receives.
    events: Mapped[list[str]] = mapped_column(JSON)
    # `whsec_` and base64, sealed (auth.sealing) with PRIVACY_API_WEBHOOK_SECRET_KEY: the worker
    # opens it to sign each delivery, and a copy of the database alone cannot.
    secret: Mapped[str] = mapped_column(String(300))
    # The secret before the last rotation, still signed with until it expires, so receivers can
    # switch without dropping messages.
    previous_secret: Mapped[str | None] = mapped_column(String(300))
    previous_secret_expires_at: Mapped[datetime | None]
    created_by: Mapped[uuid.UUID]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Since when every attempt has failed; cleared by a success.
    failing_since: Mapped[datetime | None]
    # The circuit breaker: failed attempts since the last success, and until when the
    # endpoint is skipped because of them (resolvers.webhooks.BREAKER_AFTER).
    failures_in_a_row: Mapped[int] = mapped_column(default=0, server_default="0")
    paused_until: Mapped[datetime | None]
    disabled_at: Mapped[datetime | None]
    disabled_reason: Mapped[str | None] = mapped_column(String(200))


class WebhookEvent(Base):
    """One event, whatever the number of endpoints; fanned out to deliveries by the worker."""

    __tablename__ = "webhook_events"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    # The `webhook-id` receivers deduplicate on: the same for every endpoint, retry and replay.
    message_id: Mapped[str] = mapped_column(String(40), unique=True)
    type: Mapped[WebhookEventType] = mapped_column(text_enum(WebhookEventType, length=40))
    # Whom it is about, so erasure can pseudonymise it as it does the ledger. Never an email.
    account_id: Mapped[uuid.UUID | None] = mapped_column(index=True)
    payload: Mapped[str] = mapped_column(Text)  # the JSON body, as signed and sent
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    # Set once the worker has made a delivery for each endpoint it was meant for.
    fanned_out_at: Mapped[datetime | None]
    # An erased account's deletion event keeps the real id until every endpoint has had it (so
    # receivers can erase their copy), then takes this pseudonym; None otherwise.
    pseudonym: Mapped[uuid.UUID | None] = mapped_column(index=True)


class WebhookDelivery(Base):
    """An event on its way to one endpoint: the delivery log officers read."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("endpoint_id", "event_id"),
        Index("ix_webhook_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    endpoint_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("webhook_endpoints.id", ondelete="CASCADE"), index=True
    )
    event_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"),
        ForeignKey("webhook_events.id", ondelete="CASCADE"),
        index=True,
    )
    status: Mapped[WebhookDeliveryStatus] = mapped_column(text_enum(WebhookDeliveryStatus))
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime]
    # When a worker took it; another worker takes it only once the claim is stale.
    claimed_at: Mapped[datetime | None]
    last_attempt_at: Mapped[datetime | None]
    last_status_code: Mapped[int | None]
    last_error: Mapped[str | None] = mapped_column(String(300))
    delivered_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
