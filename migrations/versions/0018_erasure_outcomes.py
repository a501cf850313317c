"""The addresses an account had before it changed its email, kept while the account exists so
that its erasure also finds what was written to or about them.

Revision ID: 0018_erasure_outcomes
Revises: 0017_webhook_secrets
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018_erasure_outcomes"
down_revision: str | None = "0017_webhook_secrets"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "former_emails",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("replaced_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_former_emails_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_former_emails")),
    )
    op.create_index(op.f("ix_former_emails_account_id"), "former_emails", ["account_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_former_emails_account_id"), table_name="former_emails")
    op.drop_table("former_emails")
