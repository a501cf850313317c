"""The cookies the API sets, and what a request tells about the device it comes from."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from auth.devices import DEVICE_COOKIE, DEVICE_HEADER, device_id_from_request
from auth.tokens import SESSION_COOKIE
from resolvers.account import Client
from resolvers.languages import negotiate
from web.services import Services

AGE_GATE_COOKIE = "privacy_age_gate"
AGE_GATE_SECONDS = 24 * 60 * 60
_AGE_GATE_VALUE = "refused"


def sends_global_privacy_control(request: Request) -> bool:
    return request.headers.get("sec-gpc", "").strip() == "1"


def client_of(request: Request, services: Services) -> Client:
    """What a request tells about the device it comes from (GraphQL or a page's form)."""
    return Client(
        address=request.client.host if request.client else "unknown",
        user_agent=request.headers.get("user-agent"),
        session_days=services.config.session_days,
        request_id=str(getattr(request.state, "request_id", "")),
        global_privacy_control=sends_global_privacy_control(request),
        device_id=device_id_from_request(request.headers, request.cookies),
        language=negotiate(request.headers.get("accept-language")),
    )


class RequestCaller:
    """The caller of one GraphQL request as the HTTP edge knows it: its device, its signals and
    the cookies its answer sets (`schema.context.Caller`)."""

    def __init__(self, request: Request, response: Response, services: Services) -> None:
        self.request = request
        self.response = response
        self.services = services

    @property
    def client(self) -> Client:
        return client_of(self.request, self.services)

    @property
    def device_id(self) -> str | None:
        """The signed-out visitor's device, as the request names it (header or cookie)."""
        return device_id_from_request(self.request.headers, self.request.cookies)

    @property
    def sends_global_privacy_control(self) -> bool:
        return sends_global_privacy_control(self.request)

    def remember_device(self, device_id: str, *, issued: bool) -> None:
        """Hand the device id back the way the device sent it: an app that sent the header gets
        the header; otherwise the browser gets the cookie (renewed with each choice), and a newly
        issued id comes in the header as well, for an app's first choice (a page on another
        origin cannot read that header)."""
        via_header = DEVICE_HEADER.lower() in self.request.headers
        if issued or via_header:
            self.response.headers[DEVICE_HEADER] = device_id
        if via_header:
            return
        self._set_cookie(
            DEVICE_COOKIE, device_id, self.services.config.visitor_retention_days * 24 * 60 * 60
        )

    def start_web_session(self, token: str) -> None:
        self._set_cookie(SESSION_COOKIE, token, self.services.config.session_days * 24 * 60 * 60)

    def end_web_session(self) -> None:
        self.response.delete_cookie(
            SESSION_COOKIE,
            httponly=True,
            samesite="lax",
            secure=self.services.config.production,
        )

    @property
    def age_gate_refused_recently(self) -> bool:
        marker = self.request.cookies.get(AGE_GATE_COOKIE)
        return self.services.age_gate.load(marker, AGE_GATE_SECONDS) == _AGE_GATE_VALUE

    def remember_age_refusal(self) -> None:
        """A signed marker with nothing about the person in it, so a retry is refused too."""
        self._set_cookie(
            AGE_GATE_COOKIE, self.services.age_gate.sign(_AGE_GATE_VALUE), AGE_GATE_SECONDS
        )

    def _set_cookie(self, name: str, value: str, max_age: int) -> None:
        # Every cookie of ours: not for scripts, not sent by other sites' forms, HTTPS only in
        # production.
        self.response.set_cookie(
            name,
            value,
            max_age=max_age,
            httponly=True,
            samesite="lax",
            secure=self.services.config.production,
        )
