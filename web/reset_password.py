"""The page the password reset message links to, for people without the app.

GET shows a form for the new password, changing nothing (mail scanners follow links); the POST
that the form sends sets it. The POST needs the link's token, which only the mailbox has, so
another site cannot make a visitor's browser change a password.
"""

from __future__ import annotations

from html import escape

from starlette.requests import Request
from starlette.responses import HTMLResponse

from resolvers import password_reset
from resolvers.errors import ErrorCode, Rejected
from resolvers.validation import PASSWORD_MAX_LENGTH, PASSWORD_MIN_LENGTH
from web.pages import page, paragraph
from web.services import Services

_NEW_PASSWORD = "new_password"  # noqa: S105 (a form field name)


def _form(token: str) -> str:
    return (
        '<form method="post" action="">\n'
        f'<input type="hidden" name="token" value="{escape(token)}">\n'
        f'<label for="{_NEW_PASSWORD}">New password</label>\n'
        f'<input type="password" id="{_NEW_PASSWORD}" name="{_NEW_PASSWORD}" required '
        f'minlength="{PASSWORD_MIN_LENGTH}" maxlength="{PASSWORD_MAX_LENGTH}" '
        'autocomplete="new-password">\n'
        '<button type="submit">Set the new password</button>\n</form>\n'
    )


def _not_valid() -> HTMLResponse:
    return page(
        "This link is no longer valid",
        paragraph(
            "It may have expired, been used already, or been copied incompletely. Your "
            "password was not changed."
        ),
        paragraph("To try again, ask for a new link where you sign in."),
        status_code=404,
    )


class ResetPasswordPages:
    """The two handlers behind `/reset-password`."""

    def __init__(self, services: Services) -> None:
        self.database = services.database

    async def ask(self, request: Request) -> HTMLResponse:
        """GET: the form for a new password. Changes nothing itself."""
        token = request.query_params.get("token", "")
        try:
            async with self.database.session() as session:
                await password_reset.check_reset_token(session, token=token)
        except Rejected:
            return _not_valid()
        return page(
            "Choose a new password",
            paragraph(
                f"Use {PASSWORD_MIN_LENGTH} to {PASSWORD_MAX_LENGTH} characters, not a common "
                "password. Every device signed in to your account will be signed out."
            ),
            _form(token),
        )

    async def reset(self, request: Request) -> HTMLResponse:
        """POST: the token (form body, or the query string) and the new password."""
        async with request.form() as form:
            token_field, password_field = form.get("token"), form.get(_NEW_PASSWORD)
        token = token_field if isinstance(token_field, str) else ""
        token = token or request.query_params.get("token", "")
        new_password = password_field if isinstance(password_field, str) else ""
        try:
            async with self.database.transaction() as session:
                await password_reset.reset_password(session, token=token, new_password=new_password)
        except Rejected as rejected:
            if any(error.code is ErrorCode.NOT_FOUND for error in rejected.errors):
                return _not_valid()
            return page(
                "Choose a new password",
                *(paragraph(error.message) for error in rejected.errors),
                _form(token),
                status_code=400,
            )
        return page(
            "Your password is changed",
            paragraph(
                "Sign in with your new password. Every device that was signed in has been "
                "signed out, and we sent a message to your address."
            ),
        )
