"""Password reset: the same answer for any address, a single-use link to a registered one that
expires, a new password that signs every device out, and a message saying so."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import func, select, update

from models import Database, Notification, NotificationKind, PasswordReset, utcnow
from resolvers.notifications import PLACEHOLDER, render
from tests.helpers import (
    LOGIN,
    ME,
    PASSWORD,
    codes,
    from_address,
    gql,
    logged_in,
    outbox,
    signed_up,
)

REQUEST = """
mutation Request($input: RequestPasswordResetInput!) {
  requestPasswordReset(input: $input) { ok errors { field message code } }
}
"""
RESET = """
mutation Reset($input: ResetPasswordInput!) {
  resetPassword(input: $input) { ok errors { field message code } }
}
"""
REQUEST_EMAIL_CHANGE = """
mutation Change($input: EmailChangeInput!) {
  requestEmailChange(input: $input) { errors { field code } }
}
"""
CONFIRM_EMAIL_CHANGE = """
mutation Confirm($token: String!) {
  confirmEmailChange(input: {token: $token}) { email errors { field code } }
}
"""
NEW_PASSWORD = "a brand new passphrase"


async def request_reset(client: httpx.AsyncClient, email: str = "ada@example.com") -> Any:
    body = await gql(client, REQUEST, {"input": {"email": email}})
    assert "errors" not in body, body
    return body


async def reset(client: httpx.AsyncClient, token: str, password: str = NEW_PASSWORD) -> Any:
    body = await gql(client, RESET, {"input": {"token": token, "newPassword": password}})
    assert "errors" not in body, body
    return body["data"]["resetPassword"]


async def reset_messages(database: Database) -> list[Notification]:
    return await outbox(database, NotificationKind.PASSWORD_RESET)


async def reset_link(database: Database) -> str:
    """The path and query of the link in the latest reset message, as a mailer sends it."""
    messages = await reset_messages(database)
    assert messages, "no reset message"
    found = re.search(r"https?://\S+", render(messages[-1]))
    assert found
    parts = urlsplit(found.group(0))
    return f"{parts.path}?{parts.query}"


async def reset_token(database: Database) -> str:
    return (await reset_link(database)).partition("token=")[2]


async def can_log_in(client: httpx.AsyncClient, password: str) -> bool:
    body = await gql(client, LOGIN, {"input": {"email": "ada@example.com", "password": password}})
    return bool(body["data"]["login"]["token"])


class TestRequestPasswordReset:
    async def test_the_answer_is_the_same_whether_or_not_the_address_is_registered(
        self, client
    ) -> None:
        await signed_up(client)

        registered = await request_reset(client, "ada@example.com")
        unknown = await request_reset(client, "nobody@example.com")

        assert registered == unknown
        assert registered == {"data": {"requestPasswordReset": {"ok": True, "errors": []}}}

    async def test_a_registered_address_gets_a_link_kept_only_as_a_hash(
        self, client, database
    ) -> None:
        await signed_up(client)
        await request_reset(client, " ADA@example.com")

        messages = await reset_messages(database)
        assert [message.recipient for message in messages] == ["ada@example.com"]
        token = messages[0].secret
        assert token and token not in messages[0].body and PLACEHOLDER in messages[0].body
        async with database.session() as session:
            stored = (await session.scalars(select(PasswordReset))).one()
        assert stored.token_hash != token
        assert timedelta(minutes=29) < stored.expires_at - utcnow() <= timedelta(minutes=30)

    async def test_an_unknown_address_sends_nothing_and_keeps_nothing_of_it(
        self, client, database
    ) -> None:
        await request_reset(client, "nobody@example.com")
        async with database.session() as session:
            # A row like a registered address's, so both requests write alike: of no account.
            [row] = (await session.scalars(select(PasswordReset))).all()
            assert row.account_id is None
            assert await session.scalar(select(func.count()).select_from(Notification)) == 0

    async def test_a_malformed_address_is_bad_input(self, client) -> None:
        body = await request_reset(client, "not-an-email")
        assert codes(body["data"]["requestPasswordReset"]) == ["INVALID_EMAIL"]

    async def test_requests_for_one_address_are_limited_alike_registered_or_not(
        self, client
    ) -> None:
        await signed_up(client)
        for email in ("ada@example.com", "nobody@example.com"):
            answers = [
                codes((await request_reset(client, email))["data"]["requestPasswordReset"])
                for _ in range(4)
            ]
            assert answers == [[], [], [], ["RATE_LIMITED"]]

    async def test_requests_from_elsewhere_do_not_use_up_the_owners(self, client, database) -> None:
        await signed_up(client)
        async with from_address(client, "203.0.113.9") as stranger:
            strangers = [
                codes((await request_reset(stranger))["data"]["requestPasswordReset"])
                for _ in range(4)
            ]

        owners = await request_reset(client)

        assert strangers == [[], [], [], ["RATE_LIMITED"]]
        assert codes(owners["data"]["requestPasswordReset"]) == []
        assert (await reset(client, await reset_token(database)))["ok"] is True
        assert await can_log_in(client, NEW_PASSWORD)

    async def test_requests_for_one_address_from_every_place_are_limited_alike(
        self, client
    ) -> None:
        await signed_up(client)
        for email in ("ada@example.com", "nobody@example.com"):
            answers = []
            for place in range(4):
                async with from_address(client, f"203.0.113.{place}") as someone:
                    answers += [
                        codes((await request_reset(someone, email))["data"]["requestPasswordReset"])
                        for _ in range(3)
                    ]
            assert answers == [[]] * 10 + [["RATE_LIMITED"]] * 2

    async def test_requests_from_one_place_are_limited(self, client) -> None:
        answers = [
            codes(
                (await request_reset(client, f"person{n}@example.com"))["data"][
                    "requestPasswordReset"
                ]
            )
            for n in range(11)
        ]
        assert answers == [[]] * 10 + [["RATE_LIMITED"]]


class TestResetPassword:
    async def test_sets_the_password_signs_out_everywhere_and_says_so(
        self, client, database
    ) -> None:
        first = await signed_up(client)
        second = await logged_in(client, "ada@example.com")
        await request_reset(client)

        payload = await reset(client, await reset_token(database))

        assert payload == {"ok": True, "errors": []}
        for token in (first, second):
            assert (await gql(client, ME, token=token))["data"]["me"] is None
        assert await can_log_in(client, NEW_PASSWORD)
        assert not await can_log_in(client, PASSWORD)
        changed = await outbox(database, NotificationKind.PASSWORD_CHANGED)
        assert [message.recipient for message in changed] == ["ada@example.com"]

    async def test_the_link_works_once(self, client, database) -> None:
        await signed_up(client)
        await request_reset(client)
        token = await reset_token(database)
        await reset(client, token)

        again = await reset(client, token, "yet another passphrase")

        assert codes(again) == ["NOT_FOUND"]
        assert await can_log_in(client, NEW_PASSWORD)

    async def test_every_other_link_of_the_account_stops_working_too(
        self, client, database
    ) -> None:
        await signed_up(client)
        await request_reset(client)
        older = await reset_token(database)
        await request_reset(client)
        await reset(client, await reset_token(database))

        assert codes(await reset(client, older)) == ["NOT_FOUND"]

    async def test_an_email_change_waiting_for_its_code_is_voided(self, client, database) -> None:
        # Someone who had the password asked to move the account to their own address.
        token = await signed_up(client)
        move = {"input": {"newEmail": "thief@example.com", "currentPassword": PASSWORD}}
        moved = await gql(client, REQUEST_EMAIL_CHANGE, move, token=token)
        assert codes(moved["data"]["requestEmailChange"]) == []
        [stolen] = await outbox(database, NotificationKind.EMAIL_CONFIRMATION)
        await request_reset(client)

        await reset(client, await reset_token(database))

        confirmed = await gql(client, CONFIRM_EMAIL_CHANGE, {"token": stolen.secret})
        assert codes(confirmed["data"]["confirmEmailChange"]) == ["NOT_FOUND"]
        token = await logged_in(client, "ada@example.com", NEW_PASSWORD)
        me = await gql(client, "{ me { email pendingEmail } }", token=token)
        assert me["data"]["me"] == {"email": "ada@example.com", "pendingEmail": None}

    async def test_an_expired_link_is_refused(self, client, database) -> None:
        await signed_up(client)
        await request_reset(client)
        async with database.transaction() as session:
            await session.execute(
                update(PasswordReset).values(expires_at=utcnow() - timedelta(seconds=1))
            )

        payload = await reset(client, await reset_token(database))

        assert codes(payload) == ["NOT_FOUND"]
        assert await can_log_in(client, PASSWORD)

    async def test_the_new_password_follows_the_signup_rules(self, client, database) -> None:
        await signed_up(client)
        await request_reset(client)
        token = await reset_token(database)

        weak = await reset(client, token, "password123")

        assert codes(weak) == ["WEAK_PASSWORD"] and weak["errors"][0]["field"] == "newPassword"
        assert await can_log_in(client, PASSWORD)
        assert (await reset(client, token))["ok"] is True  # a refusal does not use the link up

    async def test_two_resets_at_once_set_one_password(self, client, database) -> None:
        await signed_up(client)
        await request_reset(client)
        token = await reset_token(database)

        answers = await asyncio.gather(
            reset(client, token, "first new passphrase"),
            reset(client, token, "second new passphrase"),
        )

        assert sorted(answer["ok"] for answer in answers) == [False, True]
        refused = [codes(answer) for answer in answers if not answer["ok"]]
        assert refused == [["NOT_FOUND"]]
        changed = await outbox(database, NotificationKind.PASSWORD_CHANGED)
        assert len(changed) == 1


class TestResetPage:
    async def test_the_link_shows_a_form_and_changes_nothing(self, client, database) -> None:
        await signed_up(client)
        await request_reset(client)

        page = await client.get(await reset_link(database))

        assert page.status_code == 200
        assert 'type="password"' in page.text and 'method="post"' in page.text
        assert page.headers["cache-control"] == "no-store"
        assert await can_log_in(client, PASSWORD)

    async def test_the_form_sets_the_password(self, client, database) -> None:
        token = await signed_up(client)
        await request_reset(client)
        link = await reset_link(database)

        done = await client.post(
            link, data={"token": link.partition("token=")[2], "new_password": NEW_PASSWORD}
        )

        assert done.status_code == 200 and "changed" in done.text
        assert (await gql(client, ME, token=token))["data"]["me"] is None
        assert await can_log_in(client, NEW_PASSWORD)
        assert (await client.get(link)).status_code == 404

    async def test_a_weak_password_shows_the_form_again(self, client, database) -> None:
        await signed_up(client)
        await request_reset(client)
        link = await reset_link(database)

        weak = await client.post(link, data={"new_password": "short"})

        assert weak.status_code == 400 and 'type="password"' in weak.text
        assert await can_log_in(client, PASSWORD)

    async def test_a_made_up_link_answers_not_found(self, client) -> None:
        page = await client.get("/reset-password?token=made-up")
        posted = await client.post("/reset-password", data={"token": "x", "new_password": "y"})
        assert page.status_code == posted.status_code == 404
