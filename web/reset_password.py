"""The page the password reset message links to, for people without the app.

GET shows a form for the new password, changing nothing (mail scanners follow links); the POST
that the form sends sets it. The POST needs the link's token, which only the mailbox has, so
another site cannot make a visitor's browser change a password.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import HTMLResponse

from resolvers import password_reset
from resolvers.errors import ErrorCode, Rejected
from resolvers.prepared import carry_out
from resolvers.validation import PASSWORD_MAX_LENGTH, PASSWORD_MIN_LENGTH
from web.html_pages import render
from web.services import Services

_NEW_PASSWORD = "new_password"  # noqa: S105 (a form field name)


def _asked(request: Request, token: str, problems: list[str], status_code: int) -> HTMLResponse:
    return render(
        request,
        "reset_password/ask",
        status_code=status_code,
        token=token,
        problems=problems,
        field=_NEW_PASSWORD,
        min_length=PASSWORD_MIN_LENGTH,
        max_length=PASSWORD_MAX_LENGTH,
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
            return render(request, "reset_password/invalid", status_code=404)
        return _asked(request, token, [], 200)

    async def reset(self, request: Request) -> HTMLResponse:
        """POST: the token (form body, or the query string) and the new password."""
        async with request.form() as form:
            token_field, password_field = form.get("token"), form.get(_NEW_PASSWORD)
        token = token_field if isinstance(token_field, str) else ""
        token = token or request.query_params.get("token", "")
        new_password = password_field if isinstance(password_field, str) else ""
        try:
            prepared = await password_reset.reset_password(
                self.database.session, token=token, new_password=new_password
            )
            await carry_out(self.database, prepared)
        except Rejected as rejected:
            if any(error.code is ErrorCode.NOT_FOUND for error in rejected.errors):
                return render(request, "reset_password/invalid", status_code=404)
            return _asked(request, token, [error.message for error in rejected.errors], 400)
        return render(request, "reset_password/done")
