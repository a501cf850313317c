"""`GET /exports/{token}`: the download behind a `requestDataExport` link.

No sign-in: the unguessable token is the credential, and it works once. Unknown (or altered)
tokens are 404; used or expired ones 410 Gone, so the person knows to ask for a new export. A
browser (which asks for HTML) is told so on a page in its language; a program, in a line of text.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import datetime

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse

from models import Database, utcnow
from resolvers import export
from resolvers.export import LinkProblem, LinkUnusable
from web.html_pages import render

# The document holds personal data: no proxy or browser cache may keep a copy.
PRIVATE = {"Cache-Control": "no-store"}
_REFUSALS = {
    LinkProblem.UNKNOWN: (404, "No export is available at this link."),
    LinkProblem.USED: (
        410,
        "This export link has already been used; each link downloads once. "
        "Ask for a new export (requestDataExport) to download your data again.",
    ),
    LinkProblem.EXPIRED: (
        410,
        "This export link has expired. Ask for a new export (requestDataExport).",
    ),
}


_PAGES = {
    LinkProblem.UNKNOWN: "exports/unknown",
    LinkProblem.USED: "exports/used",
    LinkProblem.EXPIRED: "exports/expired",
}


def _refusal(request: Request, problem: LinkProblem) -> Response:
    status, message = _REFUSALS[problem]
    if "text/html" in request.headers.get("accept", ""):
        return render(request, _PAGES[problem], status_code=status)
    return PlainTextResponse(message, status_code=status, headers=PRIVATE)


def _download_headers(now: datetime) -> dict[str, str]:
    filename = f"privacy-export-{now.date().isoformat()}.json"
    return {**PRIVATE, "Content-Disposition": f'attachment; filename="{filename}"'}


async def _document(
    database: Database, account_id: uuid.UUID, generated_at: datetime
) -> AsyncIterator[str]:
    async with database.session() as session:
        async for piece in export.write_export(session, account_id, generated_at=generated_at):
            yield piece


async def download_export(request: Request) -> Response:
    """Stream the export once; HEAD (sent by link checkers) answers without using it up."""
    database: Database = request.app.state.services.database
    token = request.path_params["token"]
    now = utcnow()
    try:
        if request.method == "HEAD":
            async with database.session() as session:
                await export.check_download(session, token, now=now)
            return Response(media_type="application/json", headers=_download_headers(now))
        # Used up in a transaction of its own, committed before the first byte is sent.
        async with database.transaction() as session:
            account_id = await export.claim_download(session, token, now=now)
    except LinkUnusable as unusable:
        return _refusal(request, unusable.problem)
    return StreamingResponse(
        _document(database, account_id, now),
        media_type="application/json",
        headers=_download_headers(now),
    )
