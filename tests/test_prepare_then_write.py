"""Prepare, then write: a use case hashes, verifies and asks the rate limiter before it opens its
transaction, so a slow password hash holds neither SQLite's only writer nor a pooled PostgreSQL
connection. Each test holds one use case's hash and meanwhile has another person toggle a
setting."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from auth import passwords
from models import Database
from resolvers import webhooks
from tests.helpers import (
    LOGIN,
    PASSWORD,
    codes,
    database_behind,
    gql,
    logged_in,
    new_account,
    settings_mutation,
    signed_up,
    start_signup,
)
from tests.test_password_reset import REQUEST, RESET, reset_token
from tests.test_settings import SET_PREFERENCE, toggle
from tests.test_webhooks import CREATE, officer

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
    """Password hashing whose first hash or verification waits for `release` (at most
    HOLD_AT_MOST) before it starts, holding no hashing slot meanwhile."""

    def __init__(self, real: Callable[..., Awaitable[Any]]) -> None:
        self._real = real
        self._held = False
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.ran_out = False

    async def __call__(self, work: Callable[..., Any], *args: str) -> Any:
        if not self._held:
            self._held = True
            self.started.set()
            try:
                await asyncio.wait_for(self.release.wait(), HOLD_AT_MOST)
            except TimeoutError:
                self.ran_out = True
        return await self._real(work, *args)


def hold_hashing(monkeypatch: pytest.MonkeyPatch) -> HeldHashing:
    held = HeldHashing(passwords._off_the_loop)
    monkeypatch.setattr(passwords, "_off_the_loop", held)
    return held


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
        held = hold_hashing(monkeypatch)

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
            toggled_while_held = not held.ran_out
        finally:
            held.release.set()
            await hashing

        assert toggled["data"][SET_PREFERENCE]["errors"] == [], toggled
        assert toggled_while_held, "the toggle waited for the hash"
        assert idle_while_hashing == 0


async def _while_held(
    client: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
    held_call: Awaitable[dict[str, Any]],
    meanwhile: Callable[[], Awaitable[None]],
) -> dict[str, Any]:
    """Run `held_call` with its first hash held, `meanwhile` while it is, and its answer."""
    held = hold_hashing(monkeypatch)
    call = asyncio.create_task(held_call)
    try:
        started = asyncio.create_task(held.started.wait())
        await asyncio.wait({started, call}, return_when=asyncio.FIRST_COMPLETED)
        assert not call.done(), call.result()
        await meanwhile()
    finally:
        held.release.set()
    return await call


class TestAPasswordChangedMeanwhile:
    async def test_a_sign_in_with_the_old_password_starts_no_session(
        self, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        owner = await signed_up(client, email="grace@example.com")
        login = {"input": {"email": "grace@example.com", "password": PASSWORD}}

        async def owner_changes_the_password() -> None:
            variables = {"input": {"currentPassword": PASSWORD, "newPassword": NEW_PASSWORD}}
            body = await gql(client, CHANGE_PASSWORD, variables, token=owner)
            assert body["data"]["changePassword"]["errors"] == [], body

        body = await _while_held(
            client, monkeypatch, gql(client, LOGIN, login), owner_changes_the_password
        )

        assert body["data"]["login"]["token"] is None
        assert codes(body["data"]["login"]) == ["INVALID_CREDENTIALS"]
        login["input"]["password"] = NEW_PASSWORD
        assert (await gql(client, LOGIN, login))["data"]["login"]["errors"] == []

    async def test_a_change_proved_with_the_old_password_is_refused(
        self, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        owner = await signed_up(client, email="grace@example.com")
        stolen = await logged_in(client, "grace@example.com")
        thiefs = {"input": {"currentPassword": PASSWORD, "newPassword": "the thief's choice 1"}}

        async def owner_changes_the_password() -> None:
            variables = {"input": {"currentPassword": PASSWORD, "newPassword": NEW_PASSWORD}}
            body = await gql(client, CHANGE_PASSWORD, variables, token=owner)
            assert body["data"]["changePassword"]["errors"] == [], body

        body = await _while_held(
            client,
            monkeypatch,
            gql(client, CHANGE_PASSWORD, thiefs, token=stolen),
            owner_changes_the_password,
        )

        assert codes(body["data"]["changePassword"]) == ["INVALID_CREDENTIALS"]
        login = {"input": {"email": "grace@example.com", "password": NEW_PASSWORD}}
        assert (await gql(client, LOGIN, login))["data"]["login"]["errors"] == []


class TestAHeldLookupHoldsNoTransaction:
    async def test_the_officers_next_change_does_not_wait_for_a_webhooks_lookup(
        self, client: httpx.AsyncClient, database: Database, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Registering a webhook looks its host up (DNS, seconds at worst) before its unit of
        work: meanwhile the same officer's change from another tab, which takes its turn after
        the officer's open unit of work (Database.transaction), goes ahead."""
        token = await officer(client, database)
        looking_up, release = asyncio.Event(), asyncio.Event()
        ran_out = False

        async def slow_lookup(url: str, **_: object) -> None:
            nonlocal ran_out
            looking_up.set()
            try:
                await asyncio.wait_for(release.wait(), HOLD_AT_MOST)
            except TimeoutError:
                ran_out = True

        monkeypatch.setattr(webhooks, "resolve", slow_lookup)
        variables = {"input": {"url": "https://crm.example/hook", "events": ["CONSENT_CHANGED"]}}
        registering = asyncio.create_task(gql(client, CREATE, variables, token=token))
        try:
            started = asyncio.create_task(looking_up.wait())
            await asyncio.wait({started, registering}, return_when=asyncio.FIRST_COMPLETED)
            assert not registering.done(), registering.result()
            toggled = await gql(
                client,
                settings_mutation(SET_PREFERENCE),
                {"input": toggle("EMAIL", "NEWSLETTER", True)},
                token=token,
            )
            toggled_while_held = not ran_out
        finally:
            release.set()
            registered = await registering

        assert toggled["data"][SET_PREFERENCE]["errors"] == [], toggled
        assert toggled_while_held, "the officer's change waited for the lookup"
        assert registered["data"]["createWebhook"]["errors"] == [], registered
