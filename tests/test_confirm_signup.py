"""Confirm-first signup: the answer never tells whether an address is registered, and an account
exists only once the code or link mailed to its address is redeemed."""

from __future__ import annotations

import asyncio
import hashlib
import re
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import func, select, update

from auth import passwords
from models import Account, Database, Notification, NotificationKind, PendingSignup, utcnow
from resolvers.notifications import PLACEHOLDER, render
from tests.conftest import client_of, make_config
from tests.helpers import (
    LOGIN,
    ME,
    PASSWORD,
    SIGNUP,
    codes,
    confirm_signup,
    events,
    from_address,
    gql,
    my_settings,
    outbox,
    signed_up,
    signup_code,
    signup_input,
    start_signup,
)

GPC = {"Sec-GPC": "1"}
STRANGERS_PASSWORD = "the stranger's own 42"


class CountingHashes:
    """passlib's context, counting the passwords it hashes (verifications pass through)."""

    def __init__(self, context: Any) -> None:
        self.context = context
        self.hashed = 0

    def hash(self, secret: str) -> str:
        self.hashed += 1
        return str(self.context.hash(secret))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.context, name)


@pytest.fixture
def hashes(monkeypatch: pytest.MonkeyPatch) -> CountingHashes:
    counter = CountingHashes(passwords._context)
    monkeypatch.setattr(passwords, "_context", counter)
    return counter


async def count(database: Database, model: Any) -> int:
    async with database.session() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


def link_in(message: Notification) -> str:
    """The path and query of the first link in a message as a mailer sends it."""
    found = re.search(r"https?://\S+", render(message))
    assert found, message.body
    parts = urlsplit(found.group(0))
    return f"{parts.path}?{parts.query}"


def wrong_code(code: str | None) -> str:
    """A code of the right shape that is not `code`."""
    assert code is not None
    return f"{(int(code) + 1) % 10**8:08d}"


async def can_log_in(client: httpx.AsyncClient, password: str) -> bool:
    body = await gql(client, LOGIN, {"input": {"email": "ada@example.com", "password": password}})
    return bool(body["data"]["login"]["token"])


async def confirmation(database: Database, email: str = "ada@example.com") -> Notification:
    messages = await outbox(database, NotificationKind.SIGNUP_CONFIRMATION, email)
    assert messages, "no confirmation was mailed"
    return messages[-1]


class TestSignupRevealsNothing:
    async def test_new_and_registered_addresses_get_the_same_answer(self, client) -> None:
        await signed_up(client, email="taken@example.com")

        new = await gql(client, SIGNUP, {"input": signup_input(email="new@example.com")})
        taken = await gql(client, SIGNUP, {"input": signup_input(email="taken@example.com")})

        assert new == taken == {"data": {"signup": {"confirmationSent": True, "errors": []}}}

    async def test_a_new_address_is_kept_pending_and_mailed_a_link_and_a_code(
        self, client, database
    ) -> None:
        await start_signup(client)

        assert await count(database, Account) == 0
        async with database.session() as session:
            pending = (await session.scalars(select(PendingSignup))).one()
        assert pending.password_hash.startswith("$argon2id$")
        assert pending.expires_at - utcnow() > timedelta(hours=23, minutes=59)
        message = await confirmation(database)
        assert message.account_id is None
        assert message.secret is not None and re.fullmatch(r"\d{8}", message.secret)
        # The code is kept beside the message, never in its body.
        assert message.secret not in message.body and PLACEHOLDER in message.body
        assert f"/confirm-signup?token={pending.id.hex}." in render(message)

    async def test_a_registered_address_stores_nothing_and_its_owner_is_told_once_an_hour(
        self, client, database
    ) -> None:
        await signed_up(client)
        before = await count(database, Notification)

        for _ in range(3):
            assert (await start_signup(client, password="another password 1"))["errors"] == []

        assert await count(database, PendingSignup) == 0
        notices = await outbox(database, NotificationKind.SIGNUP_ATTEMPT_EXISTING)
        assert [notice.recipient for notice in notices] == ["ada@example.com"]
        assert notices[0].account_id is not None
        assert await count(database, Notification) == before + 1

    async def test_both_paths_hash_the_password_exactly_once(
        self, client, hashes: CountingHashes
    ) -> None:
        await signed_up(client, email="taken@example.com")

        hashes.hashed = 0
        await start_signup(client, email="new@example.com")
        new_address = hashes.hashed
        hashes.hashed = 0
        await start_signup(client, email="taken@example.com")
        registered_address = hashes.hashed

        assert new_address == registered_address == 1

    async def test_a_refused_signup_hashes_nothing_and_stores_nothing(
        self, client, database, hashes: CountingHashes
    ) -> None:
        payload = await start_signup(client, birthDate="2020-01-01")

        assert codes(payload) == ["AGE_RESTRICTED"]
        assert hashes.hashed == 0
        assert await count(database, PendingSignup) == 0
        assert await count(database, Notification) == 0

    async def test_signups_with_one_address_are_limited(self, client) -> None:
        answers = [codes(await start_signup(client)) for _ in range(6)]
        assert answers == [[]] * 5 + [["RATE_LIMITED"]]

    async def test_signups_from_elsewhere_do_not_use_up_the_owners(self, client, database) -> None:
        async with from_address(client, "203.0.113.9") as stranger:
            strangers = [
                codes(await start_signup(stranger, password=STRANGERS_PASSWORD)) for _ in range(6)
            ]

        owners = await start_signup(client)

        assert strangers == [[]] * 5 + [["RATE_LIMITED"]]
        assert owners["errors"] == []
        code = await signup_code(database, "ada@example.com")
        confirmed = await confirm_signup(client, {"email": "ada@example.com", "code": code})
        assert confirmed["errors"] == [] and await can_log_in(client, PASSWORD)

    async def test_signups_with_one_address_from_every_place_are_limited(self, client) -> None:
        for place in range(4):
            async with from_address(client, f"203.0.113.{place}") as someone:
                for _ in range(5):
                    assert codes(await start_signup(someone)) == []

        # From a fifth place too: the address had its 20 messages this hour.
        assert codes(await start_signup(client)) == ["RATE_LIMITED"]


class TestConfirmSignup:
    async def test_with_the_code_creates_the_account_and_signs_in(self, client, database) -> None:
        await start_signup(client, email="Ada@Example.com")
        code = await signup_code(database, "ada@example.com")

        payload = await confirm_signup(client, {"email": " ADA@example.com", "code": code})

        assert payload["errors"] == []
        assert payload["account"]["email"] == "ada@example.com"
        me = await gql(client, ME, token=payload["token"])
        assert me["data"]["me"]["id"] == payload["account"]["id"]
        assert "privacy_session" in client.cookies
        recorded = await events(client, payload["token"])
        assert {event["actor"] for event in recorded} == {"SIGNUP"}
        assert await count(database, PendingSignup) == 0

    async def test_the_code_works_once(self, client, database) -> None:
        await start_signup(client)
        code = await signup_code(database, "ada@example.com")
        first = await confirm_signup(client, {"email": "ada@example.com", "code": code})

        again = await confirm_signup(client, {"email": "ada@example.com", "code": code})

        assert first["errors"] == []
        assert codes(again) == ["NOT_FOUND"] and again["token"] is None
        assert await count(database, Account) == 1

    async def test_an_expired_code_is_refused(self, client, database) -> None:
        await start_signup(client)
        code = await signup_code(database, "ada@example.com")
        async with database.transaction() as session:
            await session.execute(
                update(PendingSignup).values(expires_at=utcnow() - timedelta(seconds=1))
            )

        payload = await confirm_signup(client, {"email": "ada@example.com", "code": code})

        assert codes(payload) == ["NOT_FOUND"]
        assert await count(database, Account) == 0

    async def test_each_signup_keeps_its_own_code(self, client, database) -> None:
        await start_signup(client)
        first = await signup_code(database, "ada@example.com")
        await start_signup(client, displayName="Ada King")
        second = await signup_code(database, "ada@example.com")

        accepted = await confirm_signup(client, {"email": "ada@example.com", "code": first})
        refused = await confirm_signup(client, {"email": "ada@example.com", "code": second})

        assert first != second
        assert accepted["account"]["displayName"] == "Ada Lovelace"
        # The address has its account: the other signup that waited for it is gone.
        assert codes(refused) == ["NOT_FOUND"]
        assert await count(database, PendingSignup) == 0

    async def test_guesses_at_a_code_are_limited(self, client, database) -> None:
        await start_signup(client)
        code = await signup_code(database, "ada@example.com")
        wrong = wrong_code(code)

        answers = [
            codes(await confirm_signup(client, {"email": "ada@example.com", "code": wrong}))
            for _ in range(10)
        ]
        right = await confirm_signup(client, {"email": "ada@example.com", "code": code})

        assert answers == [["NOT_FOUND"]] * 10
        assert codes(right) == ["RATE_LIMITED"]
        assert await count(database, Account) == 0

    async def test_wrong_codes_from_elsewhere_do_not_block_the_right_one(
        self, client, database
    ) -> None:
        await start_signup(client)
        code = await signup_code(database, "ada@example.com")
        wrong = {"email": "ada@example.com", "code": wrong_code(code)}
        async with from_address(client, "203.0.113.9") as guesser:
            guesses = [codes(await confirm_signup(guesser, wrong)) for _ in range(11)]

        right = await confirm_signup(client, {"email": "ada@example.com", "code": code})

        assert guesses == [["NOT_FOUND"]] * 10 + [["RATE_LIMITED"]]
        assert right["errors"] == [] and right["account"]["email"] == "ada@example.com"

    async def test_the_limit_answers_alike_whether_or_not_a_signup_waits(
        self, client, database
    ) -> None:
        await start_signup(client)
        code = await signup_code(database, "ada@example.com")

        answers = {
            email: [
                codes(await confirm_signup(client, {"email": email, "code": wrong_code(code)}))
                for _ in range(11)
            ]
            for email in ("ada@example.com", "nobody@example.com")
        }

        assert answers["ada@example.com"] == answers["nobody@example.com"]
        assert answers["nobody@example.com"] == [["NOT_FOUND"]] * 10 + [["RATE_LIMITED"]]

    async def test_guesses_at_one_address_from_every_place_are_limited(
        self, client, database
    ) -> None:
        await start_signup(client)
        code = await signup_code(database, "ada@example.com")
        wrong = {"email": "ada@example.com", "code": wrong_code(code)}
        for place in range(5):
            async with from_address(client, f"203.0.113.{place}") as guesser:
                for _ in range(10):
                    assert codes(await confirm_signup(guesser, wrong)) == ["NOT_FOUND"]

        right = await confirm_signup(client, {"email": "ada@example.com", "code": code})

        assert codes(right) == ["RATE_LIMITED"]
        assert await count(database, Account) == 0

    async def test_each_waiting_signup_counts_against_the_guesses_at_its_address(
        self, client, database
    ) -> None:
        # Three signups wait: each guess is compared with three codes, so 16 guesses use 48 of
        # the address's 50 codes an hour and the 17th is refused.
        for _ in range(3):
            await start_signup(client)
        code = await signup_code(database, "ada@example.com")
        wrong = {"email": "ada@example.com", "code": wrong_code(code)}
        answers = []
        for place in range(2):
            async with from_address(client, f"203.0.113.{place}") as guesser:
                answers += [codes(await confirm_signup(guesser, wrong)) for _ in range(10)]

        assert answers == [["NOT_FOUND"]] * 16 + [["RATE_LIMITED"]] * 4

    async def test_the_link_is_not_blocked_by_guesses_at_its_address(
        self, client, database
    ) -> None:
        await start_signup(client)
        code = await signup_code(database, "ada@example.com")
        link = link_in(await confirmation(database))
        wrong = {"email": "ada@example.com", "code": wrong_code(code)}
        for place in range(6):
            async with from_address(client, f"203.0.113.{place}") as guesser:
                for _ in range(10):
                    await confirm_signup(guesser, wrong)

        done = await client.post(link)

        assert done.status_code == 200 and "ready" in done.text

    async def test_nothing_to_confirm_with_is_bad_input(self, client) -> None:
        payload = await confirm_signup(client, {"email": "ada@example.com"})
        assert codes(payload) == ["INVALID_INPUT"]

    @pytest.mark.parametrize("token", ["", "nonsense", "zz.12345678", "." * 500])
    async def test_a_malformed_token_is_not_found(self, client, token: str) -> None:
        payload = await confirm_signup(client, {"token": token})
        assert codes(payload) == ["NOT_FOUND"]

    async def test_the_gpc_signal_sent_with_signup_is_applied_at_confirmation(
        self, client, database
    ) -> None:
        await start_signup(client, headers=GPC)
        code = await signup_code(database, "ada@example.com")

        payload = await confirm_signup(client, {"email": "ada@example.com", "code": code})

        me = await my_settings(client, payload["token"])
        assert me["cookieConsent"]["gpcApplied"] is True
        assert me["cookieConsent"]["advertising"] is False
        recorded = await events(client, payload["token"], key="cookies.advertising")
        assert [(event["actor"], event["newValue"]) for event in recorded] == [("GPC", "false")]

    async def test_confirming_twice_at_once_creates_one_account(self, client, database) -> None:
        await start_signup(client)
        code = await signup_code(database, "ada@example.com")
        both = {"email": "ada@example.com", "code": code}

        answers = await asyncio.gather(confirm_signup(client, both), confirm_signup(client, both))

        signed_in = [answer for answer in answers if answer["token"]]
        refused = [codes(answer) for answer in answers if not answer["token"]]
        assert len(signed_in) == 1 and signed_in[0]["errors"] == []
        assert refused == [["NOT_FOUND"]]
        assert await count(database, Account) == 1


class TestAStrangersSignup:
    """Anyone may sign up with any address: whoever reads its mail decides which account is
    created, and with whose password."""

    async def test_a_later_signup_by_a_stranger_leaves_the_owners_code_working(
        self, client, database
    ) -> None:
        await start_signup(client)
        owners = await signup_code(database, "ada@example.com")
        async with from_address(client, "203.0.113.9") as stranger:
            await start_signup(
                stranger, password=STRANGERS_PASSWORD, displayName="Mallory", phone="+4915123456789"
            )

        payload = await confirm_signup(client, {"email": "ada@example.com", "code": owners})

        assert payload["errors"] == []
        assert payload["account"]["displayName"] == "Ada Lovelace"
        assert payload["account"]["phone"] is None
        assert await can_log_in(client, PASSWORD)
        assert not await can_log_in(client, STRANGERS_PASSWORD)

    async def test_a_strangers_code_no_longer_works_once_the_owner_confirmed(
        self, client, database
    ) -> None:
        async with from_address(client, "203.0.113.9") as stranger:
            await start_signup(stranger, password=STRANGERS_PASSWORD, displayName="Mallory")
        strangers = await signup_code(database, "ada@example.com")
        await start_signup(client)
        owners = await signup_code(database, "ada@example.com")

        confirmed = await confirm_signup(client, {"email": "ada@example.com", "code": owners})
        late = await confirm_signup(client, {"email": "ada@example.com", "code": strangers})

        assert confirmed["account"]["displayName"] == "Ada Lovelace"
        assert codes(late) == ["NOT_FOUND"]
        assert not await can_log_in(client, STRANGERS_PASSWORD)

    async def test_each_link_opens_a_page_naming_the_account_it_creates(
        self, client, database
    ) -> None:
        await start_signup(client)
        async with from_address(client, "203.0.113.9") as stranger:
            await start_signup(stranger, password=STRANGERS_PASSWORD, displayName="<b>Mallory")
        owners, strangers = await outbox(
            database, NotificationKind.SIGNUP_CONFIRMATION, "ada@example.com"
        )

        owners_page = await client.get(link_in(owners))
        strangers_page = await client.get(link_in(strangers))

        assert "ada@example.com" in owners_page.text and "Ada Lovelace" in owners_page.text
        assert "Mallory" not in owners_page.text
        assert "&lt;b&gt;Mallory" in strangers_page.text and "<b>" not in strangers_page.text
        assert "Ada Lovelace" not in strangers_page.text

    async def test_the_code_is_kept_only_keyed_with_the_secret_key(
        self, client, database, clean_database_url: str
    ) -> None:
        await start_signup(client)
        code = await signup_code(database, "ada@example.com")
        assert code is not None
        async with database.session() as session:
            stored = (await session.scalars(select(PendingSignup))).one()

        async with client_of(make_config(clean_database_url, secret_key="x" * 40)) as other_key:
            elsewhere = await confirm_signup(other_key, {"email": "ada@example.com", "code": code})

        # Not the plain hash of the code, which anyone could find by trying all 10^8 codes.
        assert stored.code_hash != hashlib.sha256(code.encode()).hexdigest()
        assert codes(elsewhere) == ["NOT_FOUND"]
        assert (await confirm_signup(client, {"email": "ada@example.com", "code": code}))[
            "errors"
        ] == []


class TestConfirmationPage:
    async def test_the_link_shows_a_button_and_changes_nothing(self, client, database) -> None:
        await start_signup(client)
        link = link_in(await confirmation(database))

        page = await client.get(link)

        assert page.status_code == 200
        assert "ada@example.com" in page.text and "<form" in page.text
        assert page.headers["cache-control"] == "no-store"
        assert await count(database, Account) == 0

    async def test_the_button_creates_the_account_which_then_signs_in(
        self, client, database
    ) -> None:
        await start_signup(client)
        link = link_in(await confirmation(database))
        await client.get(link)

        done = await client.post(link)

        assert done.status_code == 200 and "ready" in done.text
        assert "set-cookie" not in done.headers  # the page signs no one in
        login = await gql(
            client, LOGIN, {"input": {"email": "ada@example.com", "password": PASSWORD}}
        )
        assert login["data"]["login"]["errors"] == []
        again = await client.get(link)
        assert again.status_code == 404

    async def test_the_token_may_come_in_the_form_body(self, client, database) -> None:
        await start_signup(client)
        token = link_in(await confirmation(database)).partition("token=")[2]

        done = await client.post("/confirm-signup", data={"token": token})

        assert done.status_code == 200
        assert await count(database, Account) == 1

    async def test_a_made_up_link_answers_not_found(self, client) -> None:
        page = await client.get("/confirm-signup?token=0123.456")
        posted = await client.post("/confirm-signup?token=0123.456")
        assert page.status_code == posted.status_code == 404


class TestAccountsMadeWithoutSignup:
    async def test_the_demo_account_is_confirmed_and_signs_in(self, client, config) -> None:
        from privacy_api.cli import create_demo_account

        created = await create_demo_account(config)
        assert created is not None
        email, password = created

        body = await gql(client, LOGIN, {"input": {"email": email, "password": password}})

        assert body["data"]["login"]["errors"] == []


async def test_a_confirmation_is_deleted_once_sent(client, database) -> None:
    from resolvers.notifications import mark_sent

    await start_signup(client)
    message = await confirmation(database)
    async with database.transaction() as session:
        await mark_sent(session, [message.id])

    assert await outbox(database, NotificationKind.SIGNUP_CONFIRMATION) == []
