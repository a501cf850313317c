"""The page the email-change message links to, without sign-in.

GET only shows a page with a button, because mail scanners and link previews follow links;
the new address is confirmed by the POST that the button sends.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import HTMLResponse

from resolvers import profile
from resolvers.errors import ErrorCode, Rejected
from web.html_pages import posted_token, render
from web.services import Services


def _refused(request: Request, rejected: Rejected) -> HTMLResponse:
    codes = {error.code for error in rejected.errors}
    if ErrorCode.EMAIL_UNAVAILABLE in codes:
        return render(request, "confirm_email/unavailable", status_code=400)
    status = 404 if ErrorCode.NOT_FOUND in codes else 400
    return render(request, "confirm_email/invalid", status_code=status)


class ConfirmEmailPages:
    """The two handlers behind `/confirm-email`."""

    def __init__(self, services: Services) -> None:
        self.database = services.database

    async def ask(self, request: Request) -> HTMLResponse:
        """GET: a page with a button that confirms the new address. Changes nothing itself."""
        token = request.query_params.get("token", "")
        try:
            async with self.database.session() as session:
                account = await profile.check_email_token(session, token=token)
        except Rejected as rejected:
            return _refused(request, rejected)
        return render(request, "confirm_email/ask", email=account.pending_email, token=token)

    async def confirm(self, request: Request) -> HTMLResponse:
        """POST, with the token in the query string (the button's form) or in the form body."""
        token = await posted_token(request)
        try:
            async with self.database.transaction() as session:
                account = await profile.confirm_email_change(session, token=token)
        except Rejected as rejected:
            return _refused(request, rejected)
        return render(request, "confirm_email/done", email=account.email)
