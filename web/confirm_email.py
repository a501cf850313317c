"""The page the email-change message links to, without sign-in.

GET only shows a page with a button, because mail scanners and link previews follow links;
the new address is confirmed by the POST that the button sends.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import HTMLResponse

from resolvers import profile
from resolvers.errors import ErrorCode, Rejected
from web.pages import page, paragraph, post_form, posted_token
from web.services import Services

_NOTHING_CHANGED = "Nothing was changed: your account keeps its current email address."


def _refused(rejected: Rejected) -> HTMLResponse:
    codes = {error.code for error in rejected.errors}
    if ErrorCode.EMAIL_UNAVAILABLE in codes:
        return page(
            "This address cannot be used any more",
            paragraph(_NOTHING_CHANGED),
            status_code=400,
        )
    return page(
        "This link is no longer valid",
        paragraph(
            "It may have expired, been used already, or been copied incompletely. "
            + _NOTHING_CHANGED
        ),
        paragraph("To try again, ask for the change once more in your account settings."),
        status_code=404 if ErrorCode.NOT_FOUND in codes else 400,
    )


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
            return _refused(rejected)
        return page(
            "Confirm your new email address",
            paragraph(f"Use {account.pending_email} as the email address of your account?"),
            post_form({"token": token}, "Confirm the new address"),
            paragraph(
                "Until you confirm, your current address stays in use. If you did not ask for "
                "this change, close this page: nothing will change."
            ),
        )

    async def confirm(self, request: Request) -> HTMLResponse:
        """POST, with the token in the query string (the button's form) or in the form body."""
        token = await posted_token(request)
        try:
            async with self.database.transaction() as session:
                account = await profile.confirm_email_change(session, token=token)
        except Rejected as rejected:
            return _refused(rejected)
        return page(
            "Your email address is changed",
            paragraph(f"Your account now uses {account.email}. We told your previous address."),
        )
