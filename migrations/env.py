"""Alembic environment. The CLI hands in an open connection; run alone, it opens its own."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection

from models import Base, Database
from privacy_api.config import load_config

target_metadata = Base.metadata

# Any fixed number, the same in every process: "privacy!" in ASCII.
MIGRATION_LOCK_KEY = 0x7072697661637921


def wait_for_other_migrations(connection: Connection) -> None:
    """On PostgreSQL, let one process migrate at a time: several API instances starting at once
    would otherwise all create the same tables and all but one crash.

    The lock belongs to the migration's transaction, so it is released when that commits or
    rolls back, even if the process dies. SQLite has no such lock: there, one process migrates.
    """
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})


def run_with_connection(connection: Connection) -> None:
    wait_for_other_migrations(connection)
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_standalone() -> None:
    database = Database(load_config().database_url)
    async with database.engine.begin() as connection:
        await connection.run_sync(run_with_connection)
    await database.dispose()


connection = context.config.attributes.get("connection")
if connection is not None:
    run_with_connection(connection)
else:
    asyncio.run(run_standalone())
