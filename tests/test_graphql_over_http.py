"""The GraphQL-over-HTTP specification: the `application/graphql-response+json` media type with
its status codes, `application/json` as before, and queries over GET from a web frontend."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from auth.tokens import SESSION_COOKIE
from tests.conftest import FRONTEND
from tests.helpers import signed_up_through_the_api
from tests.test_cors import browser_refusals

GRAPHQL_RESPONSE = "application/graphql-response+json"
NEW = {"Accept": f"{GRAPHQL_RESPONSE}, application/json;q=0.9"}
LEGACY = {"Accept": "application/json"}
POLICY = "{ currentPolicy { version } }"
ME = "{ me { email } }"


async def ask(
    client: httpx.AsyncClient, query: str, headers: dict[str, str], **extra: Any
) -> httpx.Response:
    return await client.post("/graphql", json={"query": query, **extra}, headers=headers)


class TestGraphQLResponseMediaType:
    async def test_an_answer(self, client: httpx.AsyncClient) -> None:
        response = await ask(client, POLICY, NEW)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith(GRAPHQL_RESPONSE)
        assert response.json()["data"]["currentPolicy"]["version"]

    @pytest.mark.parametrize(
        ("query", "variables"),
        [
            ("{ currentPolicy { version }", {}),  # does not parse
            ("{ currentPolicy { nope } }", {}),  # does not validate
            ("query ($n: Int!) { currentPolicy { version } }", {"n": "many"}),  # bad variable
        ],
        ids=["parse", "validation", "variables"],
    )
    async def test_a_request_error_is_a_400_without_data(
        self, client: httpx.AsyncClient, query: str, variables: dict[str, Any]
    ) -> None:
        response = await ask(client, query, NEW, variables=variables)
        assert response.status_code == 400
        assert response.headers["content-type"].startswith(GRAPHQL_RESPONSE)
        body = response.json()
        assert "data" not in body and body["errors"][0]["message"]

    async def test_a_field_error_is_a_partial_answer_with_200(
        self, client: httpx.AsyncClient
    ) -> None:
        query = (
            '{ currentPolicy { version } staffAccount(reason: "r", email: "a@b.example") { id } }'
        )
        response = await ask(client, query, NEW)
        assert response.status_code == 200
        body = response.json()
        assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
        assert body["data"]["currentPolicy"]["version"] and body["data"]["staffAccount"] is None

    @pytest.mark.parametrize(
        "accept", [LEGACY, {}, {"Accept": f"application/json, {GRAPHQL_RESPONSE};q=0.5"}]
    )
    async def test_application_json_is_unchanged(
        self, client: httpx.AsyncClient, accept: dict[str, str]
    ) -> None:
        refused = await ask(client, "{ currentPolicy { nope } }", accept)
        assert refused.status_code == 200
        assert refused.headers["content-type"].startswith("application/json")
        assert refused.json()["data"] is None and refused.json()["errors"]
        answered = await ask(client, POLICY, accept)
        assert answered.status_code == 200
        assert answered.headers["content-type"].startswith("application/json")


class TestQueriesOverGet:
    """urql and other clients send queries over GET: the cookie needs the same header as a POST
    without a JSON body, and without it the answer says why instead of a silent null."""

    async def test_the_cookie_alone_is_refused_with_the_reason(
        self, client: httpx.AsyncClient
    ) -> None:
        await signed_up_through_the_api(client)
        assert SESSION_COOKIE in client.cookies
        response = await client.get("/graphql", params={"query": ME})
        assert response.status_code == 200
        error = response.json()["errors"][0]
        assert error["extensions"]["code"] == "UNAUTHENTICATED"
        assert "X-Requested-With" in error["message"]

    @pytest.mark.parametrize("header", ["X-Requested-With", "X-Client-Source"])
    async def test_the_cookie_with_a_custom_header_is_used(
        self, client: httpx.AsyncClient, header: str
    ) -> None:
        await signed_up_through_the_api(client)
        response = await client.get("/graphql", params={"query": ME}, headers={header: "web"})
        assert response.json() == {"data": {"me": {"email": "ada@example.com"}}}

    async def test_no_cookie_is_still_plainly_signed_out(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/graphql", params={"query": ME})
        assert response.json() == {"data": {"me": None}}


async def test_a_get_query_from_the_frontend_origin_is_signed_in(
    frontend: httpx.AsyncClient,
) -> None:
    """What urql in a browser on the frontend's origin does, with the header added."""
    await signed_up_through_the_api(frontend)
    preflight = await frontend.options(
        "/graphql",
        headers={
            "Origin": FRONTEND,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "x-requested-with",
        },
    )
    assert browser_refusals(preflight, "get", ["x-requested-with"]) == []
    response = await frontend.get(
        "/graphql",
        params={"query": ME},
        headers={"Origin": FRONTEND, "X-Requested-With": "XMLHttpRequest", **NEW},
    )
    assert response.headers["access-control-allow-origin"] == FRONTEND
    assert response.headers["access-control-allow-credentials"] == "true"
    assert response.headers["content-type"].startswith(GRAPHQL_RESPONSE)
    assert response.json() == {"data": {"me": {"email": "ada@example.com"}}}


@pytest.mark.parametrize(("accept", "status"), [(NEW, 405), (LEGACY, 400)])
async def test_a_mutation_over_get_is_refused(
    client: httpx.AsyncClient, accept: dict[str, str], status: int
) -> None:
    response = await client.get(
        "/graphql", params={"query": "mutation { logout { ok } }"}, headers=accept
    )
    assert response.status_code == status
    assert "not allowed when using GET" in response.text
