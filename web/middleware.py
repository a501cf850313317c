"""The pure ASGI middleware that every request passes through."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from models.availability import is_unavailable
from web.access_log import JSON
from web.observe import observe_request
from web.outage import answer_outage

MAX_BODY_BYTES = 64 * 1024
REQUEST_ID_HEADER = "x-request-id"
_REQUEST_ID_KEY = REQUEST_ID_HEADER.encode()
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


# Sent with every response: no content sniffing, no framing (clickjacking of the playground or
# the unsubscribe page), and no Referer carrying tokens from our URLs to other sites.
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]
# In production only: browsers then reach the API (and its subdomains) over HTTPS alone for two
# years, so a network attacker cannot downgrade a later visit and read its cookie. Never in
# development, where the API is http://127.0.0.1 and the pin would outlive the project.
STRICT_TRANSPORT_SECURITY = (b"strict-transport-security", b"max-age=63072000; includeSubDomains")


# The CORS middleware's answer to a request that names no origin: it may differ by origin.
VARY_ORIGIN = (b"vary", b"Origin")


@dataclass(frozen=True)
class Shortcut:
    """A route the edge answers before the router, for requests that name no origin (so the
    CORS middleware would only add Vary): `answer` returns None once it has answered, else
    the `receive` the route is to read the request from."""

    route: Route
    method: str
    answer: Callable[[Scope, Receive, Send], Awaitable[Receive | None]]


class EdgeMiddleware:
    """Every HTTP request's one pass through the edge: its id (the caller's, if well formed)
    echoed with the security headers, the body limit, a 503 to retry on when the database
    failed it, and its log line and duration metric.

    One middleware rather than one per concern: each layer costs a call and a wrapped `send`
    for every request, and each would scan the request's headers again.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        production: bool = False,
        log_format: str = "",
        max_bytes: int = MAX_BODY_BYTES,
        shortcut: Shortcut | None = None,
    ) -> None:
        self.app = app
        self.shortcut = shortcut
        self.security_headers = [
            *SECURITY_HEADERS,
            *([STRICT_TRANSPORT_SECURITY] if production else []),
        ]
        self.json = log_format == JSON
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started_at = time.perf_counter()
        headers = dict(scope["headers"])
        given = headers.get(_REQUEST_ID_KEY, b"").decode("latin-1")
        request_id = given if _VALID_REQUEST_ID.match(given) else os.urandom(16).hex()
        scope.setdefault("state", {})["request_id"] = request_id
        added = [(_REQUEST_ID_KEY, request_id.encode()), *self.security_headers]
        status = 500
        response_started = False

        async def edge_send(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                given = list(message.get("headers", []))
                present = {name.lower() for name, _ in given}
                message["headers"] = [
                    *given,
                    *(header for header in added if header[0] not in present),
                ]
            await send(message)

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
            declared = headers.get(b"content-length")
            if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
                await self._too_large(scope, receive, edge_send)
                return
            try:
                shortcut = self.shortcut
                if (
                    shortcut is not None
                    and scope["path"] == shortcut.route.path
                    and scope["method"] == shortcut.method
                    and b"origin" not in headers
                ):
                    scope["route"] = shortcut.route
                    added.append(VARY_ORIGIN)
                    unanswered = await shortcut.answer(scope, counting_receive, edge_send)
                    if unanswered is None:
                        return
                    added.remove(VARY_ORIGIN)
                    await self.app(scope, unanswered, edge_send)
                    return
                await self.app(scope, counting_receive, edge_send)
            except _BodyTooLarge:
                await self._too_large(scope, receive, edge_send)
            except Exception as error:
                if response_started or not is_unavailable(error):
                    raise
                await answer_outage(error, scope, receive, edge_send, request_id)
        finally:
            observe_request(scope, status, time.perf_counter() - started_at, json=self.json)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = PlainTextResponse(
            f"Request body too large (limit {self.max_bytes} bytes).", status_code=413
        )
        await response(scope, receive, send)


class _BodyTooLarge(Exception):
    pass
