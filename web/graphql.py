"""The GraphQL endpoint: builds each request's context, logs and masks unexpected errors, answers
in the media type the client asks for, and serves the playground."""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable, Sequence
from typing import Any

import orjson
from cross_web import HTTPException
from graphql import GraphQLError
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.types import Message, Receive, Scope, Send
from strawberry.asgi import GraphQL
from strawberry.extensions import SchemaExtension
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData
from strawberry.http.base import BaseRequestProtocol
from strawberry.schema.exceptions import InvalidOperationTypeError
from strawberry.types import ExecutionResult

from auth.actor import STAFF_ROLES
from models.availability import is_unavailable
from schema import ApiSchema, build_schema
from schema.budget import MAX_OBJECTS
from schema.compiled import Plan, Run, variables_of
from schema.context import RequestContext
from schema.documents import PersistedQueries
from schema.errors import note_payload_errors
from web import metrics, routes
from web.cookies import RequestCaller
from web.observe import note_operation, operation_label
from web.outage import retryable_error
from web.playground import content_security_policy, playground_page, staff_sign_in_page
from web.services import Services
from web.signals import apply_caller_signals

logger = logging.getLogger("privacy_api.graphql")

_CONTEXT = "graphql_context"
# Set once a request's body was read for the lean path, which then need not look again.
LEAN_TRIED = "graphql_lean_tried"
# Every GraphQL answer (and the playground) depends on who asks: no browser, proxy or CDN keeps
# one. A query sent over GET would otherwise be cacheable like any page.
NO_STORE = {"Cache-Control": "no-store"}
MASKED_MESSAGE = "Unexpected error. Quote the request id if you contact support."
# The media type of the GraphQL-over-HTTP specification; `application/json` stays the default.
GRAPHQL_RESPONSE_JSON = "application/graphql-response+json"
# The executors an operation may run on (the metric's label).
COMPILED = "compiled"
GENERAL = "general"
# What a JSON request body may hold for the lean path; anything else goes through strawberry.
_LEAN_KEYS = frozenset({"query", "variables", "operationName", "extensions"})
_JSON_TYPE = b"application/json"
_GRAPHQL_RESPONSE_TYPE = f"{GRAPHQL_RESPONSE_JSON}; charset=utf-8".encode()
_NO_STORE = (b"cache-control", b"no-store")
_COMPILED_RUNS = metrics.GRAPHQL_EXECUTIONS.labels(COMPILED)


def _weights(accept: str) -> dict[str, float]:
    """The media types an Accept header lists, each with its quality (q) value."""
    weights: dict[str, float] = {}
    for part in accept.split(","):
        media_type, *parameters = (piece.strip() for piece in part.split(";"))
        quality = 1.0
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if media_type:
            weights[media_type.lower()] = max(weights.get(media_type.lower(), 0.0), quality)
    return weights


def prefers_graphql_response(accept: str) -> bool:
    """Whether the client asks for `application/graphql-response+json` at least as much as for
    `application/json` (a client that names neither, or no Accept header, gets the latter)."""
    if GRAPHQL_RESPONSE_JSON not in accept.lower():
        return False  # most requests: */*, application/json or nothing
    weights = _weights(accept)
    wanted = weights.get(GRAPHQL_RESPONSE_JSON, 0.0)
    return wanted > 0 and wanted >= weights.get("application/json", 0.0)


def _is_request_error(result: ExecutionResult) -> bool:
    """The operation never ran: the document did not parse or validate, or its variables did not
    fit. Errors raised while it ran have a path."""
    errors = result.errors or []
    return result.data is None and bool(errors) and all(error.path is None for error in errors)


def _is_unexpected(error: GraphQLError) -> bool:
    """A failure inside a resolver that the API did not raise on purpose."""
    return error.path is not None and not isinstance(error.original_error, GraphQLError | None)


async def _body(receive: Receive) -> bytes:
    """The whole request body, as `Request.body` reads it."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise ClientDisconnect
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _close_context(scope: Scope) -> None:
    """The end of a GraphQL request: its context gives back its read connection."""
    context: RequestContext | None = scope.get("state", {}).get(_CONTEXT)
    if context is not None:
        await context.close()


def _set_no_store(headers: list[tuple[bytes, bytes]]) -> None:
    """Cache-Control: no-store in place of any the operation set, as MutableHeaders sets it."""
    found = [index for index, (name, _) in enumerate(headers) if name == _NO_STORE[0]]
    if not found:
        headers.append(_NO_STORE)
        return
    headers[found[0]] = _NO_STORE
    for index in reversed(found[1:]):
        del headers[index]


def _replayed(body: bytes, receive: Receive) -> Receive:
    """`receive` that first hands back a body already read, for the view that reads it again."""
    pending: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]

    async def replay() -> Message:
        return pending.pop() if pending else await receive()

    return replay


def _page(page: str, status_code: int = 200) -> HTMLResponse:
    """The playground or the staff sign-in page, with its Content-Security-Policy."""
    return HTMLResponse(
        page,
        status_code=status_code,
        headers={**NO_STORE, "Content-Security-Policy": content_security_policy(page)},
    )


@functools.cache
def _schema(production: bool, observers: tuple[Callable[[], SchemaExtension], ...]) -> ApiSchema:
    """One schema per process for each way it is served: it holds no state of an app's, and
    its parse and validation caches are shared by every request."""
    return build_schema(production=production, observers=observers)


class GraphQLView(GraphQL[RequestContext, None]):
    def __init__(
        self, services: Services, observers: Sequence[Callable[[], SchemaExtension]] = ()
    ) -> None:
        config = services.config
        schema = _schema(config.production, tuple(observers))
        super().__init__(schema, graphql_ide="graphiql", allow_queries_via_get=True)
        self.api_schema = schema
        self.services = services
        self.documents = PersistedQueries.load(
            config.trusted_documents, schema, registered_only=config.registered_documents_only
        )
        metrics.DOCUMENTS_UNCOMPILED.set(len(self.documents.trusted) - len(self.documents.plans))
        # Traces are made by schema extensions, which the compiled executor does not run.
        self.compiled = config.compiled_executor and not config.tracing
        # Each plan's operation as the request line names it, worked out once (by `id`: a plan
        # lives as long as the process).
        self._labels: dict[int, str] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The context opens a read connection at its first read; each mutation field opens a unit
        # of work of its own (schema.mutations.mutate).
        if (
            self.compiled
            and scope["type"] == "http"
            and scope["method"] == "POST"
            and not scope.get("state", {}).get(LEAN_TRIED)
        ):
            unanswered = await self.answer_lean(scope, receive, send)
            if unanswered is None:
                return
            receive = unanswered
        try:
            await super().__call__(scope, receive, send)
        finally:
            await _close_context(scope)

    async def answer_lean(self, scope: Scope, receive: Receive, send: Send) -> Receive | None:
        """A JSON POST of a registered, compiled document answered without strawberry's view
        (its parsing, operation dispatch and response building cost as much as the plan); the
        same context, executor, error handling and response hooks, and the same answer to the
        byte. Returns None once answered, else the `receive` the view reads the request from.

        The edge calls it before routing for a POST to /graphql (web/middleware.py)."""
        content_type = accept = b""
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = value
            elif name == b"accept":
                accept = value
        # A streamed answer (Accept: text/event-stream, multipart) is the view's to give.
        if content_type.partition(b";")[0].strip().lower() != b"application/json" or (
            accept and self._get_stream_transport_from_headers({"accept": accept.decode("latin-1")})
        ):
            return receive
        body = await _body(receive)
        replay = _replayed(body, receive)
        scope.setdefault("state", {})[LEAN_TRIED] = True
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            return replay
        request_data = self._lean_request(data)
        if request_data is None:
            return replay
        try:
            await self._answer_lean(scope, replay, send, request_data)
        finally:
            await _close_context(scope)
        return None

    async def _answer_lean(
        self, scope: Scope, receive: Receive, send: Send, request_data: GraphQLRequestData
    ) -> None:
        request = Request(scope, receive)
        sub_response = await self.get_sub_response(request)
        context = await self.get_context(request, sub_response)
        try:
            result = await self._execute_resolved(
                request, self.request_adapter_class(request), sub_response, context, request_data
            )
        except HTTPException as refused:
            response = PlainTextResponse(refused.reason, status_code=refused.status_code)
            await response(scope, receive, send)
            return
        content = self.encode_json(await self.process_result(request, result))
        # What strawberry's `create_response` and ours below build, without a Response object:
        # its length and type, the headers the operation set, then no-store.
        media_type = (
            _GRAPHQL_RESPONSE_TYPE
            if sub_response.media_type == GRAPHQL_RESPONSE_JSON
            else _JSON_TYPE
        )
        headers = [
            (b"content-length", str(len(content)).encode()),
            (b"content-type", media_type),
            *sub_response.headers.raw,
        ]
        _set_no_store(headers)
        await send(
            {
                "type": "http.response.start",
                "status": sub_response.status_code or 200,
                "headers": headers,
            }
        )
        await send({"type": "http.response.body", "body": content})
        if sub_response.background is not None:
            await sub_response.background()

    def _lean_request(self, data: object) -> GraphQLRequestData | None:
        """The request a body asks for when it names a compiled document by its id or its
        registered text, in a shape the view would accept as is; else None."""
        if not isinstance(data, dict) or not data.keys() <= _LEAN_KEYS:
            return None
        query, extensions = data.get("query"), data.get("extensions")
        variables, operation_name = data.get("variables"), data.get("operationName")
        if not isinstance(variables, dict | None) or not isinstance(operation_name, str | None):
            return None
        if extensions is not None and (
            not isinstance(extensions, dict) or extensions.keys() != {"persistedQuery"}
        ):
            return None
        if not isinstance(query, str | None):
            return None
        # Known before the context looks up who is calling: it does not depend on the caller.
        text = self.documents.registered(query, extensions)
        if text is None or self.documents.plan_for(text) is None:
            return None
        return GraphQLRequestData(
            query=text, variables=variables, operation_name=operation_name, extensions=extensions
        )

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

    def should_render_graphql_ide(self, request: BaseRequestProtocol) -> bool:
        """A browser opening /graphql, not a GET that names its document by id (Apollo's
        clients accept */* and send no `query` then)."""
        return super().should_render_graphql_ide(request) and (
            request.query_params.get("extensions") is None
        )

    async def render_graphql_ide(self, request: Request) -> Response:
        """The playground; in production only for staff signed in on this browser."""
        if not self.services.config.production:
            return _page(playground_page(routes.PLAYGROUND_ASSETS))
        context: RequestContext = getattr(request.state, _CONTEXT)
        visitor = await context.page_visitor()
        if visitor is not None and visitor.role in STAFF_ROLES:
            return _page(playground_page(routes.PLAYGROUND_ASSETS))
        return _page(
            staff_sign_in_page(signed_in=visitor is not None),
            status_code=403 if visitor is not None else 401,
        )

    async def get_sub_response(self, request: Request) -> Response:  # type: ignore[override]
        sub_response = await super().get_sub_response(request)
        if prefers_graphql_response(request.headers.get("accept", "")):
            sub_response.media_type = GRAPHQL_RESPONSE_JSON
        return sub_response

    def create_response(
        self,
        response_data: GraphQLHTTPResponse | list[GraphQLHTTPResponse],
        sub_response: Response,
    ) -> Response:
        response = super().create_response(response_data, sub_response)
        response.headers.update(NO_STORE)
        if sub_response.media_type == GRAPHQL_RESPONSE_JSON:
            response.headers["content-type"] = f"{GRAPHQL_RESPONSE_JSON}; charset=utf-8"
        return response

    async def execute_single(
        self,
        request: Request,
        request_adapter: Any,
        sub_response: Response,
        context: RequestContext,
        root_value: None,
        request_data: GraphQLRequestData,
    ) -> ExecutionResult:
        # Only asked when it matters: who is calling was looked up before the operation runs.
        anonymous = (
            self.documents.registered_only
            and await context.actor() is None
            and await context.machine() is None
        )
        resolved = self.documents.resolve(
            request_data.query, request_data.extensions, anonymous=anonymous
        )
        if resolved.error is not None:
            state = context.request.scope["state"]
            note_operation(state, self.api_schema._schema, None, [resolved.error], ran=False)
            return ExecutionResult(data=None, errors=[resolved.error])
        request_data = dataclasses.replace(request_data, query=resolved.query)
        return await self._execute_resolved(
            request, request_adapter, sub_response, context, request_data
        )

    async def _execute_resolved(
        self,
        request: Request,
        request_adapter: Any,
        sub_response: Response,
        context: RequestContext,
        request_data: GraphQLRequestData,
    ) -> ExecutionResult:
        """A request whose document is known: its plan runs it when it can, else strawberry."""
        plan = (
            self.documents.plan_for(request_data.query)
            if self.compiled and request_data.query is not None
            else None
        )
        if plan is not None:
            answered = await self._run_compiled(plan, request_adapter.method, context, request_data)
            if answered is not None:
                return answered
        metrics.GRAPHQL_EXECUTIONS.labels(GENERAL).inc()
        try:
            return await super().execute_single(
                request, request_adapter, sub_response, context, None, request_data
            )
        except HTTPException as refused:
            # GraphQL over HTTP: a mutation over GET is 405 (strawberry answers 400, which
            # application/json clients keep getting).
            wrong_method = isinstance(refused.__cause__, InvalidOperationTypeError)
            if wrong_method and sub_response.media_type == GRAPHQL_RESPONSE_JSON:
                raise HTTPException(405, refused.reason) from refused
            raise

    async def _run_compiled(
        self, plan: Plan, method: str, context: RequestContext, request_data: GraphQLRequestData
    ) -> ExecutionResult | None:
        """A registered document answered by its plan; None when the general executor must
        answer instead, as it words the refusal (a mutation over GET, another operation name,
        variables that do not fit, a query over its object budget)."""
        if plan.is_mutation and method == "GET":
            return None
        if request_data.operation_name not in (None, plan.name):
            return None
        schema = self.api_schema
        graphql_schema = schema._schema
        production = self.services.config.production
        variables = variables_of(
            graphql_schema, plan, request_data.variables, hide_suggestions=production
        )
        if variables is None:
            return None
        query = request_data.query
        assert query is not None
        asked = schema.object_counts.count(
            graphql_schema,
            query,
            schema.parsed.parse(query),
            request_data.operation_name,
            request_data.variables or {},
        )
        if asked > MAX_OBJECTS:
            return None
        payload_errors = note_payload_errors()
        result = await Run(plan, graphql_schema, context, variables, production).result()
        label = self._labels.get(id(plan))
        if label is None:
            label = self._labels[id(plan)] = operation_label(graphql_schema, plan.operation)
        note_operation(
            context.request.scope["state"],
            graphql_schema,
            plan.operation,
            result.errors,
            ran=True,
            payload_errors=payload_errors,
            label=label,
        )
        _COMPILED_RUNS.inc()
        return result

    async def get_context(self, request: Request, response: Response) -> RequestContext:  # type: ignore[override]
        caller = RequestCaller(request, response, self.services)
        context = RequestContext(request, response, self.services, caller)
        setattr(request.state, _CONTEXT, context)
        # Before the operation runs, whatever it asks for: committed on its own.
        try:
            await apply_caller_signals(context, caller, self.services)
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
        processed = await super().process_result(request, result)
        context: RequestContext = getattr(request.state, _CONTEXT)
        if context.response.media_type == GRAPHQL_RESPONSE_JSON and _is_request_error(result):
            # GraphQL over HTTP: a request error has no `data` entry and a 4xx status; with
            # `application/json` it stays a 200 with `data: null`, as clients of that type expect.
            processed.pop("data", None)
            context.response.status_code = 400
        return processed
