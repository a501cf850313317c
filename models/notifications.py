"""The notification outbox: the messages a mailer would send, written in the same transaction
as what caused them."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, text_enum, utcnow, uuid_pk


class NotificationKind(enum.Enum):
    # A material change to the privacy policy: a legal notice, sent whatever the person's
    # communication choices.
    POLICY_UPDATE = "policy_update"
    # A change that is not material: a service update, which people may switch off.
    POLICY_MINOR_UPDATE = "policy_minor_update"
    EMAIL_CONFIRMATION = "email_confirmation"
    EMAIL_CHANGED = "email_changed"
    DELETION_SCHEDULED = "deletion_scheduled"
    REQUEST_EXTENDED = "request_extended"
    REQUEST_ANSWERED = "request_answered"
    # A legal hold keeps an account whose deletion is pending: the erasure waits for its release.
    DELETION_HELD = "deletion_held"
    # The last message to an erased account's address: it names no account, and is deleted as
    # soon as a mailer has sent it.
    ACCOUNT_ERASED = "account_erased"
    PASSWORD_RESET = "password_reset"  # noqa: S105 (a kind of message)
    PASSWORD_CHANGED = "password_changed"  # noqa: S105
    # To an address with no account yet (account_id None): its link and code create the account.
    SIGNUP_CONFIRMATION = "signup_confirmation"
    # To an account's owner: someone tried to sign up with their address.
    SIGNUP_ATTEMPT_EXISTING = "signup_attempt_existing"
    # To an account's owner: someone asked to move another account to their address.
    EMAIL_CHANGE_ATTEMPT_EXISTING = "email_change_attempt_existing"
    # To a minor's parent, who has no account here: the address is forgotten once sent.
    PARENTAL_CONSENT_REQUEST = "parental_consent_request"


class DeliveryStatus(enum.Enum):
    PENDING = "pending"  # waiting in the outbox, or between two attempts
    SENT = "sent"  # handed to the mail server
    FAILED = "failed"  # given up on; `failure` says why
    SUPPRESSED = "suppressed"  # not sent: its topic was switched off before it went


class Notification(Base):
    __tablename__ = "notifications"

    id: Mapped[uuid.UUID] = uuid_pk()
    # None for a message to an address with no account: the last one to an erased account, or
    # the confirmation of a signup.
    account_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[NotificationKind] = mapped_column(text_enum(NotificationKind, length=32))
    recipient: Mapped[str] = mapped_column(String(254))
    subject: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    # A code or token the message carries, kept only until the message is sent: the body holds a
    # placeholder where it goes, filled in when the message is rendered for delivery.
    secret: Mapped[str | None] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(index=True)
    # The HTML alternative of `body`, for kinds whose template has one (same placeholder).
    html: Mapped[str | None] = mapped_column(Text)
    status: Mapped[DeliveryStatus] = mapped_column(
        text_enum(DeliveryStatus), default=DeliveryStatus.PENDING
    )
    attempts: Mapped[int] = mapped_column(default=0)
    # Not tried again before this time (exponential backoff after a failed attempt).
    next_attempt_at: Mapped[datetime | None]
    # A worker holds the message from `claimed_at`; a claim older than the lease is void, so the
    # message of a worker that crashed is taken by another.
    claimed_at: Mapped[datetime | None]
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    # Why the last attempt failed: an error class and SMTP code, never the server's text (which
    # may quote the address).
    failure: Mapped[str | None] = mapped_column(String(200))

    __table_args__ = (Index("ix_notifications_deliverable", "status", "next_attempt_at"),)
