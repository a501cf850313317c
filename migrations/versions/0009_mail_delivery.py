"""The outbox is delivered: each message gets a delivery status, attempts and a retry time, a
claim (time and worker) so several workers share the work, the reason it failed, and an HTML
alternative. Messages already sent are marked sent; the others wait for the first delivery.

Plain ADD/DROP COLUMN, as in 0008: every new column is nullable or has a default.

Revision ID: 0009_mail_delivery
Revises: 0008_consent_proof
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_mail_delivery"
down_revision: str | None = "0008_consent_proof"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_notifications_deliverable"
COLUMNS = (
    "html",
    "status",
    "attempts",
    "next_attempt_at",
    "claimed_at",
    "claimed_by",
    "failure",
)

notifications = sa.table(
    "notifications",
    sa.column("status", sa.String()),
    sa.column("sent_at", sa.DateTime(timezone=True)),
)


def upgrade() -> None:
    op.add_column("notifications", sa.Column("html", sa.Text(), nullable=True))
    op.add_column(
        "notifications",
        sa.Column(
            "status", sa.String(length=16), nullable=False, server_default=sa.text("'pending'")
        ),
    )
    op.add_column(
        "notifications",
        sa.Column("attempts", sa.Integer(), nullable=False, server_default=sa.text("0")),
    )
    for name in ("next_attempt_at", "claimed_at"):
        op.add_column("notifications", sa.Column(name, sa.DateTime(timezone=True), nullable=True))
    op.add_column("notifications", sa.Column("claimed_by", sa.String(length=64), nullable=True))
    op.add_column("notifications", sa.Column("failure", sa.String(length=200), nullable=True))
    op.get_bind().execute(
        notifications.update().where(notifications.c.sent_at.is_not(None)).values(status="sent")
    )
    op.create_index(INDEX, "notifications", ["status", "next_attempt_at"])


def downgrade() -> None:
    op.drop_index(INDEX, table_name="notifications")
    for name in reversed(COLUMNS):
        op.drop_column("notifications", name)
