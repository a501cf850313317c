"""The page the email-change message links to: GET shows a button and changes nothing (mail
scanners follow links), the button's POST confirms the new address."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import httpx
from sqlalchemy import select

from models import Database, Notification, ProfileChange
from resolvers import notifications
from tests.helpers import PASSWORD, gql, signed_up

REQUEST_CHANGE = """
mutation Change($input: EmailChangeInput!) {
  requestEmailChange(input: $input) { errors { field code } }
}
"""
ME = "{ me { email pendingEmail } }"
URL = re.compile(r"https?://[^\s<>\"']+")
PUBLIC_URL = "http://127.0.0.1:8000"


async def messages(database: Database) -> list[str]:
    """Every queued message, as a mailer would send it."""
    async with database.session() as session:
        rows = await session.scalars(select(Notification).order_by(Notification.created_at))
        return [notifications.render(row) for row in rows]


async def links_in_messages(database: Database) -> list[str]:
    return [link.rstrip(".,;:)") for text in await messages(database) for link in URL.findall(text)]


def local(link: str) -> str:
    """The part of one of our public links the test client requests."""
    assert link.startswith(PUBLIC_URL + "/"), link
    parts = urlsplit(link)
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


async def asked_for_a_new_address(client: httpx.AsyncClient, database: Database) -> tuple[str, str]:
    """A signed-in person who asked to use ada.new@example.com; their token and the link sent."""
    token = await signed_up(client)
    variables = {"input": {"newEmail": "Ada.New@example.com", "currentPassword": PASSWORD}}
    body = await gql(client, REQUEST_CHANGE, variables, token=token)
    assert body["data"]["requestEmailChange"]["errors"] == []
    [link] = [link for link in await links_in_messages(database) if "/confirm-email" in link]
    return token, local(link)


async def me(client: httpx.AsyncClient, token: str) -> dict[str, object]:
    body = await gql(client, ME, token=token)
    result: dict[str, object] = body["data"]["me"]
    return result


async def email_changes(database: Database) -> int:
    async with database.session() as session:
        rows = await session.scalars(select(ProfileChange).where(ProfileChange.field == "email"))
        return len(list(rows))


def form_action(page: httpx.Response) -> str:
    match = re.search(r'<form method="post" action="([^"]*)"', page.text)
    assert match, page.text
    return match[1].replace("&amp;", "&")


WAITING = {"email": "ada@example.com", "pendingEmail": "ada.new@example.com"}
CHANGED = {"email": "ada.new@example.com", "pendingEmail": None}


class TestFollowingTheLink:
    async def test_shows_a_button_and_changes_nothing(self, client, database) -> None:
        token, link = await asked_for_a_new_address(client, database)

        page = await client.get(link)

        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert page.headers["cache-control"] == "no-store"
        assert page.headers["referrer-policy"] == "no-referrer"
        assert page.headers["x-robots-tag"] == "noindex"
        assert "form-action 'self'" in page.headers["content-security-policy"]
        assert '<form method="post"' in page.text
        assert "<button" in page.text
        assert "ada.new@example.com" in page.text
        assert await me(client, token) == WAITING
        assert await email_changes(database) == 0

    async def test_the_button_confirms_the_new_address(self, client, database) -> None:
        token, link = await asked_for_a_new_address(client, database)
        page = await client.get(link)

        response = await client.post(f"/confirm-email{form_action(page)}")

        assert response.status_code == 200
        assert response.headers["cache-control"] == "no-store"
        assert "ada.new@example.com" in response.text
        assert await me(client, token) == CHANGED
        assert await email_changes(database) == 1

    async def test_a_token_sent_in_the_form_body_works_too(self, client, database) -> None:
        token, link = await asked_for_a_new_address(client, database)
        code = urlsplit(link).query.removeprefix("token=")

        response = await client.post("/confirm-email", data={"token": code})

        assert response.status_code == 200
        assert await me(client, token) == CHANGED

    async def test_a_second_press_says_the_link_is_used_and_changes_nothing(
        self, client, database
    ) -> None:
        token, link = await asked_for_a_new_address(client, database)
        assert (await client.post(link)).status_code == 200
        before = await messages(database)

        again = await client.post(link)

        assert again.status_code == 404
        assert "no longer valid" in again.text
        assert "Nothing was changed" in again.text
        assert await me(client, token) == CHANGED
        assert await email_changes(database) == 1
        assert await messages(database) == before
        assert (await client.get(link)).status_code == 404


class TestLinksThatAreNotValid:
    async def test_a_tampered_token_is_refused_and_echoed_nowhere(self, client, database) -> None:
        token, link = await asked_for_a_new_address(client, database)
        tampered = link[:-3] + ("AAA" if not link.endswith("AAA") else "BBB")

        page = await client.get(tampered)
        response = await client.post(tampered)

        for answer in (page, response):
            assert 400 <= answer.status_code < 500
            assert "no longer valid" in answer.text
            assert answer.headers["referrer-policy"] == "no-referrer"
            assert tampered.split("=", 1)[1] not in answer.text
        assert await me(client, token) == WAITING
        assert await email_changes(database) == 0

    async def test_an_address_taken_in_the_meantime(self, client, database) -> None:
        token, link = await asked_for_a_new_address(client, database)
        await signed_up(client, email="ada.new@example.com")

        response = await client.post(link)

        assert response.status_code == 400
        assert "cannot be used any more" in response.text
        assert "Nothing was changed" in response.text
        assert await me(client, token) == WAITING
        assert await email_changes(database) == 0

    async def test_markup_in_the_token_is_not_echoed(self, client) -> None:
        page = await client.get("/confirm-email", params={"token": '"><script>alert(1)</script>'})

        assert page.status_code == 404
        assert "<script>" not in page.text

    async def test_no_token_at_all(self, client, database) -> None:
        token, _ = await asked_for_a_new_address(client, database)

        for answer in (await client.get("/confirm-email"), await client.post("/confirm-email")):
            assert answer.status_code == 404
        assert await me(client, token) == WAITING


class TestEveryLinkInAMessageAnswers:
    async def assert_new_links_open(
        self, client: httpx.AsyncClient, database: Database, seen: list[str]
    ) -> list[str]:
        """GET each link queued since `seen`, before anything later can use it up."""
        links = await links_in_messages(database)
        assert links[: len(seen)] == seen
        for link in links[len(seen) :]:
            response = await client.get(local(link))
            assert response.status_code == 200, link
        return links

    async def test_at_each_step_of_an_email_change(self, client, database) -> None:
        token = await signed_up(client)
        seen = await self.assert_new_links_open(client, database, [])

        variables = {"input": {"newEmail": "ada.new@example.com", "currentPassword": PASSWORD}}
        body = await gql(client, REQUEST_CHANGE, variables, token=token)
        assert body["data"]["requestEmailChange"]["errors"] == []
        after_request = await self.assert_new_links_open(client, database, seen)
        [confirm] = [link for link in after_request[len(seen) :] if "/confirm-email" in link]

        assert (await client.post(local(confirm))).status_code == 200
        await self.assert_new_links_open(client, database, after_request)
        assert await me(client, token) == CHANGED
