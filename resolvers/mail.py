"""How a message looks: composed from its kind's template, and built into an email to send.

Every kind of notification has one template, `mail_templates/<locale>/<kind>.txt`, with a
`subject` and a `body` block; a `<kind>.html` beside it adds an HTML alternative where a button
helps. The person's `locale` picks the translation (`pt-BR`, then `pt`), English otherwise; a
kind without a template in that language is sent in English. Adding a kind is one enum value
and one template file per language (and an entry in TOPICS if people may switch it off).
"""

from __future__ import annotations

import email.policy
import html
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import BaseHeader, HeaderRegistry, UnstructuredHeader
from email.message import EmailMessage
from email.policy import Policy
from email.utils import format_datetime
from functools import cache
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined, Template, select_autoescape
from jinja2.exceptions import TemplateNotFound

from models import NotificationKind
from resolvers.catalogue import Topic
from resolvers.languages import DEFAULT_LANGUAGE

TEMPLATES = Path(__file__).resolve().parent / "mail_templates"
DEFAULT_LOCALE = DEFAULT_LANGUAGE
# Where a message's secret goes in its body. The secret itself is stored beside the body only
# until the message is sent, so the outbox keeps no working code or link once it has done its job.
PLACEHOLDER = "{secret}"
REMOVED = "[removed once sent]"
# Where the one-click unsubscribe link goes in the footer of a message of a topic (TOPICS),
# written in the message's language when it is composed; the link is made when it is sent.
UNSUBSCRIBE = "{unsubscribe}"

# The communication topic a kind of message belongs to: it goes only while the person has that
# topic on for email (checked when it is sent), and it carries a one-click unsubscribe link.
# A policy change that is not material is a service update. Kinds not listed here go regardless
# and carry no unsubscribe link: confirmations, deletion and request notices, and the notice of
# a material policy change, which is a legal notice the law requires, not a topic to opt out of.
TOPICS: dict[NotificationKind, Topic] = {
    NotificationKind.POLICY_MINOR_UPDATE: Topic.SERVICE_UPDATES,
}

_LOCALE = re.compile(r"[a-z]{2,3}(-[a-z0-9]{2,8})*")

_MONTHS = (
    "January February March April May June July August September October November December"
).split()
_GERMAN_MONTHS = (
    "Januar Februar März April Mai Juni Juli August September Oktober November Dezember"
).split()
# A date as notices write it in English: "4 December 2026", maybe "at 14:30 UTC" after it.
_ENGLISH_DATE = re.compile(
    rf"\b(\d{{1,2}}) ({'|'.join(_MONTHS)}) (\d{{4}})(?: at (\d\d:\d\d) UTC)?"
)


def german_dates(text: str) -> str:
    """`text` with the dates that use cases write the English way ("4 December 2026 at 14:30
    UTC") written the German way ("4. Dezember 2026 um 14:30 Uhr UTC"); other text as it is."""

    def german(match: re.Match[str]) -> str:
        day, month, year, time = match.groups()
        written = f"{day}. {_GERMAN_MONTHS[_MONTHS.index(month)]} {year}"
        return f"{written} um {time} Uhr UTC" if time else written

    return _ENGLISH_DATE.sub(german, text)


@dataclass(frozen=True)
class Composed:
    """A message as stored in the outbox: its secret, if any, still a placeholder."""

    locale: str  # the translation used
    subject: str
    body: str
    html: str | None


@cache
def _environment() -> Environment:
    environment = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
    )
    environment.filters["german_dates"] = german_dates
    return environment


def locales_for(locale: str | None) -> list[str]:
    """The translations to try for a person's locale, most specific first, English last."""
    wanted = (locale or "").strip().lower().replace("_", "-")
    candidates = []
    if _LOCALE.fullmatch(wanted):
        parts = wanted.split("-")
        candidates = ["-".join(parts[:n]) for n in range(len(parts), 0, -1)]
    return [*dict.fromkeys([*candidates, DEFAULT_LOCALE])]


@cache
def translation(kind: NotificationKind, locale: str | None) -> str:
    """The locale whose template for `kind` is used for a person with this locale."""
    for candidate in locales_for(locale):
        if (TEMPLATES / candidate / f"{kind.value}.txt").is_file():
            return candidate
    raise TemplateNotFound(f"{DEFAULT_LOCALE}/{kind.value}.txt")


@cache
def translated(kind: NotificationKind) -> bool:
    """Whether `kind` has a template in a language other than English."""
    return any(
        (folder / f"{kind.value}.txt").is_file()
        for folder in TEMPLATES.iterdir()
        if folder.is_dir() and folder.name != DEFAULT_LOCALE
    )


def _block(template: Template, name: str, values: Mapping[str, object]) -> str:
    return "".join(template.blocks[name](template.new_context(dict(values)))).strip()


def compose(
    kind: NotificationKind, locale: str | None, values: Mapping[str, object] | None = None
) -> Composed:
    """The subject, text and HTML of a message of `kind`, in the person's language.

    Templates write the message's code as `{{ secret }}`; links that carry it are passed in
    `values` already holding PLACEHOLDER.
    """
    chosen = translation(kind, locale)
    environment = _environment()
    context = {"secret": PLACEHOLDER, "locale": chosen, **(values or {})}
    text = environment.get_template(f"{chosen}/{kind.value}.txt")
    subject = " ".join(_block(text, "subject", context).split())
    body = _block(text, "body", context)
    markup = None
    if (TEMPLATES / chosen / f"{kind.value}.html").is_file():
        page = environment.get_template(f"{chosen}/{kind.value}.html")
        markup = page.render({**context, "subject": subject})
    if kind in TOPICS:
        footer = environment.get_template(f"{chosen}/unsubscribe_footer.txt")
        body = f"{body}\n\n--\n{_block(footer, 'text', {'link': UNSUBSCRIBE})}"
        if markup is not None:
            link = _block(footer, "html", {"link": UNSUBSCRIBE})
            markup = markup.replace("</body>", f"{link}\n</body>")
    return Composed(locale=chosen, subject=subject, body=body, html=markup)


def fill(text: str, secret: str | None) -> str:
    """A stored body with its secret put in: the working code while unsent, a notice after."""
    return text.replace(PLACEHOLDER, secret or REMOVED)


class _VerbatimHeader(UnstructuredHeader, BaseHeader):
    """A header sent as written, folded only at its spaces. The default folding turns a value
    with a word longer than a line (a link) into RFC 2047 encoded-words, which mail providers
    do not decode in List-Unsubscribe: they would not offer one-click unsubscribe at all."""

    def fold(self, *, policy: Policy) -> str:
        first, *rest = str(self).split(" ")
        lines = [f"{self.name}: {first}"]
        for word in rest:
            if len(lines[-1]) + 1 + len(word) > (policy.max_line_length or 998):
                lines.append(f" {word}")
            else:
                lines[-1] += f" {word}"
        return policy.linesep.join(lines) + policy.linesep


def _headers() -> HeaderRegistry:
    registry = HeaderRegistry()
    registry.map_to_type("list-unsubscribe", _VerbatimHeader)
    return registry


# The policy of every email we build; whatever policy a mailer flattens it with, each header
# keeps the fold of the class it was made with.
_EMAIL_POLICY = email.policy.default.clone(header_factory=_headers())


@dataclass(frozen=True)
class Envelope:
    """What a message needs from the sender's side to become an email."""

    sender: str  # the From address, such as "Privacy <privacy@example.com>"
    domain: str  # the right-hand side of Message-IDs


def message_id(notification_id: uuid.UUID, domain: str) -> str:
    """The same for every attempt to send one notification, so receivers can drop duplicates."""
    return f"<{notification_id}@{domain}>"


def build_email(
    envelope: Envelope,
    *,
    notification_id: uuid.UUID,
    recipient: str,
    subject: str,
    body: str,
    html_body: str | None,
    created_at: datetime,
    unsubscribe: str | None = None,
) -> EmailMessage:
    """The email for one notification, secret already filled in. With an unsubscribe link it
    carries the one-click headers of RFC 8058 and names the link in the footer its template
    wrote, in the message's language."""
    email = EmailMessage(policy=_EMAIL_POLICY)
    email["From"] = envelope.sender
    email["To"] = recipient
    email["Subject"] = subject
    email["Date"] = format_datetime(created_at)
    email["Message-ID"] = message_id(notification_id, envelope.domain)
    # RFC 3834: sent by a program, so auto-responders stay quiet.
    email["Auto-Submitted"] = "auto-generated"
    if unsubscribe is not None:
        email["List-Unsubscribe"] = f"<{unsubscribe}>"
        email["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        # A message queued before its footer was composed with it gets one in English.
        if UNSUBSCRIBE not in body:
            body = f"{body}\n\n--\nTo stop these emails, open {UNSUBSCRIBE}"
        body = body.replace(UNSUBSCRIBE, unsubscribe)
        if html_body is not None:
            if UNSUBSCRIBE not in html_body:
                html_body = html_body.replace(
                    "</body>", f'<p><a href="{UNSUBSCRIBE}">Stop these emails</a></p>\n</body>'
                )
            html_body = html_body.replace(UNSUBSCRIBE, html.escape(unsubscribe, quote=True))
    email.set_content(body)
    if html_body is not None:
        email.add_alternative(html_body, subtype="html")
    return email
