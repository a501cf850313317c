"""Small HTML pages that links in messages open, without sign-in: their templates and headers.

Each page is a Jinja2 template per language, `templates/<language>/<page>/<state>.html`, on one
layout; the language is the one of ours the browser's Accept-Language prefers, English by
default. Their addresses carry a secret token, so the pages are never cached, never indexed,
never pass the address on as a referrer, run no script, load nothing but our own stylesheet and
post nowhere but here.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from jinja2 import (
    ChoiceLoader,
    Environment,
    FileSystemLoader,
    PrefixLoader,
    StrictUndefined,
    select_autoescape,
)
from starlette.requests import Request
from starlette.responses import HTMLResponse

from resolvers import mail
from resolvers.languages import DEFAULT_LANGUAGE, negotiate
from web import routes

TEMPLATES = Path(__file__).resolve().parent / "templates"
# The stylesheet and anything else the pages load, served from PAGE_ASSETS.
ASSETS = Path(__file__).resolve().parent / "assets"
STYLESHEET = f"{routes.PAGE_ASSETS}/pages.css"

HEADERS = {
    "Cache-Control": "no-store",
    # The token in the address must not travel on to anywhere the page links.
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; form-action 'self'; base-uri 'none'; "
        "frame-ancestors 'none'"
    ),
    # The same address answers in another language for another Accept-Language.
    "Vary": "Accept-Language",
}


@cache
def _environment() -> Environment:
    # Pages name the catalogue's settings as messages do: "mail/<language>/settings.txt".
    mail_templates = PrefixLoader({"mail": FileSystemLoader(mail.TEMPLATES)})
    return Environment(
        loader=ChoiceLoader([FileSystemLoader(TEMPLATES), mail_templates]),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
    )


def language_of(request: Request) -> str:
    """The language a page answers this request in."""
    return negotiate(request.headers.get("accept-language")) or DEFAULT_LANGUAGE


def render(
    request: Request, page: str, /, *, status_code: int = 200, **values: object
) -> HTMLResponse:
    """The page named `page` (such as "confirm_email/ask") in the request's language."""
    language = language_of(request)
    template = _environment().get_template(f"{language}/{page}.html")
    html = template.render(lang=language, stylesheet=STYLESHEET, **values)
    headers = {**HEADERS, "Content-Language": language}
    return HTMLResponse(html, status_code=status_code, headers=headers)


async def posted_token(request: Request) -> str:
    """The token a POST to a page carries: in the query string (the page's own button keeps it
    there) or in the form body."""
    token = request.query_params.get("token")
    if token is None:
        async with request.form() as form:
            field = form.get("token")
        token = field if isinstance(field, str) else ""
    return token
