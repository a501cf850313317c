"""The page a parent's link opens, without sign-in: answer a minor's request for consent, and
withdraw a consent given before.

GET only shows the page, because mail scanners and link previews follow links; the answer and the
withdrawal are POSTs from its forms. The token in the address is the only credential, which is
also what keeps another site from posting here (see web/html_pages.py for the headers).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import HTMLResponse

from resolvers import parental
from resolvers.errors import Rejected
from resolvers.parental import LinkProblem, LinkUnusable, ParentalStatus
from web.html_pages import render
from web.services import Services

GRANT = "grant"
REFUSE = "refuse"
_UNUSABLE = {
    LinkProblem.COME_OF_AGE: ("parental_consent/come_of_age", 410),
    LinkProblem.EXPIRED: ("parental_consent/link_expired", 410),
    LinkProblem.DECIDED: ("parental_consent/decided", 409),
}


def _unusable(request: Request, problem: LinkUnusable) -> HTMLResponse:
    name, status = _UNUSABLE.get(problem.problem, ("parental_consent/invalid", 404))
    return render(request, name, status_code=status, teen=problem.teen)


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
            return _unusable(request, unusable)
        if shown.can_decide:
            page = "parental_consent/ask"
        elif all(status is ParentalStatus.EXPIRED for _, status in shown.asked):
            page = "parental_consent/expired"
        else:
            page = "parental_consent/answered"
        # An expired request with nothing to withdraw leaves the page nothing to offer: Gone.
        gone = page == "parental_consent/expired" and not shown.granted
        return render(
            request,
            page,
            status_code=410 if gone else 200,
            teen=shown.teen,
            token=token,
            granted=shown.granted,
            asked=shown.asked,
            decide_by=shown.decide_by,
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
                    return render(request, "parental_consent/nothing_to_withdraw", teen=teen)
                return render(request, "parental_consent/withdrawn", teen=teen, withdrawn=withdrawn)
            if action != "decide":
                return render(request, "parental_consent/not_understood", status_code=400)
            answers = {
                name: value == GRANT for name, value in fields.items() if value in (GRANT, REFUSE)
            }
            async with self.database.transaction() as session:
                decision = await parental.decide(
                    session, token=token, answers=answers, request_id=request_id
                )
        except LinkUnusable as unusable:
            return _unusable(request, unusable)
        except Rejected as rejected:
            return render(
                request,
                "parental_consent/unanswered",
                status_code=400,
                problem=rejected.errors[0].message,
            )
        return render(
            request,
            "parental_consent/thanks",
            teen=decision.teen,
            granted=decision.granted,
            refused=decision.refused,
        )
