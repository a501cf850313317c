"""What staff do with people's data: the audit log and legal holds."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, utcnow, uuid_pk


class AuditEntry(Base):
    """A staff member read or changed an account's data, and said why."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    staff_id: Mapped[uuid.UUID] = mapped_column(index=True)
    action: Mapped[str] = mapped_column(String(64))
    account_id: Mapped[uuid.UUID | None] = mapped_column(index=True)
    reason: Mapped[str] = mapped_column(Text)
    occurred_at: Mapped[datetime] = mapped_column(default=utcnow)
    request_id: Mapped[str | None] = mapped_column(String(64))


class LegalHold(Base):
    """While a hold is in force (not released), the account is not erased."""

    __tablename__ = "legal_holds"

    id: Mapped[uuid.UUID] = uuid_pk()
    account_id: Mapped[uuid.UUID] = mapped_column(index=True)
    reason: Mapped[str] = mapped_column(Text)
    set_by: Mapped[uuid.UUID]
    set_at: Mapped[datetime] = mapped_column(default=utcnow)
    released_by: Mapped[uuid.UUID | None]
    released_at: Mapped[datetime | None]
