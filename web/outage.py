"""What a client is told while the database is down, silent or busy: an error to retry on.

GraphQL answers the error code SERVICE_UNAVAILABLE; other routes answer 503 with Retry-After.
Either way the client never sees the driver's words or the SQL, in any mode.
"""

from __future__ import annotations

import logging

from graphql import GraphQLError
from starlette.responses import PlainTextResponse
from starlette.types import Receive, Scope, Send

from models.availability import is_unavailable

logger = logging.getLogger("privacy_api.outage")

SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"
MESSAGE = "The service is briefly unavailable; try again."
RETRY_AFTER_SECONDS = 5


def _log(error: BaseException, where: str, request_id: str) -> None:
    # The type says which wait ran out (the pool's or the driver's); the message may hold SQL.
    kind = type(error)
    logger.warning(
        "database unavailable in %s (request id %s): %s.%s",
        where,
        request_id,
        kind.__module__,
        kind.__qualname__,
    )


def retryable_error(error: GraphQLError, request_id: str) -> GraphQLError | None:
    """The error to show instead of `error` when the database failed it, else None."""
    original = error.original_error
    if original is None or not is_unavailable(original):
        return None
    _log(original, ".".join(str(part) for part in error.path or ()), request_id)
    return GraphQLError(
        MESSAGE,
        nodes=error.nodes,
        path=error.path,
        extensions={"code": SERVICE_UNAVAILABLE, "requestId": request_id},
    )


async def answer_outage(
    error: BaseException, scope: Scope, receive: Receive, send: Send, request_id: str
) -> None:
    """The 503 with Retry-After for a route that failed because of the database."""
    _log(error, scope["path"], request_id)
    response = PlainTextResponse(
        MESSAGE,
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS), "Cache-Control": "no-store"},
    )
    await response(scope, receive, send)
