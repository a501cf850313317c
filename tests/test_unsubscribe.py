"""One-click unsubscribe (RFC 8058): a signed link that turns one topic off by email, without
sign-in, recorded in the ledger as made by the link."""

from __future__ import annotations

import base64
import time
import uuid
from urllib.parse import urlsplit

import httpx
import pytest
from itsdangerous import TimestampSigner
from sqlalchemy import select

from auth.tokens import Signer
from models import ConsentActor, ConsentEvent, Database, Source
from resolvers.catalogue import Topic
from resolvers.unsubscribe import link_token
from tests.conftest import TEST_SECRET
from tests.helpers import gql, new_account, run_cli

MARKETING_KEY = "communication.email.marketing"
ONE_CLICK = {"List-Unsubscribe": "One-Click"}
DAY = 24 * 60 * 60

TOGGLE = """
mutation Toggle($channel: Channel!, $topic: Topic!, $enabled: Boolean!) {
  setCommunicationPreference(input: {channel: $channel, topic: $topic, enabled: $enabled}) {
    errors { code }
  }
}
"""
PREFERENCES = "{ me { communicationPreferences { channel topic enabled } } }"


async def subscribed_person(
    client: httpx.AsyncClient, email: str = "ada@example.com"
) -> tuple[str, uuid.UUID]:
    """A person who said yes to marketing by email and by app; their token and account id."""
    account_id, token = await new_account(client, email=email)
    for channel in ("EMAIL", "PUSH"):
        variables = {"channel": channel, "topic": "MARKETING", "enabled": True}
        body = await gql(client, TOGGLE, variables, token=token)
        assert body["data"]["setCommunicationPreference"]["errors"] == []
    return token, uuid.UUID(account_id)


async def marketing(client: httpx.AsyncClient, token: str) -> dict[str, bool]:
    body = await gql(client, PREFERENCES, token=token)
    return {
        p["channel"]: p["enabled"]
        for p in body["data"]["me"]["communicationPreferences"]
        if p["topic"] == "MARKETING"
    }


async def marketing_events(database: Database) -> list[ConsentEvent]:
    async with database.session() as session:
        rows = await session.scalars(
            select(ConsentEvent).where(ConsentEvent.key == MARKETING_KEY).order_by(ConsentEvent.id)
        )
        return list(rows)


async def event_ids(database: Database) -> list[int]:
    return [event.id for event in await marketing_events(database)]


def url_for(token: str) -> str:
    return f"/unsubscribe?token={token}"


def signed_days_ago(monkeypatch: pytest.MonkeyPatch, days: int, account_id: uuid.UUID) -> str:
    then = int(time.time()) - days * DAY
    with monkeypatch.context() as patched:
        patched.setattr(TimestampSigner, "get_timestamp", lambda self: then)
        return link_token(TEST_SECRET, account_id, Topic.MARKETING)


def with_payload(token: str, payload: bytes) -> str:
    """The token with its signed part replaced, signature and timestamp kept."""
    _, timestamp, signature = token.split(".")
    encoded = base64.urlsafe_b64encode(payload).rstrip(b"=").decode()
    return f"{encoded}.{timestamp}.{signature}"


class TestOneClick:
    async def test_turns_email_marketing_off_without_sign_in(self, client, database) -> None:
        token, account_id = await subscribed_person(client)
        link = link_token(TEST_SECRET, account_id, Topic.MARKETING)

        response = await client.post(url_for(link), data=ONE_CLICK)

        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/html")
        assert "unsubscribed" in response.text
        assert response.headers["cache-control"] == "no-store"
        assert await marketing(client, token) == {"EMAIL": False, "SMS": False, "PUSH": True}
        newest = (await marketing_events(database))[-1]
        assert (newest.old_value, newest.new_value) == ("true", "false")
        assert (newest.actor, newest.source, newest.actor_id) == (
            ConsentActor.LINK,
            Source.LINK,
            None,
        )
        assert newest.request_id == response.headers["x-request-id"]

    async def test_takes_the_multipart_body_rfc_8058_recommends(self, client) -> None:
        token, account_id = await subscribed_person(client)
        link = link_token(TEST_SECRET, account_id, Topic.MARKETING)

        response = await client.post(url_for(link), files={"List-Unsubscribe": (None, "One-Click")})

        assert response.status_code == 200
        assert (await marketing(client, token))["EMAIL"] is False

    async def test_a_second_click_changes_nothing_more(self, client, database) -> None:
        _, account_id = await subscribed_person(client)
        link = link_token(TEST_SECRET, account_id, Topic.MARKETING)

        first = await client.post(url_for(link), data=ONE_CLICK)
        events = await marketing_events(database)
        second = await client.post(url_for(link), data=ONE_CLICK)

        assert first.status_code == second.status_code == 200
        assert await event_ids(database) == [event.id for event in events]
        assert [e.actor for e in events].count(ConsentActor.LINK) == 1

    async def test_only_the_email_channel_of_that_topic_changes(self, client) -> None:
        token, account_id = await subscribed_person(client)
        variables = {"channel": "EMAIL", "topic": "NEWSLETTER", "enabled": True}
        await gql(client, TOGGLE, variables, token=token)

        link = link_token(TEST_SECRET, account_id, Topic.NEWSLETTER)
        await client.post(url_for(link), data=ONE_CLICK)

        body = await gql(client, PREFERENCES, token=token)
        enabled = {
            (p["channel"], p["topic"])
            for p in body["data"]["me"]["communicationPreferences"]
            if p["enabled"]
        }
        assert ("EMAIL", "NEWSLETTER") not in enabled
        assert {("EMAIL", "MARKETING"), ("PUSH", "MARKETING")} <= enabled

    @pytest.mark.parametrize(
        "body",
        [
            {"data": {"List-Unsubscribe": "Yes"}},
            {"data": {"Unsubscribe": "One-Click"}},
            {"content": b""},
            {"json": ONE_CLICK},
        ],
        ids=["wrong-value", "wrong-name", "empty", "json"],
    )
    async def test_a_body_without_one_click_is_refused(self, client, database, body) -> None:
        token, account_id = await subscribed_person(client)
        link = link_token(TEST_SECRET, account_id, Topic.MARKETING)
        before = await event_ids(database)

        response = await client.post(url_for(link), **body)

        assert response.status_code == 400
        assert "List-Unsubscribe=One-Click" in response.text
        assert (await marketing(client, token))["EMAIL"] is True
        assert await event_ids(database) == before


class TestLinksThatAreNotValid:
    async def assert_refused(
        self, client: httpx.AsyncClient, database: Database, token: str, link: str, status: int
    ) -> httpx.Response:
        before = await event_ids(database)
        response = await client.post(url_for(link), data=ONE_CLICK)
        assert response.status_code == status
        assert "This link is not valid" in response.text
        assert "Nothing was changed" in response.text
        assert (await marketing(client, token))["EMAIL"] is True
        assert await event_ids(database) == before
        return response

    async def test_a_tampered_signature(self, client, database) -> None:
        token, account_id = await subscribed_person(client)
        link = link_token(TEST_SECRET, account_id, Topic.MARKETING)
        # A character inside the signature: the last one also carries padding bits.
        position = len(link) - 5
        flipped = link[:position] + ("A" if link[position] != "A" else "B") + link[position + 1 :]

        await self.assert_refused(client, database, token, flipped, 400)

    async def test_a_link_for_another_topic_edited_into_marketing(self, client, database) -> None:
        token, account_id = await subscribed_person(client)
        newsletter = link_token(TEST_SECRET, account_id, Topic.NEWSLETTER)
        edited = with_payload(newsletter, f'["{account_id.hex}","marketing"]'.encode())

        await self.assert_refused(client, database, token, edited, 400)

    async def test_a_link_edited_to_another_account(self, client, database) -> None:
        token, _ = await subscribed_person(client)
        _, other_id = await subscribed_person(client, "bob@example.com")
        stranger = link_token(TEST_SECRET, uuid.uuid4(), Topic.MARKETING)
        edited = with_payload(stranger, f'["{other_id.hex}","marketing"]'.encode())

        await self.assert_refused(client, database, token, edited, 400)

    async def test_an_expired_link(self, client, database, monkeypatch) -> None:
        token, account_id = await subscribed_person(client)
        old = signed_days_ago(monkeypatch, 181, account_id)

        await self.assert_refused(client, database, token, old, 400)

    async def test_a_link_within_its_180_days_still_works(self, client, monkeypatch) -> None:
        token, account_id = await subscribed_person(client)
        old = signed_days_ago(monkeypatch, 179, account_id)

        response = await client.post(url_for(old), data=ONE_CLICK)

        assert response.status_code == 200
        assert (await marketing(client, token))["EMAIL"] is False

    async def test_a_link_signed_with_another_secret(self, client, database) -> None:
        token, account_id = await subscribed_person(client)
        forged = link_token("another-secret-that-is-long-enough-too", account_id, Topic.MARKETING)

        await self.assert_refused(client, database, token, forged, 400)

    async def test_a_marker_signed_for_another_purpose(self, client, database) -> None:
        token, _ = await subscribed_person(client)
        marker = Signer(TEST_SECRET, purpose="age-gate").sign("refused")

        await self.assert_refused(client, database, token, marker, 400)

    async def test_no_token_at_all(self, client, database) -> None:
        token, _ = await subscribed_person(client)

        response = await client.post("/unsubscribe", data=ONE_CLICK)

        assert response.status_code == 400
        assert (await marketing(client, token))["EMAIL"] is True

    async def test_an_account_that_no_longer_exists(self, client, database) -> None:
        token, _ = await subscribed_person(client)
        vanished = link_token(TEST_SECRET, uuid.uuid4(), Topic.MARKETING)

        await self.assert_refused(client, database, token, vanished, 404)
        page = await client.get(url_for(vanished))
        assert page.status_code == 404
        assert "This link is not valid" in page.text


class TestConfirmationPage:
    async def test_following_the_link_changes_nothing(self, client, database) -> None:
        token, account_id = await subscribed_person(client)
        link = link_token(TEST_SECRET, account_id, Topic.MARKETING)
        before = await event_ids(database)

        page = await client.get(url_for(link))

        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert page.headers["referrer-policy"] == "no-referrer"
        assert "Unsubscribe from marketing emails?" in page.text
        assert '<form method="post"' in page.text
        assert '<input type="hidden" name="List-Unsubscribe" value="One-Click">' in page.text
        assert (await marketing(client, token))["EMAIL"] is True
        assert await event_ids(database) == before

    async def test_its_button_unsubscribes(self, client) -> None:
        token, account_id = await subscribed_person(client)
        link = link_token(TEST_SECRET, account_id, Topic.MARKETING)
        page = await client.get(url_for(link))
        action = page.text.split('action="', 1)[1].split('"', 1)[0].replace("&amp;", "&")

        response = await client.post(f"/unsubscribe{action}", data=ONE_CLICK)

        assert response.status_code == 200
        assert (await marketing(client, token))["EMAIL"] is False

    async def test_a_link_that_is_not_valid_says_so_and_echoes_nothing(self, client) -> None:
        page = await client.get("/unsubscribe", params={"token": '"><script>alert(1)</script>'})

        assert page.status_code == 400
        assert "This link is not valid" in page.text
        assert "<script>" not in page.text


class TestCommandLine:
    async def test_prints_a_link_that_works(self, client, database_url, tmp_path) -> None:
        token, _ = await subscribed_person(client)

        code, out, err = await run_cli(
            database_url, tmp_path, "unsubscribe-link", "--email", "Ada@Example.com",
            "--topic", "MARKETING", PRIVACY_API_PUBLIC_URL="https://privacy.example/api",
        )  # fmt: skip

        assert code == 0, err
        lines = out.splitlines()
        url = urlsplit(lines[0])
        assert (url.scheme, url.netloc, url.path) == (
            "https",
            "privacy.example",
            "/api/unsubscribe",
        )
        assert lines[1] == f"List-Unsubscribe: <{lines[0]}>"
        assert lines[2] == "List-Unsubscribe-Post: List-Unsubscribe=One-Click"
        assert "Valid until" in lines[3]
        response = await client.post(f"/unsubscribe?{url.query}", data=ONE_CLICK)
        assert response.status_code == 200
        assert (await marketing(client, token))["EMAIL"] is False

    async def test_in_development_the_link_follows_the_port_setting(
        self, client, database_url, tmp_path
    ) -> None:
        # As `make run PORT=8011` serves: a link to port 8000 would reach nothing.
        await subscribed_person(client)
        code, out, err = await run_cli(
            database_url, tmp_path, "unsubscribe-link", "--email", "ada@example.com",
            "--topic", "MARKETING", PRIVACY_API_PUBLIC_URL="", PRIVACY_API_PORT="8011",
        )  # fmt: skip
        assert code == 0, err
        assert out.startswith("http://127.0.0.1:8011/unsubscribe?token=")

    @pytest.mark.parametrize(
        ("email", "topic", "message"),
        [
            ("nobody@example.com", "MARKETING", "No account"),
            ("ada@example.com", "SECURITY_ALERTS", "cannot be turned off"),
        ],
    )
    async def test_refuses_what_has_no_link(
        self, client, database_url, tmp_path, email, topic, message
    ) -> None:
        await subscribed_person(client)

        code, out, err = await run_cli(
            database_url, tmp_path, "unsubscribe-link", "--email", email, "--topic", topic
        )

        assert code == 1
        assert message in err
        assert out == ""
