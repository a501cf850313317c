"""Settings, the consent ledger (append-only, enforced by triggers) and idempotency keys.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APPEND_ONLY = "consent_events is append-only: events are never changed or removed"


def upgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(sa.Column("ledger_seq", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("ledger_head", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("gpc_applied_at", sa.DateTime(timezone=True), nullable=True))

    op.create_table(
        "account_settings",
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.String(length=32), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_account_settings_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("account_id", "key", name=op.f("pk_account_settings")),
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("key", sa.String(length=100), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_idempotency_keys_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("account_id", "key", name=op.f("pk_idempotency_keys")),
    )
    op.create_table(
        "consent_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("old_value", sa.String(length=64), nullable=True),
        sa.Column("new_value", sa.String(length=64), nullable=False),
        sa.Column("actor", sa.String(length=16), nullable=False),
        sa.Column("actor_id", sa.Uuid(), nullable=True),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("policy_version", sa.String(length=32), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("prev_hash", sa.String(length=64), nullable=True),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consent_events")),
        sa.UniqueConstraint("account_id", "seq", name=op.f("uq_consent_events_account_id")),
    )
    op.create_index(
        "ix_consent_events_account_id_key_seq", "consent_events", ["account_id", "key", "seq"]
    )

    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f"""
            CREATE FUNCTION consent_events_append_only() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION '{APPEND_ONLY}';
            END
            $$
            """
        )
        op.execute(
            "CREATE TRIGGER consent_events_no_change BEFORE UPDATE OR DELETE ON consent_events "
            "FOR EACH ROW EXECUTE FUNCTION consent_events_append_only()"
        )
        op.execute(
            "CREATE TRIGGER consent_events_no_truncate BEFORE TRUNCATE ON consent_events "
            "FOR EACH STATEMENT EXECUTE FUNCTION consent_events_append_only()"
        )
    else:
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER consent_events_no_{action.lower()} BEFORE {action} "
                f"ON consent_events BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER consent_events_no_truncate ON consent_events")
        op.execute("DROP TRIGGER consent_events_no_change ON consent_events")
        op.execute("DROP FUNCTION consent_events_append_only()")
    op.drop_index("ix_consent_events_account_id_key_seq", table_name="consent_events")
    op.drop_table("consent_events")
    op.drop_table("idempotency_keys")
    op.drop_table("account_settings")
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("gpc_applied_at")
        batch.drop_column("ledger_head")
        batch.drop_column("ledger_seq")
