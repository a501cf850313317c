"""The Starlette application: routes, middleware, and what starts and stops with the process."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from auth.rate_limits import RateLimiter
from auth.tokens import Signer
from config import Config, load_config
from exports import download_export
from links import UnsubscribeLinks
from models import Database
from outage import DatabaseOutageMiddleware
from schema.context import Services
from schema.view import GraphQLView

MAX_BODY_BYTES = 64 * 1024
REQUEST_ID_HEADER = "x-request-id"
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


# Sent with every response: no content sniffing, no framing (clickjacking of the playground or
# the unsubscribe page), and no Referer carrying tokens from our URLs to other sites.
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]


class RequestIdMiddleware:
    """Tags each request with an id (the caller's, if well formed) and echoes it in the response,
    with the security headers every response carries."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(REQUEST_ID_HEADER.encode(), b"").decode("latin-1")
        request_id = given if _VALID_REQUEST_ID.match(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                given = list(message.get("headers", []))
                present = {name.lower() for name, _ in given}
                message["headers"] = [
                    *given,
                    (REQUEST_ID_HEADER.encode(), request_id.encode()),
                    *(header for header in SECURITY_HEADERS if header[0] not in present),
                ]
            await send(message)

        await self.app(scope, receive, send_with_id)


class BodySizeLimitMiddleware:
    """Refuses request bodies over a limit before anything parses them."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._too_large(scope, receive, send)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLarge
            return message

        try:
            await self.app(scope, counting_receive, send)
        except _BodyTooLarge:
            await self._too_large(scope, receive, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = PlainTextResponse(
            f"Request body too large (limit {self.max_bytes} bytes).", status_code=413
        )
        await response(scope, receive, send)


class _BodyTooLarge(Exception):
    pass


async def healthz(request: Request) -> JSONResponse:
    """The process is up."""
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> JSONResponse:
    """The database answers; a load balancer sends traffic only then."""
    services: Services = request.app.state.services
    if await services.database.ping():
        return JSONResponse({"status": "ok"})
    return JSONResponse({"status": "database unavailable"}, status_code=503)


def create_app(config: Config | None = None) -> Starlette:
    config = config or load_config()
    # aiosqlite logs each statement with its parameters at DEBUG: emails and phone numbers.
    logging.getLogger("aiosqlite").setLevel(max(logging.INFO, logging.getLogger().level))
    services = Services(
        config=config,
        database=Database(config.database_url, config.database_timeouts),
        limiter=RateLimiter(config.rate_limit_storage),
        age_gate=Signer(config.secret_key, purpose="age-gate"),
    )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await services.database.dispose()

    graphql = GraphQLView(services)
    unsubscribe = UnsubscribeLinks(services.database, config.secret_key)
    app = Starlette(
        routes=[
            Route("/graphql", graphql, methods=["GET", "POST"]),
            Route("/exports/{token}", download_export, methods=["GET"]),
            Route("/unsubscribe", unsubscribe.confirm, methods=["GET"]),
            Route("/unsubscribe", unsubscribe.unsubscribe, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
        ],
        middleware=[
            Middleware(RequestIdMiddleware),
            Middleware(DatabaseOutageMiddleware),
            Middleware(BodySizeLimitMiddleware),
            Middleware(
                CORSMiddleware,
                allow_origins=list(config.allowed_origins),
                allow_credentials=True,
                allow_methods=["GET", "POST"],
                allow_headers=["Authorization", "Content-Type", "X-Request-ID", "X-Requested-With"],
                expose_headers=["X-Request-ID"],
            ),
        ],
        lifespan=lifespan,
    )
    app.state.services = services
    return app
