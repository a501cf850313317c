"""API keys for machine clients of the sender API, and an index that lets a mailer read the
marketing opt-outs of the ledger in order without scanning it.

The index is partial (only events that switch something off): it costs nothing on the events
that switch something on or record a policy acceptance.

Revision ID: 0010_api_keys
Revises: 0009_mail_delivery
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_api_keys"
down_revision: str | None = "0009_mail_delivery"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TURNED_OFF = sa.text("new_value = 'false'")


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("scopes", sa.String(length=200), nullable=False),
        sa.Column("created_by", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_by", sa.Uuid(), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("use_count", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_keys_token_hash")),
    )
    op.create_index(
        "ix_consent_events_turned_off",
        "consent_events",
        ["occurred_at", "id"],
        unique=False,
        sqlite_where=TURNED_OFF,
        postgresql_where=TURNED_OFF,
    )


def downgrade() -> None:
    op.drop_index("ix_consent_events_turned_off", table_name="consent_events")
    op.drop_table("api_keys")
