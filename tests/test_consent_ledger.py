"""The consent ledger: append-only, hash-chained, verifiable, safe under concurrency, and cheap
to read page by page."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import insert, select, text
from sqlalchemy.exc import DBAPIError

from models import Account, AccountSetting, ConsentActor, ConsentEvent, Database, Source, utcnow
from resolvers import catalogue, consent
from resolvers.paging import page_request, per_account_statement
from tests.conftest import make_config
from tests.helpers import LOGIN, PASSWORD, count_statements, gql, run_cli, signed_up
from web.app import create_app

PROJECT_ROOT = Path(__file__).resolve().parent.parent

TOGGLE = """
mutation Toggle($channel: Channel!, $topic: Topic!, $enabled: Boolean!) {
  setCommunicationPreference(input: {channel: $channel, topic: $topic, enabled: $enabled}) {
    errors { code }
  }
}
"""
KEYED_TOGGLE = """
mutation Toggle($enabled: Boolean!, $key: String!) {
  setCommunicationPreference(
    input: {channel: EMAIL, topic: NEWSLETTER, enabled: $enabled, idempotencyKey: $key}
  ) { errors { code } }
}
"""
SHARE = """
mutation Share($purpose: Purpose!, $enabled: Boolean!) {
  setDataSharing(input: {purpose: $purpose, enabled: $enabled}) { errors { code } }
}
"""


async def events_of(database: Database, account_id: uuid.UUID | None = None) -> list[ConsentEvent]:
    async with database.session() as session:
        query = select(ConsentEvent).order_by(ConsentEvent.account_id, ConsentEvent.seq)
        if account_id is not None:
            query = query.where(ConsentEvent.account_id == account_id)
        return list(await session.scalars(query))


async def only_account_id(database: Database) -> uuid.UUID:
    async with database.session() as session:
        return (await session.scalars(select(Account.id))).one()


async def tamper(database: Database, statement: str, **params: Any) -> None:
    """Change the ledger behind the API's back, as an attacker with database access would."""
    async with database.engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            await connection.execute(text("SET LOCAL session_replication_role = replica"))
            await connection.execute(text(statement), params)
        else:
            await connection.execute(text("DROP TRIGGER consent_events_no_update"))
            await connection.execute(text("DROP TRIGGER consent_events_no_delete"))
            await connection.execute(text(statement), params)


class TestAppendOnly:
    @pytest.mark.parametrize(
        "statement",
        [
            "UPDATE consent_events SET new_value = 'true'",
            "DELETE FROM consent_events",
        ],
    )
    async def test_the_database_refuses_changes_to_events(
        self, client, database, statement
    ) -> None:
        await signed_up(client)
        before = len(await events_of(database))

        with pytest.raises(DBAPIError, match="append-only"):
            async with database.engine.begin() as connection:
                await connection.execute(text(statement))

        assert len(await events_of(database)) == before

    @pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
    async def test_postgresql_refuses_truncate_too(self, client, database) -> None:
        await signed_up(client)
        with pytest.raises(DBAPIError, match="append-only"):
            async with database.engine.begin() as connection:
                await connection.execute(text("TRUNCATE consent_events"))


# The policy accepted and every setting of the catalogue, at signup.
SIGNUP_EVENTS = len(catalogue.CATALOGUE) + 1


class TestVerification:
    async def test_an_untouched_ledger_verifies(self, client, database) -> None:
        token = await signed_up(client)
        await signed_up(client, email="bob@example.com")
        for enabled in (True, False, True):
            variables = {"channel": "EMAIL", "topic": "NEWSLETTER", "enabled": enabled}
            await gql(client, TOGGLE, variables, token=token)

        async with database.session() as session:
            checked, broken = await consent.verify_ledger(session)

        assert broken is None
        assert checked == len(await events_of(database)) == 2 * SIGNUP_EVENTS + 3

    async def test_an_edited_value_is_named(self, client, database) -> None:
        token = await signed_up(client)
        await gql(
            client, TOGGLE, {"channel": "EMAIL", "topic": "MARKETING", "enabled": True}, token=token
        )
        events = await events_of(database)
        target = next(
            e for e in events if e.key == "communication.email.marketing" and e.seq > SIGNUP_EVENTS
        )
        # Pretend the person never consented: the forged event says the opposite.
        await tamper(
            database, "UPDATE consent_events SET new_value = 'false' WHERE id = :id", id=target.id
        )

        async with database.session() as session:
            _, broken = await consent.verify_ledger(session)

        assert broken is not None
        assert (broken.event_id, broken.seq) == (target.id, target.seq)
        assert "hash" in broken.reason

    async def test_a_removed_event_in_the_middle_is_named(self, client, database) -> None:
        await signed_up(client)
        events = await events_of(database)
        await tamper(database, "DELETE FROM consent_events WHERE id = :id", id=events[9].id)

        async with database.session() as session:
            _, broken = await consent.verify_ledger(session)

        assert broken is not None and broken.event_id == events[10].id

    async def test_removing_the_newest_events_is_caught(self, client, database) -> None:
        token = await signed_up(client)
        await gql(
            client, TOGGLE, {"channel": "PUSH", "topic": "MARKETING", "enabled": True}, token=token
        )
        newest = (await events_of(database))[-1]
        await tamper(database, "DELETE FROM consent_events WHERE id = :id", id=newest.id)

        async with database.session() as session:
            _, broken = await consent.verify_ledger(session)

        assert broken is not None and "missing" in broken.reason

    async def test_the_cli_names_the_broken_event(
        self, client, database, database_url, tmp_path
    ) -> None:
        await signed_up(client)

        async def verify_ledger() -> tuple[int, str, str]:
            return await run_cli(database_url, tmp_path, "verify-ledger")

        code, out, err = await verify_ledger()
        assert code == 0, err
        assert f"{SIGNUP_EVENTS} consent events" in out

        victim = (await events_of(database))[4]
        await tamper(
            database, "UPDATE consent_events SET source = 'web' WHERE id = :id", id=victim.id
        )
        code, out, err = await verify_ledger()
        assert code == 1
        assert f"consent event {victim.id} " in err
        assert "event number 5" in err


async def most_waiting_for_locks(database: Database, done: asyncio.Event) -> int:
    """The most connections seen waiting for a lock in the test's database at once, sampled
    until `done` is set."""
    most = 0
    async with database.engine.connect() as connection:
        while not done.is_set():
            waiting = await connection.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            )
            most = max(most, waiting or 0)
            await connection.rollback()
            await asyncio.sleep(0.005)
    return most


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_concurrent_toggles_from_web_and_mobile_lose_nothing(
    clean_database_url: str, database: Database
) -> None:
    """200 changes at once through two connection pools, as two API processes would serve them.

    They wait their turn in each process, not in the database: at most one connection per
    process waits for the account's row lock. Queued there, each waiting change held a pooled
    connection and counted its wait towards the statement timeout, and under CPU load the last
    ones failed with SERVICE_UNAVAILABLE.
    """
    web_app = create_app(make_config(clean_database_url))
    mobile_app = create_app(make_config(clean_database_url))
    web = httpx.AsyncClient(transport=httpx.ASGITransport(app=web_app), base_url="http://web")
    mobile = httpx.AsyncClient(transport=httpx.ASGITransport(app=mobile_app), base_url="http://m")
    try:
        web_token = await signed_up(web, phone="+447400123456")
        login = await gql(
            mobile, LOGIN, {"input": {"email": "ada@example.com", "password": PASSWORD}}
        )
        mobile_token = login["data"]["login"]["token"]
        choices: list[tuple[str, dict[str, Any]]] = [
            (TOGGLE, {"channel": "EMAIL", "topic": "MARKETING"}),
            (TOGGLE, {"channel": "SMS", "topic": "NEWSLETTER"}),
            (TOGGLE, {"channel": "PUSH", "topic": "RECOMMENDATIONS"}),
            (SHARE, {"purpose": "RESEARCH"}),
        ]
        rng = random.Random(8058)
        calls = []
        for number in range(200):
            query, variables = rng.choice(choices)
            client, token = (web, web_token) if number % 2 else (mobile, mobile_token)
            variables = {**variables, "enabled": rng.random() < 0.5}
            calls.append(gql(client, query, variables, token=token))

        watching = asyncio.Event()
        most_waiting = asyncio.create_task(most_waiting_for_locks(database, watching))
        answers = await asyncio.gather(*calls)
        watching.set()

        assert all("errors" not in answer for answer in answers), answers
        # Sampled, so it can only see fewer waiting than there were, never more.
        assert await most_waiting <= 1
        assert all(next(iter(a["data"].values()))["errors"] == [] for a in answers)
    finally:
        await web.aclose()
        await mobile.aclose()
        await web_app.state.services.database.dispose()
        await mobile_app.state.services.database.dispose()

    account_id = await only_account_id(database)
    events = await events_of(database, account_id)
    async with database.session() as session:
        state = dict(
            (
                await session.execute(
                    select(AccountSetting.key, AccountSetting.value).where(
                        AccountSetting.account_id == account_id
                    )
                )
            ).all()
        )
        _, broken = await consent.verify_ledger(session)
    by_key: dict[str, list[ConsentEvent]] = defaultdict(list)
    for event in events:
        by_key[event.key].append(event)
    changed = 0
    for key, history in by_key.items():
        # Every change follows from the one before it: nothing was lost or applied twice.
        for before, after in itertools.pairwise(history):
            assert after.old_value == before.new_value, key
        assert state.get(key, history[-1].new_value) == history[-1].new_value, key
        changed += len(history) - 1
    assert changed > 20  # the random toggles really changed things, on all four keys
    assert all(
        len(by_key[key]) > 2
        for key in (
            "communication.email.marketing",
            "communication.sms.newsletter",
            "communication.push.recommendations",
            "data_sharing.research",
        )
    )
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert broken is None


def plan_nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """A PostgreSQL plan node and every node under it."""
    yield node
    for child in node.get("Plans", []):
        yield from plan_nodes(child)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_page_50_of_a_long_history_uses_the_index(
    clean_database_url, database, client
) -> None:
    token = await signed_up(client)
    account_id = await only_account_id(database)
    now = utcnow()
    rows = [
        {
            "account_id": account_id,
            "seq": seq,
            "key": "communication.email.newsletter",
            "old_value": "false",
            "new_value": "true",
            "actor": ConsentActor.PERSON,
            "source": Source.WEB,
            "policy_version": "2025-07",
            "occurred_at": now,
            "prev_hash": None,
            "hash": f"{seq:064d}",
        }
        for seq in range(32, 10_032)
    ]
    async with database.session() as session:
        await session.execute(insert(ConsentEvent), rows)
        await session.execute(text("ANALYZE consent_events"))
        await session.commit()

    query = """
    query($after: String) {
      me { consentHistory(first: 20, after: $after) { pageInfo { endCursor } } }
    }
    """
    cursor = None
    for _ in range(49):
        page = await gql(client, query, {"after": cursor}, token=token)
        cursor = page["data"]["me"]["consentHistory"]["pageInfo"]["endCursor"]
    assert cursor is not None

    # The statement the API runs for the page, for each account of a batch: here the one.
    statement = per_account_statement(
        ConsentEvent,
        ConsentEvent.account_id,
        [account_id],
        keyset=consent.HISTORY,
        page=page_request(20, cursor, consent.HISTORY),
    )
    async with database.session() as session:
        compiled = statement.compile(session.bind, compile_kwargs={"literal_binds": True})
        plan = (
            await session.execute(text(f"EXPLAIN (ANALYZE, FORMAT JSON) {compiled}"))
        ).scalar_one()
    plan = plan if isinstance(plan, list) else json.loads(plan)
    [scan] = [node for node in plan_nodes(plan[0]["Plan"]) if node["Node Type"].endswith("Scan")]
    assert scan["Node Type"] == "Index Scan", scan
    assert "seq <" in scan["Index Cond"]
    # Only the rows of page 50 (and one more to know a next page exists) are read.
    assert scan["Actual Rows"] == 21
    assert "Rows Removed by Filter" not in scan


class TestStatementCounts:
    ME_EVERYTHING = """
    { me {
        id email isMinor
        sessions { id current }
        communicationPreferences { channel topic enabled locked updatedAt }
        dataSharing { purpose enabled }
        visibility { profile email phone searchEngineIndexing }
        cookieConsent { functional analytics advertising gpcApplied }
        consentHistory(first: 10) {
          edges { cursor node { key newValue } }
          pageInfo { hasNextPage }
        }
    } }
    """

    async def test_me_costs_the_same_however_much_the_account_holds(self, client, app) -> None:
        token = await signed_up(client)
        engine = app.state.services.database.engine
        with count_statements(engine) as small:
            body = await gql(client, self.ME_EVERYTHING, token=token)
        assert "errors" not in body

        for number in range(40):
            variables = {"channel": "EMAIL", "topic": "NEWSLETTER", "enabled": number % 2 == 0}
            await gql(client, TOGGLE, variables, token=token)
        for _ in range(5):
            await gql(client, LOGIN, {"input": {"email": "ada@example.com", "password": PASSWORD}})
        with count_statements(engine) as large:
            body = await gql(client, self.ME_EVERYTHING, token=token)
        assert len(body["data"]["me"]["sessions"]) == 6

        # The session lookup, the sessions list, every setting at once, one history page.
        assert len(large) == len(small) == 4, large

    async def test_a_toggle_costs_the_same_however_much_the_account_holds(
        self, client, app
    ) -> None:
        token = await signed_up(client)
        engine = app.state.services.database.engine
        with count_statements(engine) as first:
            await gql(
                client,
                TOGGLE,
                {"channel": "PUSH", "topic": "MARKETING", "enabled": True},
                token=token,
            )
        for number in range(40):
            variables = {
                "channel": "EMAIL",
                "topic": "SURVEYS_AND_PROMOTIONS",
                "enabled": number % 2 == 0,
            }
            await gql(client, TOGGLE, variables, token=token)
        with count_statements(engine) as later:
            await gql(
                client,
                TOGGLE,
                {"channel": "PUSH", "topic": "MARKETING", "enabled": False},
                token=token,
            )

        # Session lookup; lock the chain (with the policy in force); old value; then the event,
        # the new value, the event's webhook outbox row (one, whatever the number of endpoints)
        # and the chain's head: one statement on PostgreSQL, four on SQLite, which has no
        # data-modifying WITH clauses.
        writes = 1 if engine.dialect.name == "postgresql" else 4
        assert len(later) == len(first) == 3 + writes, later

    async def test_a_retried_toggle_costs_no_write(self, client, app) -> None:
        token = await signed_up(client)
        engine = app.state.services.database.engine
        variables = {"enabled": True, "key": "retried-toggle-1"}
        with count_statements(engine) as first:
            answer = await gql(client, KEYED_TOGGLE, variables, token=token)
        with count_statements(engine) as retried:
            again = await gql(client, KEYED_TOGGLE, variables, token=token)

        assert answer["data"] == again["data"], again
        assert answer["data"]["setCommunicationPreference"]["errors"] == []
        # Session lookup; lock; the key's earlier use; old value; then the writes, the key among
        # them: one statement on PostgreSQL, five on SQLite.
        writes = 1 if engine.dialect.name == "postgresql" else 5
        assert len(first) == 4 + writes, first
        # The retry finds its key and writes nothing.
        assert len(retried) == 3, retried
