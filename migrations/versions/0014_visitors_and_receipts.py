"""Signed-out visitors: a record per device (its id kept only as a hash) and a consent ledger of
their own, with the account ledger's columns and chain. Visitor events are never changed
(triggers refuse UPDATE); a visitor's whole chain is deleted with the visitor when it expires or
is carried into an account.

Revision ID: 0014_visitors_and_receipts
Revises: 0013_webhooks
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014_visitors_and_receipts"
down_revision: str | None = "0013_webhooks"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NO_UPDATE = "visitor_consent_events is append-only: events are never changed"


def upgrade() -> None:
    op.create_table(
        "visitors",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("device_hash", sa.String(length=64), nullable=False),
        sa.Column("ledger_seq", sa.Integer(), nullable=False),
        sa.Column("ledger_head", sa.String(length=64), nullable=True),
        sa.Column("gpc_applied_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_choice_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_visitors")),
        sa.UniqueConstraint("device_hash", name=op.f("uq_visitors_device_hash")),
    )
    op.create_index(op.f("ix_visitors_last_choice_at"), "visitors", ["last_choice_at"])
    op.create_table(
        "visitor_consent_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True),
        sa.Column("visitor_id", sa.Uuid(), nullable=False),
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
        sa.Column("hash_version", sa.Integer(), nullable=False, server_default=sa.text("2")),
        sa.Column("accepted_policy_version", sa.String(length=32), nullable=True),
        sa.Column("session_id", sa.Uuid(), nullable=True),
        sa.Column("user_agent", sa.String(length=255), nullable=True),
        sa.ForeignKeyConstraint(
            ["visitor_id"],
            ["visitors.id"],
            name=op.f("fk_visitor_consent_events_visitor_id_visitors"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_visitor_consent_events")),
        sa.UniqueConstraint("visitor_id", "seq", name=op.f("uq_visitor_consent_events_visitor_id")),
    )
    op.create_index(
        op.f("ix_visitor_consent_events_visitor_id"), "visitor_consent_events", ["visitor_id"]
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f"""
            CREATE FUNCTION visitor_consent_events_no_update() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION '{NO_UPDATE}';
            END
            $$
            """
        )
        op.execute(
            "CREATE TRIGGER visitor_consent_events_no_update BEFORE UPDATE "
            "ON visitor_consent_events FOR EACH ROW "
            "EXECUTE FUNCTION visitor_consent_events_no_update()"
        )
    else:
        op.execute(
            "CREATE TRIGGER visitor_consent_events_no_update BEFORE UPDATE "
            f"ON visitor_consent_events BEGIN SELECT RAISE(ABORT, '{NO_UPDATE}'); END"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER visitor_consent_events_no_update ON visitor_consent_events")
        op.execute("DROP FUNCTION visitor_consent_events_no_update()")
    op.drop_index(op.f("ix_visitor_consent_events_visitor_id"), table_name="visitor_consent_events")
    op.drop_table("visitor_consent_events")
    op.drop_index(op.f("ix_visitors_last_choice_at"), table_name="visitors")
    op.drop_table("visitors")
