"""Parental consent (GDPR Art. 8(2)): a minor's requests for a parent's consent, and the parent's
decision on each setting asked. The parent's address is kept only as a keyed hash.

Revision ID: 0011_parental_consent
Revises: 0010_api_keys
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_parental_consent"
down_revision: str | None = "0010_api_keys"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "parental_requests",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("parent_email_hash", sa.String(length=64), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("decide_by", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_parental_requests_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_parental_requests")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_parental_requests_token_hash")),
    )
    with op.batch_alter_table("parental_requests", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_parental_requests_account_id"), ["account_id"], unique=False
        )

    op.create_table(
        "parental_consents",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("request_id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("decision", sa.String(length=16), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("withdrawn_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_parental_consents_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["parental_requests.id"],
            name=op.f("fk_parental_consents_request_id_parental_requests"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_parental_consents")),
    )
    with op.batch_alter_table("parental_consents", schema=None) as batch_op:
        batch_op.create_index(
            "ix_parental_consents_account_id_key", ["account_id", "key"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_parental_consents_request_id"), ["request_id"], unique=False
        )


def downgrade() -> None:
    op.drop_table("parental_consents")
    op.drop_table("parental_requests")
