"""API keys: how machine clients (the mailer, the CMS backend) call the sender API."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import BigInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, utcnow, uuid_pk


class ApiScope(enum.Enum):
    """What a key may call; a key holds one or more."""

    CONSENT_READ = "consent:read"  # consentStatus
    SUPPRESSIONS_READ = "suppressions:read"  # suppressedAccounts


class ApiKey(Base):
    """A key a privacy officer made for a machine client. Only a hash of the key is kept."""

    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = uuid_pk()
    name: Mapped[str] = mapped_column(String(100))
    # The key's first characters, shown in lists so that officers can tell keys apart.
    prefix: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # Scope values separated by spaces, as OAuth writes them.
    scopes: Mapped[str] = mapped_column(String(200))
    created_by: Mapped[uuid.UUID]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_by: Mapped[uuid.UUID | None]
    revoked_at: Mapped[datetime | None]
    # Written in batches (see auth.api_keys.KeyUsage): behind by at most a minute per process.
    use_count: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    last_used_at: Mapped[datetime | None]

    def scope_set(self) -> frozenset[ApiScope]:
        return decode_scopes(self.scopes)


def encode_scopes(scopes: frozenset[ApiScope]) -> str:
    return " ".join(sorted(scope.value for scope in scopes))


def decode_scopes(text: str) -> frozenset[ApiScope]:
    known = {scope.value: scope for scope in ApiScope}
    return frozenset(known[value] for value in text.split() if value in known)
