"""Alembic environment. The CLI hands in an open connection; run alone, it opens its own."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from config import load_config
from models import Base, Database

target_metadata = Base.metadata


def run_with_connection(connection: Connection) -> None:
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
