"""A NUL character in any text argument is bad input: refused with a clear error, nothing written.

PostgreSQL cannot store NUL in text, so before this rule such input crashed there; SQLite stored it.
The cases come from the schema itself, so a new mutation or argument is covered without a new test.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from graphql import (
    GraphQLArgument,
    GraphQLEnumType,
    GraphQLField,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLList,
    GraphQLNamedType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    get_named_type,
    is_composite_type,
)
from graphql import build_schema as schema_from_sdl
from sqlalchemy import func, select

from models import ApiScope, Base, Database, Role
from schema import schema_sdl
from tests.helpers import gql, signed_up, staff_token

SCHEMA = schema_from_sdl(schema_sdl())
NUL_TEXT = "before\x00after"
TEXT_SCALARS = {"String", "ID"}
SAMPLES: dict[str, Any] = {
    "String": "text",
    "ID": str(uuid.UUID(int=1)),
    "Int": 1,
    "Float": 1.0,
    "Boolean": True,
    "Date": "2000-01-01",
    "DateTime": "2000-01-01T00:00:00+00:00",
}
Path = tuple[str | int, ...]


def sample(type_: GraphQLInputType) -> Any:
    """A well-typed value for an input type, with every optional input field filled in too."""
    if isinstance(type_, GraphQLNonNull):
        return sample(type_.of_type)
    if isinstance(type_, GraphQLList):
        return [sample(type_.of_type)]
    if isinstance(type_, GraphQLInputObjectType):
        return {name: sample(field.type) for name, field in type_.fields.items()}
    if isinstance(type_, GraphQLEnumType):
        return next(iter(type_.values))
    assert isinstance(type_, GraphQLScalarType)
    return SAMPLES[type_.name]


def text_paths(type_: GraphQLInputType, path: Path = ()) -> Iterator[Path]:
    """Where text can be sent inside a value of this type."""
    if isinstance(type_, GraphQLNonNull):
        yield from text_paths(type_.of_type, path)
    elif isinstance(type_, GraphQLList):
        yield from text_paths(type_.of_type, (*path, 0))
    elif isinstance(type_, GraphQLInputObjectType):
        for name, field in type_.fields.items():
            yield from text_paths(field.type, (*path, name))
    elif isinstance(type_, GraphQLScalarType) and type_.name in TEXT_SCALARS:
        yield path


def with_text(arguments: dict[str, Any], path: Path, text: str) -> dict[str, Any]:
    changed = copy.deepcopy(arguments)
    target: Any = changed
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = text
    return changed


def field_name(path: Path) -> str:
    """The innermost named input field or argument, as payload errors name it."""
    return next(str(step) for step in reversed(path) if isinstance(step, str))


def operation(kind: str, selection: str, arguments: dict[str, GraphQLArgument]) -> str:
    """`kind ($a: T, ...) { selection }` where `selection` uses `$a` for argument `a`."""
    definitions = ", ".join(f"${name}: {argument.type}" for name, argument in arguments.items())
    heading = f"{kind} ({definitions})" if definitions else kind
    return f"{heading} {{ {selection} }}"


def passed_on(arguments: dict[str, GraphQLArgument]) -> str:
    inner = ", ".join(f"{name}: ${name}" for name in arguments)
    return f"({inner})" if inner else ""


def cases(field: GraphQLField) -> Iterator[tuple[dict[str, Any], Path]]:
    """For each place text can go in this field's arguments: the arguments with NUL there."""
    arguments = {name: sample(argument.type) for name, argument in field.args.items()}
    for name, argument in field.args.items():
        for path in text_paths(argument.type, (name,)):
            yield with_text(arguments, path, NUL_TEXT), path


def takes_text(field: GraphQLField) -> bool:
    return any(True for argument in field.args.values() for _ in text_paths(argument.type))


MUTATIONS = [
    (name, field)
    for name, field in SCHEMA.mutation_type.fields.items()  # type: ignore[union-attr]
    if takes_text(field)
]


def reachable_fields_with_text() -> Iterator[tuple[str, str, GraphQLField]]:
    """Every query field that takes text, with the selection that reaches it from the root
    (through fields that need no arguments), such as `me { consentHistory }`."""
    seen: set[str] = set()
    queue: list[tuple[GraphQLNamedType, str]] = [(SCHEMA.query_type, "")]  # type: ignore[list-item]
    while queue:
        type_, prefix = queue.pop(0)
        if not isinstance(type_, GraphQLObjectType) or type_.name in seen:
            continue
        seen.add(type_.name)
        for name, field in type_.fields.items():
            if takes_text(field):
                yield prefix, name, field
            elif not field.args:
                queue.append((get_named_type(field.type), f"{prefix}{name} "))


QUERY_FIELDS = list(reachable_fields_with_text())


def wrapped(prefix: str, selection: str) -> str:
    for name in reversed(prefix.split()):
        selection = f"{name} {{ {selection} }}"
    return selection


def leaf_selection(field: GraphQLField) -> str:
    return " { __typename }" if is_composite_type(get_named_type(field.type)) else ""


async def row_counts(database: Database) -> dict[str, int]:
    async with database.session() as session:
        return {
            table.name: int(await session.scalar(select(func.count()).select_from(table)) or 0)
            for table in Base.metadata.sorted_tables
        }


@pytest.fixture
async def officer(client: httpx.AsyncClient, database: Database) -> str:
    """A privacy officer passes every permission for people, so each field gets as far as its
    input."""
    await signed_up(client)
    client.cookies.clear()
    return await staff_token(client, database, Role.PRIVACY_OFFICER, "officer@example.com")


@pytest.fixture
async def machine(client: httpx.AsyncClient, officer: str) -> str:
    """An API key with every scope passes every permission for machine clients."""
    body = await gql(
        client,
        "mutation ($input: CreateApiKeyInput!) { createApiKey(input: $input) { key } }",
        {"input": {"name": "all", "scopes": [s.name for s in ApiScope], "reason": "NUL tests"}},
        token=officer,
    )
    key: str = body["data"]["createApiKey"]["key"]
    return key


def test_the_schema_has_text_arguments_to_check() -> None:
    names = {name for name, _ in MUTATIONS}
    assert {"fileComplaint", "reportChildAccount", "publishPolicyVersion", "signup"} <= names
    assert {name for _, name, _ in QUERY_FIELDS} >= {"staffAccount", "consentHistory"}


class TestNulBytes:
    async def test_every_text_argument_of_every_mutation_is_refused_as_invalid_input(
        self, client: httpx.AsyncClient, database: Database, officer: str
    ) -> None:
        before = await row_counts(database)
        for name, field in MUTATIONS:
            document = operation(
                "mutation",
                f"{name}{passed_on(field.args)} {{ errors {{ field code message }} }}",
                field.args,
            )
            for variables, path in cases(field):
                body = await gql(client, document, variables, token=officer)
                where = f"{name} {'.'.join(map(str, path))}"
                assert "errors" not in body, (where, body)
                errors = body["data"][name]["errors"]
                assert [(e["field"], e["code"]) for e in errors] == [
                    (field_name(path), "INVALID_INPUT")
                ], (where, errors)
                assert "NUL" in errors[0]["message"]
        assert await row_counts(database) == before

    async def test_every_text_argument_of_every_query_field_is_bad_user_input(
        self, client: httpx.AsyncClient, database: Database, officer: str, machine: str
    ) -> None:
        before = await row_counts(database)
        for prefix, name, field in QUERY_FIELDS:
            selection = wrapped(prefix, f"{name}{passed_on(field.args)}{leaf_selection(field)}")
            document = operation("query", selection, field.args)
            for variables, path in cases(field):
                # A field for people answers the officer; one for machine clients, the key.
                for token in (officer, machine):
                    body = await gql(client, document, variables, token=token)
                    if body.get("errors", [{}])[0].get("extensions", {}).get("code") != (
                        "UNAUTHENTICATED"
                    ):
                        break
                where = f"{prefix}{name} {'.'.join(map(str, path))}"
                assert body.get("errors"), (where, body)
                (error,) = body["errors"]
                assert error["extensions"]["code"] == "BAD_USER_INPUT", (where, error)
                assert error["extensions"]["field"] == field_name(path), (where, error)
                assert error["path"][-1] == name, (where, error)
        assert await row_counts(database) == before

    async def test_who_may_call_is_still_answered_first(
        self, client: httpx.AsyncClient, database: Database
    ) -> None:
        token = await signed_up(client)
        client.cookies.clear()
        document = (
            "mutation ($input: PublishPolicyVersionInput!) {"
            " publishPolicyVersion(input: $input) { errors { code } } }"
        )
        variables = {"input": {"version": "2030-01", "summary": NUL_TEXT, "material": False}}
        anonymous = await gql(client, document, variables)
        as_user = await gql(client, document, variables, token=token)
        assert anonymous["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
        assert as_user["errors"][0]["extensions"]["code"] == "FORBIDDEN"

    async def test_nul_written_in_the_query_text_is_refused_too(
        self, client: httpx.AsyncClient, database: Database
    ) -> None:
        token = await signed_up(client)
        before = await row_counts(database)
        body = await gql(
            client,
            'mutation { fileComplaint(input: {subject: "Hi\\u0000", details: "x"})'
            " { request { id } errors { field code } } }",
            token=token,
        )
        assert body["data"]["fileComplaint"] == {
            "request": None,
            "errors": [{"field": "subject", "code": "INVALID_INPUT"}],
        }
        assert await row_counts(database) == before
