"""A setting switched on against the Global Privacy Control signal is marked as conflicting.

Settings the signal covers that are on in an account that already received the signal were
switched on by the person after the signal switched them off: they are marked from the time of
that change.

Revision ID: 0006_gpc_conflicts
Revises: 0005_deadlines
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_gpc_conflicts"
down_revision: str | None = "0005_deadlines"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# As the catalogue named them at this revision: the migration must not follow later edits.
GPC_KEYS = ("cookies.advertising", "data_sharing.third_party_marketing")

accounts = sa.table(
    "accounts",
    sa.column("id", sa.Uuid()),
    sa.column("gpc_applied_at", sa.DateTime(timezone=True)),
)
account_settings = sa.table(
    "account_settings",
    sa.column("account_id", sa.Uuid()),
    sa.column("key", sa.String()),
    sa.column("value", sa.String()),
    sa.column("updated_at", sa.DateTime(timezone=True)),
    sa.column("gpc_conflict_at", sa.DateTime(timezone=True)),
)


def upgrade() -> None:
    with op.batch_alter_table("account_settings", schema=None) as batch_op:
        batch_op.add_column(sa.Column("gpc_conflict_at", sa.DateTime(timezone=True), nullable=True))
    op.get_bind().execute(
        account_settings.update()
        .where(
            account_settings.c.key.in_(GPC_KEYS),
            account_settings.c.value == "true",
            account_settings.c.account_id.in_(
                sa.select(accounts.c.id).where(accounts.c.gpc_applied_at.is_not(None))
            ),
        )
        .values(gpc_conflict_at=account_settings.c.updated_at)
    )


def downgrade() -> None:
    with op.batch_alter_table("account_settings", schema=None) as batch_op:
        batch_op.drop_column("gpc_conflict_at")
