"""Pure ASGI middleware that every request passes through."""

from __future__ import annotations

import re
import uuid

from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

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
# In production only: browsers then reach the API (and its subdomains) over HTTPS alone for two
# years, so a network attacker cannot downgrade a later visit and read its cookie. Never in
# development, where the API is http://127.0.0.1 and the pin would outlive the project.
STRICT_TRANSPORT_SECURITY = (b"strict-transport-security", b"max-age=63072000; includeSubDomains")


class RequestIdMiddleware:
    """Tags each request with an id (the caller's, if well formed) and echoes it in the response,
    with the security headers every response carries."""

    def __init__(self, app: ASGIApp, *, production: bool = False) -> None:
        self.app = app
        self.security_headers = [
            *SECURITY_HEADERS,
            *([STRICT_TRANSPORT_SECURITY] if production else []),
        ]

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
                    *(header for header in self.security_headers if header[0] not in present),
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
