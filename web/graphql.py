"""The GraphQL endpoint: builds each request's context, logs and masks unexpected errors."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import orjson
from cross_web import HTTPException
from graphql import GraphQLError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send
from strawberry.asgi import GraphQL
from strawberry.extensions import SchemaExtension
from strawberry.http import GraphQLHTTPResponse
from strawberry.types import ExecutionResult

from models.availability import is_unavailable
from schema import build_schema
from schema.context import RequestContext, Services
from web.outage import retryable_error

logger = logging.getLogger("privacy_api.graphql")

_CONTEXT = "graphql_context"
MASKED_MESSAGE = "Unexpected error. Quote the request id if you contact support."


def _is_unexpected(error: GraphQLError) -> bool:
    """A failure inside a resolver that the API did not raise on purpose."""
    return error.path is not None and not isinstance(error.original_error, GraphQLError | None)


class GraphQLView(GraphQL[RequestContext, None]):
    def __init__(
        self, services: Services, observers: Sequence[Callable[[], SchemaExtension]] = ()
    ) -> None:
        production = services.config.production
        super().__init__(
            build_schema(production=production, observers=observers),
            graphql_ide=None if production else "graphiql",
            allow_queries_via_get=True,
        )
        self.services = services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The context opens a read session at its first read; each mutation field opens a unit
        # of work of its own (RequestContext.attempt).
        state = scope.setdefault("state", {})
        try:
            await super().__call__(scope, receive, send)
        finally:
            context: RequestContext | None = state.get(_CONTEXT)
            if context is not None:
                await context.close()

    def parse_json(self, data: str | bytes) -> Any:
        """A JSON object (or a batch list, refused later) in UTF-8, else 400 rather than a 500."""
        try:
            # orjson refuses what would fail later: a lone surrogate such as "\ud800" (it would
            # break hashing and storage), invalid UTF-8 and nesting deeper than 1,024.
            parsed = orjson.loads(data)
        except orjson.JSONDecodeError as error:
            raise HTTPException(400, "Unable to parse request body as JSON") from error
        if not isinstance(parsed, dict | list):
            raise HTTPException(400, "Expected a JSON object.")
        return parsed

    def encode_json(self, data: object) -> bytes:
        return orjson.dumps(data)

    async def get_context(self, request: Request, response: Response) -> RequestContext:  # type: ignore[override]
        context = RequestContext(request, response, self.services)
        setattr(request.state, _CONTEXT, context)
        # Before the operation runs, whatever it asks for: committed on its own.
        try:
            await context.apply_caller_signals()
        except Exception as error:
            if not is_unavailable(error):
                raise
            # The operation reaches the database again and reports it as retryable.
        return context

    async def process_result(
        self, request: Request, result: ExecutionResult
    ) -> GraphQLHTTPResponse:
        if result.errors:
            request_id = getattr(request.state, "request_id", "")
            shown = []
            for error in result.errors:
                if retryable := retryable_error(error, request_id):
                    shown.append(retryable)
                    continue
                if not _is_unexpected(error):
                    shown.append(error)
                    continue
                original = error.original_error
                logger.error(
                    "unexpected error in %s (request id %s)",
                    ".".join(str(part) for part in error.path or ()),
                    request_id,
                    exc_info=(type(original), original, original.__traceback__)
                    if original
                    else None,
                )
                if self.services.config.production:
                    error = GraphQLError(
                        MASKED_MESSAGE,
                        nodes=error.nodes,
                        path=error.path,
                        extensions={"code": "INTERNAL_SERVER_ERROR", "requestId": request_id},
                    )
                shown.append(error)
            result.errors = shown
        return await super().process_result(request, result)
