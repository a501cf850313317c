"""Privacy requests (access, export, deletion, correction, complaints, reports of a child's
account) and the data exports they produce."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, text_enum, utcnow, uuid_pk


class RequestKind(enum.Enum):
    ACCESS = "access"
    EXPORT = "export"
    DELETION = "deletion"
    CORRECTION = "correction"
    COMPLAINT = "complaint"
    CHILD_REPORT = "child_report"


class RequestStatus(enum.Enum):
    OPEN = "open"
    COMPLETED = "completed"
    REJECTED = "rejected"
    CANCELLED = "cancelled"


class PrivacyRequest(Base):
    __tablename__ = "privacy_requests"

    id: Mapped[uuid.UUID] = uuid_pk()
    kind: Mapped[RequestKind] = mapped_column(text_enum(RequestKind))
    status: Mapped[RequestStatus] = mapped_column(text_enum(RequestStatus), index=True)
    # No foreign keys: the record of how a request was handled outlives an erased account, with
    # the id pseudonymised like the consent ledger's.
    account_id: Mapped[uuid.UUID | None] = mapped_column(index=True)  # whom it is about
    requested_by: Mapped[uuid.UUID | None]  # None for an anonymous report
    contact_email: Mapped[str | None] = mapped_column(String(254))
    subject: Mapped[str | None] = mapped_column(String(200))
    details: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # One calendar month from created_at, plus the months of any extension (at most two).
    due_at: Mapped[datetime] = mapped_column(index=True)
    extended_months: Mapped[int] = mapped_column(default=0, server_default="0")
    extension_reason: Mapped[str | None] = mapped_column(Text)
    # Reports of a child's account only: a keyed hash of the reporting client and the reported
    # account, to count different reporters without knowing who they are.
    reporter_key: Mapped[str | None] = mapped_column(String(64))
    handled_by: Mapped[uuid.UUID | None]
    handled_at: Mapped[datetime | None]
    resolution: Mapped[str | None] = mapped_column(Text)


class DataExport(Base):
    """A single-use, expiring download of everything held about a person."""

    __tablename__ = "data_exports"

    id: Mapped[uuid.UUID] = uuid_pk()
    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    downloaded_at: Mapped[datetime | None]
