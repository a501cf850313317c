"""The bench's own databases and the accounts in them.

A PostgreSQL database is created for the run and dropped after it, as the tests do; SQLite is a
file in a temporary folder. Both are migrated by `privacy-api migrate`. Accounts are made by
signing up through the API; the long history is written through the models, as years of use
would have left it.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from sqlalchemy import func, insert, select
from sqlalchemy.engine import make_url

from benchmarks import client
from benchmarks.servers import BIN, PROJECT_ROOT
from models import Account, ConsentActor, ConsentEvent, Database, Source, utcnow

POSTGRES_ENV = "PRIVACY_API_TEST_POSTGRES_URL"
DEFAULT_POSTGRES = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
CHUNK = 10_000


@dataclass(frozen=True)
class Person:
    email: str
    token: str
    events: int  # in the consent ledger


@dataclass(frozen=True)
class People:
    normal: Person  # every settings row and the events of its signup
    large: Person  # the same, and a long history
    togglers: list[Person]  # one per client of the toggle run, so clients do not queue on a lock


def postgres_admin_url() -> str:
    return os.environ.get(POSTGRES_ENV, DEFAULT_POSTGRES)


def _dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@contextmanager
def database(kind: str, folder: Path) -> Iterator[str]:
    """A database of the bench's own, gone afterwards; its SQLAlchemy URL."""
    if kind == "sqlite":
        yield f"sqlite+aiosqlite:///{folder / 'bench.db'}"
        return
    admin_url = postgres_admin_url()
    name = f"privacy_bench_{uuid.uuid4().hex[:12]}"

    async def admin(statement: str) -> None:
        connection = await asyncpg.connect(_dsn(admin_url), timeout=5)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def postgres_problem() -> str | None:
    """Why PostgreSQL cannot be used, or None when it can."""

    async def probe() -> None:
        connection = await asyncpg.connect(_dsn(postgres_admin_url()), timeout=5)
        await connection.close()

    try:
        asyncio.run(probe())
    except (OSError, asyncpg.PostgresError) as error:
        where = make_url(postgres_admin_url()).render_as_string()
        return f"PostgreSQL not reachable at {where} ({error}); set {POSTGRES_ENV}"
    return None


def migrate(env: dict[str, str]) -> None:
    subprocess.run(
        [str(BIN / "privacy-api"), "migrate"],
        env=env,
        cwd=PROJECT_ROOT,
        check=True,
        capture_output=True,
    )


def people(api_url: str, database_url: str, *, togglers: int, large_events: int) -> People:
    run = uuid.uuid4().hex[:8]

    def person(name: str) -> Person:
        email = f"bench-{run}-{name}@example.com"
        return Person(email, client.signup(api_url, email, database_url), 0)

    normal, large = person("normal"), person("large")
    others = [person(f"toggler-{number}") for number in range(togglers)]
    asyncio.run(grow(database_url, large.email, large_events))
    seqs = asyncio.run(ledger_seqs(database_url, [p.email for p in (normal, large, *others)]))
    normal, large, *others = (
        Person(p.email, p.token, seq) for p, seq in zip((normal, large, *others), seqs, strict=True)
    )
    return People(normal, large, others)


async def grow(database_url: str, email: str, events: int) -> None:
    """Give an account a long history directly, as years of use would (the hashes are stand-ins:
    nothing on the paths measured checks them)."""
    database = Database(database_url)
    try:
        async with database.session() as session:
            account = (await session.scalars(select(Account).where(Account.email == email))).one()
            now = utcnow()
            seq, head = account.ledger_seq, account.ledger_head
            while events > 0:
                rows = []
                for _ in range(min(CHUNK, events)):
                    seq += 1
                    digest = f"{seq:064x}"
                    rows.append(
                        {
                            "account_id": account.id,
                            "seq": seq,
                            "key": "communication.email.marketing",
                            "old_value": "false",
                            "new_value": "true",
                            "actor": ConsentActor.PERSON,
                            "source": Source.WEB,
                            "policy_version": client.POLICY_VERSION,
                            "occurred_at": now,
                            "prev_hash": head,
                            "hash": digest,
                        }
                    )
                    head = digest
                await session.execute(insert(ConsentEvent), rows)
                events -= len(rows)
            account.ledger_seq, account.ledger_head = seq, head
            await session.commit()
    finally:
        await database.dispose()


async def ledger_seqs(database_url: str, emails: list[str]) -> list[int]:
    database = Database(database_url)
    try:
        async with database.session() as session:
            rows = await session.execute(
                select(Account.email, Account.ledger_seq).where(Account.email.in_(emails))
            )
            found = dict(rows.tuples().all())
    finally:
        await database.dispose()
    return [found[email] for email in emails]


async def events_written(database_url: str) -> int:
    """Every event of every account's ledger, from the heads the account rows keep."""
    database = Database(database_url)
    try:
        async with database.session() as session:
            return int(await session.scalar(select(func.sum(Account.ledger_seq))) or 0)
    finally:
        await database.dispose()
