"""How requests use pooled connections on PostgreSQL: no round trip that answers nothing."""

from __future__ import annotations

import asyncpg
import pytest
from sqlalchemy import text

from models import Database
from models import database as database_module
from tests.conftest import _asyncpg_dsn

on_postgresql = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


async def backend_state(url: str, pid: int) -> str:
    """What PostgreSQL says the connection with this process id is doing, seen from another."""
    watcher = await asyncpg.connect(_asyncpg_dsn(url))
    try:
        state: str = await watcher.fetchval(
            "SELECT state FROM pg_stat_activity WHERE pid = $1", pid
        )
        return state
    finally:
        await watcher.close()


@on_postgresql
class TestPostgreSQLConnections:
    async def test_a_requests_reads_open_no_transaction(self, clean_database_url: str) -> None:
        database = Database(clean_database_url)
        try:
            async with database.reads() as reads:
                pid = (await reads.execute(text("SELECT pg_backend_pid()"))).scalar_one()
                # Between two reads: not "idle in transaction", so no BEGIN was sent, and no
                # ROLLBACK will be needed.
                assert await backend_state(clean_database_url, pid) == "idle"
            async with database.session() as session:
                pid = (await session.execute(text("SELECT pg_backend_pid()"))).scalar_one()
                assert await backend_state(clean_database_url, pid) == "idle in transaction"
        finally:
            await database.dispose()

    async def test_a_connection_used_moments_ago_is_not_pinged(
        self, clean_database_url: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        database = Database(clean_database_url)
        pings: list[None] = []
        original = database.engine.dialect.do_ping

        def counting(connection: object) -> bool:
            pings.append(None)
            return original(connection)

        monkeypatch.setattr(database.engine.dialect, "do_ping", counting)
        try:
            for _ in range(5):
                async with database.reads() as reads:
                    await reads.execute(text("SELECT 1"))
            assert pings == []
        finally:
            await database.dispose()

    async def test_a_connection_that_died_while_idle_is_replaced_before_use(
        self, clean_database_url: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        database = Database(clean_database_url)
        try:
            async with database.reads() as reads:
                dead = (await reads.execute(text("SELECT pg_backend_pid()"))).scalar_one()
            # The server ends the pooled connection (a restart, a firewall's idle timeout).
            killer = await asyncpg.connect(_asyncpg_dsn(clean_database_url))
            try:
                assert await killer.fetchval("SELECT pg_terminate_backend($1)", dead)
            finally:
                await killer.close()
            monkeypatch.setattr(database_module, "IDLE_BEFORE_PING", 0.0)
            async with database.reads() as reads:
                alive = (await reads.execute(text("SELECT pg_backend_pid()"))).scalar_one()
            assert alive != dead
        finally:
            await database.dispose()
