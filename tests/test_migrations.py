"""Migrations go up, down and up again, and leave exactly the schema the models describe."""

from __future__ import annotations

import os
import uuid

import asyncpg
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection, make_url

from cli import alembic_config
from models import Base, Database
from tests.conftest import DEFAULT_POSTGRES, POSTGRES_ENV, _asyncpg_dsn


def _run(connection: Connection, revision: str, down: bool = False) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    (command.downgrade if down else command.upgrade)(config, revision)


def _differences(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection)
    return list(compare_metadata(context, Base.metadata))


async def _round_trip(url: str) -> list[object]:
    database = Database(url)
    try:
        async with database.engine.begin() as connection:
            await connection.run_sync(_run, "head")
        async with database.engine.begin() as connection:
            await connection.run_sync(_run, "base", True)
        async with database.engine.begin() as connection:
            await connection.run_sync(_run, "head")
        async with database.engine.connect() as connection:
            return await connection.run_sync(_differences)
    finally:
        await database.dispose()


async def test_sqlite_round_trip_matches_the_models(tmp_path) -> None:
    differences = await _round_trip(f"sqlite+aiosqlite:///{tmp_path / 'm.db'}")
    assert differences == []


async def test_postgresql_round_trip_matches_the_models(postgresql_url: str) -> None:
    # Depends on postgresql_url for its reachability check (skip locally, fail in CI).
    admin_url = os.environ.get(POSTGRES_ENV, DEFAULT_POSTGRES)
    admin = await asyncpg.connect(_asyncpg_dsn(admin_url))
    name = f"privacy_migrations_{uuid.uuid4().hex[:10]}"
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
        assert await _round_trip(url) == []
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
