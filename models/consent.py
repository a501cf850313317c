"""The consent ledger: an append-only, per-account hash chain of every change of consent."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import BigInteger, Index, Integer, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, text_enum


class ConsentActor(enum.Enum):
    """Who made the change."""

    PERSON = "person"
    STAFF = "staff"
    LINK = "link"
    GPC = "gpc"
    SIGNUP = "signup"
    SYSTEM = "system"  # the API itself, applying a rule (such as the age rules)
    # A parent of a minor, through the link mailed to them: the event's actor_id is the
    # parental consent request, which holds a hash of the parent's address, never the address.
    PARENT = "parent"


class Source(enum.Enum):
    """Through what the change arrived."""

    WEB = "web"
    MOBILE = "mobile"
    API = "api"
    ADMIN = "admin"
    LINK = "link"
    GPC = "gpc"
    SIGNUP = "signup"
    # The age rules, applied when who the person is changed (a move, a corrected date of
    # birth) or when the table of ages did: the reason for the change, since events carry none.
    AGE_RULES = "age_rules"
    # Choices made on a device before its holder signed in or signed up, carried into the account.
    DEVICE = "device"
    # A release that took a setting out of the catalogue switched its choices off (a migration).
    CATALOGUE = "catalogue"


class ConsentEvent(Base):
    __tablename__ = "consent_events"
    __table_args__ = (
        UniqueConstraint("account_id", "seq"),
        Index("ix_consent_events_account_id_key_seq", "account_id", "key", "seq"),
        # Events that switch something off, in the order the sender API's opt-out feed reads.
        Index(
            "ix_consent_events_turned_off",
            "occurred_at",
            "id",
            sqlite_where=text("new_value = 'false'"),
            postgresql_where=text("new_value = 'false'"),
        ),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    # Not a foreign key: the ledger outlives the account, pseudonymised, as proof of consent.
    account_id: Mapped[uuid.UUID]
    seq: Mapped[int]  # 1, 2, 3... within the account's chain
    key: Mapped[str] = mapped_column(String(64))
    old_value: Mapped[str | None] = mapped_column(String(64))
    new_value: Mapped[str] = mapped_column(String(64))
    actor: Mapped[ConsentActor] = mapped_column(text_enum(ConsentActor))
    # The staff member, if one acted; for a parent, the parental consent request they answered.
    actor_id: Mapped[uuid.UUID | None]
    source: Mapped[Source] = mapped_column(text_enum(Source))
    policy_version: Mapped[str] = mapped_column(String(32))  # the version in force
    occurred_at: Mapped[datetime]
    request_id: Mapped[str | None] = mapped_column(String(64))
    prev_hash: Mapped[str | None] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    # Which fields `hash` covers: 1 for events written before the three below existed, which
    # keep verifying as they were written; 2 adds them.
    hash_version: Mapped[int] = mapped_column(server_default=text("1"))
    # The version the person had accepted when the event was made (the one in force may be newer).
    accepted_policy_version: Mapped[str | None] = mapped_column(String(32))
    # For a change the person made while signed in: the session it came through (never its
    # token) and the client's user agent, truncated.
    session_id: Mapped[uuid.UUID | None]
    user_agent: Mapped[str | None] = mapped_column(String(255))
