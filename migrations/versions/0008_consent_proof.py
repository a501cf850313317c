"""Consent events record the policy version the person had accepted, the session and user agent a
change came through, and which hash format covers them. Existing events are hash version 1 and
keep verifying as they were written.

Plain ADD/DROP COLUMN, not a batch: rebuilding the table on SQLite would lose its append-only
triggers, and adding nullable columns (or one with a default) changes no existing row.

Revision ID: 0008_consent_proof
Revises: 0007_erasure
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_consent_proof"
down_revision: str | None = "0007_erasure"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = ("hash_version", "accepted_policy_version", "session_id", "user_agent")


def upgrade() -> None:
    op.add_column(
        "consent_events",
        sa.Column("hash_version", sa.Integer(), nullable=False, server_default=sa.text("1")),
    )
    op.add_column(
        "consent_events", sa.Column("accepted_policy_version", sa.String(length=32), nullable=True)
    )
    op.add_column("consent_events", sa.Column("session_id", sa.Uuid(), nullable=True))
    op.add_column("consent_events", sa.Column("user_agent", sa.String(length=255), nullable=True))


def downgrade() -> None:
    for name in reversed(COLUMNS):
        op.drop_column("consent_events", name)
