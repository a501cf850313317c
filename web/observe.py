"""One log line and one histogram observation per request: its request id, route or GraphQL
operation, status, outcome and duration, and nothing a person typed.

The operation is named from the schema, never from what a client chose to call it: `query me`,
`mutation login`, or `query me+1` for a document asking for two root fields. So the names a
metric can carry are bounded by the schema, and no literal of the document reaches a log line.
The client's own operation name is logged too, only if it is a plain GraphQL name.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Iterator, Sequence
from typing import Any

from graphql import FieldNode, GraphQLError, GraphQLSchema, OperationDefinitionNode
from prometheus_client import Histogram
from starlette.routing import Route
from starlette.types import Scope
from strawberry.extensions import SchemaExtension

from models.availability import is_unavailable
from resolvers.errors import ErrorCode
from schema.errors import note_payload_errors
from web.access_log import redact
from web.metrics import REQUEST_SECONDS

logger = logging.getLogger("privacy_api.request")

OPERATION = "operation"
OPERATION_NAME = "operation_name"
OUTCOME = "outcome"
OK = "ok"
INVALID = "invalid"
_NAME = re.compile(r"[_A-Za-z][_0-9A-Za-z]{0,63}")
_CODE = re.compile(r"[A-Z_]{1,40}")
_META_FIELDS = {"__typename", "__schema", "__type", "..."}


def operation_label(schema: GraphQLSchema, operation: OperationDefinitionNode) -> str:
    """`query me`, or `query me+2` when it asks for three root fields. A name the schema does not
    have (in a document refused as invalid) reads `unknown`, so that no client can mint labels."""
    root = schema.get_root_type(operation.operation)
    known = root.fields if root is not None else {}
    fields = sorted(
        {
            name if name in known or name in _META_FIELDS else "unknown"
            for name in (
                selection.name.value if isinstance(selection, FieldNode) else "..."
                for selection in operation.selection_set.selections
            )
        }
    )
    more = f"+{len(fields) - 1}" if len(fields) > 1 else ""
    return f"{operation.operation.value} {fields[0] if fields else ''}{more}"


def error_outcome(errors: list[GraphQLError]) -> str:
    """The code a client sees for the first error (extensions.code), as a bounded label."""
    first = errors[0]
    if first.original_error is not None and is_unavailable(first.original_error):
        return "SERVICE_UNAVAILABLE"
    code = (first.extensions or {}).get("code")
    if isinstance(code, str) and _CODE.fullmatch(code):
        return code
    if first.path is None:
        return INVALID  # the document was refused before it ran (syntax, validation, limits)
    return "INTERNAL_SERVER_ERROR"


class ObservedOperation(SchemaExtension):
    """Notes which operation a GraphQL request ran, and how it ended, for the request line."""

    def on_operation(self) -> Iterator[None]:
        payload_errors = note_payload_errors()
        try:
            yield
        finally:
            # Also when parsing raised: strawberry turns that into the answer after this ends.
            self._note(payload_errors)

    def _note(self, payload_errors: list[ErrorCode]) -> None:
        context = self.execution_context
        state = getattr(getattr(context.context, "request", None), "scope", {}).get("state")
        if state is None:
            return
        document = context.graphql_document
        operation = None
        if document is not None:
            wanted = context.operation_name
            chosen = [
                definition
                for definition in document.definitions
                if isinstance(definition, OperationDefinitionNode)
                and (wanted is None or (definition.name and definition.name.value == wanted))
            ]
            if len(chosen) == 1:
                operation = chosen[0]
        errors = context.pre_execution_errors or (
            context.result.errors if context.result is not None else None
        )
        note_operation(
            state,
            context.schema._schema,
            operation,
            errors,
            ran=context.result is not None,
            payload_errors=payload_errors,
        )


def note_operation(
    state: dict[str, Any],
    schema: GraphQLSchema,
    operation: OperationDefinitionNode | None,
    errors: Sequence[GraphQLError] | None,
    *,
    ran: bool,
    payload_errors: Sequence[ErrorCode] = (),
    label: str | None = None,
) -> None:
    """Write down for the request line which operation ran (None: none could be chosen) and
    how it ended; the compiled executor, which runs no schema extension, notes its own, with
    its operation's `label` worked out once."""
    if operation is None:
        label = INVALID
    else:
        label = label or operation_label(schema, operation)
        name = operation.name
        if name is not None and _NAME.fullmatch(name.value):
            state[OPERATION_NAME] = name.value
    state[OPERATION] = label
    if errors:
        state[OUTCOME] = error_outcome(list(errors))
    elif not ran:
        state[OUTCOME] = INVALID
    else:
        # The first refusal a payload carried (a wrong password), else the operation did what
        # it was asked.
        state[OUTCOME] = payload_errors[0].value if payload_errors else OK


@functools.cache
def _duration(operation: str, outcome: str) -> Histogram:
    """The histogram's child for an operation and an outcome, found once: both labels are
    bounded (by the schema, the routes and the error codes)."""
    return REQUEST_SECONDS.labels(operation, outcome)


def _status_outcome(status: int) -> str:
    return OK if status < 400 else f"http_{status}"


def observe_request(scope: Scope, status: int, seconds: float, *, json: bool) -> None:
    """The request's line in the log and its observation in the duration histogram."""
    state = scope.get("state", {})
    route = scope.get("route")
    path = route.path if isinstance(route, Route) else "unmatched"
    operation = state.get(OPERATION)
    outcome = state.get(OUTCOME, OK) if status < 400 else _status_outcome(status)
    _duration(operation or f"{scope['method']} {path}", outcome).observe(seconds)
    request_id = state.get("request_id", "")
    milliseconds = round(seconds * 1000, 1)
    if json:
        logger.info(
            "request",
            extra={
                "request_id": request_id,
                "method": scope["method"],
                "route": path,
                OPERATION: operation,
                OPERATION_NAME: state.get(OPERATION_NAME),
                "status": status,
                OUTCOME: outcome,
                "duration_ms": milliseconds,
            },
        )
        return
    # Development: the line uvicorn's access log wrote, with what the JSON line adds.
    client = scope.get("client")
    target = scope.get("raw_path", scope["path"].encode()).decode("latin-1")
    if scope.get("query_string"):
        target += "?" + scope["query_string"].decode("latin-1")
    logger.info(
        '%s - "%s %s HTTP/%s" %d %s %s %sms request_id=%s',
        f"{client[0]}:{client[1]}" if client else "-",
        scope["method"],
        redact(target),
        scope.get("http_version", "1.1"),
        status,
        operation or path,
        outcome,
        milliseconds,
        request_id,
    )
