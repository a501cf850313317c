"""A compiled executor for registered documents: each document turned once into a plan (which
field resolves how, which fields are plain attributes, how each value is written out), answered
by filling dictionaries from what the resolvers return.

The plan calls the very resolvers graphql-core would (strawberry's, with their permission
classes and argument checks), and writes each leaf with the schema's own scalar and enum
types, so both executors give the same JSON; what it saves is graphql-core's generic walk of
the document for every request. It understands a small part of GraphQL: one operation, fields
with or without arguments, lists, object types, `__typename`. Anything else (fragments,
directives, interfaces and unions, introspection) is refused with a reason, and the document
runs on the general executor, strawberry's.
"""

from __future__ import annotations

import asyncio
import enum
import inspect
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from types import CoroutineType
from typing import Any, TypeGuard

from graphql import (
    DocumentNode,
    FieldNode,
    GraphQLEnumType,
    GraphQLError,
    GraphQLField,
    GraphQLLeafType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLResolveInfo,
    GraphQLSchema,
    GraphQLString,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    Undefined,
    get_argument_values,
    get_variable_values,
    is_leaf_type,
    is_non_null_type,
    is_object_type,
    located_error,
)
from graphql.execution.executor import CollectedErrors
from graphql.execution.values import VariableValues
from graphql.pyutils import Path
from graphql.type.definition import GraphQLResolveInfoHelpers
from graphql.type.scalars import serialize_boolean, serialize_id, serialize_string
from strawberry.types import ExecutionResult

TYPENAME = "__typename"
# graphql-core's output coercion of the built-in scalars, and the type each returns as given.
_UNCHANGED: dict[Any, type] = {
    serialize_string: str,
    serialize_id: str,
    serialize_boolean: bool,
}
_MISSING = object()


class Refused(Exception):
    """The compiler does not understand this document; the reason says which part."""


@dataclass(frozen=True)
class Leaf:
    """A scalar or enum, written out by its schema type."""

    type: GraphQLLeafType


@dataclass(frozen=True)
class NonNull:
    """A value that may not be null: a null is an error that nulls the nearest nullable parent."""

    inner: Completion


@dataclass(frozen=True)
class ListOf:
    """A list, each item written as `item` says."""

    item: Completion


@dataclass(frozen=True)
class Object:
    """An object type and the fields selected of it."""

    type: GraphQLObjectType
    fields: tuple[FieldPlan, ...]


Completion = Leaf | NonNull | ListOf | Object


@dataclass(frozen=True)
class FieldPlan:
    """One field of a selection: where it goes in the answer and how it is found."""

    key: str
    name: str
    node: FieldNode
    definition: GraphQLField | None  # None for __typename
    # The Python attribute a plain field reads (strawberry's "basic" fields, with no resolver,
    # permission or extension); None when the field's resolver must run.
    attribute: str | None
    completion: Completion
    non_null: bool
    # The leaf type of a plain attribute written as it is (most of a `me`): read and written
    # in one step, with no path kept unless it fails.
    plain_leaf: GraphQLLeafType | None = None
    # The Python type whose values that leaf type writes unchanged (str for String and ID,
    # bool for Boolean): such a value is written with no call at all.
    unchanged: type | None = None
    # For an enum leaf, the Python enum and the name each member is written as.
    enum: type | None = None
    enum_names: Mapping[Any, str] | None = None


@dataclass(frozen=True)
class Plan:
    """A registered document, compiled."""

    operation: OperationDefinitionNode
    root: Object

    @property
    def name(self) -> str | None:
        """The operation's name, which a request may give as `operationName`."""
        return self.operation.name.value if self.operation.name else None

    @property
    def is_mutation(self) -> bool:
        """Mutations run field after field, and never over GET."""
        return self.operation.operation == OperationType.MUTATION


def compile_document(schema: GraphQLSchema, document: DocumentNode) -> Plan:
    """The plan of a valid document; Refused when the compiler does not understand it."""
    if len(document.definitions) != 1 or not isinstance(
        document.definitions[0], OperationDefinitionNode
    ):
        raise Refused("it holds fragments or more than one operation")
    operation = document.definitions[0]
    if operation.operation not in (OperationType.QUERY, OperationType.MUTATION):
        raise Refused(f"it is a {operation.operation.value}")
    if operation.directives:
        raise Refused("its operation has directives")
    root = schema.get_root_type(operation.operation)
    assert root is not None  # the document is valid
    return Plan(operation, Object(root, _fields(root, operation.selection_set)))


def _fields(parent: GraphQLObjectType, selection_set: SelectionSetNode) -> tuple[FieldPlan, ...]:
    plans: list[FieldPlan] = []
    keys: set[str] = set()
    for selection in selection_set.selections:
        if not isinstance(selection, FieldNode):
            raise Refused(f"it spreads a fragment in {parent.name}")
        if selection.directives:
            raise Refused(f"{parent.name}.{selection.name.value} has directives")
        key = (selection.alias or selection.name).value
        if key in keys:
            raise Refused(f"{parent.name} answers '{key}' twice")
        keys.add(key)
        plans.append(_field(parent, selection, key))
    return tuple(plans)


def _field(parent: GraphQLObjectType, node: FieldNode, key: str) -> FieldPlan:
    name = node.name.value
    if name == TYPENAME:
        return FieldPlan(key, name, node, None, None, Leaf(GraphQLString), True)
    if name.startswith("__"):
        raise Refused(f"it asks for {name} (introspection)")
    definition = parent.fields[name]
    strawberry_field = (definition.extensions or {}).get("strawberry-definition")
    basic = getattr(definition.resolve, "_is_default", False) and not node.arguments
    attribute = strawberry_field.python_name if basic and strawberry_field else None
    completion = _completion(definition.type, node, f"{parent.name}.{name}")
    leaf = completion.inner if isinstance(completion, NonNull) else completion
    plain_leaf = leaf.type if attribute is not None and isinstance(leaf, Leaf) else None
    enum_type, enum_names = _enum_names(plain_leaf)
    return FieldPlan(
        key,
        name,
        node,
        definition,
        attribute,
        completion,
        is_non_null_type(definition.type),
        plain_leaf,
        _UNCHANGED.get(getattr(plain_leaf, "coerce_output_value", None)),
        enum_type,
        enum_names,
    )


def _enum_names(leaf: GraphQLLeafType | None) -> tuple[type | None, Mapping[Any, str] | None]:
    """The Python enum a strawberry enum type wraps, and the name it writes for each member:
    the first GraphQL value with the member's value, as strawberry's output coercion finds it
    (by a scan of every value, for every enum in an answer)."""
    wrapped = getattr(leaf, "wrapped_cls", None)
    if not isinstance(leaf, GraphQLEnumType) or not (
        isinstance(wrapped, type) and issubclass(wrapped, enum.Enum)
    ):
        return None, None
    names: dict[Any, str] = {}
    for member in wrapped:
        for name, value in leaf.values.items():
            if member.value == value.value:
                names[member] = name
                break
    return wrapped, names


def _completion(type_: GraphQLOutputType, node: FieldNode, where: str) -> Completion:
    if isinstance(type_, GraphQLNonNull):
        return NonNull(_completion(type_.of_type, node, where))
    if isinstance(type_, GraphQLList):
        return ListOf(_completion(type_.of_type, node, where))
    if is_leaf_type(type_):
        return Leaf(type_)
    if is_object_type(type_) and node.selection_set is not None:
        assert isinstance(type_, GraphQLObjectType)
        return Object(type_, _fields(type_, node.selection_set))
    raise Refused(f"{where} is an interface or union")


async def _gather(values: Sequence[Awaitable[Any]]) -> list[Any]:
    """`info.async_helpers.gather` for the resolvers: their values awaited together."""
    return list(await asyncio.gather(*values))


# Work a resolver hands over to run on its own, kept referenced until it ends.
_TRACKED: set[asyncio.Future[Any]] = set()


def _track(values: Sequence[Any]) -> None:
    """`info.async_helpers.track` for the resolvers: work that runs on after they return."""
    for value in values:
        if inspect.isawaitable(value):
            task = asyncio.ensure_future(value)
            _TRACKED.add(task)
            task.add_done_callback(_TRACKED.discard)


def _is_awaitable(value: Any) -> TypeGuard[Awaitable[Any]]:
    """`info.is_awaitable`, as graphql-core gives it."""
    return inspect.isawaitable(value)


_HELPERS = GraphQLResolveInfoHelpers(gather=_gather, track=_track)


class Run:
    """One request's answer to a plan, with its errors collected as graphql-core collects them
    (one per nulled position)."""

    def __init__(
        self,
        plan: Plan,
        schema: GraphQLSchema,
        context: Any,
        variables: VariableValues,
        hide_suggestions: bool,
    ) -> None:
        self.plan = plan
        self.schema = schema
        self.context = context
        self.variables = variables
        self.hide_suggestions = hide_suggestions
        self.errors = CollectedErrors()

    async def result(self) -> ExecutionResult:
        """The data and errors, as graphql-core's `execute` builds them for the same document."""
        root = self.plan.root
        data: dict[str, Any] | None
        try:
            if self.plan.is_mutation:
                data = await self._serially(root)
            else:
                answer = self._fields(root, None, None)
                data = await answer if type(answer) is CoroutineType else answer
        except GraphQLError as error:
            self.errors.add(error, None)
            data = None
        return ExecutionResult(data=data, errors=self.errors.errors or None)

    async def _serially(self, root: Object) -> dict[str, Any]:
        """Mutation fields run one after the other, as the specification says."""
        answer: dict[str, Any] = {}
        for field in root.fields:
            value = self._field(field, root.type, None, Path(None, field.key, root.type.name))
            answer[field.key] = await value if type(value) is CoroutineType else value
        return answer

    def _fields(self, plan: Object, source: Any, path: Path | None) -> Any:
        """The answer for one object: a dict, or an awaitable of it while a resolver waits."""
        answer: dict[str, Any] = {}
        waiting: list[tuple[str, Awaitable[Any]]] = []
        parent = plan.type
        for field in plan.fields:
            leaf = field.plain_leaf
            if leaf is not None:
                found = getattr(source, field.attribute, _MISSING)  # type: ignore[arg-type]
                kind = type(found)
                if kind is field.unchanged:
                    answer[field.key] = found
                    continue
                if kind is field.enum and found in field.enum_names:  # type: ignore[operator]
                    answer[field.key] = field.enum_names[found]  # type: ignore[index]
                    continue
                if found is None and not field.non_null:
                    answer[field.key] = None
                    continue
                if found is not None and found is not _MISSING:
                    try:
                        coerced = leaf.coerce_output_value(found)
                    except Exception:
                        coerced = None
                    if coerced is not None and coerced is not Undefined:
                        answer[field.key] = coerced
                        continue
            # Anything else, failures of the above included, takes the general way, which
            # words the error as graphql-core does.
            value = self._field(field, parent, source, Path(path, field.key, parent.name))
            if type(value) is CoroutineType:
                waiting.append((field.key, value))
                answer[field.key] = None  # keeps the selection's order
            else:
                answer[field.key] = value
        if not waiting:
            return answer
        return self._filled(answer, waiting)

    async def _filled(
        self, answer: dict[str, Any], waiting: list[tuple[str, Awaitable[Any]]]
    ) -> dict[str, Any]:
        if len(waiting) == 1:  # alone: awaited here, with no task to schedule
            key, alone = waiting[0]
            answer[key] = await alone
            return answer
        # Siblings wait together, so their loaders batch as under graphql-core.
        values = await asyncio.gather(*(value for _, value in waiting), return_exceptions=True)
        for (key, _), value in zip(waiting, values, strict=True):
            if isinstance(value, BaseException):
                raise value
            answer[key] = value
        return answer

    def _field(self, field: FieldPlan, parent: GraphQLObjectType, source: Any, path: Path) -> Any:
        try:
            if field.definition is None:
                return parent.name
            if field.attribute is not None:
                value = getattr(source, field.attribute)
            else:
                arguments = (
                    get_argument_values(
                        field.definition,
                        field.node,
                        self.variables,
                        hide_suggestions=self.hide_suggestions,
                    )
                    if field.definition.args
                    else {}
                )
                value = field.definition.resolve(  # type: ignore[misc]
                    source, self._info(field, parent, path), **arguments
                )
            if field.attribute is None and inspect.isawaitable(value):
                return self._awaited(field, parent, value, path)
            completed = self._complete(field.completion, field, parent, value, path)
            if type(completed) is CoroutineType:
                return self._guarded(field, completed, path)
            return completed
        except Exception as error:
            return self._failed(field, error, path)

    async def _awaited(
        self, field: FieldPlan, parent: GraphQLObjectType, value: Awaitable[Any], path: Path
    ) -> Any:
        try:
            completed = self._complete(field.completion, field, parent, await value, path)
            return await completed if type(completed) is CoroutineType else completed
        except Exception as error:
            return self._failed(field, error, path)

    async def _guarded(self, field: FieldPlan, completed: Awaitable[Any], path: Path) -> Any:
        try:
            return await completed
        except Exception as error:
            return self._failed(field, error, path)

    def _failed(self, field: FieldPlan, error: Exception, path: Path) -> None:
        located = located_error(error, [field.node], path.as_list())
        if field.non_null:
            raise located
        self.errors.add(located, path)
        return None

    def _info(self, field: FieldPlan, parent: GraphQLObjectType, path: Path) -> GraphQLResolveInfo:
        assert field.definition is not None
        return GraphQLResolveInfo(
            field.name,
            [field.node],
            field.definition.type,
            parent,
            path,
            self.schema,
            {},
            None,
            self.plan.operation,
            self.variables,
            self.context,
            _is_awaitable,
            None,
            _HELPERS,
        )

    def _complete(
        self,
        completion: Completion,
        field: FieldPlan,
        parent: GraphQLObjectType,
        value: Any,
        path: Path,
    ) -> Any:
        if isinstance(value, Exception):
            raise value
        if isinstance(completion, NonNull):
            completed = self._complete(completion.inner, field, parent, value, path)
            if type(completed) is CoroutineType:
                return self._present(completed, field, parent)
            if completed is None:
                raise TypeError(_null_message(field, parent))
            return completed
        if value is None or value is Undefined:
            return None
        if isinstance(completion, Leaf):
            coerced = completion.type.coerce_output_value(value)
            if coerced is Undefined or coerced is None:
                raise TypeError(f"Cannot write {value!r} as {completion.type}.")
            return coerced
        if isinstance(completion, ListOf):
            return self._list(completion, field, parent, value, path)
        return self._fields(completion, value, path)

    async def _present(
        self, completed: Awaitable[Any], field: FieldPlan, parent: GraphQLObjectType
    ) -> Any:
        value = await completed
        if value is None:
            raise TypeError(_null_message(field, parent))
        return value

    def _list(
        self,
        completion: ListOf,
        field: FieldPlan,
        parent: GraphQLObjectType,
        values: Any,
        path: Path,
    ) -> Any:
        items: list[Any] = []
        waiting: list[tuple[int, Awaitable[Any]]] = []
        item_non_null = isinstance(completion.item, NonNull)
        for index, value in enumerate(values):
            item_path = Path(path, index, None)
            try:
                item = self._complete(completion.item, field, parent, value, item_path)
            except Exception as error:
                self._failed_item(field, item_non_null, error, item_path)
                item = None
            if type(item) is CoroutineType:
                waiting.append((index, self._item(field, item_non_null, item, item_path)))
                item = None
            items.append(item)
        if not waiting:
            return items
        return self._filled_list(items, waiting)

    async def _item(
        self, field: FieldPlan, non_null: bool, item: Awaitable[Any], path: Path
    ) -> Any:
        try:
            return await item
        except Exception as error:
            self._failed_item(field, non_null, error, path)
            return None

    def _failed_item(self, field: FieldPlan, non_null: bool, error: Exception, path: Path) -> None:
        located = located_error(error, [field.node], path.as_list())
        if non_null:
            raise located
        self.errors.add(located, path)

    async def _filled_list(
        self, items: list[Any], waiting: list[tuple[int, Awaitable[Any]]]
    ) -> list[Any]:
        if len(waiting) == 1:
            index, alone = waiting[0]
            items[index] = await alone
            return items
        values = await asyncio.gather(*(value for _, value in waiting), return_exceptions=True)
        for (index, _), value in zip(waiting, values, strict=True):
            if isinstance(value, BaseException):
                raise value
            items[index] = value
        return items


def _null_message(field: FieldPlan, parent: GraphQLObjectType) -> str:
    """graphql-core's words for a null where the schema promises a value."""
    return f"Cannot return null for non-nullable field {parent.name}.{field.name}."


def variables_of(
    schema: GraphQLSchema, plan: Plan, given: dict[str, Any] | None, *, hide_suggestions: bool
) -> VariableValues | None:
    """The request's variables, coerced; None when they do not fit (the general executor then
    answers with the errors it words)."""
    definitions = plan.operation.variable_definitions
    if not definitions and isinstance(given, dict | None):
        # What graphql-core makes of any variables given to an operation with none.
        return VariableValues({}, {})
    coerced = get_variable_values(
        schema,
        definitions,
        given or {},
        hide_suggestions=hide_suggestions,
    )
    return None if isinstance(coerced, list) else coerced
