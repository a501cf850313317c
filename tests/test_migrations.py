"""Migrations go up, down and up again, leave exactly the schema the models describe, and may be
started by several processes at once."""

from __future__ import annotations

import asyncio
import hashlib
import json
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

from models import AccountSetting, Base, ConsentActor, ConsentEvent, Database, Notification, Source
from privacy_api.cli import alembic_config
from resolvers import consent, notifications
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
                [sys.executable, "-m", "privacy_api", "migrate"],
                cwd=PROJECT_ROOT,
                env=environment,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            # Two racing are the case the migration lock is for; more only repeat it.
            for _ in range(2)
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


_ledger = sa.table(
    "consent_events",
    *(
        sa.column(name)
        for name in ("seq", "key", "old_value", "new_value", "actor", "source", "policy_version")
    ),
    *(sa.column(name) for name in ("request_id", "prev_hash", "hash")),
    sa.column("account_id", sa.Uuid()),
    sa.column("actor_id", sa.Uuid()),
    sa.column("occurred_at", sa.DateTime(timezone=True)),
)


def _hash_as_0004_did(prev_hash: str | None, fields: list[object]) -> str:
    payload = json.dumps(fields, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(f"{prev_hash or ''}|{payload}".encode()).hexdigest()


def _ledger_as_0004_wrote_it(connection: Connection) -> uuid.UUID:
    """An account whose acceptance and one opt-in were recorded before events had hash versions."""
    now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
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
    head = None
    changes = [("policy", None, "2025-07"), ("communication.email.newsletter", "false", "true")]
    for seq, (key, old, new) in enumerate(changes, start=1):
        occurred_at = now.isoformat(timespec="microseconds")
        fields = [seq, key, old, new, "person", None, "web", "2025-07", occurred_at, "req-1"]
        digest = _hash_as_0004_did(head, fields)
        connection.execute(
            _ledger.insert().values(
                account_id=account,
                seq=seq,
                key=key,
                old_value=old,
                new_value=new,
                actor="person",
                actor_id=None,
                source="web",
                policy_version="2025-07",
                occurred_at=now,
                request_id="req-1",
                prev_hash=head,
                hash=digest,
            )
        )
        head = digest
    connection.execute(
        sa.text(
            "UPDATE accounts SET ledger_seq = 2, ledger_head = :head, "
            "accepted_policy_version = '2025-07' WHERE email = 'ada@example.com'"
        ),
        {"head": head},
    )
    connection.execute(
        sa.text(
            "INSERT INTO account_settings (account_id, key, value, updated_at) "
            "VALUES (:account, 'communication.email.newsletter', 'true', :now)"
        ),
        {"account": account.hex if connection.dialect.name == "sqlite" else account, "now": now},
    )
    return account


async def test_events_written_before_hash_versions_still_verify(empty_url: str) -> None:
    database = Database(empty_url)
    try:
        async with database.engine.begin() as connection:
            await connection.run_sync(_run, "0004")
            account = await connection.run_sync(_ledger_as_0004_wrote_it)
        async with database.engine.begin() as connection:
            await connection.run_sync(_run, "head")
        async with database.session() as session:
            old = list(await session.scalars(select(ConsentEvent).order_by(ConsentEvent.seq)))
            assert [event.hash_version for event in old] == [1, 1]
            assert await consent.verify_ledger(session) == (2, None)
            assert await consent.disagreeing_settings(session, limit=5) == []
        # The chain goes on in the new format, linked to the old events.
        provenance = consent.Provenance(ConsentActor.PERSON, Source.API, user_agent="App/2")
        async with database.transaction() as session:
            async with consent.open_ledger(session, account, provenance) as ledger:
                ledger.append("communication.email.newsletter", "true", "false")
            await session.execute(
                sa.text("UPDATE account_settings SET value = 'false'").execution_options(
                    synchronize_session=False
                )
            )
        async with database.session() as session:
            assert await consent.verify_ledger(session) == (3, None)
            assert await consent.disagreeing_settings(session, limit=5) == []
            newest = await session.scalar(select(ConsentEvent).where(ConsentEvent.seq == 3))
        assert newest is not None
        assert (newest.hash_version, newest.prev_hash) == (2, old[-1].hash)
        assert (newest.accepted_policy_version, newest.user_agent) == ("2025-07", "App/2")
    finally:
        await database.dispose()


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
