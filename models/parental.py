"""A minor's request for a parent's consent, and the parent's decision on each setting asked."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, text_enum, utcnow, uuid_pk


class ParentalDecision(enum.Enum):
    """What the parent said about one setting. Whether a grant has lapsed is not stored: it
    follows from the minor's age when read, as being a minor does."""

    PENDING = "pending"
    GRANTED = "granted"
    REFUSED = "refused"
    WITHDRAWN = "withdrawn"


class ParentalRequest(Base):
    """One request mailed to a parent. The parent's address is kept only as a keyed hash."""

    __tablename__ = "parental_requests"

    id: Mapped[uuid.UUID] = uuid_pk()
    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    parent_email_hash: Mapped[str] = mapped_column(String(64))
    # The link mailed to the parent: it decides the request once, until `decide_by`, and
    # withdraws what this parent granted this minor for as long as a grant stands.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    decide_by: Mapped[datetime]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    decided_at: Mapped[datetime | None]


class ParentalConsent(Base):
    """The parent's decision on one setting of one request."""

    __tablename__ = "parental_consents"
    __table_args__ = (Index("ix_parental_consents_account_id_key", "account_id", "key"),)

    id: Mapped[uuid.UUID] = uuid_pk()
    request_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("parental_requests.id", ondelete="CASCADE"), index=True
    )
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(64))
    decision: Mapped[ParentalDecision] = mapped_column(text_enum(ParentalDecision))
    decided_at: Mapped[datetime | None]
    withdrawn_at: Mapped[datetime | None]
