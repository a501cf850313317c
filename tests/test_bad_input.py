"""Bad input over HTTP: a clear refusal, never a 500 or a stack trace, and nothing written."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from models import Account, AuthSession, Database
from schema import MAX_ALIASES, MAX_DEPTH
from tests.helpers import LOGIN, ME, PASSWORD, SIGNUP, codes, gql, signed_up, signup_input
from web.graphql import MASKED_MESSAGE

SQL_AND_SCRIPT = [
    "'; DROP TABLE accounts; --",
    "<script>alert(1)</script>",
    '" OR 1=1 --',
]
JSON = {"content-type": "application/json"}


async def count(database: Database, model: type[Account] | type[AuthSession] = Account) -> int:
    async with database.session() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


def assert_clear_refusal(response: httpx.Response, *statuses: int) -> None:
    """The expected status, and no sign of a crash in the body."""
    assert response.status_code in statuses, response.text
    for leak in ("Traceback", 'File "', "sqlalchemy", "[SQL:"):
        assert leak not in response.text


def graphql_errors(response: httpx.Response) -> list[str]:
    """The messages of a GraphQL-level refusal: errors and no data."""
    assert_clear_refusal(response, 200, 400)
    body: dict[str, Any] = response.json()
    assert body.get("data") is None, body
    assert body["errors"], body
    return [error["message"] for error in body["errors"]]


def nested(levels: int) -> str:
    """A query whose fields nest `levels` deep (the depth limit counts before types are checked)."""
    selection = "id"
    for level in range(levels - 2):
        selection = f"f{level} {{ {selection} }}"
    return f"{{ me {{ sessions {{ {selection} }} }} }}"


class TestRequestBody:
    async def test_malformed_json_is_400(
        self, client: httpx.AsyncClient, database: Database
    ) -> None:
        response = await client.post("/graphql", content=b'{"query": "mutation {', headers=JSON)
        assert_clear_refusal(response, 400)
        assert "JSON" in response.text
        assert await count(database) == 0

    @pytest.mark.parametrize("body", [b'"{ me { id } }"', b"42", b"null", b"true"])
    async def test_json_that_is_not_an_object_is_400(
        self, client: httpx.AsyncClient, database: Database, body: bytes
    ) -> None:
        response = await client.post("/graphql", content=body, headers=JSON)
        assert_clear_refusal(response, 400)
        assert await count(database) == 0

    async def test_a_batch_list_is_400(self, client: httpx.AsyncClient, database: Database) -> None:
        batch = [{"query": SIGNUP, "variables": {"input": signup_input()}}]
        response = await client.post("/graphql", json=batch)
        assert_clear_refusal(response, 400)
        assert await count(database) == 0

    async def test_body_that_is_not_utf8_is_400(self, client: httpx.AsyncClient) -> None:
        response = await client.post("/graphql", content=b'{"query": "\xff\xfe"}', headers=JSON)
        assert_clear_refusal(response, 400)

    async def test_deeply_nested_json_is_400(self, client: httpx.AsyncClient) -> None:
        variables = b"[" * 5000 + b"]" * 5000
        body = b'{"query": "{ __typename }", "variables": {"input": ' + variables + b"}}"
        response = await client.post("/graphql", content=body, headers=JSON)
        assert_clear_refusal(response, 400)

    async def test_lone_surrogate_in_a_variable_is_400(
        self, client: httpx.AsyncClient, database: Database
    ) -> None:
        # JSON can spell half a UTF-16 pair, which no database or hash can take.
        body = json.dumps({"query": SIGNUP, "variables": {"input": signup_input()}})
        body = body.replace("Ada Lovelace", "Ada \\ud800")
        response = await client.post("/graphql", content=body.encode(), headers=JSON)
        assert_clear_refusal(response, 400)
        assert await count(database) == 0

    async def test_form_post_is_400(self, client: httpx.AsyncClient) -> None:
        response = await client.post("/graphql", data={"query": "{ __typename }"})
        assert_clear_refusal(response, 400)

    async def test_missing_query_is_400(self, client: httpx.AsyncClient) -> None:
        response = await client.post("/graphql", json={"variables": {}})
        assert_clear_refusal(response, 400)

    async def test_variables_that_are_not_an_object_are_400(
        self, client: httpx.AsyncClient, database: Database
    ) -> None:
        response = await client.post("/graphql", json={"query": SIGNUP, "variables": [1]})
        assert_clear_refusal(response, 400)
        assert await count(database) == 0


class TestBodyLimit:
    async def test_1mb_body_is_413(self, client: httpx.AsyncClient, database: Database) -> None:
        variables = {"input": signup_input(displayName="x" * 1024 * 1024)}
        response = await client.post("/graphql", json={"query": SIGNUP, "variables": variables})
        assert_clear_refusal(response, 413)
        assert await count(database) == 0

    async def test_1mb_body_without_a_length_is_413(
        self, client: httpx.AsyncClient, database: Database
    ) -> None:
        body = json.dumps({"query": SIGNUP, "variables": {"input": signup_input()}}).encode()
        padded = body[:-1] + b"," + b" " * (1024 * 1024) + b"}"

        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(padded), 16 * 1024):
                yield padded[start : start + 16 * 1024]

        response = await client.post("/graphql", content=chunks(), headers=JSON)
        assert_clear_refusal(response, 413)
        assert await count(database) == 0

    async def test_10000_character_name_within_the_limit_is_invalid(
        self, client: httpx.AsyncClient, database: Database
    ) -> None:
        body = await gql(client, SIGNUP, {"input": signup_input(displayName="x" * 10_000)})
        assert codes(body["data"]["signup"]) == ["INVALID_DISPLAY_NAME"]
        assert await count(database) == 0

    @pytest.mark.parametrize(
        ("field", "code"), [("email", "INVALID_EMAIL"), ("password", "WEAK_PASSWORD")]
    )
    async def test_10000_character_text_is_invalid(
        self, client: httpx.AsyncClient, database: Database, field: str, code: str
    ) -> None:
        value = "a" * 9_988 + "@example.com" if field == "email" else "p" * 10_000
        body = await gql(client, SIGNUP, {"input": signup_input(**{field: value})})
        assert codes(body["data"]["signup"]) == [code]
        assert await count(database) == 0


class TestVariableTypes:
    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("birthDate", "not-a-date"),
            ("birthDate", 12345),
            ("birthDate", "2010-02-30"),
            ("birthDate", "2000-01-01T00:00:00"),
            ("birthDate", None),
            ("email", 42),
            ("displayName", ["Ada"]),
            ("country", {"code": "GB"}),
            ("phone", 4915123456789),
        ],
    )
    async def test_wrong_type_is_a_graphql_error(
        self, client: httpx.AsyncClient, database: Database, field: str, value: object
    ) -> None:
        variables = {"input": signup_input(**{field: value})}
        response = await client.post("/graphql", json={"query": SIGNUP, "variables": variables})
        messages = graphql_errors(response)
        assert any(f".{field}" in message for message in messages), messages
        assert await count(database) == 0

    async def test_wrong_type_on_login_is_a_graphql_error(
        self, client: httpx.AsyncClient, database: Database
    ) -> None:
        variables = {"input": {"email": ["ada@example.com"], "password": PASSWORD}}
        response = await client.post("/graphql", json={"query": LOGIN, "variables": variables})
        graphql_errors(response)
        assert await count(database, AuthSession) == 0


class TestMissingFields:
    @pytest.mark.parametrize(
        "field",
        ["email", "password", "displayName", "birthDate", "country", "acceptPolicyVersion"],
    )
    async def test_missing_required_signup_field(
        self, client: httpx.AsyncClient, database: Database, field: str
    ) -> None:
        values = signup_input()
        del values[field]
        response = await client.post(
            "/graphql", json={"query": SIGNUP, "variables": {"input": values}}
        )
        messages = graphql_errors(response)
        assert any(f"'{field}'" in message for message in messages), messages
        assert await count(database) == 0

    async def test_missing_input(self, client: httpx.AsyncClient, database: Database) -> None:
        response = await client.post("/graphql", json={"query": SIGNUP, "variables": {}})
        messages = graphql_errors(response)
        assert any("SignupInput!" in message for message in messages), messages
        assert await count(database) == 0

    async def test_missing_login_password(
        self, client: httpx.AsyncClient, database: Database
    ) -> None:
        variables = {"input": {"email": "ada@example.com"}}
        response = await client.post("/graphql", json={"query": LOGIN, "variables": variables})
        messages = graphql_errors(response)
        assert any("'password'" in message for message in messages), messages
        assert await count(database, AuthSession) == 0


class TestSignupInjection:
    @pytest.mark.parametrize(
        ("field", "code"),
        [
            ("email", "INVALID_EMAIL"),
            ("country", "INVALID_COUNTRY"),
            ("phone", "INVALID_PHONE"),
            ("acceptPolicyVersion", "POLICY_OUTDATED"),
        ],
    )
    async def test_fragment_is_refused_with_the_field_code(
        self, client: httpx.AsyncClient, database: Database, field: str, code: str
    ) -> None:
        for fragment in SQL_AND_SCRIPT:
            body = await gql(client, SIGNUP, {"input": signup_input(**{field: fragment})})
            payload = body["data"]["signup"]
            assert payload["confirmationSent"] is False
            assert [(error["field"], error["code"]) for error in payload["errors"]] == [
                (field, code)
            ]
        assert await count(database) == 0
        await signed_up(client)
        assert await count(database) == 1

    @pytest.mark.parametrize("fragment", SQL_AND_SCRIPT)
    async def test_display_name_is_stored_literally(
        self, client: httpx.AsyncClient, database: Database, fragment: str
    ) -> None:
        token = await signed_up(client, displayName=fragment)
        me = (await gql(client, ME, token=token))["data"]["me"]
        assert me["displayName"] == fragment
        async with database.session() as session:
            assert list(await session.scalars(select(Account.display_name))) == [fragment]
        await signed_up(client, email="grace@example.com")
        assert await count(database) == 2

    @pytest.mark.parametrize("fragment", SQL_AND_SCRIPT)
    async def test_password_is_taken_literally(
        self, client: httpx.AsyncClient, database: Database, fragment: str
    ) -> None:
        await signed_up(client, password=fragment)
        credentials = {"email": "ada@example.com", "password": fragment}
        assert (await gql(client, LOGIN, {"input": credentials}))["data"]["login"]["token"]
        credentials["password"] = fragment[:-1]
        wrong = (await gql(client, LOGIN, {"input": credentials}))["data"]["login"]
        assert codes(wrong) == ["INVALID_CREDENTIALS"]
        assert await count(database) == 1


class TestLoginInjection:
    async def test_fragments_are_wrong_credentials(
        self, client: httpx.AsyncClient, database: Database
    ) -> None:
        await signed_up(client)
        sessions_after_signup = await count(database, AuthSession)
        attempts = [
            *({"email": fragment, "password": PASSWORD} for fragment in SQL_AND_SCRIPT),
            *({"email": "ada@example.com", "password": fragment} for fragment in SQL_AND_SCRIPT),
            {"email": "ada@example.com' --", "password": "x"},
            {"email": "' OR 1=1 --@example.com", "password": PASSWORD},
        ]
        for credentials in attempts:
            body = await gql(client, LOGIN, {"input": credentials})
            assert body["data"]["login"]["token"] is None
            assert codes(body["data"]["login"]) == ["INVALID_CREDENTIALS"]
        assert await count(database, AuthSession) == sessions_after_signup
        assert await count(database) == 1
        credentials = {"email": "ada@example.com", "password": PASSWORD}
        assert (await gql(client, LOGIN, {"input": credentials}))["data"]["login"]["token"]

    @pytest.mark.parametrize("email", ["ada\x00@example.com", "\x00", "ada@exa\x00mple.com"])
    async def test_nul_byte_in_email_is_invalid_input(
        self, client: httpx.AsyncClient, database: Database, email: str
    ) -> None:
        # PostgreSQL refuses NUL in text, so such an email must never reach a query. Refusing it
        # says nothing about which emails are registered.
        await signed_up(client)
        client.cookies.clear()
        body = await gql(client, LOGIN, {"input": {"email": email, "password": PASSWORD}})
        assert codes(body["data"]["login"]) == ["INVALID_INPUT"]
        assert body["data"]["login"]["token"] is None
        assert await count(database, AuthSession) == 1


class TestQueryLimits:
    async def test_query_deeper_than_the_limit_is_refused(self, client: httpx.AsyncClient) -> None:
        response = await client.post("/graphql", json={"query": nested(MAX_DEPTH + 1)})
        messages = graphql_errors(response)
        assert f"exceeds maximum operation depth of {MAX_DEPTH}" in " ".join(messages)

    async def test_query_at_the_limit_is_not_refused_for_depth(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await client.post("/graphql", json={"query": nested(MAX_DEPTH)})
        assert "depth" not in " ".join(graphql_errors(response))

    async def test_1000_aliases_are_refused(self, client: httpx.AsyncClient) -> None:
        query = "{ " + " ".join(f"a{n}: currentPolicy {{ version }}" for n in range(1000)) + " }"
        # Whichever limit trips first refuses it (today the token limit, before the alias count).
        graphql_errors(await client.post("/graphql", json={"query": query}))

    async def test_one_alias_over_the_limit_is_refused(self, client: httpx.AsyncClient) -> None:
        query = "{ " + " ".join(f"a{n}: __typename" for n in range(MAX_ALIASES + 1)) + " }"
        messages = graphql_errors(await client.post("/graphql", json={"query": query}))
        assert f"Allowed: {MAX_ALIASES}" in " ".join(messages)

    async def test_aliases_at_the_limit_are_answered(self, client: httpx.AsyncClient) -> None:
        query = "{ " + " ".join(f"a{n}: __typename" for n in range(MAX_ALIASES)) + " }"
        body = await gql(client, query)
        assert len(body["data"]) == MAX_ALIASES

    async def test_mutation_over_get_is_refused(
        self, client: httpx.AsyncClient, database: Database
    ) -> None:
        params = {"query": SIGNUP, "variables": json.dumps({"input": signup_input()})}
        response = await client.get("/graphql", params=params)
        assert_clear_refusal(response, 400, 405)
        assert await count(database) == 0

    async def test_query_over_get_is_answered(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/graphql", params={"query": "{ currentPolicy { version } }"})
        assert response.status_code == 200
        assert response.json()["data"]["currentPolicy"]["version"]


def fail_current_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("secret detail")

    monkeypatch.setattr("schema.policy.policy.current_policy", broken)


def error_logs(caplog: pytest.LogCaptureFixture, request_id: str) -> list[logging.LogRecord]:
    return [
        record
        for record in caplog.records
        if record.levelno == logging.ERROR
        and request_id in record.getMessage()
        and record.exc_info is not None
        and "secret detail" in str(record.exc_info[1])
    ]


class TestProductionMode:
    @pytest.mark.parametrize(
        "query", ["{ __schema { types { name } } }", '{ __type(name: "Account") { name } }']
    )
    async def test_introspection_is_refused(
        self, production_client: httpx.AsyncClient, query: str
    ) -> None:
        response = await production_client.post("/graphql", json={"query": query})
        messages = graphql_errors(response)
        assert "Account" not in response.text
        assert any("introspection" in message.lower() for message in messages), messages

    async def test_introspection_works_in_development(self, client: httpx.AsyncClient) -> None:
        body = await gql(client, "{ __schema { types { name } } }")
        assert "Account" in {type_["name"] for type_ in body["data"]["__schema"]["types"]}

    async def test_no_field_suggestions(self, production_client: httpx.AsyncClient) -> None:
        response = await production_client.post(
            "/graphql", json={"query": "{ currentPolicyy { version } }"}
        )
        messages = graphql_errors(response)
        assert "Did you mean" not in " ".join(messages)
        assert "currentPolicy'" not in " ".join(messages)

    @pytest.mark.parametrize(
        ("query", "variables"),
        [
            ("{ currentPolicy { versin } }", None),
            ('{ staffAccount(reasn: "x") { id } }', None),
            ("query ($x: Strin) { currentPolicy { version } }", None),
            ("{ ... on Querry { currentPolicy { version } } }", None),
            ("fragment F on Acount { id } { me { ...F } }", None),
            ('mutation { login(input: {emial: "a@b.co", password: "x"}) { token } }', None),
            (LOGIN, {"input": {"emial": "a@b.co", "email": "a@b.co", "password": "x"}}),
            ('{ privacyRequests(reason: "x", status: OPN) { id } }', None),
            (
                "mutation ($input: CommunicationPreferenceInput!) {"
                " setCommunicationPreference(input: $input) { errors { code } } }",
                {"input": {"channel": "EMAL", "topic": "NEWSLETTER", "enabled": True}},
            ),
        ],
        ids=[
            "field",
            "argument",
            "variable type",
            "type condition",
            "fragment type",
            "input field",
            "input field in a variable",
            "enum value",
            "enum value in a variable",
        ],
    )
    async def test_no_suggestions_of_any_kind(
        self,
        production_client: httpx.AsyncClient,
        client: httpx.AsyncClient,
        query: str,
        variables: dict[str, Any] | None,
    ) -> None:
        body = {"query": query, "variables": variables}
        messages = graphql_errors(await production_client.post("/graphql", json=body))
        assert not any("Did you mean" in message for message in messages), messages
        # The same mistake in development is where a developer gets the hint.
        hints = graphql_errors(await client.post("/graphql", json=body))
        assert any("Did you mean" in message for message in hints), hints

    async def test_field_suggestions_in_development(self, client: httpx.AsyncClient) -> None:
        response = await client.post("/graphql", json={"query": "{ currentPolicyy { version } }"})
        assert "Did you mean 'currentPolicy'" in " ".join(graphql_errors(response))

    async def test_no_graphiql(self, production_client: httpx.AsyncClient) -> None:
        # Staff sign in there to get the playground (tests/test_playground.py); nobody else does.
        response = await production_client.get("/graphql", headers={"Accept": "text/html"})
        assert_clear_refusal(response, 401)
        assert "graphiql" not in response.text.lower()
        assert "Staff sign-in" in response.text

    async def test_graphiql_in_development(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/graphql", headers={"Accept": "text/html"})
        assert response.status_code == 200
        assert "graphiql" in response.text.lower()

    async def test_unexpected_error_is_masked_and_logged(
        self,
        production_client: httpx.AsyncClient,
        monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        fail_current_policy(monkeypatch)
        with caplog.at_level(logging.ERROR, logger="privacy_api.graphql"):
            response = await production_client.post(
                "/graphql", json={"query": "{ currentPolicy { version } }"}
            )
        assert_clear_refusal(response, 200)
        assert "secret detail" not in response.text
        assert "RuntimeError" not in response.text
        (error,) = response.json()["errors"]
        request_id = response.headers["X-Request-ID"]
        assert error["message"] == MASKED_MESSAGE
        assert error["extensions"] == {"code": "INTERNAL_SERVER_ERROR", "requestId": request_id}
        assert error_logs(caplog, request_id)

    async def test_masked_error_quotes_the_callers_request_id(
        self, production_client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        fail_current_policy(monkeypatch)
        response = await production_client.post(
            "/graphql",
            json={"query": "{ currentPolicy { version } }"},
            headers={"X-Request-ID": "support-ticket-1234"},
        )
        assert response.headers["X-Request-ID"] == "support-ticket-1234"
        assert response.json()["errors"][0]["extensions"]["requestId"] == "support-ticket-1234"

    async def test_unexpected_error_is_not_masked_in_development(
        self,
        client: httpx.AsyncClient,
        monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        fail_current_policy(monkeypatch)
        with caplog.at_level(logging.ERROR, logger="privacy_api.graphql"):
            response = await client.post(
                "/graphql", json={"query": "{ currentPolicy { version } }"}
            )
        assert response.status_code == 200
        (error,) = response.json()["errors"]
        assert error["message"] == "secret detail"
        assert error_logs(caplog, response.headers["X-Request-ID"])

    async def test_bad_input_is_still_a_user_error(
        self, production_client: httpx.AsyncClient, database: Database
    ) -> None:
        body = await gql(production_client, SIGNUP, {"input": signup_input(country="XX")})
        assert codes(body["data"]["signup"]) == ["INVALID_COUNTRY"]
        assert await count(database) == 0
