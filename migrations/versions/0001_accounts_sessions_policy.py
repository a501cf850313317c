"""Accounts, sessions and policy versions, with the first policy version published.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FIRST_POLICY_SUMMARY = (
    "What we collect to run the CMS platform (account, contact and usage data), why, who helps us "
    "run it, how long we keep it, and your rights: to see, correct, export and delete your data, "
    "to choose how we contact you, and to say no to marketing. Not for children under 13."
)


def upgrade() -> None:
    policy_versions = op.create_table(
        "policy_versions",
        sa.Column("version", sa.String(length=32), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("material", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("version", name=op.f("pk_policy_versions")),
    )
    op.create_index(op.f("ix_policy_versions_published_at"), "policy_versions", ["published_at"])
    op.create_table(
        "accounts",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("display_name", sa.String(length=100), nullable=False),
        sa.Column("phone", sa.String(length=16), nullable=True),
        sa.Column("birth_date", sa.Date(), nullable=True),
        sa.Column("country", sa.String(length=2), nullable=True),
        sa.Column(
            "role",
            sa.Enum(
                "user", "support", "privacy_officer", name="role", native_enum=False, length=20
            ),
            nullable=False,
        ),
        sa.Column("accepted_policy_version", sa.String(length=32), nullable=True),
        sa.Column("policy_accepted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["accepted_policy_version"],
            ["policy_versions.version"],
            name=op.f("fk_accounts_accepted_policy_version_policy_versions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_accounts")),
        sa.UniqueConstraint("email", name=op.f("uq_accounts_email")),
    )
    op.create_table(
        "sessions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("user_agent", sa.String(length=255), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_sessions_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sessions")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_sessions_token_hash")),
    )
    op.create_index(op.f("ix_sessions_account_id"), "sessions", ["account_id"])

    published = datetime(2025, 7, 1, tzinfo=UTC)
    if op.get_bind().dialect.name == "sqlite":
        published = published.replace(tzinfo=None)
    op.bulk_insert(
        policy_versions,
        [
            {
                "version": "2025-07",
                "published_at": published,
                "summary": FIRST_POLICY_SUMMARY,
                "material": True,
            }
        ],
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_sessions_account_id"), table_name="sessions")
    op.drop_table("sessions")
    op.drop_table("accounts")
    op.drop_index(op.f("ix_policy_versions_published_at"), table_name="policy_versions")
    op.drop_table("policy_versions")
