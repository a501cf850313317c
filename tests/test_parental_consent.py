"""Parental consent (GDPR Art. 8(2)): a minor asks a parent, the parent answers each setting through
the mailed link, can withdraw through the link in any later message, and the grant lapses when the
minor comes of age. Every link the API mails is followed."""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import timedelta
from html import escape
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import select, text, update

from models import Account, Base, Database, Notification, NotificationKind, ParentalRequest, utcnow
from resolvers import age, consent, notifications
from resolvers.age import today_everywhere
from tests.helpers import (
    birth_date_for_age,
    change,
    changed,
    events,
    gql,
    my_settings,
    preference,
    sharing,
    signed_up,
)
from tests.test_export import download
from workers.age_rules import AgeRulesReport, apply_age_rules

ASK = """
mutation Ask($input: ParentalConsentInput!) {
  requestParentalConsent(input: $input) {
    consents { key status decidedAt }
    errors { field code message }
  }
}
"""
CONSENTS = "{ me { isMinor parentalConsents { key status decidedAt withdrawnAt } } }"
PARENT = "parent@example.net"
NEWSLETTER = "communication.email.newsletter"
RESEARCH = "data_sharing.research"
URL = re.compile(r"https?://[^\s<>\"']+")
PUBLIC_URL = "http://127.0.0.1:8000"


async def a_teen(
    client: httpx.AsyncClient, *, years: int = 14, country: str = "DE", email: str = "teen@x.org"
) -> str:
    return await signed_up(
        client, email=email, birthDate=birth_date_for_age(years), country=country
    )


async def ask(
    client: httpx.AsyncClient, token: str, keys: list[str], parent: str = PARENT
) -> dict[str, Any]:
    body = await gql(client, ASK, {"input": {"parentEmail": parent, "keys": keys}}, token=token)
    payload: dict[str, Any] = body["data"]["requestParentalConsent"]
    return payload


async def asked(
    client: httpx.AsyncClient, token: str, keys: list[str], parent: str = PARENT
) -> None:
    """Ask successfully."""
    payload = await ask(client, token, keys, parent)
    assert payload["errors"] == [], payload["errors"]
    assert {c["key"]: c["status"] for c in payload["consents"]} == dict.fromkeys(keys, "PENDING")


async def newsletter_refusal(client: httpx.AsyncClient, token: str) -> list[str]:
    """The codes of the errors in answer to switching the newsletter on."""
    payload = await change(
        client,
        "setCommunicationPreference",
        {"channel": "EMAIL", "topic": "NEWSLETTER", "enabled": True},
        token=token,
    )
    return [error["code"] for error in payload["errors"]]


async def parent_messages(database: Database) -> list[Notification]:
    async with database.session() as session:
        rows = await session.scalars(
            select(Notification)
            .where(Notification.kind == NotificationKind.PARENTAL_CONSENT_REQUEST)
            .order_by(Notification.created_at)
        )
        return list(rows)


async def newest_link(database: Database) -> str:
    """The link in the newest message to a parent, as the test client requests it."""
    message = (await parent_messages(database))[-1]
    [link] = URL.findall(notifications.render(message))
    assert link.startswith(PUBLIC_URL + "/parental-consent?"), link
    parts = urlsplit(link)
    return f"{parts.path}?{parts.query}"


async def answer(client: httpx.AsyncClient, link: str, answers: dict[str, str]) -> httpx.Response:
    return await client.post(link, data={"action": "decide", **answers})


async def withdraw(client: httpx.AsyncClient, link: str) -> httpx.Response:
    return await client.post(link, data={"action": "withdraw"})


async def statuses(client: httpx.AsyncClient, token: str) -> dict[str, str]:
    """Each key's status in the newest request that asked for it."""
    body = await gql(client, CONSENTS, token=token)
    found: dict[str, str] = {}
    for item in body["data"]["me"]["parentalConsents"]:
        found.setdefault(item["key"], item["status"])
    return found


async def granted_newsletter(client: httpx.AsyncClient, database: Database) -> tuple[str, str]:
    """A 14-year-old in Germany whose parent agreed to the newsletter: their token and the link."""
    token = await a_teen(client)
    await asked(client, token, [NEWSLETTER])
    link = await newest_link(database)
    response = await answer(client, link, {NEWSLETTER: "grant"})
    assert response.status_code == 200, response.text
    return token, link


async def ledger_verifies(database: Database) -> None:
    """What `privacy-api verify-ledger` checks: every chain, and every stored setting against
    its newest event."""
    async with database.session() as session:
        checked, broken = await consent.verify_ledger(session)
        disagreements = await consent.disagreeing_settings(session, limit=10)
    assert broken is None and checked > 0
    assert disagreements == []


async def set_birth_date(database: Database, token_email: str, born: Any) -> None:
    async with database.transaction() as session:
        await session.execute(
            update(Account).where(Account.email == token_email).values(birth_date=born)
        )


class TestAskingForConsent:
    async def test_signed_out_callers_are_refused(self, client) -> None:
        body = await gql(client, ASK, {"input": {"parentEmail": PARENT, "keys": [NEWSLETTER]}})
        assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"

    async def test_an_adult_needs_no_parent(self, client, database) -> None:
        token = await a_teen(client, years=16, country="DE")
        payload = await ask(client, token, [NEWSLETTER])
        assert [e["code"] for e in payload["errors"]] == ["PARENTAL_CONSENT_NOT_NEEDED"]
        assert payload["consents"] is None
        assert await parent_messages(database) == []

    async def test_the_catalogue_says_what_a_parent_may_grant(self, client) -> None:
        body = await gql(client, "{ privacyCatalogue { key group parentMayGrant } }")
        grantable = {
            entry["key"]: entry["group"]
            for entry in body["data"]["privacyCatalogue"]
            if entry["parentMayGrant"]
        }
        assert {NEWSLETTER, RESEARCH, "cookies.analytics"} <= set(grantable)
        assert "VISIBILITY" not in set(grantable.values())
        assert "communication.email.security_alerts" not in grantable

    @pytest.mark.parametrize(
        "keys",
        [
            ["visibility.email"],  # a minor's profile is never made public, by anyone
            ["visibility.search_engine_indexing"],
            ["cookies.strictly_necessary"],
            ["communication.email.security_alerts"],
            ["communication.email.service_updates"],
            ["no.such.setting"],
            [NEWSLETTER, "no.such.setting"],
            [],
        ],
    )
    async def test_only_settings_a_parent_may_grant(self, client, database, keys) -> None:
        token = await a_teen(client)
        payload = await ask(client, token, keys)
        [error] = payload["errors"]
        assert (error["field"], error["code"]) == ("keys", "INVALID_INPUT")
        assert await parent_messages(database) == []

    @pytest.mark.parametrize(
        ("parent", "code"),
        [("not an address", "INVALID_EMAIL"), ("Teen@X.org", "INVALID_INPUT")],
    )
    async def test_the_parent_address_is_checked(self, client, database, parent, code) -> None:
        token = await a_teen(client)
        payload = await ask(client, token, [NEWSLETTER], parent)
        [error] = payload["errors"]
        assert (error["field"], error["code"]) == ("parentEmail", code)
        assert await parent_messages(database) == []

    async def test_text_messages_need_a_phone_number(self, client) -> None:
        token = await a_teen(client)
        payload = await ask(client, token, ["communication.sms.newsletter"])
        assert [e["code"] for e in payload["errors"]] == ["PHONE_REQUIRED"]

    async def test_requests_are_rate_limited_per_account(self, client, database) -> None:
        token = await a_teen(client)
        for n in range(5):
            await asked(client, token, [NEWSLETTER], parent=f"parent{n}@example.net")
        payload = await ask(client, token, [NEWSLETTER], parent="another@example.net")
        assert [e["code"] for e in payload["errors"]] == ["RATE_LIMITED"]
        assert len(await parent_messages(database)) == 5

    async def test_requests_are_rate_limited_per_parent_address(self, client, database) -> None:
        for n in range(3):
            token = await a_teen(client, email=f"teen{n}@x.org")
            await asked(client, token, [NEWSLETTER])
        token = await a_teen(client, email="teen9@x.org")
        payload = await ask(client, token, [NEWSLETTER], parent=PARENT.upper())
        [error] = payload["errors"]
        assert (error["field"], error["code"]) == ("parentEmail", "RATE_LIMITED")
        assert len(await parent_messages(database)) == 3

    async def test_without_a_grant_a_minor_stays_protected(self, client, database) -> None:
        await granted_newsletter(client, database)  # another teen's parent agreed
        token = await a_teen(client, email="other@x.org")
        await asked(client, token, [NEWSLETTER], parent="mum@example.net")  # not answered
        assert await newsletter_refusal(client, token) == ["PARENTAL_CONSENT_REQUIRED"]
        assert preference(await my_settings(client, token), "EMAIL", "NEWSLETTER") is False


class TestTheParentsAnswer:
    async def test_the_parent_follows_the_link_and_answers_each_setting(
        self, client, database
    ) -> None:
        token = await a_teen(client)
        await asked(client, token, [NEWSLETTER, RESEARCH])
        [message] = await parent_messages(database)
        assert message.recipient == PARENT
        assert "Ada Lovelace" in message.subject
        link = await newest_link(database)

        shown = await client.get(link)
        assert shown.status_code == 200
        assert shown.headers["cache-control"] == "no-store"
        # The form posts back here only; the token in its address is what another site lacks.
        assert "form-action 'self'" in shown.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in shown.headers["content-security-policy"]
        assert f'action="{escape(link.removeprefix("/parental-consent"))}"' in shown.text
        assert "Ada Lovelace asks for your consent" in shown.text
        assert shown.text.count('type="radio"') == 4
        assert f'name="{NEWSLETTER}" value="grant"' in shown.text
        assert await statuses(client, token) == {NEWSLETTER: "PENDING", RESEARCH: "PENDING"}

        response = await client.post(
            link,
            data={"action": "decide", NEWSLETTER: "grant", RESEARCH: "refuse"},
            headers={"X-Request-ID": "parent-answers-1"},
        )

        assert response.status_code == 200
        assert "your answer is recorded" in response.text
        me = await my_settings(client, token)
        assert me["isMinor"] is True
        assert preference(me, "EMAIL", "NEWSLETTER") is True
        assert sharing(me, "RESEARCH") is False
        assert await statuses(client, token) == {NEWSLETTER: "GRANTED", RESEARCH: "REFUSED"}
        [newest, *_] = await events(client, token)
        assert (newest["key"], newest["actor"], newest["source"], newest["requestId"]) == (
            NEWSLETTER,
            "PARENT",
            "LINK",
            "parent-answers-1",
        )
        await ledger_verifies(database)

    async def test_the_minor_may_change_what_the_parent_granted_but_nothing_else(
        self, client, database
    ) -> None:
        token, _ = await granted_newsletter(client, database)
        toggle = {"channel": "EMAIL", "topic": "NEWSLETTER"}
        await changed(
            client, "setCommunicationPreference", {**toggle, "enabled": False}, token=token
        )
        await changed(
            client, "setCommunicationPreference", {**toggle, "enabled": True}, token=token
        )
        assert preference(await my_settings(client, token), "EMAIL", "NEWSLETTER") is True
        payload = await change(
            client, "setDataSharing", {"purpose": "RESEARCH", "enabled": True}, token=token
        )
        assert [e["code"] for e in payload["errors"]] == ["PARENTAL_CONSENT_REQUIRED"]

    async def test_a_grant_survives_a_move_that_keeps_the_person_a_minor(
        self, client, database
    ) -> None:
        token, _ = await granted_newsletter(client, database)
        body = await gql(
            client,
            'mutation { updateProfile(input: {country: "FR"}) { errors { code } } }',
            token=token,
        )
        assert body["data"]["updateProfile"]["errors"] == []
        assert preference(await my_settings(client, token), "EMAIL", "NEWSLETTER") is True

    async def test_an_incomplete_answer_changes_nothing(self, client, database) -> None:
        token = await a_teen(client)
        await asked(client, token, [NEWSLETTER, RESEARCH])
        link = await newest_link(database)
        before = await my_settings(client, token)
        for answers in ({NEWSLETTER: "grant"}, {NEWSLETTER: "grant", RESEARCH: "maybe"}):
            response = await answer(client, link, answers)
            assert response.status_code == 400
            assert "Answer each item" in response.text
        assert await my_settings(client, token) == before
        assert await statuses(client, token) == {NEWSLETTER: "PENDING", RESEARCH: "PENDING"}
        response = await answer(client, link, {NEWSLETTER: "refuse", RESEARCH: "refuse"})
        assert response.status_code == 200

    async def test_a_request_is_answered_once(self, client, database) -> None:
        token, link = await granted_newsletter(client, database)

        again = await answer(client, link, {NEWSLETTER: "refuse"})

        assert again.status_code == 409
        assert "answered already" in again.text
        assert await statuses(client, token) == {NEWSLETTER: "GRANTED"}
        shown = await client.get(link)
        assert shown.status_code == 200
        assert "you agreed" in shown.text
        assert "Withdraw my consent" in shown.text
        assert 'type="radio"' not in shown.text

    async def test_of_two_answers_sent_at_once_one_counts(self, client, database) -> None:
        token = await a_teen(client)
        await asked(client, token, [NEWSLETTER])
        link = await newest_link(database)

        responses = await asyncio.gather(
            answer(client, link, {NEWSLETTER: "grant"}),
            answer(client, link, {NEWSLETTER: "refuse"}),
        )

        assert sorted(response.status_code for response in responses) == [200, 409]
        granted = responses[0].status_code == 200
        assert await statuses(client, token) == {NEWSLETTER: "GRANTED" if granted else "REFUSED"}
        assert preference(await my_settings(client, token), "EMAIL", "NEWSLETTER") is granted
        await ledger_verifies(database)

    async def test_an_expired_request_cannot_be_answered(self, client, database) -> None:
        token = await a_teen(client)
        await asked(client, token, [NEWSLETTER])
        link = await newest_link(database)
        async with database.transaction() as session:
            await session.execute(
                update(ParentalRequest).values(decide_by=utcnow() - timedelta(seconds=1))
            )

        shown = await client.get(link)
        posted = await answer(client, link, {NEWSLETTER: "grant"})

        assert (shown.status_code, posted.status_code) == (410, 410)
        assert "expired" in shown.text and "expired" in posted.text
        assert await statuses(client, token) == {NEWSLETTER: "EXPIRED"}
        assert preference(await my_settings(client, token), "EMAIL", "NEWSLETTER") is False

    @pytest.mark.parametrize(
        "link",
        [
            "/parental-consent",
            "/parental-consent?token=",
            "/parental-consent?token=not-a-token",
            "/parental-consent?token=" + "x" * 5000,
        ],
    )
    async def test_links_that_are_not_valid_answer_clearly(self, client, link) -> None:
        for response in (
            await client.get(link),
            await answer(client, link, {NEWSLETTER: "grant"}),
            await withdraw(client, link),
        ):
            assert response.status_code == 404
            assert "This link is not valid" in response.text

    async def test_a_post_without_an_action_changes_nothing(self, client, database) -> None:
        token = await a_teen(client)
        await asked(client, token, [NEWSLETTER])
        response = await client.post(await newest_link(database), data={NEWSLETTER: "grant"})
        assert response.status_code == 400
        assert await statuses(client, token) == {NEWSLETTER: "PENDING"}


class TestWithdrawal:
    async def test_through_the_link_in_a_later_message(self, client, database) -> None:
        token, first = await granted_newsletter(client, database)
        await asked(client, token, [RESEARCH])  # a later message to the same parent
        later = await newest_link(database)
        assert later != first

        shown = await client.get(later)
        assert shown.status_code == 200
        assert "Withdraw my consent" in shown.text
        response = await client.post(
            later, data={"action": "withdraw"}, headers={"X-Request-ID": "parent-withdraws-1"}
        )

        assert response.status_code == 200
        assert "Your consent is withdrawn" in response.text
        assert preference(await my_settings(client, token), "EMAIL", "NEWSLETTER") is False
        body = await gql(client, CONSENTS, token=token)
        newest_request_first = body["data"]["me"]["parentalConsents"]
        assert [c["key"] for c in newest_request_first] == [RESEARCH, NEWSLETTER]
        withdrawn = newest_request_first[1]
        assert withdrawn["status"] == "WITHDRAWN" and withdrawn["withdrawnAt"] is not None
        [newest, *_] = await events(client, token)
        assert (newest["key"], newest["newValue"], newest["actor"], newest["requestId"]) == (
            NEWSLETTER,
            "false",
            "PARENT",
            "parent-withdraws-1",
        )
        assert await newsletter_refusal(client, token) == ["PARENTAL_CONSENT_REQUIRED"]
        # The pending request can still be answered through the same link.
        assert (await answer(client, later, {RESEARCH: "grant"})).status_code == 200
        assert sharing(await my_settings(client, token), "RESEARCH") is True
        await ledger_verifies(database)

    async def test_withdrawing_twice_changes_nothing_the_second_time(
        self, client, database
    ) -> None:
        token, link = await granted_newsletter(client, database)
        assert (await withdraw(client, link)).status_code == 200
        written = len(await events(client, token))
        again = await withdraw(client, link)
        assert again.status_code == 200
        assert "nothing to withdraw" in again.text
        assert len(await events(client, token)) == written

    async def test_another_parents_link_does_not_withdraw(self, client, database) -> None:
        token, _ = await granted_newsletter(client, database)
        await asked(client, token, [RESEARCH], parent="other.parent@example.net")
        response = await withdraw(client, await newest_link(database))
        assert "nothing to withdraw" in response.text
        assert preference(await my_settings(client, token), "EMAIL", "NEWSLETTER") is True


def sixteenth_birthday_in(days: int) -> Any:
    today = today_everywhere(utcnow()) + timedelta(days=days)
    return today.replace(year=today.year - 16)


class TestAgeRules:
    async def test_a_stricter_age_table_keeps_what_a_parent_granted(
        self, client, database, monkeypatch
    ) -> None:
        token, _ = await granted_newsletter(client, database)
        monkeypatch.setitem(age.DIGITAL_CONSENT_AGE, "DE", 18)

        report = await apply_age_rules(database)

        assert report == AgeRulesReport(protected=0, failed=0)
        assert preference(await my_settings(client, token), "EMAIL", "NEWSLETTER") is True


class TestComingOfAge:
    async def test_a_grant_lapses_on_the_birthday_and_the_teens_choice_stands(
        self, client, database
    ) -> None:
        token, link = await granted_newsletter(client, database)
        await set_birth_date(database, "teen@x.org", sixteenth_birthday_in(days=1))
        assert await statuses(client, token) == {NEWSLETTER: "GRANTED"}

        await set_birth_date(database, "teen@x.org", sixteenth_birthday_in(days=0))

        body = await gql(client, CONSENTS, token=token)
        assert body["data"]["me"]["isMinor"] is False
        assert await statuses(client, token) == {NEWSLETTER: "LAPSED"}
        assert preference(await my_settings(client, token), "EMAIL", "NEWSLETTER") is True
        shown = await client.get(link)
        assert shown.status_code == 410 and "now decides alone" in shown.text
        written = len(await events(client, token))
        withdrawn = await withdraw(client, link)
        assert withdrawn.status_code == 410
        assert len(await events(client, token)) == written
        assert preference(await my_settings(client, token), "EMAIL", "NEWSLETTER") is True
        # Their own choice from now on, either way.
        toggle = {"channel": "EMAIL", "topic": "NEWSLETTER"}
        await changed(
            client, "setCommunicationPreference", {**toggle, "enabled": False}, token=token
        )
        await changed(
            client, "setDataSharing", {"purpose": "RESEARCH", "enabled": True}, token=token
        )
        payload = await ask(client, token, [NEWSLETTER])
        assert [e["code"] for e in payload["errors"]] == ["PARENTAL_CONSENT_NOT_NEEDED"]

    async def test_an_unanswered_request_cannot_be_answered_after_the_birthday(
        self, client, database
    ) -> None:
        token = await a_teen(client)
        await asked(client, token, [NEWSLETTER])
        await set_birth_date(database, "teen@x.org", sixteenth_birthday_in(days=0))
        response = await answer(client, await newest_link(database), {NEWSLETTER: "grant"})
        assert response.status_code == 410
        assert preference(await my_settings(client, token), "EMAIL", "NEWSLETTER") is False


class TestWhatIsKept:
    async def test_the_parents_address_is_not_kept_once_the_message_is_sent(
        self, client, database
    ) -> None:
        await granted_newsletter(client, database)

        async def tables_holding(address: str) -> set[str]:
            found = set()
            async with database.session() as session:
                for table in Base.metadata.sorted_tables:
                    rows = (await session.execute(select(table))).all()
                    if any(address in str(value).lower() for row in rows for value in row):
                        found.add(table.name)
            return found

        assert await tables_holding(PARENT) == {"notifications"}
        async with database.transaction() as session:
            sent = [message.id for message in await notifications.pending(session)]
            await notifications.mark_sent(session, sent)
        assert await tables_holding(PARENT) == set()
        async with database.session() as session:
            [request] = await session.scalars(select(ParentalRequest))
            raw = await session.execute(text("SELECT recipient FROM notifications"))
        assert re.fullmatch(r"[0-9a-f]{64}", request.parent_email_hash)
        assert {row[0] for row in raw} >= {notifications.REMOVED}

    async def test_the_export_shows_the_grants(self, client, database) -> None:
        token = await a_teen(client)
        await asked(client, token, [NEWSLETTER, RESEARCH])
        await answer(client, await newest_link(database), {NEWSLETTER: "grant", RESEARCH: "refuse"})

        document = await download(client, token)

        # parental_consents came with 1.3; later minor versions only add members
        assert tuple(map(int, document["version"].split("."))) >= (1, 3)
        consents = {item["key"]: item for item in document["parental_consents"]}
        assert {key: item["status"] for key, item in consents.items()} == {
            NEWSLETTER: "granted",
            RESEARCH: "refused",
        }
        assert consents[NEWSLETTER]["decided_at"] is not None
        by_parent = [e for e in document["consent_history"] if e["actor"] == "parent"]
        assert [e["key"] for e in by_parent] == [NEWSLETTER]
        assert uuid.UUID(by_parent[0]["actor_id"])
        assert PARENT not in str(document["parental_consents"])
