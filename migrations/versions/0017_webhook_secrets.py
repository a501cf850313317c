"""Webhook signing secrets sealed at rest (longer columns: a Fernet token of a secret), the
circuit breaker's state per endpoint, and the pseudonym an erased account's deletion events take
once every endpoint has had them.

The secrets themselves are sealed by `privacy-api migrate` right after this revision, with the
key from PRIVACY_API_WEBHOOK_SECRET_KEY: a migration file has no key to seal with.

Revision ID: 0017_webhook_secrets
Revises: 0014_visitors_and_receipts
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017_webhook_secrets"
down_revision: str | None = "0014_visitors_and_receipts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("webhook_endpoints") as batch:
        for column in ("secret", "previous_secret"):
            batch.alter_column(
                column, type_=sa.String(length=300), existing_type=sa.String(length=100)
            )
        batch.add_column(
            sa.Column("failures_in_a_row", sa.Integer(), server_default="0", nullable=False)
        )
        batch.add_column(sa.Column("paused_until", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("webhook_events") as batch:
        batch.add_column(sa.Column("pseudonym", sa.Uuid(), nullable=True))
        batch.create_index(batch.f("ix_webhook_events_pseudonym"), ["pseudonym"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("webhook_events") as batch:
        batch.drop_index(batch.f("ix_webhook_events_pseudonym"))
        batch.drop_column("pseudonym")
    # Sealed secrets do not fit: downgrade only a database whose endpoints were removed.
    with op.batch_alter_table("webhook_endpoints") as batch:
        batch.drop_column("paused_until")
        batch.drop_column("failures_in_a_row")
        for column in ("secret", "previous_secret"):
            batch.alter_column(
                column, type_=sa.String(length=100), existing_type=sa.String(length=300)
            )
