"""Codes in outbox messages are kept beside the body, only until the message is sent. Email
confirmation messages already queued move their code there; sent ones lose it.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

import re
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# As the code wrote them when this revision was made; the migration must not follow later edits.
PLACEHOLDER = "{secret}"
REMOVED = "[removed once sent]"
_CODE = re.compile(r"code in the app: (\S+)")

notifications = sa.table(
    "notifications",
    sa.column("id", sa.Uuid()),
    sa.column("kind", sa.String()),
    sa.column("body", sa.Text()),
    sa.column("secret", sa.String()),
    sa.column("sent_at", sa.DateTime(timezone=True)),
)


def _confirmation_messages() -> sa.CursorResult[tuple[object, str, str | None, object]]:
    return op.get_bind().execute(
        sa.select(
            notifications.c.id,
            notifications.c.body,
            notifications.c.secret,
            notifications.c.sent_at,
        ).where(notifications.c.kind == "email_confirmation")
    )


def upgrade() -> None:
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.add_column(sa.Column("secret", sa.String(length=256), nullable=True))
    for id_, body, _, sent_at in _confirmation_messages().all():
        code = _CODE.search(body)
        if code is None:
            continue
        op.get_bind().execute(
            notifications.update()
            .where(notifications.c.id == id_)
            .values(
                body=body.replace(code[1], PLACEHOLDER),
                secret=code[1] if sent_at is None else None,
            )
        )


def downgrade() -> None:
    for id_, body, secret, _ in _confirmation_messages().all():
        op.get_bind().execute(
            notifications.update()
            .where(notifications.c.id == id_)
            .values(body=body.replace(PLACEHOLDER, secret or REMOVED))
        )
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.drop_column("secret")
