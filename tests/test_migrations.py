"""Migrations go up, down and up again, leave exactly the schema the models describe, and may be
started by several processes at once."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import select
from sqlalchemy.engine import Connection, make_url

from cli import alembic_config
from models import AccountSetting, Base, Database, Notification
from resolvers import notifications
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


_accounts = sa.table(
    "accounts",
    *(sa.column(name) for name in ("email", "password_hash", "display_name", "role")),
    sa.column("id", sa.Uuid()),
    sa.column("created_at", sa.DateTime(timezone=True)),
    sa.column("updated_at", sa.DateTime(timezone=True)),
)
_outbox = sa.table(
    "notifications",
    *(sa.column(name) for name in ("kind", "recipient", "subject", "body", "secret")),
    sa.column("id", sa.Uuid()),
    sa.column("account_id", sa.Uuid()),
    sa.column("created_at", sa.DateTime(timezone=True)),
    sa.column("sent_at", sa.DateTime(timezone=True)),
)


def _queue_codes_as_0003_did(connection: Connection) -> None:
    """One account with an email confirmation waiting and one already sent, each with its code
    in the body, as messages were stored before codes were kept apart."""
    now = datetime.now(UTC)
    account = uuid.uuid4()
    connection.execute(
        _accounts.insert().values(
            id=account,
            email="ada@example.com",
            password_hash="x",
            display_name="Ada",
            role="user",
            created_at=now,
            updated_at=now,
        )
    )
    for code, sent_at in (("waiting-code", None), ("sent-code", now)):
        connection.execute(
            _outbox.insert().values(
                id=uuid.uuid4(),
                account_id=account,
                kind="email_confirmation",
                recipient="new@example.com",
                subject="Confirm",
                created_at=now,
                sent_at=sent_at,
                body=f"open https://x/confirm-email?token={code} or enter this code in the app: "
                f"{code}\nThe code works for 24 hours.",
            )
        )


@pytest.fixture(params=["sqlite", "postgresql"])
async def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A database with no tables at all, of each kind."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"
        return
    request.getfixturevalue("postgresql_url")  # reachable, or skipped (failed in CI)
    admin_url = os.environ.get(POSTGRES_ENV, DEFAULT_POSTGRES)
    name = f"privacy_migrations_{uuid.uuid4().hex[:10]}"
    await _admin(admin_url, f'CREATE DATABASE "{name}"')
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        await _admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def test_upgrade_keeps_queued_codes_only_until_sent(empty_url: str) -> None:
    database = Database(empty_url)
    try:
        async with database.engine.begin() as connection:
            await connection.run_sync(_run, "0003")
            await connection.run_sync(_queue_codes_as_0003_did)
        async with database.engine.begin() as connection:
            await connection.run_sync(_run, "head")
        async with database.session() as session:
            messages = {m.sent_at is None: m for m in await session.scalars(select(Notification))}
    finally:
        await database.dispose()
    waiting, sent = messages[True], messages[False]
    assert "waiting-code" not in waiting.body and waiting.secret == "waiting-code"
    assert notifications.render(waiting).endswith(
        "token=waiting-code or enter this code in the app: waiting-code\n"
        "The code works for 24 hours."
    )
    assert "sent-code" not in sent.body + notifications.render(sent)
    assert sent.secret is None


_gpc_accounts = sa.table(
    "accounts",
    *(sa.column(name) for name in ("email", "password_hash", "display_name", "role")),
    sa.column("id", sa.Uuid()),
    sa.column("gpc_applied_at", sa.DateTime(timezone=True)),
    sa.column("created_at", sa.DateTime(timezone=True)),
    sa.column("updated_at", sa.DateTime(timezone=True)),
)
_settings = sa.table(
    "account_settings",
    sa.column("account_id", sa.Uuid()),
    sa.column("key", sa.String()),
    sa.column("value", sa.String()),
    sa.column("updated_at", sa.DateTime(timezone=True)),
)


def _advertising_on_as_0004_left_it(connection: Connection) -> dict[str, uuid.UUID]:
    """Advertising switched on by two people: one after a GPC signal had switched it off, one
    who never sent the signal."""
    now = datetime.now(UTC)
    ids = {"after_signal": uuid.uuid4(), "no_signal": uuid.uuid4()}
    for name, account in ids.items():
        connection.execute(
            _gpc_accounts.insert().values(
                id=account,
                email=f"{name}@example.com",
                password_hash="x",
                display_name=name,
                role="user",
                gpc_applied_at=now if name == "after_signal" else None,
                created_at=now,
                updated_at=now,
            )
        )
        for key, value in (
            ("cookies.advertising", "true"),
            ("data_sharing.third_party_marketing", "false"),
        ):
            connection.execute(
                _settings.insert().values(account_id=account, key=key, value=value, updated_at=now)
            )
    return ids


async def test_upgrade_marks_choices_made_against_an_applied_gpc_signal(empty_url: str) -> None:
    database = Database(empty_url)
    try:
        async with database.engine.begin() as connection:
            await connection.run_sync(_run, "0004")
            ids = await connection.run_sync(_advertising_on_as_0004_left_it)
        async with database.engine.begin() as connection:
            await connection.run_sync(_run, "head")
        async with database.session() as session:
            rows = await session.execute(
                select(AccountSetting.account_id, AccountSetting.key).where(
                    AccountSetting.gpc_conflict_at.is_not(None)
                )
            )
            marked = {tuple(row) for row in rows}
    finally:
        await database.dispose()
    assert marked == {(ids["after_signal"], "cookies.advertising")}
