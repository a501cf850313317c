"""Pages that links in emails open, without sign-in: one-click unsubscribe (RFC 8058).

GET only shows a page with a button, because mail scanners and link previews follow links;
the change is made by the POST that the button, or a mail client's one-click, sends.
"""

from __future__ import annotations

from html import escape
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse

from resolvers import unsubscribe as use_cases
from resolvers.errors import ErrorCode, Rejected
from schema.context import Services

_HEADERS = {
    "Cache-Control": "no-store",
    # The token in the address must not travel on to anywhere the page links.
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex",
    "Content-Security-Policy": (
        "default-src 'none'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
}
_SETTINGS_HINT = "You can change what we send you at any time in your privacy settings."


def _page(title: str, *body: str, status_code: int = 200) -> HTMLResponse:
    """A small page; `body` is HTML whose echoed parts the caller has escaped."""
    html = (
        '<!doctype html>\n<html lang="en">\n<head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title></head>\n"
        f"<body>\n<h1>{escape(title)}</h1>\n{''.join(body)}\n</body>\n</html>\n"
    )
    return HTMLResponse(html, status_code=status_code, headers=_HEADERS)


def _paragraph(text: str) -> str:
    return f"<p>{escape(text)}</p>\n"


def _not_valid(rejected: Rejected) -> HTMLResponse:
    gone = any(error.code is ErrorCode.NOT_FOUND for error in rejected.errors)
    return _page(
        "This link is not valid",
        _paragraph(
            "It may have expired, been copied incompletely, or belong to an account that no "
            "longer exists. Nothing was changed."
        ),
        _paragraph(_SETTINGS_HINT),
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
        action = escape(f"?{urlencode({'token': token})}")
        return _page(
            f"Unsubscribe from {name}?",
            _paragraph(target.setting.description),
            f'<form method="post" action="{action}">\n'
            '<input type="hidden" name="List-Unsubscribe" value="One-Click">\n'
            f'<button type="submit">Unsubscribe from {escape(name)}</button>\n</form>\n',
            _paragraph(f"Other messages are not affected. {_SETTINGS_HINT}"),
        )

    async def unsubscribe(self, request: Request) -> HTMLResponse:
        """POST with `List-Unsubscribe=One-Click`: turn the topic off on email. Idempotent."""
        async with request.form() as form:
            one_click = form.get("List-Unsubscribe") == "One-Click"
        if not one_click:
            return _page(
                "Unsubscribe request not understood",
                _paragraph(
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
        return _page(
            "You are unsubscribed",
            _paragraph(f"We will not send you {_topic_name(target)} emails any more."),
            _paragraph(_SETTINGS_HINT),
        )
