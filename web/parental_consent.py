"""The page a parent's link opens, without sign-in: answer a minor's request for consent, and
withdraw a consent given before.

GET only shows the page, because mail scanners and link previews follow links; the answer and the
withdrawal are POSTs from its forms. The token in the address is the only credential, which is
also what keeps another site from posting here (see web/pages.py for the headers).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import HTMLResponse

from resolvers import parental
from resolvers.catalogue import SettingDefinition
from resolvers.errors import Rejected
from resolvers.parental import LinkProblem, LinkUnusable, ParentalStatus
from web.pages import bullet_list, choice_form, page, paragraph, post_form
from web.services import Services

GRANT = "grant"
REFUSE = "refuse"
_CHOICES = ((GRANT, "I agree"), (REFUSE, "I refuse"))
_NOTHING_CHANGED = "Nothing was changed."
_STATUS_WORDS = {
    ParentalStatus.PENDING: "not answered yet",
    ParentalStatus.EXPIRED: "not answered in time",
    ParentalStatus.GRANTED: "you agreed",
    ParentalStatus.REFUSED: "you refused",
    ParentalStatus.WITHDRAWN: "you agreed, then withdrew",
    ParentalStatus.LAPSED: "no longer needed",
}


def _unusable(problem: LinkUnusable) -> HTMLResponse:
    if problem.problem is LinkProblem.COME_OF_AGE:
        return page(
            f"{problem.teen} now decides alone",
            paragraph(
                f"{problem.teen} has reached the age at which the law lets them consent "
                "themself. A parent's consent is no longer needed and no longer applies: their "
                f"own choices stand. {_NOTHING_CHANGED}"
            ),
            status_code=410,
        )
    if problem.problem is LinkProblem.EXPIRED:
        return page(
            "This request has expired",
            paragraph(
                f"It was not answered in time, so it can no longer be answered. {_NOTHING_CHANGED}"
                " If you want to agree, ask for a new request to be sent to you."
            ),
            status_code=410,
        )
    if problem.problem is LinkProblem.DECIDED:
        return page(
            "This request was answered already",
            paragraph(
                f"An answer can be given once. {_NOTHING_CHANGED} Open the link again to see "
                "what stands and to withdraw your consent."
            ),
            status_code=409,
        )
    return page(
        "This link is not valid",
        paragraph(
            "It may have been copied incompletely, or the account it was about no longer "
            f"exists. {_NOTHING_CHANGED}"
        ),
        status_code=404,
    )


def _withdrawal(token: str, granted: list[SettingDefinition]) -> str:
    if not granted:
        return ""
    return (
        paragraph("You agreed to these, and your consent stands:")
        + bullet_list([setting.description for setting in granted])
        + post_form({"token": token}, "Withdraw my consent to all of these", {"action": "withdraw"})
    )


class ParentalConsentPages:
    """The two handlers behind `/parental-consent`."""

    def __init__(self, services: Services) -> None:
        self.database = services.database

    async def show(self, request: Request) -> HTMLResponse:
        """GET: what is asked, with a form to answer it, and what can be withdrawn."""
        token = request.query_params.get("token", "")
        try:
            async with self.database.session() as session:
                shown = await parental.open_page(session, token=token)
        except LinkUnusable as unusable:
            return _unusable(unusable)
        teen = shown.teen
        withdrawal = _withdrawal(token, shown.granted)
        if shown.can_decide:
            return page(
                f"{teen} asks for your consent",
                paragraph(
                    f"{teen} is below the age at which the law of their country lets them "
                    "consent to these on their own, and named you as their parent or guardian. "
                    "Agree or refuse each one. You can withdraw your consent at any time "
                    "through this link."
                ),
                choice_form(
                    {"token": token},
                    [(setting.key, setting.description) for setting, _ in shown.asked],
                    _CHOICES,
                    "Send my answer",
                    {"action": "decide"},
                ),
                paragraph(
                    "If you are not their parent or guardian, close this page: nothing changes "
                    f"unless you answer. You can answer until {shown.decide_by:%d %B %Y}."
                ),
                withdrawal,
            )
        answered = [f"{s.description}: {_STATUS_WORDS[status]}" for s, status in shown.asked]
        expired = all(status is ParentalStatus.EXPIRED for _, status in shown.asked)
        if expired:
            return page(
                "This request has expired",
                paragraph(f"It was not answered in time. {_NOTHING_CHANGED}"),
                withdrawal,
                status_code=200 if withdrawal else 410,
            )
        return page(
            f"{teen}'s request",
            paragraph("You answered this request:"),
            bullet_list(answered),
            withdrawal or paragraph("None of your consent to them stands now."),
        )

    async def answer(self, request: Request) -> HTMLResponse:
        """POST: the form's answer (`action=decide`) or a withdrawal (`action=withdraw`)."""
        async with request.form() as form:
            fields = {name: value for name, value in form.items() if isinstance(value, str)}
        token = request.query_params.get("token") or fields.get("token", "")
        request_id = getattr(request.state, "request_id", None)
        action = fields.get("action")
        try:
            if action == "withdraw":
                async with self.database.transaction() as session:
                    teen, withdrawn = await parental.withdraw(
                        session, token=token, request_id=request_id
                    )
                if not withdrawn:
                    return page(
                        "There was nothing to withdraw",
                        paragraph(f"None of your consent to {teen} stands. {_NOTHING_CHANGED}"),
                    )
                return page(
                    "Your consent is withdrawn",
                    paragraph(f"These are switched off for {teen} again:"),
                    bullet_list([setting.description for setting in withdrawn]),
                )
            if action != "decide":
                return page("Request not understood", paragraph(_NOTHING_CHANGED), status_code=400)
            answers = {
                name: value == GRANT for name, value in fields.items() if value in (GRANT, REFUSE)
            }
            async with self.database.transaction() as session:
                decision = await parental.decide(
                    session, token=token, answers=answers, request_id=request_id
                )
        except LinkUnusable as unusable:
            return _unusable(unusable)
        except Rejected as rejected:
            return page(
                "Please answer each item",
                paragraph(f"{rejected.errors[0].message} {_NOTHING_CHANGED}"),
                paragraph("Go back, choose agree or refuse for each item, and send it again."),
                status_code=400,
            )
        return page(
            "Thank you: your answer is recorded",
            paragraph(f"You agreed, for {decision.teen}, to:"),
            bullet_list([s.description for s in decision.granted] or ["nothing"]),
            paragraph("You refused:"),
            bullet_list([s.description for s in decision.refused] or ["nothing"]),
            paragraph(
                "Keep the message that brought you here: its link lets you withdraw your consent "
                f"at any time. Your consent ends by itself when {decision.teen} reaches the age "
                "at which they decide alone."
            ),
        )
