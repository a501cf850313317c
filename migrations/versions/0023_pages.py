"""The language a signup's Accept-Language preferred, kept with the pending signup until the
account it creates takes it as its own (accounts.locale exists since 0003).

Revision ID: 0023_pages
Revises: 0019_us_states
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0023_pages"
down_revision: str | None = "0019_us_states"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("pending_signups") as batch_op:
        batch_op.add_column(sa.Column("locale", sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("pending_signups") as batch_op:
        batch_op.drop_column("locale")
