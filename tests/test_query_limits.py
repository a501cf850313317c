"""What a query may cost: refused before validation when too big, validated once when repeated."""

from __future__ import annotations

import secrets
from typing import Any

import httpx
import pytest
from graphql import GraphQLNonNull, GraphQLObjectType, get_named_type
from graphql import build_schema as schema_from_sdl
from graphql.validation import ExecutableDefinitionsRule

from schema import MAX_REPEATS, MAX_SELECTIONS, build_schema, schema_sdl
from tests.helpers import count_statements, gql, signed_up

TOO_COMPLEX = "QUERY_TOO_COMPLEX"
SCHEMA = schema_from_sdl(schema_sdl())


def every_field(type_name: str, seen: frozenset[str] = frozenset()) -> str:
    """A selection of every field of a type, and of the types below it, each type once per path:
    the biggest query a client could honestly send for it."""
    graphql_type = SCHEMA.type_map[type_name]
    assert isinstance(graphql_type, GraphQLObjectType)
    parts = []
    for name, field in graphql_type.fields.items():
        if any(isinstance(argument.type, GraphQLNonNull) for argument in field.args.values()):
            continue  # a required argument: not something every client sends
        below = get_named_type(field.type)
        if isinstance(below, GraphQLObjectType):
            if below.name in seen | {type_name}:
                continue
            parts.append(f"{name} {{ {every_field(below.name, seen | {type_name})} }}")
        else:
            parts.append(name)
    return " ".join(parts)


def repeated(selection: str, times: int) -> str:
    # A random comment makes each such query new text, as an attacker's would be.
    return f"{{ {' '.join([selection] * times)} # {secrets.token_hex(8)}\n}}"


def fragment_chain(length: int) -> str:
    """Each fragment spreads the next one twice: 2**length selections from a few lines."""
    fragments = " ".join(
        f"fragment F{n} on Query {{ ...F{n + 1} ...F{n + 1} }}" for n in range(length)
    )
    return f"query {{ ...F0 }} {fragments} fragment F{length} on Query {{ __typename }}"


def every_place_at_the_repeat_limit() -> str:
    """No place in the response selected more often than allowed, but too many selections."""
    leaves = "id email displayName phone birthDate country isMinor role locale createdAt"
    inner = " ".join(f"{leaf} " * MAX_REPEATS for leaf in leaves.split())
    copies = MAX_SELECTIONS // (1 + len(leaves.split()) * MAX_REPEATS) + 1
    return "{ " + " ".join(f"a{n}: me {{ {inner} }}" for n in range(copies)) + " }"


def assert_too_complex(body: dict[str, Any], limit: str) -> None:
    assert body["data"] is None, body
    (error,) = body["errors"]
    assert error["extensions"]["code"] == TOO_COMPLEX, error
    assert limit in error["message"], error["message"]


class TestQueryCost:
    @pytest.mark.parametrize(
        ("query", "limit"),
        [
            (repeated("currentPolicy { version }", 400), f"more than {MAX_REPEATS} times"),
            ("{ me { " + "id " * (MAX_REPEATS + 1) + "} }", f"more than {MAX_REPEATS} times"),
            (fragment_chain(16), f"more than {MAX_REPEATS} times"),
            (every_place_at_the_repeat_limit(), f"more than {MAX_SELECTIONS} selections"),
            (
                "query { __typename } fragment Unused on Query { "
                + "currentPolicy { version } " * (MAX_REPEATS + 1)
                + "}",
                f"more than {MAX_REPEATS} times",
            ),
        ],
        ids=[
            "one field 400 times",
            "a nested field once too often",
            "fragments that double",
            "every place at the limit",
            "an unused fragment",
        ],
    )
    async def test_a_query_over_the_limits_is_refused_before_it_is_validated_or_run(
        self,
        client: httpx.AsyncClient,
        app: Any,
        monkeypatch: pytest.MonkeyPatch,
        query: str,
        limit: str,
    ) -> None:
        validations = count_validations(monkeypatch)
        with count_statements(app.state.services.database.engine) as statements:
            body = await gql(client, query)
        assert_too_complex(body, limit)
        assert validations == []
        assert statements == []

    async def test_the_biggest_honest_me_query_is_answered(self, client: httpx.AsyncClient) -> None:
        token = await signed_up(client)
        query = f"{{ me {{ {every_field('Account')} }} }}"
        body = await gql(client, query, token=token)
        assert "errors" not in body, body
        assert body["data"]["me"]["email"] == "ada@example.com"
        assert body["data"]["me"]["communicationPreferences"]

    async def test_a_field_repeated_up_to_the_limit_is_answered(
        self, client: httpx.AsyncClient
    ) -> None:
        token = await signed_up(client)
        body = await gql(client, "{ me { " + "id " * MAX_REPEATS + "} }", token=token)
        assert "errors" not in body, body
        assert body["data"]["me"]["id"]

    async def test_the_same_field_in_different_places_is_answered(
        self, client: httpx.AsyncClient
    ) -> None:
        token = await signed_up(client)
        places = " ".join(f"a{n}: me {{ {'id ' * MAX_REPEATS} }}" for n in range(MAX_REPEATS + 1))
        body = await gql(client, f"{{ {places} }}", token=token)
        assert "errors" not in body, body


def count_validations(monkeypatch: pytest.MonkeyPatch) -> list[None]:
    """One entry each time graphql-core validates a document: it builds every rule afresh."""
    runs: list[None] = []
    original = ExecutableDefinitionsRule.__init__

    def counting(self: ExecutableDefinitionsRule, context: Any) -> None:
        runs.append(None)
        original(self, context)

    monkeypatch.setattr(ExecutableDefinitionsRule, "__init__", counting)
    return runs


class TestValidationCache:
    async def test_a_repeated_query_is_validated_once(
        self, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        runs = count_validations(monkeypatch)
        # Each process keeps one schema, and its cache, for every app: a query no other test sends.
        query = f"query Once{secrets.token_hex(4)} {{ currentPolicy {{ version summary }} }}"
        for _ in range(3):
            body = await gql(client, query)
            assert body["data"]["currentPolicy"]["version"]
        assert len(runs) == 1

    async def test_the_cache_hit_count_grows_on_a_repeated_query(self) -> None:
        schema = build_schema(production=True)
        for _ in range(3):
            result = await schema.execute("query Probe { __typename }")
            assert result.data == {"__typename": "Query"}
        other = await schema.execute("query Other { __typename }")
        assert other.errors is None
        assert (schema.validator.verdicts.misses, schema.validator.verdicts.hits) == (2, 2)
        # The object budget is counted once per distinct query too.
        counts = schema.object_counts.counts
        assert (counts.misses, counts.hits) == (2, 2)

    async def test_production_and_development_keep_their_own_answers(
        self, client: httpx.AsyncClient, production_client: httpx.AsyncClient
    ) -> None:
        introspection = "{ __schema { queryType { name } } }"
        for _ in range(2):
            refused = await gql(production_client, introspection)
            answered = await gql(client, introspection)
            assert refused["data"] is None
            assert "introspection" in refused["errors"][0]["message"].lower()
            assert answered["data"]["__schema"]["queryType"]["name"] == "Query"
