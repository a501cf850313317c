"""Pages that links in emails open, without sign-in: one-click unsubscribe (RFC 8058).

GET only shows a page with a button, because mail scanners and link previews follow links;
the change is made by the POST that the button, or a mail client's one-click, sends.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import HTMLResponse

from resolvers import unsubscribe as use_cases
from resolvers.errors import ErrorCode, Rejected
from web.html_pages import render
from web.services import Services


def _not_valid(request: Request, rejected: Rejected) -> HTMLResponse:
    gone = any(error.code is ErrorCode.NOT_FOUND for error in rejected.errors)
    return render(request, "unsubscribe/invalid", status_code=404 if gone else 400)


class UnsubscribePages:
    """The two handlers behind `/unsubscribe`."""

    def __init__(self, services: Services) -> None:
        self.database = services.database
        self.secret_key = services.config.secret_key

    async def confirm(self, request: Request) -> HTMLResponse:
        """GET: a page with a button that unsubscribes. Changes nothing itself."""
        token = request.query_params.get("token", "")
        try:
            async with self.database.session() as session:
                target = await use_cases.check_link(
                    session, secret_key=self.secret_key, token=token
                )
        except Rejected as rejected:
            return _not_valid(request, rejected)
        return render(
            request,
            "unsubscribe/ask",
            topic=target.topic.value,
            setting=target.setting,
            token=token,
        )

    async def unsubscribe(self, request: Request) -> HTMLResponse:
        """POST with `List-Unsubscribe=One-Click`: turn the topic off on email. Idempotent."""
        async with request.form() as form:
            one_click = form.get("List-Unsubscribe") == "One-Click"
        if not one_click:
            return render(
                request,
                "unsubscribe/not_understood",
                status_code=400,
                one_click=use_cases.ONE_CLICK_BODY,
            )
        try:
            async with self.database.transaction() as session:
                target = await use_cases.unsubscribe(
                    session,
                    secret_key=self.secret_key,
                    token=request.query_params.get("token", ""),
                    request_id=getattr(request.state, "request_id", None),
                )
        except Rejected as rejected:
            return _not_valid(request, rejected)
        return render(request, "unsubscribe/done", topic=target.topic.value)
