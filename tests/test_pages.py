"""The pages that links in messages open, as a person sees them: one layout with landmarks, a
stylesheet of our own that the page's policy lets load, English or German as the browser asks,
and the messages themselves in the language the person signed up in."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import update

from models import DataExport, NotificationKind, utcnow
from resolvers import mail
from resolvers.catalogue import CATALOGUE, Topic
from resolvers.languages import LANGUAGES, negotiate
from resolvers.notifications import render
from resolvers.unsubscribe import link_token
from tests.conftest import TEST_SECRET
from tests.helpers import (
    confirm_signup,
    database_behind,
    gql,
    new_account,
    outbox,
    signed_up,
    signup_code,
    start_signup,
)
from tests.test_confirm_signup import link_in
from tests.test_export import export_url, path_of
from tests.test_mail_delivery import EVERY_VALUE
from tests.test_password_reset import NEW_PASSWORD, can_log_in, request_reset, reset_link
from tests.test_policy import published, staff_token
from web import html_pages

GERMAN = {"Accept-Language": "de-DE,de;q=0.9,en;q=0.5"}
LANGUAGE = "{ me { locale } }"
SET_LANGUAGE = """
mutation Language($input: UpdateProfileInput!) { updateProfile(input: $input) { errors { code } } }
"""
BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


def policy_of(response: httpx.Response) -> dict[str, list[str]]:
    """The page's Content-Security-Policy, directive by directive."""
    directives = [part.split() for part in response.headers["content-security-policy"].split(";")]
    return {name: values for name, *values in directives}


def main_of(page: httpx.Response) -> str:
    [main] = re.findall(r"<main>(.*?)</main>", page.text, re.DOTALL)
    return str(main)


def heading_of(page: httpx.Response) -> str:
    match = re.search(r"<h1>(.*?)</h1>", main_of(page), re.DOTALL)
    assert match, page.text
    return match[1]


async def reset_page(client: httpx.AsyncClient) -> str:
    """The path of the link a password reset message carries, for a person with an account."""
    await new_account(client)
    await request_reset(client)
    return await reset_link(database_behind(client))


class TestTheLayout:
    async def test_a_page_has_a_language_landmarks_and_one_heading(self, client) -> None:
        page = await client.get(await reset_page(client))

        assert page.status_code == 200
        assert '<html lang="en">' in page.text
        assert page.text.count("<main>") == 1 and "<header>" in page.text
        assert heading_of(page) == "Choose a new password"
        assert re.search(r"<title>Choose a new password</title>", page.text)
        assert '<form method="post"' in main_of(page)

    async def test_the_stylesheet_is_ours_it_loads_and_the_policy_allows_it(self, client) -> None:
        page = await client.get(await reset_page(client))
        [href] = re.findall(r'<link rel="stylesheet" href="([^"]+)">', page.text)

        stylesheet = await client.get(href)

        assert href.startswith("/") and not href.startswith("//")  # this origin: 'self'
        assert stylesheet.status_code == 200
        assert stylesheet.headers["content-type"].startswith("text/css")
        assert "main" in stylesheet.text
        policy = policy_of(page)
        assert policy["default-src"] == ["'none'"]
        assert policy["style-src"] == ["'self'"]
        assert policy["form-action"] == ["'self'"]
        assert policy["frame-ancestors"] == ["'none'"]
        assert "script-src" not in policy
        # The policy lets no inline style or script in, so the page has none.
        assert (
            "<script" not in page.text and "style=" not in page.text and "<style" not in page.text
        )

    async def test_the_token_stays_in_the_form_and_leaves_by_no_referrer(self, client) -> None:
        link = await reset_page(client)
        token = link.partition("token=")[2]

        page = await client.get(link)

        assert f'<input type="hidden" name="token" value="{token}">' in page.text
        assert 'action=""' in page.text
        assert page.headers["referrer-policy"] == "no-referrer"
        assert page.headers["cache-control"] == "no-store"


class TestTheLanguage:
    @pytest.mark.parametrize(
        ("accept_language", "language"),
        [
            (None, "en"),
            ("de", "de"),
            ("de-AT", "de"),
            ("fr-FR, de;q=0.7, en;q=0.3", "de"),
            ("en-GB, de;q=0.9", "en"),
            ("de;q=0.2, en;q=0.8", "en"),
            ("de;q=0, *;q=0.1", "en"),
            ("fr, it", "en"),
            ("not a header;;q=x", "en"),
        ],
    )
    async def test_the_browser_language_chooses_the_page_language(
        self, client, accept_language: str | None, language: str
    ) -> None:
        link = await reset_page(client)
        headers = {"Accept-Language": accept_language} if accept_language else {}

        page = await client.get(link, headers=headers)

        assert page.status_code == 200
        assert f'<html lang="{language}">' in page.text
        assert page.headers["content-language"] == language
        assert "Accept-Language" in page.headers["vary"]

    async def test_in_german_the_whole_way(self, client) -> None:
        link = await reset_page(client)

        page = await client.get(link, headers=GERMAN)
        token = link.partition("token=")[2]
        done = await client.post(
            link, data={"token": token, "new_password": NEW_PASSWORD}, headers=GERMAN
        )

        assert heading_of(page) == "Neues Passwort wählen"
        assert "Neues Passwort speichern" in page.text
        assert done.status_code == 200
        assert heading_of(done) == "Ihr Passwort ist geändert"
        assert await can_log_in(client, NEW_PASSWORD)

    async def test_a_used_link_is_explained_in_german(self, client) -> None:
        link = await reset_page(client)
        token = link.partition("token=")[2]
        await client.post(link, data={"token": token, "new_password": NEW_PASSWORD})

        again = await client.get(link, headers=GERMAN)

        assert again.status_code == 404
        assert heading_of(again) == "Dieser Link ist nicht mehr gültig"
        assert "Ihr Passwort wurde nicht geändert" in again.text

    async def test_the_unsubscribe_page_names_the_topic_in_german(self, client) -> None:
        account_id, _ = await new_account(client)
        token = link_token(TEST_SECRET, uuid.UUID(account_id), Topic.NEWSLETTER)
        link = f"/unsubscribe?token={token}"

        page = await client.get(link, headers=GERMAN)
        done = await client.post(link, data={"List-Unsubscribe": "One-Click"}, headers=GERMAN)

        assert heading_of(page) == "E-Mails zum Thema „Newsletter“ abbestellen?"
        assert "Unser Newsletter rund um die CMS-Plattform. Per E-Mail." in page.text
        assert heading_of(done) == "Sie sind abgemeldet"


class TestTheLanguageOfMessages:
    async def test_a_signup_in_german_gets_german_mail_pages_and_account(
        self, client, database
    ) -> None:
        await start_signup(client, headers=GERMAN)
        [message] = await outbox(database, NotificationKind.SIGNUP_CONFIRMATION)

        page = await client.get(link_in(message), headers=GERMAN)
        code = await signup_code(database, "ada@example.com")
        confirmed = await confirm_signup(
            client, {"email": "ada@example.com", "code": code}
        )  # from a device that asks for English: the signup's language stays
        me = await gql(client, LANGUAGE, token=confirmed["token"])
        await request_reset(client)
        [reset] = await outbox(database, NotificationKind.PASSWORD_RESET)

        assert message.subject == "Bestätigen Sie Ihre E-Mail-Adresse, um Ihr Konto anzulegen"
        assert "Der Code gilt 24 Stunden" in render(message)
        assert message.html is not None and '<html lang="de">' in message.html
        assert heading_of(page) == "E-Mail-Adresse bestätigen"
        assert me["data"]["me"]["locale"] == "de"
        assert reset.subject == "Neues Passwort wählen"

    async def test_a_signup_in_another_language_gets_english(self, client, database) -> None:
        await start_signup(client, headers={"Accept-Language": "fr-FR, fr;q=0.9"})
        code = await signup_code(database, "ada@example.com")
        confirmed = await confirm_signup(client, {"email": "ada@example.com", "code": code})
        me = await gql(client, LANGUAGE, token=confirmed["token"])

        [message] = await outbox(database, NotificationKind.SIGNUP_CONFIRMATION)
        assert message.subject == "Confirm your email address to create your account"
        assert me["data"]["me"]["locale"] is None

    async def test_a_policy_notice_goes_to_each_person_in_their_language(
        self, client, database
    ) -> None:
        german = await signed_up(client, email="grete@example.com")
        await signed_up(client, email="ada@example.com")
        language = {"input": {"locale": "de"}}
        changed = await gql(client, SET_LANGUAGE, language, token=german)
        assert changed["data"]["updateProfile"]["errors"] == []

        await published(client, await staff_token(client, database), "2026-06")

        [to_grete] = await outbox(database, NotificationKind.POLICY_UPDATE, "grete@example.com")
        [to_ada] = await outbox(database, NotificationKind.POLICY_UPDATE, "ada@example.com")
        assert to_grete.subject == "Wir haben unsere Datenschutzerklärung aktualisiert (2026-06)"
        assert to_ada.subject == "We have updated our privacy policy (2026-06)"


class TestUsedExportLinks:
    async def test_a_browser_is_told_on_a_page_how_to_get_a_new_export(self, client) -> None:
        path = path_of(await export_url(client, await signed_up(client)))
        await client.get(path)

        again = await client.get(path, headers=BROWSER)

        assert again.status_code == 410
        assert again.headers["content-type"].startswith("text/html")
        assert heading_of(again) == "This download link has been used"
        assert "ask for a new export in your privacy settings" in main_of(again)
        assert "requestDataExport" not in again.text
        assert again.headers["cache-control"] == "no-store"

    async def test_in_german(self, client) -> None:
        path = path_of(await export_url(client, await signed_up(client)))
        await client.get(path)

        again = await client.get(path, headers={**BROWSER, **GERMAN})

        assert again.status_code == 410
        assert heading_of(again) == "Dieser Download-Link wurde schon benutzt"

    async def test_an_expired_link_says_so(self, client, database) -> None:
        path = path_of(await export_url(client, await signed_up(client)))
        async with database.transaction() as session:
            await session.execute(
                update(DataExport).values(expires_at=utcnow() - timedelta(minutes=1))
            )

        response = await client.get(path, headers=BROWSER)

        assert response.status_code == 410
        assert heading_of(response) == "This download link has expired"

    async def test_a_program_still_gets_a_line_of_text(self, client) -> None:
        path = path_of(await export_url(client, await signed_up(client)))
        await client.get(path)

        again = await client.get(path, headers={"Accept": "application/json"})

        assert again.status_code == 410
        assert again.headers["content-type"].startswith("text/plain")


def templates_of(folder: Path, language: str) -> set[str]:
    root = folder / language
    return {str(path.relative_to(root)) for path in root.rglob("*") if path.is_file()}


class TestTranslations:
    @pytest.mark.parametrize(
        "folder", [html_pages.TEMPLATES, mail.TEMPLATES], ids=["pages", "mail"]
    )
    def test_every_english_template_has_a_german_twin(self, folder: Path) -> None:
        assert templates_of(folder, "en") - templates_of(folder, "de") == set()

    @pytest.mark.parametrize("kind", list(NotificationKind), ids=lambda kind: kind.value)
    def test_every_kind_of_message_is_written_in_german(self, kind: NotificationKind) -> None:
        german = mail.compose(kind, "de", EVERY_VALUE)
        english = mail.compose(kind, "en", EVERY_VALUE)

        assert german.locale == "de"
        assert german.subject != english.subject and german.body != english.body
        assert "December" not in german.body and "June" not in german.subject

    def test_a_german_service_update_ends_with_a_german_unsubscribe_line(self) -> None:
        # Minor policy updates are service updates; material ones are legal notices, sent
        # with no unsubscribe line.
        composed = mail.compose(NotificationKind.POLICY_MINOR_UPDATE, "de", EVERY_VALUE)
        link = "https://privacy.example.com/unsubscribe?token=abc"

        email = mail.build_email(
            mail.Envelope(sender="Privacy <privacy@example.com>", domain="example.com"),
            notification_id=uuid.uuid4(),
            recipient="ada@example.com",
            subject=composed.subject,
            body=composed.body,
            html_body=composed.html,
            created_at=utcnow(),
            unsubscribe=link,
        )

        text = email.get_content()
        assert text.rstrip().endswith(f"Um diese E-Mails abzubestellen, öffnen Sie {link}")
        assert mail.UNSUBSCRIBE not in text and "To stop" not in text
        assert email["List-Unsubscribe"] == f"<{link}>"

    def test_every_page_template_compiles(self) -> None:
        environment = html_pages._environment()
        for language in ("en", "de"):
            for name in templates_of(html_pages.TEMPLATES, language):
                environment.get_template(f"{language}/{name}")

    def test_every_setting_has_a_german_description(self) -> None:
        environment = html_pages._environment()
        german = environment.get_template("mail/de/settings.txt").module

        untranslated = [
            setting.key
            for setting in CATALOGUE
            if german.describe(setting).strip() == setting.description  # type: ignore[attr-defined]
        ]

        assert untranslated == []

    @pytest.mark.parametrize(
        ("header", "language"),
        [
            (None, None),
            ("", None),
            ("fr", None),
            ("de", "de"),
            ("DE-ch", "de"),
            ("en;q=0.5, de;q=0.5", "en"),
            ("de;q=0.5, en;q=0.5", "de"),
            ("*", "en"),
            ("en;q=0, *", "de"),
            ("de;q=0, *;q=0.1", "en"),
            ("fr, de;q=0.000", None),
        ],
    )
    def test_negotiation(self, header: str | None, language: str | None) -> None:
        assert negotiate(header) == language

    @given(st.text())
    def test_any_header_gives_one_of_ours_or_none(self, header: str) -> None:
        assert negotiate(header) in (None, *LANGUAGES)

    def test_dates_in_german_messages(self) -> None:
        written = mail.german_dates("am 4 December 2026 at 09:30 UTC, bis 1 March 2027; 2026-12")

        assert written == "am 4. Dezember 2026 um 09:30 Uhr UTC, bis 1. März 2027; 2026-12"
