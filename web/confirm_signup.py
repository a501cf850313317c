"""The page the signup confirmation message links to, without sign-in.

GET only shows a page with a button, because mail scanners and link previews follow links; the
account is created by the POST that the button sends. The page signs no one in: another site
could post a token of its own choosing to it, so the person signs in as usual afterwards.
"""

from __future__ import annotations

import math

from starlette.requests import Request
from starlette.responses import HTMLResponse

from auth.rate_limits import refusal_headers
from resolvers import signup
from resolvers.errors import ErrorCode, Rejected
from resolvers.prepared import carry_out
from web.cookies import client_of
from web.html_pages import posted_token, render
from web.services import Services


def _refused(request: Request, rejected: Rejected) -> HTMLResponse:
    codes = {error.code for error in rejected.errors}
    if ErrorCode.RATE_LIMITED in codes:
        refusals = [error.refusal for error in rejected.errors if error.refusal]
        wait = max((refusal.retry_after for refusal in refusals), default=60)
        refused = render(
            request, "confirm_signup/too_many", status_code=429, minutes=math.ceil(wait / 60)
        )
        refused.headers.update(refusal_headers(refusals))
        return refused
    if ErrorCode.EMAIL_UNAVAILABLE in codes:
        return render(request, "confirm_signup/unavailable", status_code=400)
    status = 404 if ErrorCode.NOT_FOUND in codes else 400
    return render(request, "confirm_signup/invalid", status_code=status)


class ConfirmSignupPages:
    """The two handlers behind `/confirm-signup`."""

    def __init__(self, services: Services) -> None:
        self.services = services

    async def ask(self, request: Request) -> HTMLResponse:
        """GET: a page with a button that creates the account. Changes nothing itself."""
        token = request.query_params.get("token", "")
        try:
            async with self.services.database.session() as session:
                pending = await signup.check_signup_token(
                    session, secret_key=self.services.config.secret_key, token=token
                )
        except Rejected as rejected:
            return _refused(request, rejected)
        # Anyone can sign up with any address, and each signup mails its own link: the page
        # names the account this one creates, so the owner can tell a stranger's from theirs.
        return render(
            request,
            "confirm_signup/ask",
            email=pending.email,
            name=pending.display_name,
            token=token,
        )

    async def confirm(self, request: Request) -> HTMLResponse:
        """POST, with the token in the query string (the button's form) or in the form body."""
        token = await posted_token(request)
        try:
            prepared = await signup.confirm_signup_link(
                self.services.database.session,
                self.services.limiter,
                client_of(request, self.services),
                secret_key=self.services.config.secret_key,
                token=token,
            )
            account = await carry_out(self.services.database, prepared)
        except Rejected as rejected:
            return _refused(request, rejected)
        return render(request, "confirm_signup/done", email=account.email)
