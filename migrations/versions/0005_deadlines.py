"""Deadlines of one calendar month that a privacy officer may extend by up to two, and reports
of a child's account counted by client: privacy requests record the months of any extension and
its reason, and, for a report, a keyed hash of the reporting client. Existing requests keep
their due dates and count as not extended.

Revision ID: 0005_deadlines
Revises: 0004
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_deadlines"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("privacy_requests", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("extended_months", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(sa.Column("extension_reason", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("reporter_key", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("privacy_requests", schema=None) as batch_op:
        batch_op.drop_column("reporter_key")
        batch_op.drop_column("extension_reason")
        batch_op.drop_column("extended_months")
