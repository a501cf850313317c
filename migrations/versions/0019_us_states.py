"""A US state beside the country (for the states' teen rules), and partner marketing withdrawn.

`accounts.us_state` and `pending_signups.us_state` hold an ISO 3166-2 code such as US-CA, only
for people in the US. `data_sharing.third_party_marketing` left the catalogue, as the privacy
policy says we do not sell, trade or rent personal information: each account that had it on gets
an event switching it off (actor SYSTEM, source CATALOGUE), chained and sent to webhooks as the
API writes every event, and the setting's stored rows go. The ledger is append-only, so a
downgrade keeps those events and leaves the choices off.

Revision ID: 0019_us_states
Revises: 0018_erasure_outcomes
Create Date: 2026-12-04
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from models import ConsentActor, ConsentEvent, Source
from resolvers.consent import Provenance, chained_values
from resolvers.webhooks import consent_changed_rows

revision: str = "0019_us_states"
down_revision: str | None = "0018_erasure_outcomes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# As the catalogue named it: the migration must not follow later edits.
WITHDRAWN_KEY = "data_sharing.third_party_marketing"
ON, OFF = "true", "false"

accounts = sa.table(
    "accounts",
    sa.column("id", sa.Uuid()),
    sa.column("ledger_seq", sa.Integer()),
    sa.column("ledger_head", sa.String()),
    sa.column("accepted_policy_version", sa.String()),
)
account_settings = sa.table(
    "account_settings",
    sa.column("account_id", sa.Uuid()),
    sa.column("key", sa.String()),
    sa.column("value", sa.String()),
)
policy_versions = sa.table(
    "policy_versions",
    sa.column("version", sa.String()),
    sa.column("published_at", sa.DateTime(timezone=True)),
)
_IDS = ("account_id", "actor_id", "session_id")
_TEXTS = (
    "seq key old_value new_value actor source policy_version request_id prev_hash hash "
    "hash_version accepted_policy_version user_agent"
).split()
_EVENT_COLUMNS = (*_IDS, "occurred_at", *_TEXTS)
consent_events = sa.table(
    "consent_events",
    *(sa.column(name, sa.Uuid()) for name in _IDS),
    sa.column("occurred_at", sa.DateTime(timezone=True)),
    *(sa.column(name) for name in _TEXTS),
)
webhook_events = sa.table(
    "webhook_events",
    sa.column("account_id", sa.Uuid()),
    sa.column("created_at", sa.DateTime(timezone=True)),
    *(sa.column(name) for name in ("message_id", "type", "payload")),
)


def upgrade() -> None:
    for table in ("accounts", "pending_signups"):
        op.add_column(table, sa.Column("us_state", sa.String(length=5), nullable=True))
    switch_off_partner_marketing(op.get_bind())


def switch_off_partner_marketing(connection: sa.Connection) -> None:
    """One event per account whose stored choice is on, appended to its chain with the API's
    own recipe. The account rows are locked first, as the API locks them to append, so an API
    process still running the old release cannot fork a chain meanwhile."""
    holders = connection.execute(
        sa.select(accounts.c.id, accounts.c.ledger_seq, accounts.c.ledger_head)
        .add_columns(accounts.c.accepted_policy_version)
        .where(
            accounts.c.id.in_(
                sa.select(account_settings.c.account_id).where(
                    account_settings.c.key == WITHDRAWN_KEY, account_settings.c.value == ON
                )
            )
        )
        .order_by(accounts.c.id)
        .with_for_update()
    ).all()
    if holders:
        in_force = connection.execute(
            sa.select(policy_versions.c.version)
            .order_by(policy_versions.c.published_at.desc())
            .limit(1)
        ).scalar_one()
        now = datetime.now(UTC)
        by_the_release = Provenance(ConsentActor.SYSTEM, Source.CATALOGUE)
        events = []
        for account_id, seq, head, accepted in holders:
            values = chained_values(
                by_the_release,
                seq=seq + 1,
                head=head,
                key=WITHDRAWN_KEY,
                old_value=ON,
                new_value=OFF,
                policy_version=in_force,
                accepted_policy_version=accepted,
                now=now,
            )
            events.append(ConsentEvent(account_id=account_id, **values))
            connection.execute(
                accounts.update()
                .where(accounts.c.id == account_id)
                .values(ledger_seq=values["seq"], ledger_head=values["hash"])
            )
        connection.execute(
            consent_events.insert(),
            [
                {
                    **{name: getattr(event, name) for name in _EVENT_COLUMNS},
                    "actor": event.actor.value,
                    "source": event.source.value,
                }
                for event in events
            ],
        )
        connection.execute(
            webhook_events.insert(),
            [{**row, "type": row["type"].value} for row in consent_changed_rows(events)],
        )
    connection.execute(account_settings.delete().where(account_settings.c.key == WITHDRAWN_KEY))


def downgrade() -> None:
    # Not in batch mode: on SQLite that copies the table, and dropping the old `accounts` would
    # cascade to every table that refers to it. SQLite (3.35+) drops a plain column itself.
    for table in ("pending_signups", "accounts"):
        op.drop_column(table, "us_state")
