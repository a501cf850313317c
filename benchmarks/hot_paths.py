"""Hot paths against a baseline measured in the same run: prints ratios, asserts nothing.

    .venv/bin/python -m benchmarks.hot_paths [--database-url URL] [--rounds N]

- `me` with every settings field for an account holding 10,000 consent events and 20 sessions,
  against the same query for a fresh account: the ratio should stay near 1.
- one preference toggle on that large account against the same toggle on the fresh one.
- sign-in with an unknown email against sign-in with a wrong password: near 1, so timing does
  not tell whether an address is registered.
- how long the event loop stalls during ten concurrent sign-ins, against one sign-in's time:
  hashing runs in threads, so the stall stays far below it.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import insert, select

from auth.rate_limits import RateLimiter
from cli import migrate
from config import Config
from models import Account, ConsentActor, ConsentEvent, Database, Source, utcnow
from web.app import create_app

ME = """{ me { id sessions { id } communicationPreferences { enabled } dataSharing { enabled }
  visibility { profile } cookieConsent { advertising }
  consentHistory(first: 20) { edges { node { key } } } } }"""
TOGGLE = """mutation($on: Boolean!) { setCommunicationPreference(input:
  {channel: EMAIL, topic: NEWSLETTER, enabled: $on}) { errors { code } } }"""
SIGNUP = """mutation($i: SignupInput!) { signup(input: $i) { token errors { code } } }"""
LOGIN = """mutation($i: LoginInput!) { login(input: $i) { token errors { code } } }"""
PASSWORD = "benchmark passphrase"


async def timed(call: Callable[[], Awaitable[object]], rounds: int) -> float:
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        await call()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


async def post(
    client: httpx.AsyncClient, query: str, variables: dict[str, Any], token: str | None = None
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = await client.post(
        "/graphql", json={"query": query, "variables": variables}, headers=headers
    )
    body: dict[str, Any] = response.json()
    assert "errors" not in body, body
    return body


async def signup(client: httpx.AsyncClient, email: str) -> str:
    variables = {
        "i": {
            "email": email,
            "password": PASSWORD,
            "displayName": "Bench Mark",
            "birthDate": "1985-03-04",
            "country": "NL",
            "acceptPolicyVersion": "2025-07",
        }
    }
    body = await post(client, SIGNUP, variables)
    return str(body["data"]["signup"]["token"])


async def grow(database: Database, email: str, events: int) -> None:
    """Give an account a long history directly, as years of use would."""
    async with database.session() as session:
        account = (await session.scalars(select(Account).where(Account.email == email))).one()
        now = utcnow()
        start = account.ledger_seq + 1
        rows = [
            {
                "account_id": account.id,
                "seq": seq,
                "key": "communication.email.marketing",
                "old_value": "false",
                "new_value": "true",
                "actor": ConsentActor.PERSON,
                "source": Source.WEB,
                "policy_version": "2025-07",
                "occurred_at": now,
                "hash": f"{seq:064x}",
            }
            for seq in range(start, start + events)
        ]
        await session.execute(insert(ConsentEvent), rows)
        account.ledger_seq = start + events - 1
        account.ledger_head = str(rows[-1]["hash"])
        await session.commit()


async def loop_stall_during(work: Awaitable[object]) -> float:
    """The longest the event loop was kept from running a 1 ms tick while `work` ran."""
    worst = 0.0
    done = False

    async def tick() -> None:
        nonlocal worst
        while not done:
            started = time.perf_counter()
            await asyncio.sleep(0.001)
            worst = max(worst, time.perf_counter() - started - 0.001)

    ticker = asyncio.create_task(tick())
    await work
    done = True
    await ticker
    return worst


async def main(database_url: str | None, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        url = database_url or f"sqlite+aiosqlite:///{Path(folder) / 'bench.db'}"
        await migrate(url)
        app = create_app(Config(database_url=url, secret_key="b" * 40))
        services = app.state.services
        database = Database(url)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            fresh = await signup(client, "fresh@example.com")
            large = await signup(client, "large@example.com")
            await grow(database, "large@example.com", 10_000)
            for _ in range(19):
                await post(
                    client, LOGIN, {"i": {"email": "large@example.com", "password": PASSWORD}}
                )

            me_fresh = await timed(lambda: post(client, ME, {}, fresh), rounds)
            me_large = await timed(lambda: post(client, ME, {}, large), rounds)
            flips = iter(range(10**9))
            toggle_fresh = await timed(
                lambda: post(client, TOGGLE, {"on": next(flips) % 2 == 0}, fresh), rounds
            )
            toggle_large = await timed(
                lambda: post(client, TOGGLE, {"on": next(flips) % 2 == 0}, large), rounds
            )

            wrong = {"i": {"email": "fresh@example.com", "password": "not the password"}}
            unknown = {"i": {"email": "nobody@example.com", "password": "not the password"}}
            login_wrong = login_unknown = 0.0
            for _ in range(3):
                # The sign-in rate limit would cut the samples short; each run gets a fresh one.
                object.__setattr__(services, "limiter", RateLimiter("memory://"))
                login_wrong += await timed(lambda: post(client, LOGIN, wrong), 8)
                object.__setattr__(services, "limiter", RateLimiter("memory://"))
                login_unknown += await timed(lambda: post(client, LOGIN, unknown), 8)

            object.__setattr__(services, "limiter", RateLimiter("memory://"))
            stall = await loop_stall_during(
                asyncio.gather(*(post(client, LOGIN, wrong) for _ in range(10)))
            )

        await services.database.dispose()
        await database.dispose()

    one_login = login_wrong / 3
    print(f"database: {url.split(':', 1)[0]}")
    print(
        f"me, 10,000 events + 20 sessions vs fresh: {me_large * 1000:7.2f} ms / "
        f"{me_fresh * 1000:7.2f} ms = {me_large / me_fresh:.2f}x"
    )
    print(
        f"toggle, large vs fresh account:           {toggle_large * 1000:7.2f} ms / "
        f"{toggle_fresh * 1000:7.2f} ms = {toggle_large / toggle_fresh:.2f}x"
    )
    print(
        f"login, unknown email vs wrong password:   {login_unknown * 1000 / 3:7.2f} ms / "
        f"{one_login * 1000:7.2f} ms = {login_unknown / login_wrong:.2f}x"
    )
    print(
        f"event-loop stall during 10 concurrent logins vs one login: {stall * 1000:7.2f} ms / "
        f"{one_login * 1000:7.2f} ms = {stall / one_login:.2f}x"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database-url")
    parser.add_argument("--rounds", type=int, default=30)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.database_url, arguments.rounds))
