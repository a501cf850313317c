"""What a GraphQL client (Apollo, urql, gql) switches on: every request error carries
`extensions.code`, and a session token that no longer works is an error, never a silent null."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from auth.tokens import SESSION_COOKIE
from models import AuthSession, utcnow
from tests.helpers import assert_session_refused, gql, signed_up, signed_up_through_the_api

ME = "{ me { email } }"
FIRST_SESSIONS = "query ($n: Int!) { me { sessions(first: $n) { id } } }"
LOGOUT = "mutation { logout { ok } }"
GRAPHQL_RESPONSE = {"Accept": "application/graphql-response+json"}


class TestRequestErrorCodes:
    @pytest.mark.parametrize(
        ("query", "variables", "code"),
        [
            ("{ currentPolicy { version }", {}, "GRAPHQL_PARSE_FAILED"),
            ("{ " + "a " * 2100 + "}", {}, "GRAPHQL_PARSE_FAILED"),  # past the token limit
            ("{ currentPolicy { nope } }", {}, "GRAPHQL_VALIDATION_FAILED"),
            ("query ($n: Int) { currentPolicy { version } }", {}, "GRAPHQL_VALIDATION_FAILED"),
            (FIRST_SESSIONS, {"n": "many"}, "BAD_USER_INPUT"),
            (FIRST_SESSIONS, {}, "BAD_USER_INPUT"),
        ],
        ids=["syntax", "tokens", "unknown-field", "unused-variable", "wrong-type", "missing"],
    )
    @pytest.mark.parametrize("accept", [{}, GRAPHQL_RESPONSE], ids=["json", "graphql-response"])
    async def test_each_error_names_its_kind(
        self,
        client: httpx.AsyncClient,
        query: str,
        variables: dict[str, Any],
        code: str,
        accept: dict[str, str],
    ) -> None:
        response = await client.post(
            "/graphql", json={"query": query, "variables": variables}, headers=accept
        )
        errors = response.json()["errors"]
        assert errors and all(error["extensions"]["code"] == code for error in errors), errors

    async def test_a_cached_verdict_keeps_its_code(self, client: httpx.AsyncClient) -> None:
        for _ in range(2):
            body = await gql(client, "{ currentPolicy { nope } }")
            assert body["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"

    async def test_a_limit_keeps_its_own_code(self, client: httpx.AsyncClient) -> None:
        body = await gql(client, "{ " + "currentPolicy { version } " * 11 + "}")
        assert body["errors"][0]["extensions"]["code"] == "QUERY_TOO_COMPLEX"

    async def test_a_bad_input_value_inside_a_variable_is_bad_user_input(
        self, client: httpx.AsyncClient
    ) -> None:
        query = "mutation ($input: LoginInput!) { login(input: $input) { errors { code } } }"
        body = await gql(client, query, {"input": {"email": "a@b.example"}})
        assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
        assert "password" in body["errors"][0]["message"]


class TestASessionThatNoLongerWorks:
    async def test_no_credentials_is_still_a_plain_null(self, client: httpx.AsyncClient) -> None:
        assert await gql(client, ME) == {"data": {"me": None}}

    async def test_an_unknown_bearer_token(self, client: httpx.AsyncClient) -> None:
        body = await gql(client, ME, token="x" * 43)
        assert_session_refused(body)

    async def test_an_expired_bearer_token(self, client: httpx.AsyncClient, database) -> None:
        token = await signed_up(client)
        async with database.transaction() as session:
            await session.execute(
                update(AuthSession).values(expires_at=utcnow() - timedelta(seconds=1))
            )
        refused = await gql(client, ME, token=token)
        assert_session_refused(refused)
        # A field that needs sign-in says the same.
        guarded = await gql(client, LOGOUT, token=token)
        assert guarded["errors"][0]["message"] == refused["errors"][0]["message"]
        assert guarded["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"

    async def test_a_signed_out_cookie_gets_the_same_error(self, client: httpx.AsyncClient) -> None:
        await signed_up_through_the_api(client)
        stale = client.cookies[SESSION_COOKIE]
        assert (await gql(client, LOGOUT))["data"]["logout"]["ok"] is True
        client.cookies.set(SESSION_COOKIE, stale)
        by_cookie = await gql(client, ME)
        client.cookies.clear()
        by_token = await gql(client, ME, token=stale)
        assert_session_refused(by_cookie)
        assert by_cookie == by_token

    async def test_fields_for_everyone_still_answer(self, client: httpx.AsyncClient) -> None:
        """A stale token on a field for signed-out callers changes nothing."""
        body = await gql(client, "{ currentPolicy { version } }", token="x" * 43)
        assert body["data"]["currentPolicy"]["version"] and "errors" not in body
