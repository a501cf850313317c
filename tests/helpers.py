"""Small factories and a GraphQL caller shared by the tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from typing import Any

import httpx
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import SEED_POLICY_VERSION

ACCOUNT_FIELDS = """
    id email displayName phone birthDate country isMinor role acceptedPolicyVersion createdAt
"""

SIGNUP = f"""
mutation Signup($input: SignupInput!) {{
  signup(input: $input) {{
    token
    account {{ {ACCOUNT_FIELDS} }}
    errors {{ field message code }}
  }}
}}
"""

LOGIN = f"""
mutation Login($input: LoginInput!) {{
  login(input: $input) {{
    token
    account {{ {ACCOUNT_FIELDS} }}
    errors {{ field message code }}
  }}
}}
"""

ME = f"query {{ me {{ {ACCOUNT_FIELDS} sessions {{ id userAgent current }} }} }}"

PASSWORD = "correct horse battery"


async def gql(
    client: httpx.AsyncClient,
    query: str,
    variables: dict[str, Any] | None = None,
    *,
    token: str | None = None,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """POST a GraphQL operation as JSON and return the decoded body (always HTTP 200)."""
    all_headers = dict(headers or {})
    if token:
        all_headers["Authorization"] = f"Bearer {token}"
    response = await client.post(
        "/graphql", json={"query": query, "variables": variables or {}}, headers=all_headers
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def signup_input(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "email": "ada@example.com",
        "password": PASSWORD,
        "displayName": "Ada Lovelace",
        "birthDate": "1990-12-10",
        "country": "GB",
        "acceptPolicyVersion": SEED_POLICY_VERSION,
    }
    values.update(overrides)
    if isinstance(values["birthDate"], date):
        values["birthDate"] = values["birthDate"].isoformat()
    return values


async def signup(client: httpx.AsyncClient, **overrides: Any) -> dict[str, Any]:
    """Sign up and return the `signup` payload."""
    body = await gql(client, SIGNUP, {"input": signup_input(**overrides)})
    assert "errors" not in body, body
    payload: dict[str, Any] = body["data"]["signup"]
    return payload


async def signed_up(client: httpx.AsyncClient, **overrides: Any) -> str:
    """Sign up successfully and return the bearer token."""
    payload = await signup(client, **overrides)
    assert payload["errors"] == [], payload["errors"]
    token: str = payload["token"]
    return token


def codes(payload: dict[str, Any]) -> list[str]:
    return [error["code"] for error in payload["errors"]]


@contextmanager
def count_statements(engine: AsyncEngine) -> Iterator[list[str]]:
    """Collect every SQL statement the engine sends while the block runs."""
    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)


async def staff_token(client: httpx.AsyncClient, database: Any, role: Any, email: str) -> str:
    """Create a staff member of the given role (as the CLI would) and sign them in."""
    from resolvers.account import create_staff

    async with database.session() as session:
        await create_staff(
            session, email=email, password=PASSWORD, display_name="Staff Member", role=role
        )
    body = await gql(client, LOGIN, {"input": {"email": email, "password": PASSWORD}})
    client.cookies.clear()  # the staff member acts through the token only
    token: str = body["data"]["login"]["token"]
    return token
