"""The page the signup confirmation message links to, without sign-in.

GET only shows a page with a button, because mail scanners and link previews follow links; the
account is created by the POST that the button sends. The page signs no one in: another site
could post a token of its own choosing to it, so the person signs in as usual afterwards.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import HTMLResponse

from auth.rate_limits import refusal_headers
from resolvers import signup
from resolvers.errors import ErrorCode, Rejected, waiting_time
from web.cookies import client_of
from web.pages import page, paragraph, post_form, posted_token
from web.services import Services


def _refused(rejected: Rejected) -> HTMLResponse:
    codes = {error.code for error in rejected.errors}
    if ErrorCode.RATE_LIMITED in codes:
        refusals = [error.refusal for error in rejected.errors if error.refusal]
        wait = max((refusal.retry_after for refusal in refusals), default=60)
        refused = page(
            "Too many attempts",
            paragraph(f"Nothing was created. Wait {waiting_time(wait)}, then open the link again."),
            status_code=429,
        )
        refused.headers.update(refusal_headers(refusals))
        return refused
    if ErrorCode.EMAIL_UNAVAILABLE in codes:
        return page(
            "This address already has an account",
            paragraph("Nothing was created. Sign in with it, or reset its password."),
            status_code=400,
        )
    return page(
        "This link is no longer valid",
        paragraph(
            "It may have expired, been used already, or been copied incompletely. No account "
            "was created by it."
        ),
        paragraph("To try again, sign up once more: we will send a new link."),
        status_code=404 if ErrorCode.NOT_FOUND in codes else 400,
    )


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
            return _refused(rejected)
        # Anyone can sign up with any address, and each signup mails its own link: the page
        # names the account this one creates, so the owner can tell a stranger's from theirs.
        return page(
            "Confirm your email address",
            paragraph(
                f"Create the account for {pending.email} in the name {pending.display_name}?"
            ),
            paragraph(
                "It will have the password chosen when signing up with this name. If you did "
                "not sign up, or this is not the name you gave, close this page: no account is "
                "created without it."
            ),
            post_form({"token": token}, "Create my account"),
        )

    async def confirm(self, request: Request) -> HTMLResponse:
        """POST, with the token in the query string (the button's form) or in the form body."""
        token = await posted_token(request)
        try:
            async with self.services.database.transaction() as session:
                account = await signup.confirm_signup_link(
                    session,
                    self.services.limiter,
                    client_of(request, self.services),
                    secret_key=self.services.config.secret_key,
                    token=token,
                )
        except Rejected as rejected:
            return _refused(rejected)
        return page(
            "Your account is ready",
            paragraph(
                f"The account for {account.email} is created. Sign in with this address and "
                "the password you chose, in the app or on the website."
            ),
        )
