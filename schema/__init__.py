"""The GraphQL schema: every domain's queries and mutations, and the limits every request obeys."""

from __future__ import annotations

from collections.abc import Callable

import strawberry
from graphql import GraphQLError
from strawberry.extensions import (
    DisableIntrospection,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    SchemaExtension,
    ValidationCache,
)
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext

from schema.account import AccountMutation, AccountQuery
from schema.erasure import ErasureMutation
from schema.export import ExportMutation
from schema.limits import MaxObjectsLimiter
from schema.policy import PolicyMutation, PolicyQuery
from schema.profile import ProfileMutation
from schema.requests import RequestsMutation, RequestsQuery
from schema.settings import SettingsMutation, SettingsQuery

MAX_DEPTH = 10
MAX_ALIASES = 30
MAX_TOKENS = 2000
CACHE_SIZE = 512


@strawberry.type
class Query(AccountQuery, PolicyQuery, RequestsQuery, SettingsQuery):
    pass


@strawberry.type
class Mutation(
    AccountMutation,
    ErasureMutation,
    ExportMutation,
    PolicyMutation,
    ProfileMutation,
    RequestsMutation,
    SettingsMutation,
):
    pass


class _Schema(strawberry.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        """The HTTP view logs errors with the request id and decides what the client sees."""


def build_schema(*, production: bool = False) -> strawberry.Schema:
    # Factories, so each request gets fresh extension instances; the parse and validation
    # caches behind them are shared by the whole process.
    extensions: list[Callable[[], SchemaExtension]] = [
        lambda: QueryDepthLimiter(max_depth=MAX_DEPTH),
        lambda: MaxAliasesLimiter(max_alias_count=MAX_ALIASES),
        lambda: MaxTokensLimiter(max_token_count=MAX_TOKENS),
        lambda: ParserCache(maxsize=CACHE_SIZE),
        lambda: ValidationCache(maxsize=CACHE_SIZE),
        MaxObjectsLimiter,
    ]
    if production:
        extensions.append(DisableIntrospection)
    return _Schema(
        query=Query,
        mutation=Mutation,
        extensions=extensions,
        config=StrawberryConfig(disable_field_suggestions=production),
    )


def schema_sdl() -> str:
    """The SDL as committed in schema.graphql."""
    return build_schema().as_str() + "\n"
