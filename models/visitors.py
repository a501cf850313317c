"""Signed-out visitors: a device's cookie choices and their own consent ledger.

A visitor is known only by a random device id (kept here as its SHA-256), never by who they are.
Its ledger has the account ledger's columns and chain rules, so one hash function and one
verifier serve both; a visitor's whole record goes at once, when it expires or when its choices
are carried into an account.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Integer, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, text_enum, utcnow, uuid_pk
from models.consent import ConsentActor, Source


class Visitor(Base):
    __tablename__ = "visitors"

    id: Mapped[uuid.UUID] = uuid_pk()
    # SHA-256 of the device id: the id is 256 random bits, so the hash alone cannot be reversed.
    device_hash: Mapped[str] = mapped_column(String(64), unique=True)
    ledger_seq: Mapped[int] = mapped_column(default=0)
    ledger_head: Mapped[str | None] = mapped_column(String(64))
    # When a Global Privacy Control signal first came with this device's requests.
    gpc_applied_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The last choice; the record expires a configured time after it (see `purge`).
    last_choice_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class VisitorConsentEvent(Base):
    __tablename__ = "visitor_consent_events"
    __table_args__ = (UniqueConstraint("visitor_id", "seq"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    visitor_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("visitors.id", ondelete="CASCADE"), index=True
    )
    seq: Mapped[int]
    key: Mapped[str] = mapped_column(String(64))
    old_value: Mapped[str | None] = mapped_column(String(64))
    new_value: Mapped[str] = mapped_column(String(64))
    actor: Mapped[ConsentActor] = mapped_column(text_enum(ConsentActor))
    actor_id: Mapped[uuid.UUID | None]  # always empty: nobody acts for a visitor
    source: Mapped[Source] = mapped_column(text_enum(Source))
    policy_version: Mapped[str] = mapped_column(String(32))
    occurred_at: Mapped[datetime]
    request_id: Mapped[str | None] = mapped_column(String(64))
    prev_hash: Mapped[str | None] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    hash_version: Mapped[int] = mapped_column(server_default=text("2"))
    accepted_policy_version: Mapped[str | None] = mapped_column(String(32))
    session_id: Mapped[uuid.UUID | None]  # always empty: a visitor has no session
    user_agent: Mapped[str | None] = mapped_column(String(255))
