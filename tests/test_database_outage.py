"""A database that is down, silent behind a dead link, or locked: every request answers in a
bounded time with an error a client can retry on, and the API recovers when the database does."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import uuid
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import asyncpg
import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from models import AuthSession, Database
from models.database import DatabaseTimeouts
from privacy_api.config import ConfigError, load_config
from resolvers.catalogue import Topic
from resolvers.unsubscribe import link_token
from tests.conftest import TEST_SECRET, _asyncpg_dsn, make_config
from tests.db_proxy import DatabaseProxy
from tests.helpers import LOGIN, ME, PASSWORD, gql, signed_up
from web.app import create_app

T = TypeVar("T")

# Half a second for each wait, so a test sees quickly what a client sees after the default waits.
SHORT = DatabaseTimeouts(connect=0.5, command=0.5, statement=0.5, pool=0.5)
# Past this, a request counts as hanging and the test fails instead of waiting for the outage.
HANG = 10
RETRYABLE_MESSAGE = "The service is briefly unavailable; try again."
# Words of drivers, SQL and exceptions that must never reach a client.
DRIVER_WORDS = (
    "asyncpg",
    "sqlalchemy",
    "sqlite",
    "select",
    "insert",
    "timeout",
    "timed out",
    "connection",
    "locked",
    "traceback",
    "errno",
    "sessions",
)

on_postgresql = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


async def bounded(awaitable: Awaitable[T]) -> T:
    return await asyncio.wait_for(awaitable, HANG)


def assert_retryable(body: dict[str, Any]) -> None:
    """One GraphQL error, with the code to retry on and no word of what failed underneath."""
    assert [error["extensions"]["code"] for error in body["errors"]] == ["SERVICE_UNAVAILABLE"]
    assert body["errors"][0]["message"] == RETRYABLE_MESSAGE
    shown = json.dumps(body).lower()
    assert not [word for word in DRIVER_WORDS if word in shown], body


def assert_unavailable_page(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert int(response.headers["retry-after"]) > 0
    shown = response.text.lower()
    assert not [word for word in DRIVER_WORDS if word in shown], response.text


@asynccontextmanager
async def api_behind(
    proxy: DatabaseProxy,
    database_url: str,
    environment: str = "development",
    timeouts: DatabaseTimeouts = SHORT,
    **settings: object,
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an API whose database connections all go through the proxy."""
    url = make_url(database_url).set(host="127.0.0.1", port=proxy.port)
    config = make_config(
        url.render_as_string(hide_password=False),
        environment=environment,
        database_timeouts=timeouts,
        **settings,
    )
    app = create_app(config)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http
    finally:
        await proxy.restore()
        await app.state.services.database.dispose()


@on_postgresql
class TestStalledDatabase:
    """Connections open, nothing answers: as behind a dead network link."""

    @pytest.mark.parametrize("environment", ["development", "production"])
    async def test_queries_and_mutations_answer_a_retryable_error(
        self, proxy, clean_database_url, environment
    ) -> None:
        async with api_behind(proxy, clean_database_url, environment) as client:
            token = await signed_up(client)
            proxy.stall()
            assert_retryable(await bounded(gql(client, ME, token=token)))
            login = {"input": {"email": "ada@example.com", "password": PASSWORD}}
            assert_retryable(await bounded(gql(client, LOGIN, login)))

    async def test_the_api_recovers_when_the_link_does(self, proxy, clean_database_url) -> None:
        async with api_behind(proxy, clean_database_url) as client:
            token = await signed_up(client)
            proxy.stall()
            assert_retryable(await bounded(gql(client, ME, token=token)))
            await proxy.restore()
            body = await bounded(gql(client, ME, token=token))
            assert "errors" not in body, body
            assert body["data"]["me"]["email"] == "ada@example.com"

    async def test_readyz_answers_503_then_200(self, proxy, clean_database_url) -> None:
        async with api_behind(proxy, clean_database_url) as client:
            assert (await client.get("/readyz")).status_code == 200  # a pooled connection
            proxy.stall()
            assert (await bounded(client.get("/readyz"))).status_code == 503
            await proxy.restore()
            assert (await bounded(client.get("/readyz"))).status_code == 200

    async def test_readyz_answers_503_at_once_whatever_the_database_timeouts(
        self, proxy, clean_database_url
    ) -> None:
        # Waits far longer than HANG: a readiness probe must not inherit them, or a load
        # balancer's probe times out instead of seeing 503.
        patient = DatabaseTimeouts(connect=60, command=60, statement=60, pool=60)
        async with api_behind(proxy, clean_database_url, timeouts=patient) as client:
            assert (await client.get("/readyz")).status_code == 200
            proxy.stall()
            stalled = await bounded(client.get("/readyz"))
            assert stalled.status_code == 503
            assert stalled.json() == {"status": "database unavailable"}
            await proxy.refuse()
            assert (await bounded(client.get("/readyz"))).status_code == 503

    async def test_links_in_emails_answer_503_with_retry_after(
        self, proxy, clean_database_url
    ) -> None:
        async with api_behind(proxy, clean_database_url) as client:
            await signed_up(client)
            proxy.stall()
            unsubscribe = link_token(TEST_SECRET, uuid.uuid4(), Topic.MARKETING)
            for response in (
                await bounded(client.get("/unsubscribe", params={"token": unsubscribe})),
                await bounded(
                    client.post(
                        "/unsubscribe",
                        params={"token": unsubscribe},
                        data={"List-Unsubscribe": "One-Click"},
                    )
                ),
                await bounded(client.get("/exports/some-export-token")),
            ):
                assert_unavailable_page(response)


@on_postgresql
class TestDatabaseDown:
    """The server is gone: open connections are cut and new ones refused."""

    async def test_answers_a_retryable_error_then_recovers(self, proxy, clean_database_url) -> None:
        async with api_behind(proxy, clean_database_url) as client:
            token = await signed_up(client)
            await proxy.refuse()
            assert_retryable(await bounded(gql(client, ME, token=token)))
            assert (await bounded(client.get("/readyz"))).status_code == 503
            await proxy.restore()
            body = await bounded(gql(client, ME, token=token))
            assert body["data"]["me"]["email"] == "ada@example.com", body
            assert (await bounded(client.get("/readyz"))).status_code == 200

    async def test_from_the_start(self, proxy, clean_database_url) -> None:
        await proxy.refuse()
        async with api_behind(proxy, clean_database_url, "production") as client:
            login = {"input": {"email": "ada@example.com", "password": PASSWORD}}
            assert_retryable(await bounded(gql(client, LOGIN, login)))


@asynccontextmanager
async def write_lock_held(database_url: str) -> AsyncIterator[None]:
    """Another client holds a write lock on the sessions table until the block ends."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        holder = sqlite3.connect(url.database or "", isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        return
    connection = await asyncpg.connect(_asyncpg_dsn(database_url))
    try:
        async with connection.transaction():
            # Reads go on; writes to sessions wait for the lock.
            await connection.execute("LOCK TABLE sessions IN EXCLUSIVE MODE")
            yield
    finally:
        await connection.close()


async def session_count(database: Database) -> int:
    async with database.session() as session:
        return int(await session.scalar(select(func.count()).select_from(AuthSession)) or 0)


class TestLockedDatabase:
    async def test_a_write_waiting_past_the_timeout_is_retryable_and_changes_nothing(
        self, clean_database_url, database
    ) -> None:
        config = make_config(clean_database_url, database_timeouts=SHORT)
        app = create_app(config)
        transport = httpx.ASGITransport(app=app)
        login = {"input": {"email": "ada@example.com", "password": PASSWORD}}
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                await signed_up(client)
                before = await session_count(database)
                async with write_lock_held(clean_database_url):
                    assert_retryable(await bounded(gql(client, LOGIN, login)))
                assert await session_count(database) == before
                body = await bounded(gql(client, LOGIN, login))
                assert body["data"]["login"]["errors"] == [], body
        finally:
            await app.state.services.database.dispose()


class TestTimeoutSettings:
    def test_defaults_bound_every_wait(self, tmp_path) -> None:
        config = load_config({"PRIVACY_API_DATA_DIR": str(tmp_path)})
        assert config.database_timeouts == DatabaseTimeouts(
            connect=10, command=15, statement=10, pool=30
        )

    def test_each_is_settable_in_seconds(self, tmp_path) -> None:
        config = load_config(
            {
                "PRIVACY_API_DATA_DIR": str(tmp_path),
                "PRIVACY_API_DB_CONNECT_TIMEOUT": "2.5",
                "PRIVACY_API_DB_COMMAND_TIMEOUT": "30",
                "PRIVACY_API_DB_STATEMENT_TIMEOUT": "20",
                "PRIVACY_API_DB_POOL_TIMEOUT": "3",
            }
        )
        assert config.database_timeouts == DatabaseTimeouts(
            connect=2.5, command=30, statement=20, pool=3
        )

    @pytest.mark.parametrize("value", ["0", "-1", "soon", "nan", "inf"])
    def test_a_wait_that_is_not_a_positive_number_is_refused_at_start(
        self, tmp_path, value
    ) -> None:
        environment = {"PRIVACY_API_DATA_DIR": str(tmp_path), "PRIVACY_API_DB_POOL_TIMEOUT": value}
        with pytest.raises(ConfigError, match="PRIVACY_API_DB_POOL_TIMEOUT"):
            load_config(environment)
