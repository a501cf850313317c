"""The schema documents itself: what GraphiQL's docs, codegen and graphql-inspector show."""

from __future__ import annotations

import functools
from datetime import datetime

import httpx
from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLSchema,
    GraphQLUnionType,
)

from schema import build_schema
from tests.helpers import events, gql, signed_up

BUILT_IN = {"String", "Int", "Float", "Boolean", "ID"}
# Type names ending in "Type" that stay. WebhookEventType lists the types of webhook event: "event
# type" is the domain's word (a delivery's `type`), not a suffix that says "a GraphQL type".
TYPE_IN_THE_NAME = {"WebhookEventType"}
# The former names of ConsentEvent and SettingDefinition, interfaces they implement so that
# fragments on the old names still match until the removal date (README "Deprecations").
DEPRECATED_NAMES = {
    "ConsentEventType": "ConsentEvent",
    "SettingDefinitionType": "SettingDefinition",
}
# Fields whose name says all there is to say, the same wherever they appear.
SELF_EXPLAINING = {
    "id",
    "cursor",
    "node",
    "edges",
    "pageInfo",
    "hasNextPage",
    "endCursor",
    "errors",
    "message",
    "email",
    "displayName",
    "createdAt",
    "updatedAt",
    "occurredAt",
    "channel",
    "topic",
    "purpose",
    "enabled",
    "kind",
    "status",
    "subject",
    "details",
    "account",
    "request",
    "policy",
    "hold",
    "version",
    "publishedAt",
    "summary",
    "password",
    "currentPassword",
    "newPassword",
    "newEmail",
    "accountId",
    "reason",
}


@functools.cache
def schema() -> GraphQLSchema:
    return build_schema()._schema


def own_types(graphql_schema: GraphQLSchema) -> dict[str, object]:
    return {
        name: type_
        for name, type_ in graphql_schema.type_map.items()
        if not name.startswith("__") and name not in BUILT_IN
    }


def test_every_type_has_a_description() -> None:
    missing = [name for name, type_ in own_types(schema()).items() if not type_.description]  # type: ignore[attr-defined]
    assert missing == []


def test_every_error_code_says_what_it_means() -> None:
    error_code = schema().type_map["ErrorCode"]
    assert isinstance(error_code, GraphQLEnumType)
    assert [name for name, value in error_code.values.items() if not value.description] == []


def test_every_query_and_mutation_has_a_description() -> None:
    graphql_schema = schema()
    missing = [
        f"{root.name}.{name}"
        for root in (graphql_schema.query_type, graphql_schema.mutation_type)
        if root is not None
        for name, field in root.fields.items()
        if not field.description
    ]
    assert missing == []


def test_every_field_that_needs_words_has_them() -> None:
    missing = [
        f"{name}.{field_name}"
        for name, type_ in own_types(schema()).items()
        if isinstance(type_, GraphQLObjectType | GraphQLInputObjectType | GraphQLInterfaceType)
        for field_name, field in type_.fields.items()
        if not field.description and field_name not in SELF_EXPLAINING
    ]
    assert missing == []


def test_no_type_is_named_for_being_a_type() -> None:
    kinds = (
        GraphQLObjectType,
        GraphQLInputObjectType,
        GraphQLInterfaceType,
        GraphQLEnumType,
        GraphQLUnionType,
    )
    named = {
        name
        for name, type_ in own_types(schema()).items()
        if isinstance(type_, kinds) and name.endswith("Type")
    }
    assert named == TYPE_IN_THE_NAME | DEPRECATED_NAMES.keys()


def test_each_former_name_is_an_interface_only_its_new_name_implements() -> None:
    graphql_schema = schema()
    for old, new in DEPRECATED_NAMES.items():
        interface = graphql_schema.type_map[old]
        assert isinstance(interface, GraphQLInterfaceType)
        assert interface.description and interface.description.startswith("Deprecated")
        implementations = graphql_schema.get_implementations(interface).objects
        assert [o.name for o in implementations] == [new]
        assert interface.fields.keys() == graphql_schema.type_map[new].fields.keys()  # type: ignore[attr-defined]


class TestFormerTypeNames:
    async def test_fragments_on_the_old_names_still_match(self, client) -> None:
        token = await signed_up(client)
        query = """
        fragment Event on ConsentEventType { key newValue }
        query {
          privacyCatalogue { __typename ... on SettingDefinitionType { key defaultValue } }
          me { consentHistory(first: 1) { edges { node { __typename ...Event } } } }
        }
        """

        body = await gql(client, query, token=token)

        assert "errors" not in body, body
        setting = body["data"]["privacyCatalogue"][0]
        assert setting["__typename"] == "SettingDefinition"
        assert setting["key"] and setting["defaultValue"]
        [edge] = body["data"]["me"]["consentHistory"]["edges"]
        assert edge["node"]["__typename"] == "ConsentEvent"
        [newest, *_] = await events(client, token)
        assert (edge["node"]["key"], edge["node"]["newValue"]) == (
            newest["key"],
            newest["newValue"],
        )

    async def test_the_new_names_match_too(self, client) -> None:
        token = await signed_up(client)
        query = """
        query {
          privacyCatalogue { ... on SettingDefinition { key } }
          me { consentHistory(first: 1) { edges { node { ... on ConsentEvent { key } } } } }
        }
        """

        body = await gql(client, query, token=token)

        assert "errors" not in body, body
        assert body["data"]["privacyCatalogue"][0]["key"]
        [newest, *_] = await events(client, token)
        assert body["data"]["me"]["consentHistory"]["edges"][0]["node"]["key"] == newest["key"]


def test_dates_name_their_specification() -> None:
    for name in ("Date", "DateTime"):
        scalar = schema().type_map[name]
        assert isinstance(scalar, GraphQLScalarType)
        assert scalar.specified_by_url and scalar.specified_by_url.startswith("https://")
        assert scalar.description


async def test_a_date_time_carries_its_offset_as_rfc_3339_asks(client: httpx.AsyncClient) -> None:
    token = await signed_up(client)
    body = await gql(client, "{ me { createdAt birthDate } }", token=token)
    created = datetime.fromisoformat(body["data"]["me"]["createdAt"])
    assert created.utcoffset() is not None
    assert body["data"]["me"]["birthDate"] == "1990-12-10"
