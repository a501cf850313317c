"""The "account erased" message outlives the account it is about, so it names none: an outbox
message's account may be empty.

Revision ID: 0007_erasure
Revises: 0006_gpc_conflicts
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_erasure"
down_revision: str | None = "0006_gpc_conflicts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

notifications = sa.table("notifications", sa.column("account_id", sa.Uuid()))


def upgrade() -> None:
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.alter_column("account_id", existing_type=sa.Uuid(), nullable=True)


def downgrade() -> None:
    # Messages with no account (unsent "account erased" confirmations) cannot be kept.
    op.get_bind().execute(notifications.delete().where(notifications.c.account_id.is_(None)))
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.alter_column("account_id", existing_type=sa.Uuid(), nullable=False)
