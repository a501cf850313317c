"""The hot statements are sent by asyncpg itself on PostgreSQL (models/driver.py): the same
rows and errors as SQLAlchemy's, inside its transactions, the same answers over HTTP, and
SQLAlchemy's way wherever the driver's is not safe or someone listens to the statements."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError

from auth.actor import _SIGNED_IN
from auth.tokens import hash_token
from models import Account, AccountSetting, Database
from models.driver import DriverStatement
from resolvers.settings import _ONE_ACCOUNTS_SETTINGS
from tests.helpers import count_statements, new_account

ME = "{ me { email role birthDate phone communicationPreferences { topic enabled updatedAt } } }"


@contextmanager
def driver_fetches(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The statements asyncpg's own `fetch` runs (the real one, watched)."""
    sent: list[str] = []
    fetch = asyncpg.connection.Connection.fetch

    async def watched(self: Any, query: str, *args: Any, **kwargs: Any) -> Any:
        sent.append(query)
        return await fetch(self, query, *args, **kwargs)

    with monkeypatch.context() as patched:
        patched.setattr(asyncpg.connection.Connection, "fetch", watched)
        yield sent


async def test_the_same_rows_as_sqlalchemy(
    client: httpx.AsyncClient, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    account_id, token = await new_account(client, phone=None)
    await client.post(
        "/graphql",
        json={
            "query": "mutation { setCommunicationPreference(input: {channel: EMAIL, "
            "topic: NEWSLETTER, enabled: true}) { errors { code } } }"
        },
        headers={"Authorization": f"Bearer {token}"},
    )
    reads = (
        (_SIGNED_IN, {"token_hash": hash_token(token), "now": datetime.now(UTC)}),
        (_ONE_ACCOUNTS_SETTINGS, {"account_id": uuid.UUID(account_id)}),
    )
    for read, parameters in reads:
        async with database.reads() as session:
            connection = await session.connection()
            expected = [tuple(row) for row in await connection.execute(read.statement, parameters)]
            with driver_fetches(monkeypatch) as sent:
                found = [tuple(row) for row in await read.rows(connection, parameters)]
        assert found == expected
        assert [[type(value) for value in row] for row in found] == [
            [type(value) for value in row] for row in expected
        ]
        # Nulls, an enum, dates and times among them.
        assert None in found[0] and any(isinstance(v, datetime) for v in found[0])
        on_postgresql = database.engine.dialect.name == "postgresql"
        assert len(sent) == (1 if on_postgresql else 0)


async def test_me_over_http_reads_by_the_driver_on_postgresql(
    client: httpx.AsyncClient, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, token = await new_account(client)
    headers = {"Authorization": f"Bearer {token}"}
    with driver_fetches(monkeypatch) as sent:
        by_driver = await client.post("/graphql", json={"query": ME}, headers=headers)
    # A listener on the statements (tracing, these counts) sends them SQLAlchemy's way.
    with driver_fetches(monkeypatch) as unsent, count_statements(database.engine) as counted:
        by_sqlalchemy = await client.post("/graphql", json={"query": ME}, headers=headers)
    assert by_driver.json() == by_sqlalchemy.json()
    assert by_driver.json()["data"]["me"]["communicationPreferences"]
    assert unsent == []
    assert len(counted) == 2  # who is calling, and their settings
    if database.engine.dialect.name == "postgresql":
        assert len(sent) == 2
    else:
        assert sent == []


async def test_inside_sqlalchemys_transaction(
    client: httpx.AsyncClient, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a unit of work the driver's statements are part of SQLAlchemy's transaction: they see
    its writes, and a rollback undoes theirs."""
    account_id = uuid.UUID((await new_account(client))[0])
    named = {"account_id": account_id, "now": datetime.now(UTC)}
    by_id = Account.id == bindparam("account_id")
    rename = DriverStatement(
        update(Account).where(by_id).values(display_name="Renamed", updated_at=bindparam("now"))
    )
    names = DriverStatement(select(Account.display_name).where(by_id))
    with driver_fetches(monkeypatch) as sent:
        async with database.transaction() as session:
            await session.execute(
                update(Account).where(Account.id == account_id).values(display_name="Written")
            )
            connection = await session.connection()
            assert [tuple(row) for row in await names.rows(connection, named)] == [("Written",)]
            await rename.rows(connection, named)
            assert [tuple(row) for row in await names.rows(connection, named)] == [("Renamed",)]
            await session.rollback()
    on_postgresql = database.engine.dialect.name == "postgresql"
    assert len(sent) == (3 if on_postgresql else 0)
    async with database.reads() as session:
        connection = await session.connection()
        assert [tuple(row) for row in await names.rows(connection, named)] != [("Renamed",)]

    # A connection in no transaction and not in autocommit: SQLAlchemy's way, which begins one.
    async with database.engine.connect() as connection:
        with driver_fetches(monkeypatch) as sent:
            assert len(await names.rows(connection, named)) == 1
    assert sent == []

    # A default computed in Python (`updated_at`'s onupdate): SQLAlchemy's way, which sets it.
    stamp = DriverStatement(update(Account).where(by_id).values(display_name="Stamped"))
    times = DriverStatement(select(Account.updated_at).where(by_id))
    with driver_fetches(monkeypatch) as sent:
        async with database.transaction() as session:
            connection = await session.connection()
            [(before,)] = await times.rows(connection, named)
            await stamp.rows(connection, named)
            [(after,)] = await times.rows(connection, named)
    assert after > before
    assert len(sent) == (2 if on_postgresql else 0)


async def test_errors_are_sqlalchemys(client: httpx.AsyncClient, database: Database) -> None:
    """A unique violation is SQLAlchemy's IntegrityError, as code that catches it expects."""
    account_id = uuid.UUID((await new_account(client))[0])
    again = DriverStatement(
        insert(AccountSetting).values(
            account_id=bindparam("account_id"),
            key="communication.email.newsletter",
            value="true",
            updated_at=bindparam("now"),
        )
    )
    parameters = {"account_id": account_id, "now": datetime.now(UTC)}
    with pytest.raises(IntegrityError):
        async with database.transaction() as session:
            connection = await session.connection()
            await again.rows(connection, parameters)
            await again.rows(connection, parameters)
