"""Cookie choices of signed-out visitors: the banner before sign-in, on both databases."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, text, update
from sqlalchemy.exc import DBAPIError

from auth.devices import DEVICE_COOKIE, DEVICE_HEADER, device_hash
from models import Visitor, VisitorConsentEvent, utcnow
from resolvers.visitors import verify_visitor_ledgers
from tests.helpers import (
    LOGIN,
    PASSWORD,
    birth_date_for_age,
    changed,
    count_statements,
    events,
    gql,
    post,
    run_cli,
    signed_up,
    signed_up_through_the_api,
)
from tests.test_export import download

CONSENT_FIELDS = "functional analytics advertising gpcApplied gpcConflict updatedAt"
HISTORY_FIELDS = "id key oldValue newValue actor source"
CHOOSE = f"""
mutation Choose($input: CookieConsentInput!) {{
  setCookieConsent(input: $input) {{
    account {{ id }}
    cookieConsent {{ {CONSENT_FIELDS} }}
    visitor {{ expiresAt consentHistory {{ {HISTORY_FIELDS} }} }}
    errors {{ field code }}
  }}
}}
"""
READ = f"""
query {{
  cookieConsent {{ {CONSENT_FIELDS} }}
  visitor {{ expiresAt consentHistory {{ {HISTORY_FIELDS} }} }}
}}
"""
GPC = {"Sec-GPC": "1"}


async def choose(
    client: httpx.AsyncClient, headers: dict[str, str] | None = None, **choices: bool
) -> tuple[dict[str, Any], httpx.Response]:
    """A signed-out cookie choice that must succeed: its payload and the HTTP response."""
    response = await post(client, CHOOSE, {"input": choices}, headers=headers)
    body = response.json()
    assert "errors" not in body, body
    payload: dict[str, Any] = body["data"]["setCookieConsent"]
    assert payload["errors"] == [], payload
    return payload, response


async def read(client: httpx.AsyncClient, headers: dict[str, str] | None = None) -> dict[str, Any]:
    body = await gql(client, READ, headers=headers)
    assert "errors" not in body, body
    data: dict[str, Any] = body["data"]
    return data


def consent(payload: dict[str, Any]) -> tuple[bool, bool, bool]:
    cookies = payload["cookieConsent"]
    return cookies["functional"], cookies["analytics"], cookies["advertising"]


async def count(database: Any, model: Any) -> int:
    async with database.session() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


class TestChoiceThroughTheCookie:
    async def test_reading_before_any_choice_shows_defaults_and_stores_nothing(
        self, client, database
    ) -> None:
        response = await post(client, READ)

        assert consent(response.json()["data"]) == (False, False, False)
        assert response.json()["data"]["visitor"] is None
        assert DEVICE_COOKIE not in response.cookies
        assert await count(database, Visitor) == 0

    async def test_first_choice_gives_the_device_an_httponly_cookie(self, client) -> None:
        payload, response = await choose(client, analytics=True)

        assert payload["account"] is None
        assert consent(payload) == (False, True, False)
        [cookie] = [c for c in response.headers.get_list("set-cookie") if DEVICE_COOKIE in c]
        attributes = cookie.lower()
        assert "httponly" in attributes and "samesite=lax" in attributes
        assert "secure" not in attributes  # development serves plain HTTP
        [event] = payload["visitor"]["consentHistory"]
        assert (event["key"], event["oldValue"], event["newValue"]) == (
            "cookies.analytics",
            None,
            "true",
        )
        assert (event["actor"], event["source"]) == ("PERSON", "WEB")

    async def test_the_cookie_brings_the_choices_back_and_left_out_stay(self, client) -> None:
        await choose(client, analytics=True, functional=True)
        await choose(client, analytics=False)

        data = await read(client)

        assert consent(data) == (True, False, False)
        history = data["visitor"]["consentHistory"]
        assert [(e["key"], e["oldValue"], e["newValue"]) for e in history] == [
            ("cookies.analytics", "true", "false"),
            ("cookies.analytics", None, "true"),
            ("cookies.functional", None, "true"),
        ]

    async def test_reading_costs_the_same_however_long_the_history(self, app, client) -> None:
        engine = app.state.services.database.engine
        await choose(client, analytics=True)
        banner = f"{{ cookieConsent {{ {CONSENT_FIELDS} }} }}"
        with count_statements(engine) as short:
            await gql(client, banner)
        for turn in range(10):
            await choose(client, analytics=turn % 2 == 0, functional=turn % 2 == 1)
        with count_statements(engine) as long:
            await gql(client, banner)

        # The device's record, and the newest event of each category in one statement.
        assert len(short) == len(long) == 2, short

    async def test_the_same_choice_again_records_nothing(self, client, database) -> None:
        await choose(client, advertising=True)
        await choose(client, advertising=True)

        assert await count(database, VisitorConsentEvent) == 1
        assert await count(database, Visitor) == 1

    async def test_a_cookie_on_a_possible_form_post_is_not_used(self, client) -> None:
        await choose(client, analytics=True)
        # A plain GET is what a link on another site can make a browser send, cookies and all.
        linked = await client.get("/graphql", params={"query": "{ cookieConsent { analytics } }"})

        assert linked.json()["data"]["cookieConsent"]["analytics"] is False

    async def test_production_marks_the_cookie_secure(self, production_client) -> None:
        _, response = await choose(production_client, functional=True)

        [cookie] = [c for c in response.headers.get_list("set-cookie") if DEVICE_COOKIE in c]
        assert "secure" in cookie.lower()

    async def test_new_visitors_are_limited_per_client(self, client) -> None:
        for _ in range(60):
            client.cookies.clear()
            await choose(client, functional=True)
        kept = dict(client.cookies)
        client.cookies.clear()

        body = await gql(client, CHOOSE, {"input": {"functional": True}})

        assert [e["code"] for e in body["data"]["setCookieConsent"]["errors"]] == ["RATE_LIMITED"]
        # A visitor that already has a record keeps choosing.
        client.cookies.update(kept)
        payload, _ = await choose(client, analytics=True)
        assert consent(payload) == (True, True, False)


class TestChoiceThroughTheHeader:
    async def test_an_app_gets_its_id_in_a_header_and_sends_it_back(self, client) -> None:
        _, response = await choose(client, functional=True)
        device_id = response.headers[DEVICE_HEADER]
        client.cookies.clear()  # an app keeps no cookies

        await choose(client, headers={DEVICE_HEADER: device_id}, analytics=True)
        data = await read(client, headers={DEVICE_HEADER: device_id})

        assert consent(data) == (True, True, False)
        newest = data["visitor"]["consentHistory"][0]
        assert (newest["key"], newest["source"]) == ("cookies.analytics", "API")
        assert consent(await read(client)) == (False, False, False)  # without the header

    async def test_an_id_we_did_not_issue_is_replaced_not_adopted(self, client, database) -> None:
        made_up = "A" * 43

        _, response = await choose(client, headers={DEVICE_HEADER: made_up}, analytics=True)

        issued = response.headers[DEVICE_HEADER]
        assert issued != made_up
        async with database.session() as session:
            stored = list(await session.scalars(select(Visitor.device_hash)))
        # Only the hash of the id is kept.
        assert stored == [device_hash(issued)]
        assert issued not in stored


class TestGlobalPrivacyControl:
    async def test_a_signal_turns_the_visitors_advertising_off(self, client) -> None:
        await choose(client, advertising=True, analytics=True)

        data = await read(client, headers=GPC)

        assert consent(data) == (False, True, False)
        assert data["cookieConsent"]["gpcApplied"] is True
        newest = data["visitor"]["consentHistory"][0]
        assert (newest["key"], newest["newValue"], newest["actor"], newest["source"]) == (
            "cookies.advertising",
            "false",
            "GPC",
            "GPC",
        )

    async def test_a_choice_made_against_the_signal_stands(self, client) -> None:
        payload, _ = await choose(client, headers=GPC, advertising=True)

        assert consent(payload) == (False, False, True)
        assert payload["cookieConsent"]["gpcConflict"] is True
        history = payload["visitor"]["consentHistory"]
        assert [(e["actor"], e["newValue"]) for e in history] == [
            ("PERSON", "true"),
            ("GPC", "false"),
        ]
        data = await read(client, headers=GPC)
        assert consent(data) == (False, False, True)

    async def test_a_signal_without_a_record_stores_nothing(self, client, database) -> None:
        data = await read(client, headers=GPC)

        assert data["cookieConsent"]["gpcApplied"] is True
        assert data["cookieConsent"]["advertising"] is False
        assert await count(database, Visitor) == 0


class TestVisitorLedger:
    async def test_every_visitor_chain_verifies(self, client, database) -> None:
        await choose(client, analytics=True, functional=True)
        await read(client, headers=GPC)
        client.cookies.clear()
        await choose(client, advertising=True)

        async with database.session() as session:
            checked, broken = await verify_visitor_ledgers(session)

        assert (checked, broken) == (4, None)

    async def test_events_cannot_be_changed(self, client, database) -> None:
        await choose(client, analytics=True)

        with pytest.raises(DBAPIError, match="append-only"):
            async with database.transaction() as session:
                await session.execute(update(VisitorConsentEvent).values(new_value="false"))

    async def test_a_removed_newest_event_is_found(self, client, database) -> None:
        await choose(client, analytics=True)
        await choose(client, functional=True)
        async with database.transaction() as session:
            newest = await session.scalar(select(func.max(VisitorConsentEvent.id)))
            await session.execute(
                text("DELETE FROM visitor_consent_events WHERE id = :id"), {"id": newest}
            )

        async with database.session() as session:
            _, broken = await verify_visitor_ledgers(session)

        assert broken is not None and "later events are missing" in broken.reason


async def account_cookies(client: httpx.AsyncClient, token: str) -> tuple[bool, bool, bool]:
    body = await gql(client, f"{{ me {{ cookieConsent {{ {CONSENT_FIELDS} }} }} }}", token=token)
    return consent(body["data"]["me"])


class TestMergeIntoAccount:
    async def test_signup_carries_the_visitors_choices(self, client, database) -> None:
        await choose(client, analytics=True, functional=True)

        token = await signed_up_through_the_api(client)
        client.cookies.delete("privacy_session")

        assert await account_cookies(client, token) == (True, True, False)
        device = [e for e in await events(client, token) if e["source"] == "DEVICE"]
        assert sorted((e["key"], e["newValue"], e["actor"]) for e in device) == [
            ("cookies.analytics", "true", "PERSON"),
            ("cookies.functional", "true", "PERSON"),
        ]
        # The choices now live in the account; the device's record is gone.
        assert (await read(client))["visitor"] is None
        assert await count(database, Visitor) == 0

    async def test_login_carries_newer_choices_and_keeps_newer_ones_of_the_account(
        self, client
    ) -> None:
        token = await signed_up(client)
        client.cookies.clear()
        await changed(client, "setCookieConsent", {"advertising": True}, token=token)
        # Later, signed out on another device: analytics on, advertising and functional off.
        await choose(client, analytics=True, advertising=False, functional=False)
        # Then, elsewhere, the account turns functional on: newer than the device's choice.
        await changed(client, "setCookieConsent", {"functional": True}, token=token)

        body = await gql(
            client, LOGIN, {"input": {"email": "ada@example.com", "password": PASSWORD}}
        )
        assert body["data"]["login"]["errors"] == []

        # functional: the account's choice is newer; analytics and advertising: the device's.
        assert await account_cookies(client, token) == (True, True, False)
        device = [e for e in await events(client, token) if e["source"] == "DEVICE"]
        assert sorted((e["key"], e["newValue"]) for e in device) == [
            ("cookies.advertising", "false"),
            ("cookies.analytics", "true"),
        ]

    async def test_login_from_an_app_carries_the_choices_named_by_header(self, client) -> None:
        await signed_up(client)
        client.cookies.clear()
        _, response = await choose(client, functional=True)
        device_id = response.headers[DEVICE_HEADER]
        client.cookies.clear()

        body = await gql(
            client,
            LOGIN,
            {"input": {"email": "ada@example.com", "password": PASSWORD}},
            headers={DEVICE_HEADER: device_id},
        )
        token = body["data"]["login"]["token"]
        client.cookies.clear()

        assert await account_cookies(client, token) == (True, False, False)

    async def test_the_export_holds_the_carried_choices_and_stays_valid(self, client) -> None:
        await choose(client, advertising=True)
        token = await signed_up_through_the_api(client)
        client.cookies.clear()

        document = await download(client, token)  # validated against docs/export-schema.json

        assert [
            (event["key"], event["new_value"])
            for event in document["consent_history"]
            if event["source"] == "device"
        ] == [("cookies.advertising", "true")]

    async def test_a_minor_gets_only_what_a_minor_may_choose(self, client) -> None:
        await choose(client, analytics=True)

        token = await signed_up(client, birthDate=birth_date_for_age(14).isoformat(), country="DE")
        client.cookies.clear()

        assert await account_cookies(client, token) == (False, False, False)


class TestVerifyLedgerCommand:
    async def test_a_broken_visitor_chain_fails_the_check(
        self, client, database, database_url, tmp_path
    ) -> None:
        await choose(client, analytics=True)
        await choose(client, functional=True)
        intact = await run_cli(database_url, tmp_path, "verify-ledger")
        async with database.transaction() as session:
            newest = await session.scalar(select(func.max(VisitorConsentEvent.id)))
            await session.execute(
                text("DELETE FROM visitor_consent_events WHERE id = :id"), {"id": newest}
            )

        broken = await run_cli(database_url, tmp_path, "verify-ledger")

        assert intact[0] == 0, intact
        assert (broken[0], "a signed-out visitor's chain" in broken[2]) == (1, True), broken


class TestExpiry:
    async def test_purge_removes_visitors_past_their_time(
        self, client, database, database_url, tmp_path
    ) -> None:
        await choose(client, analytics=True)
        client.cookies.clear()
        _, fresh = await choose(client, functional=True)
        async with database.transaction() as session:
            await session.execute(
                update(Visitor)
                .where(Visitor.device_hash != device_hash(fresh.headers[DEVICE_HEADER]))
                .values(last_choice_at=utcnow() - timedelta(days=31))
            )

        code, out, err = await run_cli(
            database_url, tmp_path, "purge", PRIVACY_API_VISITOR_RETENTION_DAYS="30"
        )

        assert code == 0, err
        assert "1 signed-out visitors' cookie choices older than 30 days" in out
        assert await count(database, Visitor) == 1
        assert await count(database, VisitorConsentEvent) == 1
        assert consent(await read(client)) == (True, False, False)

    async def test_the_record_says_when_it_expires(self, client) -> None:
        payload, response = await choose(client, functional=True)

        cookie = next(c for c in response.headers.get_list("set-cookie") if DEVICE_COOKIE in c)
        assert f"max-age={395 * 24 * 60 * 60}" in cookie.lower()
        expires_at = datetime.fromisoformat(payload["visitor"]["expiresAt"])
        assert expires_at > utcnow() + timedelta(days=394)
