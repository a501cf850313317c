"""What a Relay client expects of the connections: paging backward (`last`, `before`, with
`pageInfo.startCursor` and `hasPreviousPage`) and `totalCount`."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from models import AuditEntry, RequestKind, Role, utcnow
from resolvers.requests import open_request
from tests.helpers import count_statements, gql, new_account, staff_token
from tests.test_paging import REASON, add_person, paged_requests

MINE = """
query Mine($first: Int, $after: String, $last: Int, $before: String) {
  me {
    privacyRequestsConnection(first: $first, after: $after, last: $last, before: $before) {
      totalCount
      edges { cursor node { id createdAt } }
      pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    }
  }
}
"""
AUDIT = """
query Audit($reason: String!, $last: Int, $before: String) {
  auditLogConnection(last: $last, before: $before) {
    totalCount
    edges { node { id } }
    pageInfo { hasPreviousPage startCursor }
  }
  staffAccountsConnection(emailContains: "example.org", reason: $reason, last: 2) {
    totalCount
    edges { node { email } }
    pageInfo { hasPreviousPage hasNextPage }
  }
}
"""


async def with_requests(client, database, count: int) -> tuple[str, str]:
    """A person with `count` complaints, several made at the same moment; their token."""
    account_id, token = await new_account(client)
    async with database.session() as session:
        now = utcnow()
        for n in range(count):
            request = open_request(
                session,
                kind=RequestKind.COMPLAINT,
                account_id=uuid.UUID(account_id),
                requested_by=uuid.UUID(account_id),
            )
            request.created_at = now - timedelta(minutes=n % 7)  # ties on purpose
        await session.commit()
    return account_id, token


def mine(body: dict[str, Any]) -> dict[str, Any]:
    assert "errors" not in body, body
    connection: dict[str, Any] = body["data"]["me"]["privacyRequestsConnection"]
    return connection


class TestBackwardPaging:
    async def test_last_and_before_read_every_item_once_in_the_lists_order(
        self, client, database
    ) -> None:
        _, token = await with_requests(client, database, 30)
        forward = mine(await gql(client, MINE, {"first": 100}, token=token))
        in_order = [edge["node"]["id"] for edge in forward["edges"]]
        assert forward["totalCount"] == 30 and len(in_order) == 30

        backward: list[str] = []
        before = None
        for _ in range(30):
            page = mine(await gql(client, MINE, {"last": 4, "before": before}, token=token))
            backward = [edge["node"]["id"] for edge in page["edges"]] + backward
            assert page["totalCount"] == 30
            assert page["pageInfo"]["hasNextPage"] is False
            assert page["pageInfo"]["startCursor"] == page["edges"][0]["cursor"]
            if not page["pageInfo"]["hasPreviousPage"]:
                break
            before = page["pageInfo"]["startCursor"]
        assert backward == in_order

    async def test_before_a_forward_cursor_is_the_page_before_it(self, client, database) -> None:
        _, token = await with_requests(client, database, 10)
        every = mine(await gql(client, MINE, {"first": 10}, token=token))["edges"]
        page = mine(await gql(client, MINE, {"last": 3, "before": every[6]["cursor"]}, token=token))
        assert [edge["node"] for edge in page["edges"]] == [edge["node"] for edge in every[3:6]]
        assert page["pageInfo"]["hasPreviousPage"] is True

    async def test_staff_lists_page_backward_too(self, client, database) -> None:
        officer = await staff_token(client, database, Role.PRIVACY_OFFICER, "o@example.com")
        for n in range(5):
            await add_person(database, f"member{n}@example.org")
        body = await gql(client, AUDIT, {"reason": REASON, "last": 100}, token=officer)
        assert "errors" not in body, body
        accounts = body["data"]["staffAccountsConnection"]
        assert [edge["node"]["email"] for edge in accounts["edges"]] == [
            "member3@example.org",
            "member4@example.org",
        ]
        assert accounts["totalCount"] == 5
        assert accounts["pageInfo"] == {"hasPreviousPage": True, "hasNextPage": False}
        # Sibling fields run together: the search's audit entry shows in the next request.
        again = await gql(client, AUDIT, {"reason": REASON, "last": 100}, token=officer)
        log = again["data"]["auditLogConnection"]
        assert log["totalCount"] == len(log["edges"]) >= 1
        assert log["pageInfo"]["hasPreviousPage"] is False


class TestBadPagingArguments:
    @pytest.mark.parametrize(
        ("variables", "field"),
        [
            ({"last": 0}, "last"),
            ({"last": 101}, "last"),
            ({"last": 2, "after": "bm9wZQ=="}, "after"),
            ({"before": "bm9wZQ=="}, "last"),
            ({"last": 2, "before": "bm9wZQ=="}, "before"),
        ],
    )
    async def test_refused_naming_the_argument(
        self, client, database, variables: dict[str, Any], field: str
    ) -> None:
        _, token = await with_requests(client, database, 1)
        body = await gql(client, MINE, variables, token=token)
        [error] = body["errors"]
        assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": field}

    async def test_the_object_budget_counts_last(self, client, database) -> None:
        officer = await staff_token(client, database, Role.PRIVACY_OFFICER, "o@example.com")
        nested = """query ($reason: String!) { privacyRequests(reason: $reason, first: 100) {
          account { privacyRequestsConnection(first: 1, last: 100) { edges { node { id } } } }
        } }"""
        body = await gql(client, nested, {"reason": REASON}, token=officer)
        assert body["errors"][0]["extensions"]["code"] == "QUERY_TOO_LARGE"


class TestTotalCount:
    SEARCH = """
    query Search($reason: String!) {
      staffAccounts(emailContains: "example.org", reason: $reason, first: 100) {
        privacyRequestsConnection(first: 1) { totalCount }
        sessionsConnection(first: 1) { totalCount }
        consentHistory(first: 1) { totalCount }
      }
    }
    """

    async def test_three_and_a_hundred_accounts_cost_the_same_statements(
        self, client, database, app
    ) -> None:
        support = await staff_token(client, database, Role.SUPPORT, "s@example.com")
        engine = app.state.services.database.engine
        for n in range(3):
            await add_person(database, f"member{n:03d}@example.org", requests=3)
        with count_statements(engine) as three:
            body = await gql(client, self.SEARCH, {"reason": REASON}, token=support)
        assert [
            a["privacyRequestsConnection"]["totalCount"] for a in body["data"]["staffAccounts"]
        ] == [3, 3, 3]
        for n in range(3, 100):
            await add_person(database, f"member{n:03d}@example.org", requests=n % 4)

        with count_statements(engine) as hundred:
            body = await gql(client, self.SEARCH, {"reason": REASON}, token=support)

        found = body["data"]["staffAccounts"]
        assert [a["privacyRequestsConnection"]["totalCount"] for a in found[:6]] == [
            3,
            3,
            3,
            3,
            0,
            1,
        ]
        assert all(a["sessionsConnection"]["totalCount"] == 0 for a in found)
        assert len(hundred) == len(three), hundred

    async def test_the_history_counts_the_key_asked(self, client) -> None:
        _, token = await new_account(client)
        history = """query ($key: String) { me {
          all: consentHistory(first: 1) { totalCount }
          one: consentHistory(first: 1, key: $key) { totalCount edges { node { key } } }
        } }"""
        body = await gql(client, history, {"key": "policy"}, token=token)
        me = body["data"]["me"]
        assert me["one"]["totalCount"] == 1 and me["one"]["edges"][0]["node"]["key"] == "policy"
        assert me["all"]["totalCount"] > me["one"]["totalCount"]


NODE = """
query Node($id: ID!, $reason: String) {
  node(id: $id, reason: $reason) {
    __typename id
    ... on Account { email }
    ... on Session { current }
    ... on PrivacyRequest { kind }
  }
}
"""
OWN = """{ me { id sessions { id } privacyRequests { id } } }"""


async def audit_entries(database) -> list[tuple[str, uuid.UUID | None, str]]:
    async with database.session() as session:
        rows = await session.execute(
            select(AuditEntry.action, AuditEntry.account_id, AuditEntry.reason)
        )
        return [tuple(row) for row in rows]  # type: ignore[misc]


class TestNode:
    async def test_signed_out_is_unauthenticated(self, client) -> None:
        body = await gql(client, NODE, {"id": str(uuid.uuid4())})
        assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"

    async def test_a_person_finds_their_own_objects_again(self, client, database) -> None:
        _, token = await with_requests(client, database, 1)
        me = (await gql(client, OWN, token=token))["data"]["me"]
        found = {}
        for kind, id_ in (
            ("Account", me["id"]),
            ("Session", me["sessions"][0]["id"]),
            ("PrivacyRequest", me["privacyRequests"][0]["id"]),
        ):
            node = (await gql(client, NODE, {"id": id_}, token=token))["data"]["node"]
            assert (node["__typename"], node["id"]) == (kind, id_)
            found[kind] = node
        assert found["Account"]["email"] == "ada@example.com"
        assert found["Session"]["current"] is True
        assert found["PrivacyRequest"]["kind"] == "COMPLAINT"

    async def test_another_persons_objects_are_null_like_unknown_ones(
        self, client, database
    ) -> None:
        _, ada = await with_requests(client, database, 1)
        _, bob = await new_account(client, email="bob@example.com")
        theirs = (await gql(client, OWN, token=ada))["data"]["me"]
        for id_ in (
            theirs["id"],
            theirs["sessions"][0]["id"],
            theirs["privacyRequests"][0]["id"],
            str(uuid.uuid4()),
            "not-an-id",
        ):
            # Even with a reason: a person is not staff.
            body = await gql(client, NODE, {"id": id_, "reason": REASON}, token=bob)
            assert body == {"data": {"node": None}}, id_
        assert await audit_entries(database) == []

    async def test_staff_per_role_with_a_reason_audited(self, client, database) -> None:
        person_id, token = await with_requests(client, database, 1)
        mine = (await gql(client, OWN, token=token))["data"]["me"]
        support = await staff_token(client, database, Role.SUPPORT, "s@example.com")
        officer = await staff_token(client, database, Role.PRIVACY_OFFICER, "o@example.com")
        request_id = mine["privacyRequests"][0]["id"]

        # Without a reason staff see only their own, as anyone.
        assert (await gql(client, NODE, {"id": person_id}, token=support))["data"]["node"] is None
        assert await audit_entries(database) == []

        account = await gql(client, NODE, {"id": person_id, "reason": REASON}, token=support)
        assert account["data"]["node"]["email"] == "ada@example.com"
        # Support lists no privacy requests, and nobody lists another person's sessions.
        for id_, token_ in ((request_id, support), (mine["sessions"][0]["id"], officer)):
            body = await gql(client, NODE, {"id": id_, "reason": REASON}, token=token_)
            assert body == {"data": {"node": None}}
        request = await gql(client, NODE, {"id": request_id, "reason": REASON}, token=officer)
        assert request["data"]["node"] == {
            "__typename": "PrivacyRequest",
            "id": request_id,
            "kind": "COMPLAINT",
        }
        assert sorted(await audit_entries(database)) == [
            ("account.read", uuid.UUID(person_id), REASON),
            ("requests.read", uuid.UUID(person_id), REASON),
        ]

    async def test_a_reason_too_short_is_refused(self, client, database) -> None:
        support = await staff_token(client, database, Role.SUPPORT, "s@example.com")
        body = await gql(client, NODE, {"id": str(uuid.uuid4()), "reason": "x"}, token=support)
        assert body["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "field": "reason"}


@settings(max_examples=40, deadline=None)
@given(
    minutes=st.lists(st.integers(0, 3), max_size=30),
    others=st.integers(0, 5),
    last=st.integers(1, 7),
    arriving=st.integers(0, 3),
)
def test_backward_pages_read_each_row_once_whatever_the_ties(
    minutes: list[int], others: int, last: int, arriving: int
) -> None:
    """Paging backward from the oldest end while new requests arrive at the other: each row
    is read once, and the pages put together are the list in its own order."""
    from resolvers.paging import page_request
    from resolvers.requests import BY_AUTHOR, requests_by_author

    async def scenario() -> None:
        async with paged_requests(minutes, others) as paged:
            seen: list[uuid.UUID] = []
            before = None
            while True:
                asked = page_request(20, None, BY_AUTHOR, last=last, before=before)
                page = (await requests_by_author(paged.session, [paged.person], asked))[
                    paged.person
                ]
                assert len(page.items) <= last and not page.has_next_page
                seen = [r.id for r in page.items] + seen
                for _ in range(arriving):
                    await paged.add(-10)  # older than every row, behind the pages read
                if not page.has_previous_page:
                    break
                before = page.cursor(page.items[0])
        assert seen == paged.stored

    asyncio.run(scenario())
