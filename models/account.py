"""Accounts, their roles, and their signed-in sessions."""

from __future__ import annotations

import enum
import uuid
from datetime import date, datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, text_enum, utcnow, uuid_pk


class Role(enum.Enum):
    USER = "user"
    SUPPORT = "support"
    PRIVACY_OFFICER = "privacy_officer"


class Account(Base):
    __tablename__ = "accounts"

    id: Mapped[uuid.UUID] = uuid_pk()
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    display_name: Mapped[str] = mapped_column(String(100))
    phone: Mapped[str | None] = mapped_column(String(16))
    # Staff accounts are made by the CLI without an age screen, so these two may be empty.
    birth_date: Mapped[date | None]
    country: Mapped[str | None] = mapped_column(String(2))
    # ISO 3166-2 (such as US-CA), only for someone in the US: some states' teen rules differ.
    us_state: Mapped[str | None] = mapped_column(String(5))
    role: Mapped[Role] = mapped_column(text_enum(Role, length=20), default=Role.USER)
    accepted_policy_version: Mapped[str | None] = mapped_column(
        ForeignKey("policy_versions.version")
    )
    policy_accepted_at: Mapped[datetime | None]
    # The head of this account's consent ledger, so appending needs no scan of the events.
    ledger_seq: Mapped[int] = mapped_column(default=0)
    ledger_head: Mapped[str | None] = mapped_column(String(64))
    # When a Global Privacy Control signal was first received (at signup or on a later request).
    # While set, each setting it opts out of is off, or on by a choice marked as conflicting
    # (account_settings.gpc_conflict_at): so a request with the signal has nothing to check.
    gpc_applied_at: Mapped[datetime | None]
    locale: Mapped[str | None] = mapped_column(String(16))
    # A new address waits here until the person redeems the token sent to it.
    pending_email: Mapped[str | None] = mapped_column(String(254))
    email_token_hash: Mapped[str | None] = mapped_column(String(64))
    email_token_expires_at: Mapped[datetime | None]
    deletion_requested_at: Mapped[datetime | None]
    deletion_due_at: Mapped[datetime | None] = mapped_column(index=True)
    # Set by a report of a child's account until a privacy officer reviews it: profile hidden.
    restricted_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ProfileChange(Base):
    """Which personal field changed, when and by whom. Never the values themselves."""

    __tablename__ = "profile_changes"

    id: Mapped[uuid.UUID] = uuid_pk()
    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    field: Mapped[str] = mapped_column(String(32))
    changed_by: Mapped[uuid.UUID | None]  # a staff member; None when the person did it
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)
    request_id: Mapped[str | None] = mapped_column(String(64))


class FormerEmail(Base):
    """An address the account had before an email change. Kept only while the account exists
    (its erasure erases by every address it ever had, then these go with it)."""

    __tablename__ = "former_emails"

    id: Mapped[uuid.UUID] = uuid_pk()
    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    email: Mapped[str] = mapped_column(String(254))
    replaced_at: Mapped[datetime] = mapped_column(default=utcnow)


class AuthSession(Base):
    """A signed-in device. Only a hash of its token is kept."""

    __tablename__ = "sessions"

    id: Mapped[uuid.UUID] = uuid_pk()
    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_agent: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]


class PendingSignup(Base):
    """A signup waiting for its address to be confirmed: no account exists until it is.

    Only hashes of the link's code are kept, and the row goes when it is confirmed or expires.
    """

    __tablename__ = "pending_signups"

    id: Mapped[uuid.UUID] = uuid_pk()
    email: Mapped[str] = mapped_column(String(254), index=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    display_name: Mapped[str] = mapped_column(String(100))
    phone: Mapped[str | None] = mapped_column(String(16))
    birth_date: Mapped[date]
    country: Mapped[str] = mapped_column(String(2))
    us_state: Mapped[str | None] = mapped_column(String(5))
    accepted_policy_version: Mapped[str] = mapped_column(ForeignKey("policy_versions.version"))
    code_hash: Mapped[str] = mapped_column(String(64))
    # `Sec-GPC: 1` came with the signup: applied when the account is created.
    global_privacy_control: Mapped[bool] = mapped_column(default=False)
    # The language the signup's Accept-Language preferred: its messages, and the account's.
    locale: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)


class PasswordReset(Base):
    """A password-reset link sent to an account's address; only its token's hash is kept."""

    __tablename__ = "password_resets"

    id: Mapped[uuid.UUID] = uuid_pk()
    # None for a request about an unknown address: its row is written all the same (and its
    # token sent nowhere), so both kinds of request commit the same write and take as long.
    account_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)
