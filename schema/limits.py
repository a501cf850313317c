"""What a query may cost, and validating each distinct query once per schema.

Validation is the costly step an anonymous caller controls: one of GraphQL's rules compares every
pair of fields that land on the same place in the response, and strawberry's depth and alias
limiters expand every fragment spread afresh. So a query's size is measured first, in one pass
that stops at the limit, and the verdict (refusal or validation errors) is cached per document.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Iterator
from typing import Any, Generic, TypeVar

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLSchema,
    InlineFragmentNode,
    Node,
    OperationDefinitionNode,
    SelectionSetNode,
    parse,
    specified_rules,
    validate,
)
from graphql.execution import Executor as GraphQLCoreExecutor
from strawberry.extensions import (
    DisableIntrospection,
    MaxAliasesLimiter,
    QueryDepthLimiter,
    SchemaExtension,
)
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.schema.validation_rules.maybe_null import MaybeNullValidationRule
from strawberry.schema.validation_rules.one_of import OneOfInputValidationRule

from schema.errors import BAD_USER_INPUT, PARSE_FAILED, VALIDATION_FAILED, coded

MAX_DEPTH = 10
MAX_ALIASES = 30
MAX_TOKENS = 2000
# `me` with every field, nested ones included, is about 100 selections.
MAX_SELECTIONS = 300
# Fragments may bring the same field to one place more than once; a query that names it there
# many times makes validation compare every pair.
MAX_REPEATS = 10
TOO_COMPLEX = "QUERY_TOO_COMPLEX"

Place = tuple[str, ...]


def _refusal(message: str, node: Node) -> GraphQLError:
    return GraphQLError(message, node, extensions={"code": TOO_COMPLEX})


def too_complex(document: DocumentNode) -> GraphQLError | None:
    """Why the document costs too much to validate or run, if it does.

    Every selection counts (field, fragment spread, inline fragment), a fragment once each time it
    is spread; and no place in the response (such as `me.sessions.id`) may be selected more than
    MAX_REPEATS times. Fragments no operation uses are measured on their own, as validation still
    reads them.
    """
    fragments = {
        definition.name.value: definition
        for definition in document.definitions
        if isinstance(definition, FragmentDefinitionNode)
    }
    operations = [
        definition.selection_set
        for definition in document.definitions
        if isinstance(definition, OperationDefinitionNode)
    ]
    spread: set[str] = set()
    times_at: Counter[Place] = Counter()
    budget = MAX_SELECTIONS

    def measure(root: Place, selection_set: SelectionSetNode) -> GraphQLError | None:
        nonlocal budget
        # A stack rather than recursion: nesting is only limited later, by validation.
        pending: list[tuple[SelectionSetNode, Place, frozenset[str]]] = [
            (selection_set, root, frozenset())
        ]
        while pending:
            selections, place, inside = pending.pop()
            for selection in selections.selections:
                budget -= 1
                if budget < 0:
                    return _refusal(
                        f"This query makes more than {MAX_SELECTIONS} selections (a fragment "
                        "counts each time it is spread). Ask for less in one request.",
                        selection,
                    )
                if isinstance(selection, FieldNode):
                    at = (*place, (selection.alias or selection.name).value)
                    times_at[at] += 1
                    if times_at[at] > MAX_REPEATS:
                        return _refusal(
                            f"This query selects '{'.'.join(at[1:])}' more than {MAX_REPEATS} "
                            "times. Select each field once.",
                            selection,
                        )
                    if selection.selection_set is not None:
                        pending.append((selection.selection_set, at, inside))
                elif isinstance(selection, InlineFragmentNode):
                    pending.append((selection.selection_set, place, inside))
                elif isinstance(selection, FragmentSpreadNode):
                    name = selection.name.value
                    # Unknown and cyclic fragments are left for validation to report.
                    if name in fragments and name not in inside:
                        spread.add(name)
                        pending.append((fragments[name].selection_set, place, inside | {name}))
        return None

    for number, selection_set in enumerate(operations):
        if refusal := measure((f"operation {number}",), selection_set):
            return refusal
    for name, fragment in fragments.items():
        if name not in spread and (
            refusal := measure((f"fragment {name}",), fragment.selection_set)
        ):
            return refusal
    return None


K = TypeVar("K")
V = TypeVar("V")


class Recent(Generic[K, V]):
    """The answers to the most recently asked questions, up to `size` of them; the one asked
    longest ago goes first. Answers pinned (those of registered documents) are kept for good.
    Counts its hits and misses."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._answers: OrderedDict[K, V] = OrderedDict()
        self._pinned: dict[K, V] = {}
        self.hits = 0
        self.misses = 0

    def get(self, key: K) -> V | None:
        answer = self._pinned.get(key)
        if answer is not None:
            self.hits += 1
            return answer
        answer = self._answers.get(key)
        if answer is None:
            self.misses += 1
            return None
        self.hits += 1
        self._answers.move_to_end(key)
        return answer

    def pin(self, key: K, answer: V) -> None:
        """Keep `answer` for as long as the process runs: registered documents are few, and
        a flood of other queries must not push them out."""
        self._pinned[key] = answer

    def keep(self, key: K, answer: V) -> None:
        self._answers[key] = answer
        if len(self._answers) > self.size:
            self._answers.popitem(last=False)


class QueryValidator:
    """Validates each distinct document once for one schema: its size first, then GraphQL's
    rules with our depth and alias limits (and, in production, no introspection unless asked
    for), without "Did you mean" hints in production."""

    def __init__(self, *, production: bool, cache_size: int, introspection: bool = False) -> None:
        # Built once: the rule classes are part of the cache key, so new ones per request
        # would make every request miss. The cache belongs to this validator, so validators
        # with other rules (staff's, with introspection) never share a verdict.
        self.rules = (
            *specified_rules,
            MaybeNullValidationRule,
            OneOfInputValidationRule,
            *QueryDepthLimiter(max_depth=MAX_DEPTH).validation_rules,
            *MaxAliasesLimiter(max_alias_count=MAX_ALIASES).validation_rules,
            *(DisableIntrospection().validation_rules if production and not introspection else ()),
        )
        self.hide_suggestions = production
        # Keyed by the query's text, whose hash Python keeps: hashing the parsed document would
        # walk every node of it on every request.
        self.verdicts: Recent[str, list[GraphQLError]] = Recent(cache_size)

    def pin(self, schema: GraphQLSchema, query: str, document: DocumentNode) -> list[GraphQLError]:
        """Validate a registered document now and keep its verdict for good."""
        verdict = self._validate(schema, document)
        self.verdicts.pin(query, verdict)
        return verdict

    def validate(
        self, schema: GraphQLSchema, query: str | None, document: DocumentNode
    ) -> list[GraphQLError]:
        """The errors of a document (none: valid), for `schema`, the one this validator serves.
        `query` is the text the document was parsed from; None validates without the cache."""
        if query is None:
            return self._validate(schema, document)
        verdict = self.verdicts.get(query)
        if verdict is None:
            verdict = self._validate(schema, document)
            self.verdicts.keep(query, verdict)
        return verdict

    def _validate(self, schema: GraphQLSchema, document: DocumentNode) -> list[GraphQLError]:
        if refusal := too_complex(document):
            return [refusal]
        errors = validate(schema, document, self.rules, hide_suggestions=self.hide_suggestions)
        return coded(errors, VALIDATION_FAILED)


class Parsed:
    """Each distinct document parsed once per process, keyed by its text; registered ones
    (`pin`) for good."""

    def __init__(self, cache_size: int) -> None:
        self.documents: Recent[str, DocumentNode] = Recent(cache_size)

    def parse(self, query: str) -> DocumentNode:
        """The parsed `query`; a GraphQLSyntaxError when it does not parse or is too long."""
        document = self.documents.get(query)
        if document is None:
            document = parse(query, max_tokens=MAX_TOKENS)
            self.documents.keep(query, document)
        return document

    def pin(self, query: str) -> DocumentNode:
        document = parse(query, max_tokens=MAX_TOKENS)
        self.documents.pin(query, document)
        return document


class ParseOnce(SchemaExtension):
    """The parse step of every request, answered from the schema's Parsed documents; a document
    that is not GraphQL (or has more than MAX_TOKENS tokens) is refused with
    GRAPHQL_PARSE_FAILED."""

    def __init__(self, parsed: Parsed) -> None:
        self.parsed = parsed

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        assert context.query is not None
        try:
            context.graphql_document = self.parsed.parse(context.query)
        except GraphQLError as error:
            refused = coded([error], PARSE_FAILED)[0]
            # Strawberry answers with the raised error; observers read it here.
            context.pre_execution_errors = [refused]
            raise refused from None
        yield


class ValidateOnce(SchemaExtension):
    """The validation step of every request, answered from the schema's QueryValidator, or the
    staff's one when the caller is staff (the request context's `caller_is_staff`)."""

    def __init__(self, validator: QueryValidator, staff: QueryValidator | None = None) -> None:
        self.validator = validator
        self.staff = staff or validator

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        assert context.graphql_document is not None
        is_staff = getattr(context.context, "caller_is_staff", False) is True
        validator = self.staff if is_staff else self.validator
        errors = validator.validate(context.schema._schema, context.query, context.graphql_document)
        context.pre_execution_errors = list(errors)
        yield


class Executor(StrawberryGraphQLCoreExecutionContext):
    """Reads the variables before the operation runs: a value that does not fit its type is
    refused with BAD_USER_INPUT."""

    hide_suggestions = False

    @classmethod
    def build(cls, *args: Any, **kwargs: Any) -> list[GraphQLError] | GraphQLCoreExecutor:
        built = super().build(*args, **{**kwargs, "hide_suggestions": cls.hide_suggestions})
        return coded(built, BAD_USER_INPUT) if isinstance(built, list) else built


class ExecutorWithoutSuggestions(Executor):
    """The same without "Did you mean" hints (a misspelt enum value or input field)."""

    hide_suggestions = True
