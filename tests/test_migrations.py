"""Migrations go up, down and up again, leave exactly the schema the models describe, and may be
started by several processes at once."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

import asyncpg
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, make_url

from cli import alembic_config
from models import Base, Database
from tests.conftest import DEFAULT_POSTGRES, POSTGRES_ENV, _asyncpg_dsn

PROJECT_ROOT = Path(__file__).resolve().parent.parent


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


def test_postgresql_concurrent_migrations_all_succeed(postgresql_url: str) -> None:
    """Several processes starting at once (a deploy of N API instances) each run `migrate`."""
    admin_url = os.environ.get(POSTGRES_ENV, DEFAULT_POSTGRES)
    name = f"privacy_race_{uuid.uuid4().hex[:10]}"
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    asyncio.run(_admin(admin_url, f'CREATE DATABASE "{name}"'))
    try:
        environment = {**os.environ, "PRIVACY_API_DATABASE_URL": url}
        runs = [
            subprocess.Popen(
                [sys.executable, "-m", "cli", "migrate"],
                cwd=PROJECT_ROOT,
                env=environment,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(4)
        ]
        results = [(run.wait(timeout=120), *run.communicate()) for run in runs]
        for returncode, stdout, stderr in results:
            assert returncode == 0, stderr
            assert "Database is up to date." in stdout
        assert asyncio.run(_version(url)) == _head()
    finally:
        asyncio.run(_admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _admin(admin_url: str, statement: str) -> None:
    admin = await asyncpg.connect(_asyncpg_dsn(admin_url))
    try:
        await admin.execute(statement)
    finally:
        await admin.close()


async def _version(url: str) -> list[str]:
    connection = await asyncpg.connect(_asyncpg_dsn(url))
    try:
        return [row[0] for row in await connection.fetch("SELECT version_num FROM alembic_version")]
    finally:
        await connection.close()


def _head() -> list[str]:
    return list(ScriptDirectory.from_config(alembic_config()).get_heads())
