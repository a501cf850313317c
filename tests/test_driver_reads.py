"""Every request's session lookup and `me`'s settings are read by asyncpg itself on PostgreSQL
(models/driver.py): the same rows as SQLAlchemy's, the same answers over HTTP, and SQLAlchemy's
way wherever the driver's is not safe or someone listens to the statements."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import pytest

from auth.actor import _SIGNED_IN
from auth.tokens import hash_token
from models import Database
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


async def test_inside_a_transaction_sqlalchemy_reads(
    client: httpx.AsyncClient, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not in autocommit, SQLAlchemy's transaction must begin first: its own way."""
    account_id, _ = await new_account(client)
    async with database.transaction() as session:
        connection = await session.connection()
        with driver_fetches(monkeypatch) as sent:
            rows = await _ONE_ACCOUNTS_SETTINGS.rows(
                connection, {"account_id": uuid.UUID(account_id)}
            )
    assert rows and sent == []
