"""Prepare, then write: a use case hashes, verifies and asks the rate limiter before it opens its
transaction, so a slow password hash holds neither SQLite's only writer nor a pooled PostgreSQL
connection. Each test holds one use case's hash and meanwhile has another person toggle a
setting."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from auth import passwords
from tests.helpers import (
    LOGIN,
    PASSWORD,
    database_behind,
    gql,
    new_account,
    settings_mutation,
    signed_up,
    start_signup,
)
from tests.test_password_reset import REQUEST, RESET, reset_token
from tests.test_settings import SET_PREFERENCE, toggle

# How long a hash is held at most when nothing releases it: only the old code, whose toggle waits
# for the hash, takes this long (and then fails); otherwise the toggle's end releases it.
HOLD_AT_MOST = 5.0
CHANGE_PASSWORD = """
mutation Change($input: ChangePasswordInput!) {
  changePassword(input: $input) { account { email } errors { field code } }
}
"""
DELETE_ACCOUNT = """
mutation Delete($password: String!) {
  requestAccountDeletion(input: {password: $password}) { errors { field code } }
}
"""
NEW_PASSWORD = "a brand new passphrase"


class HeldHashing:
    """The password context, with each hash or verification held until `release` (or for
    HOLD_AT_MOST): it runs in a worker thread, so threading events mark where it is."""

    def __init__(self, real: Any, loop: asyncio.AbstractEventLoop) -> None:
        self._real = real
        self._loop = loop
        self.started = asyncio.Event()
        self.release = threading.Event()
        self.ran_out = threading.Event()

    def _hold(self) -> None:
        self._loop.call_soon_threadsafe(self.started.set)
        if not self.release.wait(HOLD_AT_MOST):
            self.ran_out.set()

    def hash(self, secret: str) -> str:
        self._hold()
        return str(self._real.hash(secret))

    def verify(self, secret: str, stored: str) -> bool:
        self._hold()
        return bool(self._real.verify(secret, stored))

    def verify_and_update(self, secret: str, stored: str) -> tuple[bool, str | None]:
        self._hold()
        matched, new_hash = self._real.verify_and_update(secret, stored)
        return bool(matched), new_hash


async def _signup(client: httpx.AsyncClient) -> Callable[[], Awaitable[None]]:
    async def run() -> None:
        assert (await start_signup(client, email="grace@example.com"))["errors"] == []

    return run


async def _login(client: httpx.AsyncClient) -> Callable[[], Awaitable[None]]:
    await new_account(client, email="grace@example.com")

    async def run() -> None:
        body = await gql(
            client, LOGIN, {"input": {"email": "grace@example.com", "password": PASSWORD}}
        )
        assert body["data"]["login"]["errors"] == [], body

    return run


async def _change_password(client: httpx.AsyncClient) -> Callable[[], Awaitable[None]]:
    token = await signed_up(client, email="grace@example.com")

    async def run() -> None:
        variables = {"input": {"currentPassword": PASSWORD, "newPassword": NEW_PASSWORD}}
        body = await gql(client, CHANGE_PASSWORD, variables, token=token)
        assert body["data"]["changePassword"]["errors"] == [], body

    return run


async def _reset_password(client: httpx.AsyncClient) -> Callable[[], Awaitable[None]]:
    await new_account(client, email="grace@example.com")
    await gql(client, REQUEST, {"input": {"email": "grace@example.com"}})
    token = await reset_token(database_behind(client))

    async def run() -> None:
        variables = {"input": {"token": token, "newPassword": NEW_PASSWORD}}
        body = await gql(client, RESET, variables)
        assert body["data"]["resetPassword"]["errors"] == [], body

    return run


async def _request_deletion(client: httpx.AsyncClient) -> Callable[[], Awaitable[None]]:
    token = await signed_up(client, email="grace@example.com")

    async def run() -> None:
        body = await gql(client, DELETE_ACCOUNT, {"password": PASSWORD}, token=token)
        assert body["data"]["requestAccountDeletion"]["errors"] == [], body

    return run


USE_CASES = {
    "signup": _signup,
    "login": _login,
    "changePassword": _change_password,
    "resetPassword": _reset_password,
    "requestAccountDeletion": _request_deletion,
}


async def _idle_in_transaction(client: httpx.AsyncClient) -> int:
    """Connections to the test's database that hold a transaction open and run nothing."""
    database = database_behind(client)
    if database.engine.dialect.name != "postgresql":
        return 0
    async with database.session() as session:
        idle = await session.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND state = 'idle in transaction'"
            )
        )
    return int(idle or 0)


class TestAHeldHashHoldsNoTransaction:
    @pytest.mark.parametrize("use_case", USE_CASES)
    async def test_another_persons_toggle_completes_while_the_hash_is_held(
        self, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, use_case: str
    ) -> None:
        other = await signed_up(client, email="ada@example.com")
        run = await USE_CASES[use_case](client)
        held = HeldHashing(passwords._context, asyncio.get_running_loop())
        monkeypatch.setattr(passwords, "_context", held)

        hashing = asyncio.create_task(run())
        try:
            started = asyncio.create_task(held.started.wait())
            await asyncio.wait({started, hashing}, return_when=asyncio.FIRST_COMPLETED)
            assert not hashing.done(), hashing.result()
            idle_while_hashing = await _idle_in_transaction(client)
            toggled = await gql(
                client,
                settings_mutation(SET_PREFERENCE),
                {"input": toggle("EMAIL", "NEWSLETTER", True)},
                token=other,
            )
            toggled_while_held = not held.ran_out.is_set()
        finally:
            held.release.set()
            await hashing

        assert toggled["data"][SET_PREFERENCE]["errors"] == [], toggled
        assert toggled_while_held, "the toggle waited for the hash"
        assert idle_while_hashing == 0
