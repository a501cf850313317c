"""Pages that links in emails open, without sign-in: one-click unsubscribe (RFC 8058).

GET only shows a page with a button, because mail scanners and link previews follow links;
the change is made by the POST that the button, or a mail client's one-click, sends.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import HTMLResponse

from resolvers import unsubscribe as use_cases
from resolvers.errors import ErrorCode, Rejected
from web.pages import page, paragraph, post_form
from web.services import Services

_SETTINGS_HINT = "You can change what we send you at any time in your privacy settings."


def _not_valid(rejected: Rejected) -> HTMLResponse:
    gone = any(error.code is ErrorCode.NOT_FOUND for error in rejected.errors)
    return page(
        "This link is not valid",
        paragraph(
            "It may have expired, been copied incompletely, or belong to an account that no "
            "longer exists. Nothing was changed."
        ),
        paragraph(_SETTINGS_HINT),
        status_code=404 if gone else 400,
    )


def _topic_name(target: use_cases.Target) -> str:
    return target.topic.value.replace("_", " ")


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
            return _not_valid(rejected)
        name = f"{_topic_name(target)} emails"
        return page(
            f"Unsubscribe from {name}?",
            paragraph(target.setting.description),
            post_form(
                {"token": token}, f"Unsubscribe from {name}", {"List-Unsubscribe": "One-Click"}
            ),
            paragraph(f"Other messages are not affected. {_SETTINGS_HINT}"),
        )

    async def unsubscribe(self, request: Request) -> HTMLResponse:
        """POST with `List-Unsubscribe=One-Click`: turn the topic off on email. Idempotent."""
        async with request.form() as form:
            one_click = form.get("List-Unsubscribe") == "One-Click"
        if not one_click:
            return page(
                "Unsubscribe request not understood",
                paragraph(
                    f"The request must carry {use_cases.ONE_CLICK_BODY}. Nothing was changed."
                ),
                status_code=400,
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
            return _not_valid(rejected)
        return page(
            "You are unsubscribed",
            paragraph(f"We will not send you {_topic_name(target)} emails any more."),
            paragraph(_SETTINGS_HINT),
        )
