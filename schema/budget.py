"""A budget on the objects one query may answer with, checked before it runs.

Each list that can grow takes `first` (at most 100), but lists nest: 100 privacy requests, each
with its account's 100 requests, each with its account's 100... The budget counts the objects a
query could answer with, multiplying `first` down every path as the client's variables and the
fields' defaults say (a fixed list, such as the communication preferences, counts as
FIXED_LIST_ITEMS), and refuses a query over MAX_OBJECTS before a single statement runs.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLNamedType,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    Undefined,
    VariableNode,
    get_named_type,
    get_nullable_type,
    is_leaf_type,
    is_list_type,
)
from graphql import ExecutionResult as GraphQLExecutionResult
from strawberry.extensions import SchemaExtension

from resolvers.paging import MAX_PAGE
from schema.limits import Recent

# 50 privacy requests, each with its account's 50 (5,100 objects), answer in one to two seconds on
# two busy cores; twice that is the most one query may cost. A page of 100 accounts with their
# settings is about 2,500.
MAX_OBJECTS = 10_000
# The most items a list without `first` holds (catalogue lists, errors): an estimate, not a cap.
FIXED_LIST_ITEMS = 20
PAGE_ARGUMENT = "first"
BACKWARD_ARGUMENT = "last"


class ObjectCounts:
    """What each distinct query asks for, kept per schema: most queries name their `first` in
    the text, so counting again on every request would only repeat the answer. A count that read
    a variable is not kept, as the next request may send another value."""

    def __init__(self, cache_size: int) -> None:
        self.counts: Recent[tuple[str, str | None], int] = Recent(cache_size)

    def count(
        self,
        schema: GraphQLSchema,
        query: str | None,
        document: DocumentNode,
        operation_name: str | None,
        variables: Mapping[str, Any],
    ) -> int:
        key = (query, operation_name) if query is not None else None
        if key is not None and (known := self.counts.get(key)) is not None:
            return known
        counter = _counter(schema, document, operation_name, variables)
        asked = counter.total() if counter is not None else 0
        if key is not None and (counter is None or not counter.read_variables):
            self.counts.keep(key, asked)
        return asked

    def pin(self, schema: GraphQLSchema, query: str, document: DocumentNode) -> None:
        """Count a registered document's operations now; each count that reads no variable is
        kept for good."""
        operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
        for name in {None, *(_name(operation) for operation in operations)}:
            counter = _counter(schema, document, name, {})
            if counter is not None and not counter.read_variables:
                self.counts.pin((query, name), counter.total())


class MaxObjectsLimiter(SchemaExtension):
    """Refuses, with code QUERY_TOO_LARGE, a query that could answer with over MAX_OBJECTS."""

    def __init__(self, counts: ObjectCounts) -> None:
        self.counts = counts

    def on_execute(self) -> Iterator[None]:
        context = self.execution_context
        document = context.graphql_document
        if document is not None and context.result is None:
            asked = self.counts.count(
                context.schema._schema,
                context.query,
                document,
                context.operation_name,
                context.variables or {},
            )
            if asked > MAX_OBJECTS:
                context.result = GraphQLExecutionResult(
                    data=None,
                    errors=[
                        GraphQLError(
                            f"This query could answer with {asked} objects; at most "
                            f"{MAX_OBJECTS} are allowed. Ask for fewer with `first`, or nest "
                            "fewer lists.",
                            extensions={"code": "QUERY_TOO_LARGE"},
                        )
                    ],
                )
        yield


def _counter(
    schema: GraphQLSchema,
    document: DocumentNode,
    operation_name: str | None,
    variables: Mapping[str, Any],
) -> _Counter | None:
    """A count of the operation to run; None when there is none to count."""
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    chosen = [o for o in operations if operation_name is None or _name(o) == operation_name]
    if len(chosen) != 1:
        return None  # execution reports the missing or ambiguous operation
    operation = chosen[0]
    root = schema.get_root_type(operation.operation)
    if root is None:
        return None
    defaults = {
        d.variable.name.value: d.default_value for d in operation.variable_definitions or ()
    }
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    return _Counter(schema, fragments, variables, defaults, operation.selection_set, root)


def _name(operation: OperationDefinitionNode) -> str | None:
    return operation.name.value if operation.name else None


class _Counter:
    """Objects per selection set, for one object of its parent. Fragments are counted once each,
    so the walk is as long as the document, however often a fragment is spread."""

    def __init__(
        self,
        schema: GraphQLSchema,
        fragments: Mapping[str, FragmentDefinitionNode],
        variables: Mapping[str, Any],
        defaults: Mapping[str, Any],
        selection_set: SelectionSetNode,
        root: GraphQLNamedType,
    ) -> None:
        self.schema = schema
        self.fragments = fragments
        self.variables = variables
        self.defaults = defaults
        self.selection_set = selection_set
        self.root = root
        self.fragment_objects: dict[tuple[str, int], int] = {}
        self.read_variables = False

    def total(self) -> int:
        return self.items(self.selection_set, self.root)

    def items(
        self, selection_set: SelectionSetNode | None, parent: GraphQLNamedType, edges: int = 0
    ) -> int:
        """`edges` is the `first` of a connection whose selection this is."""
        if selection_set is None:
            return 0
        total = 0
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                total += self._field(selection, parent, edges)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                inner = self.schema.get_type(condition.name.value) if condition else parent
                total += self.items(selection.selection_set, inner or parent, edges)
            elif isinstance(selection, FragmentSpreadNode):
                total += self._fragment(selection.name.value, edges)
        return total

    def _fragment(self, name: str, edges: int) -> int:
        if (name, edges) not in self.fragment_objects:
            self.fragment_objects[name, edges] = 0  # validation has already refused cycles
            fragment = self.fragments.get(name)
            if fragment is not None:
                condition = self.schema.get_type(fragment.type_condition.name.value)
                if condition is not None:
                    objects = self.items(fragment.selection_set, condition, edges)
                    self.fragment_objects[name, edges] = objects
        return self.fragment_objects[name, edges]

    def _field(self, node: FieldNode, parent: GraphQLNamedType, edges: int) -> int:
        definition = getattr(parent, "fields", {}).get(node.name.value)
        if definition is None:
            return 0  # __typename and the like
        named = get_named_type(definition.type)
        if is_leaf_type(named):
            return 0
        argument = definition.args.get(PAGE_ARGUMENT)
        first = self._first(node, argument.default_value) if argument is not None else None
        if first is not None and BACKWARD_ARGUMENT in definition.args:
            # Paging backward, `last` is the number of edges instead.
            first = self._last(node) or first
        if first is not None and not is_list_type(get_nullable_type(definition.type)):
            # A connection: `first` is the number of its edges.
            return 1 + self.items(node.selection_set, named, edges=first)
        inner = self.items(node.selection_set, named)
        if first is not None:
            return first * (1 + inner)
        if is_list_type(get_nullable_type(definition.type)):
            count = edges if node.name.value == "edges" and edges else FIXED_LIST_ITEMS
            return count * (1 + inner)
        return 1 + inner

    def _first(self, node: FieldNode, default: Any) -> int:
        """The `first` a field will run with, within 1 to MAX_PAGE (the field refuses the rest)."""
        value: Any = default
        for argument in node.arguments or ():
            if argument.name.value == PAGE_ARGUMENT:
                given = self._value(argument.value)
                value = default if given is Undefined else given
        if isinstance(value, bool) or not isinstance(value, int):
            return MAX_PAGE
        return min(max(value, 1), MAX_PAGE)

    def _last(self, node: FieldNode) -> int | None:
        """The `last` a field will run with, within 1 to MAX_PAGE; None when not given."""
        for argument in node.arguments or ():
            if argument.name.value == BACKWARD_ARGUMENT:
                value = self._value(argument.value)
                if value is Undefined or value is None:
                    return None
                if isinstance(value, bool) or not isinstance(value, int):
                    return MAX_PAGE
                return min(max(value, 1), MAX_PAGE)
        return None

    def _value(self, node: Any) -> Any:
        if isinstance(node, IntValueNode):
            return int(node.value)
        if isinstance(node, VariableNode):
            self.read_variables = True
            name = node.name.value
            if name in self.variables:
                return self.variables[name]
            default = self.defaults.get(name)
            return self._value(default) if default is not None else Undefined
        return None
