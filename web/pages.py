"""Small HTML pages that links in messages open, without sign-in: their markup and headers.

Their addresses carry a secret token, so the pages are never cached, never indexed, never pass
the address on as a referrer, and load nothing and post nowhere but here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse

HEADERS = {
    "Cache-Control": "no-store",
    # The token in the address must not travel on to anywhere the page links.
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex",
    "Content-Security-Policy": (
        "default-src 'none'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
}


def page(title: str, *body: str, status_code: int = 200) -> HTMLResponse:
    """A small page; `body` is HTML whose echoed parts the caller has escaped."""
    html = (
        '<!doctype html>\n<html lang="en">\n<head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title></head>\n"
        f"<body>\n<h1>{escape(title)}</h1>\n{''.join(body)}\n</body>\n</html>\n"
    )
    return HTMLResponse(html, status_code=status_code, headers=HEADERS)


def paragraph(text: str) -> str:
    return f"<p>{escape(text)}</p>\n"


def post_form(query: Mapping[str, str], button: str, fields: Mapping[str, str] = {}) -> str:
    """A form with one button that POSTs back to this page's path with `query`, and `fields`."""
    action = escape(f"?{urlencode(query)}")
    hidden = "".join(
        f'<input type="hidden" name="{escape(name)}" value="{escape(value)}">\n'
        for name, value in fields.items()
    )
    return (
        f'<form method="post" action="{action}">\n{hidden}'
        f'<button type="submit">{escape(button)}</button>\n</form>\n'
    )


def bullet_list(items: Sequence[str]) -> str:
    return "<ul>\n" + "".join(f"<li>{escape(item)}</li>\n" for item in items) + "</ul>\n"


def choice_form(
    query: Mapping[str, str],
    questions: Sequence[tuple[str, str]],
    choices: Sequence[tuple[str, str]],
    button: str,
    fields: Mapping[str, str] = {},
) -> str:
    """A form asking each question (name, label) to be answered with one of `choices` (value,
    label), that POSTs back to this page's path with `query` and `fields`."""
    action = escape(f"?{urlencode(query)}")
    hidden = "".join(
        f'<input type="hidden" name="{escape(name)}" value="{escape(value)}">\n'
        for name, value in fields.items()
    )
    sets = "".join(
        f"<fieldset>\n<legend>{escape(label)}</legend>\n"
        + "".join(
            f'<label><input type="radio" name="{escape(name)}" value="{escape(value)}" required>'
            f" {escape(text)}</label>\n"
            for value, text in choices
        )
        + "</fieldset>\n"
        for name, label in questions
    )
    return (
        f'<form method="post" action="{action}">\n{hidden}{sets}'
        f'<button type="submit">{escape(button)}</button>\n</form>\n'
    )


async def posted_token(request: Request) -> str:
    """The token a POST to a page carries: in the query string (the page's own button keeps it
    there) or in the form body."""
    token = request.query_params.get("token")
    if token is None:
        async with request.form() as form:
            field = form.get("token")
        token = field if isinstance(field, str) else ""
    return token
