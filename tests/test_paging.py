"""Every list that can grow is paged: `first` is capped at 100, nested lists cannot multiply past a
budget, each costs a fixed number of statements, and cursors reach every row exactly once."""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from models import (
    Account,
    AuditEntry,
    AuthSession,
    Base,
    Database,
    PrivacyRequest,
    RequestKind,
    Role,
    utcnow,
)
from resolvers.requests import open_request
from tests.helpers import count_statements, gql, signed_up, staff_token

REASON = "Weekly review of open requests"
NESTED = """
query Nested($reason: String!, $first: Int!) {
  privacyRequests(reason: $reason, first: $first) {
    id
    account {
      id
      privacyRequests(first: $first) { id account { id privacyRequests(first: $first) { id } } }
    }
  }
}
"""
NESTED_DEFAULTS = """
query Nested($reason: String!) {
  privacyRequests(reason: $reason) { id account { id privacyRequests { id } } }
}
"""


@pytest.fixture
async def officer(client, database) -> str:
    return await staff_token(client, database, Role.PRIVACY_OFFICER, "officer@example.com")


@pytest.fixture
async def support(client, database) -> str:
    return await staff_token(client, database, Role.SUPPORT, "support@example.com")


async def add_person(database: Database, email: str, requests: int = 0) -> uuid.UUID:
    """An account that asked for `requests` corrections, a day apart, the newest now."""
    now = utcnow()
    async with database.session() as session:
        account = Account(email=email, password_hash="x", display_name="P", role=Role.USER)
        session.add(account)
        await session.flush()
        for n in range(requests):
            request = open_request(
                session,
                kind=RequestKind.CORRECTION,
                account_id=account.id,
                requested_by=account.id,
            )
            request.created_at = now - timedelta(days=n)
            request.due_at = request.created_at + timedelta(days=30)
        await session.commit()
        return account.id


def error_code(body: dict[str, Any]) -> str:
    assert body.get("errors"), body
    code: str = body["errors"][0]["extensions"]["code"]
    return code


async def page_through(
    client, query: str, field: str, token: str, variables: dict[str, Any], *, on_page=None
) -> list[dict[str, Any]]:
    """Every node of a connection, following `endCursor` until `hasNextPage` is false."""
    nodes: list[dict[str, Any]] = []
    after = None
    for page_number in range(1000):
        body = await gql(client, query, {**variables, "after": after}, token=token)
        assert "errors" not in body, body
        connection = body["data"]
        for part in field.split("."):
            connection = connection[part]
        nodes += [edge["node"] for edge in connection["edges"]]
        if on_page is not None:
            await on_page(page_number)
        if not connection["pageInfo"]["hasNextPage"]:
            return nodes
        after = connection["pageInfo"]["endCursor"]
    raise AssertionError("the pages never end")


class TestNestedLists:
    async def test_answer_at_most_first_a_level_in_statements_that_do_not_grow(
        self, client, database, officer, app
    ) -> None:
        engine = app.state.services.database.engine
        await add_person(database, "few@example.com", requests=3)
        with count_statements(engine) as few:
            small = await gql(client, NESTED, {"reason": REASON, "first": 10}, token=officer)
        assert "errors" not in small, small
        await add_person(database, "many@example.com", requests=110)

        with count_statements(engine) as many:
            body = await gql(client, NESTED, {"reason": REASON, "first": 10}, token=officer)

        assert "errors" not in body, body
        top = body["data"]["privacyRequests"]
        assert len(top) == 10
        for request in top:
            middle = request["account"]["privacyRequests"]
            assert 3 <= len(middle) <= 10
            for inner in middle:
                assert 3 <= len(inner["account"]["privacyRequests"]) <= 10
        assert len(many) == len(few), many

    async def test_defaults_stop_the_lists_multiplying(self, client, database, officer) -> None:
        person = await add_person(database, "many@example.com", requests=110)

        body = await gql(client, NESTED_DEFAULTS, {"reason": REASON}, token=officer)

        assert "errors" not in body, body
        top = body["data"]["privacyRequests"]
        assert len(top) == 50
        assert all(r["account"]["id"] == str(person) for r in top)
        assert all(len(r["account"]["privacyRequests"]) == 50 for r in top)

    async def test_too_many_items_in_all_is_refused_before_any_statement(
        self, client, officer, app
    ) -> None:
        from schema.budget import MAX_OBJECTS

        with count_statements(app.state.services.database.engine) as statements:
            body = await gql(client, NESTED, {"reason": REASON, "first": 100}, token=officer)

        assert body["data"] is None
        assert error_code(body) == "QUERY_TOO_LARGE"
        assert f"at most {MAX_OBJECTS}" in body["errors"][0]["message"]
        # Only who is calling was looked up, as before every operation; nothing the query asked.
        assert [s for s in statements if "FROM sessions JOIN accounts" not in s] == []

    async def test_the_budget_counts_variables_and_fragments(self, client, officer) -> None:
        query = """
        query Nested($reason: String!, $first: Int!) {
          privacyRequests(reason: $reason, first: $first) { ...Outer }
        }
        fragment Outer on PrivacyRequest { account { privacyRequests(first: $first) { ...Inner } } }
        fragment Inner on PrivacyRequest { account { privacyRequests(first: 100) { id } } }
        """
        allowed = await gql(client, query, {"reason": REASON, "first": 2}, token=officer)
        refused = await gql(client, query, {"reason": REASON, "first": 100}, token=officer)
        assert "errors" not in allowed, allowed
        assert error_code(refused) == "QUERY_TOO_LARGE"


OVER_THE_CAP = [
    ("person", "{ me { privacyRequests(first: 101) { id } } }"),
    ("person", "{ me { sessions(first: 101) { id } } }"),
    ("person", "{ me { privacyRequestsConnection(first: 101) { edges { cursor } } } }"),
    ("person", "{ me { sessionsConnection(first: 101) { edges { cursor } } } }"),
    ("person", "{ me { consentHistory(first: 101) { edges { cursor } } } }"),
    ("person", "{ me { sessions(first: 0) { id } } }"),
    ("officer", f'{{ privacyRequests(reason: "{REASON}", first: 101) {{ id }} }}'),
    (
        "officer",
        f'{{ privacyRequestsConnection(reason: "{REASON}", first: 101) {{ edges {{ cursor }} }} }}',
    ),
    ("officer", "{ auditLog(first: 101) { id } }"),
    ("officer", "{ auditLogConnection(first: 101) { edges { cursor } } }"),
    (
        "officer",
        f'{{ staffAccounts(emailContains: "example", reason: "{REASON}", first: 101) {{ id }} }}',
    ),
    (
        "officer",
        f'{{ staffAccountsConnection(emailContains: "example", reason: "{REASON}", first: 101) '
        "{ edges { cursor } } }",
    ),
]


@pytest.mark.parametrize(("who", "query"), OVER_THE_CAP)
async def test_first_outside_1_to_100_is_refused(client, officer, who: str, query: str) -> None:
    token = officer if who == "officer" else await signed_up(client)

    body = await gql(client, query, token=token)

    assert error_code(body) == "BAD_USER_INPUT", body
    assert "1 to 100" in body["errors"][0]["message"]
    assert body["errors"][0]["extensions"]["field"] == "first"


AUDIT_PAGE = """
query Audit($first: Int!, $after: String) {
  auditLogConnection(first: $first, after: $after) {
    edges { cursor node { id action } }
    pageInfo { hasNextPage endCursor }
  }
}
"""


class TestAuditLog:
    async def test_pages_past_100_reach_every_entry_once(self, client, database, officer) -> None:
        async def add_entries(count: int, action: str) -> None:
            rows = [
                {
                    "staff_id": uuid.uuid4(),
                    "action": action,
                    "reason": REASON,
                    "occurred_at": utcnow(),
                }
                for _ in range(count)
            ]
            async with database.session() as session:
                await session.execute(insert(AuditEntry), rows)
                await session.commit()

        await add_entries(250, "account.read")
        async with database.session() as session:
            stored = [str(i) for i in await session.scalars(select(AuditEntry.id))]

        async def more_arrive(page_number: int) -> None:
            if page_number == 0:
                await add_entries(7, "arrived.later")

        nodes = await page_through(
            client, AUDIT_PAGE, "auditLogConnection", officer, {"first": 100}, on_page=more_arrive
        )

        ids = [node["id"] for node in nodes]
        assert ids == sorted(stored, key=int, reverse=True)  # newest first, each once
        assert {node["action"] for node in nodes} == {"account.read"}

    async def test_the_list_keeps_its_default(self, client, database, officer) -> None:
        rows = [
            {"staff_id": uuid.uuid4(), "action": "a.b", "reason": REASON, "occurred_at": utcnow()}
            for _ in range(60)
        ]
        async with database.session() as session:
            await session.execute(insert(AuditEntry), rows)
            await session.commit()
        body = await gql(client, "{ auditLog { id } }", token=officer)
        assert len(body["data"]["auditLog"]) == 50

    @pytest.mark.parametrize(
        "cursor",
        [
            "nonsense",
            base64.urlsafe_b64encode(b"consent:5").decode(),
            base64.urlsafe_b64encode(b"audit:-1").decode(),
            base64.urlsafe_b64encode(b"audit:99999999999999999999999").decode(),
            "\x00",
        ],
    )
    async def test_a_cursor_it_did_not_give_out_is_refused(
        self, client, officer, cursor: str
    ) -> None:
        body = await gql(client, AUDIT_PAGE, {"first": 5, "after": cursor}, token=officer)
        assert error_code(body) == "BAD_USER_INPUT"
        assert body["errors"][0]["extensions"]["field"] == "after"


REQUEST_QUEUE = """
query Queue($reason: String!, $first: Int!, $after: String, $kind: RequestKind) {
  privacyRequestsConnection(reason: $reason, first: $first, after: $after, kind: $kind) {
    edges { cursor node { id dueAt } }
    pageInfo { hasNextPage endCursor }
  }
}
"""


class TestPrivacyRequestQueue:
    async def test_pages_reach_every_request_once_soonest_due_first(
        self, client, database, officer
    ) -> None:
        await add_person(database, "many@example.com", requests=110)
        await add_person(database, "few@example.com", requests=3)
        async with database.session() as session:
            stored = {str(i) for i in await session.scalars(select(PrivacyRequest.id))}

        nodes = await page_through(
            client,
            REQUEST_QUEUE,
            "privacyRequestsConnection",
            officer,
            {"reason": REASON, "first": 25, "kind": "CORRECTION"},
        )

        assert len(nodes) == 113 and {node["id"] for node in nodes} == stored
        due = [node["dueAt"] for node in nodes]
        assert due == sorted(due)

    async def test_each_page_is_audited(self, client, database, officer) -> None:
        await add_person(database, "many@example.com", requests=3)
        variables = {"reason": REASON, "first": 2}
        await page_through(client, REQUEST_QUEUE, "privacyRequestsConnection", officer, variables)
        async with database.session() as session:
            reads = list(
                await session.scalars(
                    select(AuditEntry).where(AuditEntry.action == "requests.read")
                )
            )
        assert len(reads) == 2 and all(entry.reason == REASON for entry in reads)


SEARCH_PAGE = """
query Search($reason: String!, $first: Int!, $after: String) {
  staffAccountsConnection(emailContains: "example.org", reason: $reason, first: $first,
                          after: $after) {
    edges { cursor node { id email } }
    pageInfo { hasNextPage endCursor }
  }
}
"""


class TestStaffAccountSearch:
    async def test_pages_reach_every_account_once_by_email(self, client, database, support) -> None:
        for n in range(45):
            await add_person(database, f"member{n:03d}@example.org")

        nodes = await page_through(
            client, SEARCH_PAGE, "staffAccountsConnection", support, {"reason": REASON, "first": 20}
        )

        emails = [node["email"] for node in nodes]
        assert emails == sorted(f"member{n:03d}@example.org" for n in range(45))
        async with database.session() as session:
            audited = list(
                await session.scalars(
                    select(AuditEntry).where(AuditEntry.action == "account.search")
                )
            )
        assert len(audited) == 45

    async def test_cursors_carry_no_email(self, client, database, support) -> None:
        for n in range(3):
            await add_person(database, f"member{n:03d}@example.org")
        body = await gql(client, SEARCH_PAGE, {"reason": REASON, "first": 2}, token=support)
        for edge in body["data"]["staffAccountsConnection"]["edges"]:
            assert "@" not in base64.urlsafe_b64decode(edge["cursor"]).decode()


PERSONAL = """
query Mine($first: Int!, $after: String) {
  me {
    privacyRequestsConnection(first: $first, after: $after) {
      edges { cursor node { id createdAt } }
      pageInfo { hasNextPage endCursor }
    }
  }
}
"""
SESSIONS = """
query Mine($first: Int!, $after: String) {
  me {
    sessionsConnection(first: $first, after: $after) {
      edges { cursor node { id current } }
      pageInfo { hasNextPage endCursor }
    }
  }
}
"""


class TestPersonalLists:
    async def test_privacy_requests_page_newest_first(self, client, database) -> None:
        token = await signed_up(client)
        me = (await gql(client, "{ me { id } }", token=token))["data"]["me"]["id"]
        async with database.session() as session:
            now = utcnow()
            for n in range(30):
                request = open_request(
                    session,
                    kind=RequestKind.COMPLAINT,
                    account_id=uuid.UUID(me),
                    requested_by=uuid.UUID(me),
                )
                request.created_at = now - timedelta(minutes=n % 7)  # ties on purpose
            await session.commit()

        nodes = await page_through(
            client, PERSONAL, "me.privacyRequestsConnection", token, {"first": 4}
        )

        assert len({node["id"] for node in nodes}) == len(nodes) == 30
        created = [node["createdAt"] for node in nodes]
        assert created == sorted(created, reverse=True)
        listed = (await gql(client, "{ me { privacyRequests { id } } }", token=token))["data"]
        assert [r["id"] for r in listed["me"]["privacyRequests"]] == [n["id"] for n in nodes]

    async def test_sessions_page_and_the_list_keeps_a_default(self, client, database) -> None:
        token = await signed_up(client)
        me = (await gql(client, "{ me { id } }", token=token))["data"]["me"]["id"]
        now = utcnow()
        rows = [
            {
                "id": uuid.uuid4(),
                "account_id": uuid.UUID(me),
                "token_hash": uuid.uuid4().hex,
                "created_at": now - timedelta(hours=n + 1),
                "last_used_at": now - timedelta(hours=n + 1),
                "expires_at": now + timedelta(days=1),
            }
            for n in range(60)
        ]
        async with database.session() as session:
            await session.execute(insert(AuthSession), rows)
            await session.commit()

        nodes = await page_through(client, SESSIONS, "me.sessionsConnection", token, {"first": 7})

        assert len({node["id"] for node in nodes}) == len(nodes) == 61
        assert nodes[0]["current"] and not any(node["current"] for node in nodes[1:])
        listed = (await gql(client, "{ me { sessions { current } } }", token=token))["data"]
        assert len(listed["me"]["sessions"]) == 50 and listed["me"]["sessions"][0]["current"]


class TestListsOfAccounts:
    SEARCH = """
    query Search($reason: String!, $first: Int!) {
      staffAccounts(emailContains: "example.org", reason: $reason, first: $first) {
        id
        sessions(first: 5) { id }
        privacyRequests(first: 5) { id }
        privacyRequestsConnection(first: 2) { edges { node { id } } pageInfo { hasNextPage } }
        sessionsConnection(first: 2) { edges { node { id } } }
        consentHistory(first: 2) { edges { node { key } } pageInfo { hasNextPage } }
      }
    }
    """

    async def test_three_and_a_hundred_accounts_cost_the_same_statements(
        self, client, database, support, app
    ) -> None:
        engine = app.state.services.database.engine
        for n in range(3):
            await add_person(database, f"member{n:03d}@example.org", requests=3)
        with count_statements(engine) as three:
            body = await gql(client, self.SEARCH, {"reason": REASON, "first": 100}, token=support)
        assert len(body["data"]["staffAccounts"]) == 3
        for n in range(3, 100):
            await add_person(database, f"member{n:03d}@example.org", requests=1)

        with count_statements(engine) as hundred:
            body = await gql(client, self.SEARCH, {"reason": REASON, "first": 100}, token=support)

        found = body["data"]["staffAccounts"]
        assert len(found) == 100
        assert [len(a["privacyRequests"]) for a in found[:4]] == [3, 3, 3, 1]
        assert found[0]["privacyRequestsConnection"]["pageInfo"]["hasNextPage"] is True
        assert found[3]["privacyRequestsConnection"]["pageInfo"]["hasNextPage"] is False
        assert len(hundred) == len(three), hundred


async def test_a_second_mutation_in_a_request_sees_the_first_ones_change(client) -> None:
    from tests.helpers import logged_in

    token = await signed_up(client)
    others = [await logged_in(client, "ada@example.com") for _ in range(2)]
    sessions = (await gql(client, "{ me { sessions { id current } } }", token=token))["data"]
    first, second = [s["id"] for s in sessions["me"]["sessions"] if not s["current"]]
    assert len(others) == 2

    body = await gql(
        client,
        """
        mutation($first: ID!, $second: ID!) {
          a: revokeSession(id: $first) { account { sessions { id } } }
          b: revokeSession(id: $second) { account { sessions { id } } }
        }
        """,
        {"first": first, "second": second},
        token=token,
    )

    assert len(body["data"]["a"]["account"]["sessions"]) == 2
    assert len(body["data"]["b"]["account"]["sessions"]) == 1


@dataclass
class PagedRequests:
    """The person's privacy requests in a database of their own, for paging them."""

    session: AsyncSession
    person: uuid.UUID
    stored: list[uuid.UUID]  # newest first, as the list pages them
    add: Callable[[int], Awaitable[None]]  # another of the person's, so many minutes in


@asynccontextmanager
async def paged_requests(minutes: list[int], others: int) -> AsyncIterator[PagedRequests]:
    """A database holding only privacy requests: the person's, made at `minutes` past a moment,
    interleaved with `others` of someone else's at four moments (many ties)."""
    database = Database("sqlite+aiosqlite:///:memory:")
    async with database.engine.begin() as connection:
        # The one table paged (each example has a database of its own).
        await connection.run_sync(Base.metadata.create_all, tables=[PrivacyRequest.__table__])
    person, other = uuid.uuid4(), uuid.uuid4()
    start = utcnow()
    try:
        async with database.session() as session:

            async def add(account_id: uuid.UUID, minute: int) -> None:
                request = open_request(
                    session,
                    kind=RequestKind.COMPLAINT,
                    account_id=account_id,
                    requested_by=account_id,
                )
                request.created_at = start + timedelta(minutes=minute)
                await session.flush()

            for minute in minutes:
                await add(person, minute)
            for minute in range(others):
                await add(other, minute % 4)
            stored = sorted(
                await session.scalars(
                    select(PrivacyRequest).where(PrivacyRequest.account_id == person)
                ),
                key=lambda r: (r.created_at, r.id),
                reverse=True,
            )
            yield PagedRequests(
                session, person, [r.id for r in stored], lambda minute: add(person, minute)
            )
    finally:
        await database.dispose()


@settings(max_examples=40, deadline=None)
@given(
    minutes=st.lists(st.integers(0, 3), max_size=30),
    others=st.integers(0, 5),
    first=st.integers(1, 7),
    arriving=st.integers(0, 3),
)
def test_keyset_pages_read_each_row_once_whatever_the_ties(
    minutes: list[int], others: int, first: int, arriving: int
) -> None:
    """Many requests share a timestamp, another person's are interleaved, and new ones arrive
    between pages: paging still reads each of the person's requests once, newest first."""
    from resolvers.paging import page_request
    from resolvers.requests import BY_AUTHOR, requests_by_author

    async def scenario() -> None:
        async with paged_requests(minutes, others) as paged:
            seen: list[uuid.UUID] = []
            after = None
            while True:
                asked = page_request(first, after, BY_AUTHOR)
                page = (await requests_by_author(paged.session, [paged.person], asked))[
                    paged.person
                ]
                assert len(page.items) <= first
                seen += [r.id for r in page.items]
                for _ in range(arriving):
                    await paged.add(10)  # newer than every row read so far
                if not page.has_next_page:
                    break
                after = page.cursor(page.items[-1])
        assert seen == paged.stored

    asyncio.run(scenario())
