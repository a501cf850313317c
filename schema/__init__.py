"""The GraphQL schema: every domain's queries and mutations, and the limits every request obeys."""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable, Sequence

import strawberry
from graphql import GraphQLError
from strawberry.extensions import SchemaExtension
from strawberry.schema.config import StrawberryConfig
from strawberry.schema.types.base_scalars import DateDefinition, DateTimeDefinition
from strawberry.types import ExecutionContext
from strawberry.types.base import StrawberryObjectDefinition, get_object_definition
from strawberry.types.field import StrawberryField

from schema.account import AccountMutation, AccountQuery
from schema.api_keys import ApiKeysMutation, ApiKeysQuery
from schema.arguments import guard_arguments
from schema.budget import MaxObjectsLimiter, ObjectCounts
from schema.compiled import Plan, compile_document
from schema.erasure import ErasureMutation
from schema.export import ExportMutation
from schema.limits import (
    MAX_ALIASES,
    MAX_DEPTH,
    MAX_REPEATS,
    MAX_SELECTIONS,
    Executor,
    ExecutorWithoutSuggestions,
    Parsed,
    ParseOnce,
    QueryValidator,
    ValidateOnce,
)
from schema.mutations import guard_mutations
from schema.nodes import NodeQuery
from schema.parental import ParentalMutation
from schema.policy import PolicyMutation, PolicyQuery
from schema.profile import ProfileMutation
from schema.requests import RequestsMutation, RequestsQuery
from schema.sender import SenderQuery
from schema.settings import SettingsQuery
from schema.settings_changes import SettingsMutation
from schema.visitors import VisitorMutation, VisitorQuery
from schema.webhooks import WebhooksMutation, WebhooksQuery

__all__ = [
    "MAX_ALIASES",
    "MAX_DEPTH",
    "MAX_REPEATS",
    "MAX_SELECTIONS",
    "ApiSchema",
    "build_schema",
    "schema_sdl",
]

CACHE_SIZE = 512

# Strawberry's own Date and DateTime (ISO 8601 text), saying which specification they follow.
SCALARS = {
    datetime.date: dataclasses.replace(
        DateDefinition,
        description="A calendar date, such as 1990-05-17.",
        specified_by_url="https://scalars.graphql.org/andimarek/local-date.html",
    ),
    datetime.datetime: dataclasses.replace(
        DateTimeDefinition,
        description="A moment with its UTC offset, such as 2025-07-01T09:30:00+00:00 (RFC 3339).",
        specified_by_url="https://scalars.graphql.org/andimarek/date-time.html",
    ),
}


@strawberry.type(
    description="Reads: the signed-in person, the policy in force, the catalogue, and staff views.",
)
class Query(
    AccountQuery,
    ApiKeysQuery,
    NodeQuery,
    PolicyQuery,
    RequestsQuery,
    SenderQuery,
    SettingsQuery,
    VisitorQuery,
    WebhooksQuery,
):
    pass


@strawberry.type(
    description="Changes: each returns a payload whose `errors` list says what was refused "
    "and why.",
)
class Mutation(
    AccountMutation,
    ApiKeysMutation,
    ErasureMutation,
    ExportMutation,
    ParentalMutation,
    PolicyMutation,
    ProfileMutation,
    RequestsMutation,
    SettingsMutation,
    VisitorMutation,
    WebhooksMutation,
):
    pass


class ApiSchema(strawberry.Schema):
    """The API's schema, with the caches every request to it shares."""

    parsed: Parsed  # each distinct document's parse, registered ones for good
    validator: QueryValidator  # its hit count shows the validation cache at work
    staff_validator: QueryValidator  # in production, staff's (introspection allowed)
    object_counts: ObjectCounts  # what each distinct query may answer with

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        """The HTTP view logs errors with the request id and decides what the client sees."""

    def register(self, query: str) -> list[GraphQLError]:
        """Parse, validate and cost a registered document once, for as long as the process runs;
        its errors (none: someone may run it; in production, a document that introspects runs
        for staff only, as any other does)."""
        try:
            document = self.parsed.pin(query)
        except GraphQLError as error:
            return [error]
        self.validator.pin(self._schema, query, document)
        errors = self.staff_validator.pin(self._schema, query, document)
        if not errors:
            self.object_counts.pin(self._schema, query, document)
        return errors

    def validate(self, query: str) -> list[GraphQLError]:
        """The errors of a document (none: it may run), from the caches a request fills."""
        try:
            document = self.parsed.parse(query)
        except GraphQLError as error:
            return [error]
        return self.validator.validate(self._schema, query, document)

    def plan(self, query: str) -> Plan:
        """A registered document (see `register`) compiled; Refused when the compiler does not
        understand it."""
        return compile_document(self._schema, self.parsed.parse(query))

    def get_fields(self, type_definition: StrawberryObjectDefinition) -> list[StrawberryField]:
        """Every field, each with its arguments checked before it resolves; every mutation
        field checked to run its use case in a unit of work."""
        fields = guard_arguments(super().get_fields(type_definition))
        if self.mutation is not None and type_definition is get_object_definition(self.mutation):
            return guard_mutations(fields)
        return fields


def build_schema(
    *, production: bool = False, observers: Sequence[Callable[[], SchemaExtension]] = ()
) -> ApiSchema:
    """The schema; `observers` are the HTTP edge's extensions (the request line, tracing),
    which see every operation, refused ones included."""
    # Factories, so each request gets fresh extension instances; the parse cache behind them is
    # shared by the whole process, the validation cache by every request to this schema.
    validator = QueryValidator(production=production, cache_size=CACHE_SIZE)
    # In production, introspection (the playground's docs and completion) is for staff only.
    staff_validator = (
        QueryValidator(production=production, cache_size=CACHE_SIZE, introspection=True)
        if production
        else validator
    )
    counts = ObjectCounts(cache_size=CACHE_SIZE)
    parsed = Parsed(cache_size=CACHE_SIZE)
    extensions: list[Callable[[], SchemaExtension]] = [
        *observers,
        lambda: ParseOnce(parsed),
        lambda: ValidateOnce(validator, staff_validator),
        lambda: MaxObjectsLimiter(counts),
    ]
    schema = ApiSchema(
        query=Query,
        mutation=Mutation,
        extensions=extensions,
        scalar_overrides=SCALARS,  # type: ignore[arg-type]
        config=StrawberryConfig(disable_field_suggestions=production),
        execution_context_class=ExecutorWithoutSuggestions if production else Executor,
    )
    schema.parsed = parsed
    schema.validator = validator
    schema.object_counts = counts
    schema.staff_validator = staff_validator
    return schema


def schema_sdl() -> str:
    """The SDL as committed in schema.graphql."""
    return build_schema().as_str() + "\n"
