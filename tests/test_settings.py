"""Privacy settings over HTTP: catalogue, defaults, changes, minors, retries, GPC, history."""

from __future__ import annotations

import base64
import json
import uuid
from itertools import product
from typing import Any

import httpx
from alembic import command
from sqlalchemy import select
from sqlalchemy.engine import Connection

from models import ConsentActor, Database, Source, WebhookEvent
from privacy_api.cli import alembic_config
from resolvers.catalogue import LegalBasis, SettingDefinition, SettingGroup, SettingKind
from resolvers.consent import Provenance
from resolvers.settings import write_settings
from tests.conftest import SEED_POLICY_VERSION
from tests.helpers import (
    HISTORY,
    ME_SETTINGS,
    assert_unauthenticated,
    birth_date_for_age,
    change,
    changed,
    codes,
    count_events,
    events,
    gql,
    history,
    my_settings,
    new_account,
    post,
    preference,
    run_cli,
    settings_mutation,
    signed_up,
    signed_up_through_the_api,
    signup,
)

CHANNELS = ["EMAIL", "SMS", "PUSH"]
TOPICS = [
    "SERVICE_UPDATES",
    "SECURITY_ALERTS",
    "NEWSLETTER",
    "MARKETING",
    "RECOMMENDATIONS",
    "SURVEYS_AND_PROMOTIONS",
]
CONSENT_TOPICS = ["NEWSLETTER", "MARKETING", "RECOMMENDATIONS", "SURVEYS_AND_PROMOTIONS"]
PURPOSES = ["USAGE_ANALYTICS", "PERSONALIZATION", "RESEARCH"]

CATALOGUE = """
{
  privacyCatalogue {
    key group kind defaultValue legalBasis locked withheldFromMinors requiresPhone description
    channel topic purpose cookieCategory
  }
}
"""
SET_PREFERENCE = "setCommunicationPreference"
EMAIL_MARKETING = "communication.email.marketing"
GPC = {"Sec-GPC": "1"}


def toggle(channel: str, topic: str, enabled: bool, **extra: Any) -> dict[str, Any]:
    return {"channel": channel, "topic": topic, "enabled": enabled, **extra}


def summary(nodes: list[dict[str, Any]]) -> list[tuple[str, str | None, str, str, str]]:
    """Consent events as (key, old, new, actor, source), sorted: for changes made together."""
    return sorted((n["key"], n["oldValue"], n["newValue"], n["actor"], n["source"]) for n in nodes)


async def catalogue(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    body = await gql(client, CATALOGUE)
    assert "errors" not in body, body
    entries: list[dict[str, Any]] = body["data"]["privacyCatalogue"]
    return entries


class TestPrivacyCatalogue:
    async def test_needs_no_sign_in_and_lists_every_setting(self, client) -> None:
        entries = await catalogue(client)

        pairs = [(e["channel"], e["topic"]) for e in entries if e["group"] == "COMMUNICATION"]
        assert sorted(pairs) == sorted(product(CHANNELS, TOPICS))
        purposes = {e["purpose"] for e in entries if e["group"] == "DATA_SHARING"}
        # No sharing with partners for their marketing: the policy says we do not sell or trade.
        assert purposes == {"USAGE_ANALYTICS", "PERSONALIZATION", "RESEARCH"}
        visibility = {
            e["key"]: (e["kind"], e["defaultValue"]) for e in entries if e["group"] == "VISIBILITY"
        }
        assert visibility == {
            "visibility.profile": ("AUDIENCE", "PRIVATE"),
            "visibility.email": ("AUDIENCE", "PRIVATE"),
            "visibility.phone": ("AUDIENCE", "PRIVATE"),
            "visibility.search_engine_indexing": ("TOGGLE", "false"),
        }
        cookies = {
            e["cookieCategory"]: e["defaultValue"] for e in entries if e["group"] == "COOKIES"
        }
        assert cookies == {
            "STRICTLY_NECESSARY": "true",
            "FUNCTIONAL": "false",
            "ANALYTICS": "false",
            "ADVERTISING": "false",
        }
        assert len({e["key"] for e in entries}) == len(entries)
        assert all(e["description"].strip() for e in entries)

    async def test_consent_based_entries_start_off_and_are_withheld_from_minors(
        self, client
    ) -> None:
        by_consent = [e for e in await catalogue(client) if e["legalBasis"] == "CONSENT"]

        assert {e["defaultValue"] for e in by_consent} == {"false", "PRIVATE"}
        assert all(e["withheldFromMinors"] for e in by_consent)
        topics = {e["topic"] for e in by_consent if e["group"] == "COMMUNICATION"}
        assert topics == set(CONSENT_TOPICS)

    async def test_security_alerts_by_email_are_locked_on(self, client) -> None:
        entries = await catalogue(client)

        locked = {e["key"]: e["defaultValue"] for e in entries if e["locked"]}
        assert locked == {
            "communication.email.security_alerts": "true",
            "cookies.strictly_necessary": "true",
        }
        needing_phone = {e["key"] for e in entries if e["requiresPhone"]}
        assert needing_phone == {e["key"] for e in entries if e["channel"] == "SMS"}


class TestMySettings:
    async def test_anonymous_caller_gets_null(self, client) -> None:
        assert await gql(client, ME_SETTINGS) == {"data": {"me": None}}

    async def test_a_new_account_starts_private_with_consent_off(self, client) -> None:
        token = await signed_up(client)

        me = await my_settings(client, token)

        assert me["isMinor"] is False
        prefs = {(p["channel"], p["topic"]): p for p in me["communicationPreferences"]}
        assert len(prefs) == len(CHANNELS) * len(TOPICS)
        assert not any(prefs[pair]["enabled"] for pair in product(CHANNELS, CONSENT_TOPICS))
        assert [pair for pair, p in prefs.items() if p["locked"]] == [("EMAIL", "SECURITY_ALERTS")]
        assert prefs[("EMAIL", "SECURITY_ALERTS")]["enabled"] is True
        assert all(p["updatedAt"] for p in prefs.values())  # recorded at signup
        assert {s["purpose"]: s["enabled"] for s in me["dataSharing"]} == dict.fromkeys(
            PURPOSES, False
        )
        assert me["visibility"] == {
            "profile": "PRIVATE",
            "email": "PRIVATE",
            "phone": "PRIVATE",
            "searchEngineIndexing": False,
        }
        cookies = me["cookieConsent"]
        assert cookies["strictlyNecessary"] is True
        assert (cookies["functional"], cookies["analytics"], cookies["advertising"]) == (
            False,
            False,
            False,
        )
        assert cookies["gpcApplied"] is False


class TestSetCommunicationPreference:
    async def test_anonymous_caller_is_refused(self, client) -> None:
        variables = {"input": toggle("EMAIL", "MARKETING", True)}
        assert_unauthenticated(await gql(client, settings_mutation(SET_PREFERENCE), variables))

    async def test_security_alerts_by_email_cannot_be_switched_off(self, client, database) -> None:
        token = await signed_up(client)
        before, stored = await my_settings(client, token), await count_events(database)

        payload = await change(
            client, SET_PREFERENCE, toggle("EMAIL", "SECURITY_ALERTS", False), token=token
        )

        assert codes(payload) == ["SETTING_LOCKED"]
        assert payload["account"] is None
        assert await my_settings(client, token) == before
        assert await count_events(database) == stored

    async def test_text_messages_need_a_phone(self, client, database) -> None:
        token = await signed_up(client)
        before, stored = await my_settings(client, token), await count_events(database)

        payload = await change(
            client, SET_PREFERENCE, toggle("SMS", "NEWSLETTER", True), token=token
        )

        assert codes(payload) == ["PHONE_REQUIRED"]
        assert await my_settings(client, token) == before
        assert await count_events(database) == stored

    async def test_text_messages_work_with_the_phone_given_at_signup(self, client) -> None:
        token = await signed_up(client, phone="+447400123456", country="GB")

        account = await changed(
            client, SET_PREFERENCE, toggle("SMS", "NEWSLETTER", True), token=token
        )

        assert preference(account, "SMS", "NEWSLETTER") is True

    async def test_switching_one_on_shows_in_me_and_in_the_history(self, client) -> None:
        token = await signed_up(client)
        headers = {"X-Client-Source": "mobile", "X-Request-ID": "mobile-retry-0001"}

        response = await post(
            client,
            settings_mutation(SET_PREFERENCE),
            {"input": toggle("EMAIL", "MARKETING", True)},
            token=token,
            headers=headers,
        )

        payload = response.json()["data"][SET_PREFERENCE]
        assert payload["errors"] == []
        assert preference(payload["account"], "EMAIL", "MARKETING") is True
        me = await my_settings(client, token)
        assert preference(me, "EMAIL", "MARKETING") is True
        assert preference(me, "PUSH", "MARKETING") is False
        assert response.headers["X-Request-ID"] == "mobile-retry-0001"
        assert (await events(client, token))[0] == {
            "key": EMAIL_MARKETING,
            "oldValue": "false",
            "newValue": "true",
            "actor": "PERSON",
            "source": "MOBILE",
            "policyVersion": SEED_POLICY_VERSION,
            "requestId": "mobile-retry-0001",
        }

    async def test_without_a_source_header_a_token_is_api_and_the_cookie_is_web(
        self, client
    ) -> None:
        token = await signed_up_through_the_api(client)  # the web frontend's cookie is set as well

        await changed(client, SET_PREFERENCE, toggle("EMAIL", "MARKETING", True), token=token)
        await changed(client, SET_PREFERENCE, toggle("EMAIL", "MARKETING", False))

        newest = await events(client, token, key=EMAIL_MARKETING)
        assert [(e["newValue"], e["source"]) for e in newest[:2]] == [
            ("false", "WEB"),
            ("true", "API"),
        ]

    async def test_the_same_value_again_succeeds_and_records_nothing(
        self, client, database
    ) -> None:
        token = await signed_up(client)
        await changed(client, SET_PREFERENCE, toggle("EMAIL", "MARKETING", True), token=token)
        stored = await count_events(database)

        again = await changed(
            client, SET_PREFERENCE, toggle("EMAIL", "MARKETING", True), token=token
        )

        assert preference(again, "EMAIL", "MARKETING") is True
        assert await count_events(database) == stored


class TestUpdateCommunicationPreferences:
    OPERATION = "updateCommunicationPreferences"

    async def test_anonymous_caller_is_refused(self, client) -> None:
        variables = {"input": {"changes": [toggle("EMAIL", "MARKETING", True)]}}
        assert_unauthenticated(await gql(client, settings_mutation(self.OPERATION), variables))

    async def test_an_empty_list_is_invalid(self, client, database) -> None:
        token = await signed_up(client)
        stored = await count_events(database)

        payload = await change(client, self.OPERATION, {"changes": []}, token=token)

        assert [(e["field"], e["code"]) for e in payload["errors"]] == [
            ("changes", "INVALID_INPUT")
        ]
        assert await count_events(database) == stored

    async def test_contradictory_duplicates_are_invalid(self, client, database) -> None:
        token = await signed_up(client)
        before, stored = await my_settings(client, token), await count_events(database)
        changes = [
            toggle("PUSH", "NEWSLETTER", True),
            toggle("EMAIL", "MARKETING", True),
            toggle("EMAIL", "MARKETING", False),
        ]

        payload = await change(client, self.OPERATION, {"changes": changes}, token=token)

        assert codes(payload) == ["INVALID_INPUT"]
        assert await my_settings(client, token) == before
        assert await count_events(database) == stored

    async def test_one_refused_change_means_none_is_made(self, client, database) -> None:
        token = await signed_up(client)
        before, stored = await my_settings(client, token), await count_events(database)
        changes = [
            toggle("EMAIL", "MARKETING", True),
            toggle("PUSH", "NEWSLETTER", True),
            toggle("EMAIL", "SECURITY_ALERTS", False),
        ]

        payload = await change(client, self.OPERATION, {"changes": changes}, token=token)

        assert codes(payload) == ["SETTING_LOCKED"]
        assert payload["account"] is None
        assert await my_settings(client, token) == before
        assert await count_events(database) == stored

    async def test_makes_every_change_with_one_event_each(self, client) -> None:
        token = await signed_up(client)
        changes = [
            toggle("EMAIL", "MARKETING", True),
            toggle("PUSH", "NEWSLETTER", True),
            toggle("PUSH", "SERVICE_UPDATES", False),
            toggle("EMAIL", "MARKETING", True),  # the same twice is one change
            toggle("EMAIL", "SERVICE_UPDATES", True),  # already on: no change
        ]

        account = await changed(client, self.OPERATION, {"changes": changes}, token=token)

        assert preference(account, "EMAIL", "MARKETING") is True
        assert preference(account, "PUSH", "NEWSLETTER") is True
        assert preference(account, "PUSH", "SERVICE_UPDATES") is False
        assert preference(account, "EMAIL", "SERVICE_UPDATES") is True
        newest = await events(client, token)
        assert summary(newest[:3]) == [
            (EMAIL_MARKETING, "false", "true", "PERSON", "API"),
            ("communication.push.newsletter", "false", "true", "PERSON", "API"),
            ("communication.push.service_updates", "true", "false", "PERSON", "API"),
        ]
        assert len({e["requestId"] for e in newest[:3]}) == 1
        assert newest[3]["actor"] == "SIGNUP"


class TestSetDataSharing:
    OPERATION = "setDataSharing"

    async def test_anonymous_caller_is_refused(self, client) -> None:
        variables = {"input": {"purpose": "RESEARCH", "enabled": True}}
        assert_unauthenticated(await gql(client, settings_mutation(self.OPERATION), variables))

    async def test_turns_one_purpose_on(self, client) -> None:
        token = await signed_up(client)

        account = await changed(
            client, self.OPERATION, {"purpose": "RESEARCH", "enabled": True}, token=token
        )

        assert {s["purpose"]: s["enabled"] for s in account["dataSharing"]} == {
            **dict.fromkeys(PURPOSES, False),
            "RESEARCH": True,
        }
        assert (await my_settings(client, token))["dataSharing"] == account["dataSharing"]
        newest = (await events(client, token))[0]
        assert summary([newest]) == [("data_sharing.research", "false", "true", "PERSON", "API")]


class TestPartnerMarketingWithdrawn:
    """`data_sharing.third_party_marketing` left the catalogue: the policy says we do not sell,
    trade or rent personal information."""

    async def test_an_old_client_that_asks_for_it_gets_a_clear_error(
        self, client, database
    ) -> None:
        token = await signed_up(client)
        stored = await count_events(database)

        response = await post(
            client,
            settings_mutation("setDataSharing"),
            {"input": {"purpose": "THIRD_PARTY_MARKETING", "enabled": True}},
            token=token,
        )

        assert response.status_code < 500
        [error] = response.json()["errors"]
        assert "'THIRD_PARTY_MARKETING' does not exist in 'Purpose'" in error["message"]
        assert await count_events(database) == stored

    async def test_asking_a_parent_for_it_says_it_was_withdrawn(self, client) -> None:
        token = await signed_up(client, birthDate=birth_date_for_age(14).isoformat(), country="DE")

        body = await gql(
            client,
            PARENTAL_REQUEST,
            {"input": {"parentEmail": "parent@example.com", "keys": [WITHDRAWN]}},
            token=token,
        )

        [error] = body["data"]["requestParentalConsent"]["errors"]
        assert (error["field"], error["code"]) == ("keys", "INVALID_INPUT")
        assert "we do not sell, trade or rent" in error["message"]

    async def test_the_release_switches_choices_off_in_the_ledger_which_still_verifies(
        self, client, database, database_url, tmp_path
    ) -> None:
        sharer, sharer_token = await new_account(client, email="sharer@example.com")
        _, other_token = await new_account(client, email="other@example.com")
        await switched_on_as_the_old_release_did(database, sharer)

        await migrate_again(database, database_url)

        code, out, err = await run_cli(database_url, tmp_path, "verify-ledger")
        assert code == 0, (out, err)
        [newest, chosen, *_] = await events(client, sharer_token, key=WITHDRAWN)
        assert (newest["oldValue"], newest["newValue"]) == ("true", "false")
        assert (newest["actor"], newest["source"]) == ("SYSTEM", "CATALOGUE")
        assert (chosen["actor"], chosen["newValue"]) == ("PERSON", "true")
        assert await events(client, other_token, key=WITHDRAWN) == []
        me = await my_settings(client, sharer_token)
        assert {s["purpose"] for s in me["dataSharing"]} == set(PURPOSES)
        async with database.session() as session:
            payloads = [json.loads(p) for p in await session.scalars(select(WebhookEvent.payload))]
        told = [p["data"] for p in payloads if p["data"].get("key") == WITHDRAWN]
        assert [(d["accountId"], d["newValue"], d["source"]) for d in told][-1] == (
            sharer,
            "false",
            "catalogue",
        )
        # The chain goes on from the release's event.
        await changed(
            client, "setDataSharing", {"purpose": "RESEARCH", "enabled": True}, token=sharer_token
        )
        code, out, err = await run_cli(database_url, tmp_path, "verify-ledger")
        assert code == 0, (out, err)


WITHDRAWN = "data_sharing.third_party_marketing"
PARENTAL_REQUEST = """
mutation Ask($input: ParentalConsentInput!) {
  requestParentalConsent(input: $input) { errors { field message code } }
}
"""


async def switched_on_as_the_old_release_did(database: Database, account_id: str) -> None:
    """The person's choice of partner marketing, through the ledger as the release that offered
    it recorded it (the setting no longer has a catalogue entry)."""
    offered = SettingDefinition(
        key=WITHDRAWN,
        group=SettingGroup.DATA_SHARING,
        kind=SettingKind.TOGGLE,
        default=False,
        legal_basis=LegalBasis.CONSENT,
        description="Share your contact and usage data with partners for their marketing.",
    )
    async with database.transaction() as session:
        await write_settings(
            session,
            uuid.UUID(account_id),
            {offered: True},
            Provenance(ConsentActor.PERSON, Source.WEB),
        )


async def migrate_again(database: Database, database_url: str) -> None:
    """Take the database back to before this release's migration, and up again: as a deploy
    of the release finds a database the previous one left."""
    await database.engine.dispose()  # its pooled connections knew the tables as they were
    migrating = Database(database_url)
    try:
        async with migrating.engine.begin() as connection:
            await connection.run_sync(migrate, "0019_us_states-1", True)
        async with migrating.engine.begin() as connection:
            await connection.run_sync(migrate, "head")
    finally:
        await migrating.dispose()


def migrate(connection: Connection, revision: str, down: bool = False) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    (command.downgrade if down else command.upgrade)(config, revision)


class TestUpdateVisibility:
    OPERATION = "updateVisibility"

    async def test_anonymous_caller_is_refused(self, client) -> None:
        variables = {"input": {"profile": "MEMBERS"}}
        assert_unauthenticated(await gql(client, settings_mutation(self.OPERATION), variables))

    async def test_fields_left_out_stay_as_they_were(self, client) -> None:
        token = await signed_up(client)
        first = {"profile": "MEMBERS", "email": "PUBLIC", "searchEngineIndexing": True}
        await changed(client, self.OPERATION, first, token=token)

        account = await changed(client, self.OPERATION, {"phone": "MEMBERS"}, token=token)

        assert account["visibility"] == {
            "profile": "MEMBERS",
            "email": "PUBLIC",
            "phone": "MEMBERS",
            "searchEngineIndexing": True,
        }
        newest = await events(client, token)
        assert summary(newest[:1]) == [("visibility.phone", "PRIVATE", "MEMBERS", "PERSON", "API")]
        assert summary(newest[1:4]) == [
            ("visibility.email", "PRIVATE", "PUBLIC", "PERSON", "API"),
            ("visibility.profile", "PRIVATE", "MEMBERS", "PERSON", "API"),
            ("visibility.search_engine_indexing", "false", "true", "PERSON", "API"),
        ]


class TestSetCookieConsent:
    OPERATION = "setCookieConsent"

    async def test_signed_out_caller_chooses_as_a_visitor(self, client) -> None:
        # The cookie banner comes before sign-in: see tests/test_visitors.py.
        variables = {"input": {"analytics": True}}
        body = await gql(client, settings_mutation(self.OPERATION), variables)
        assert body["data"][self.OPERATION] == {"account": None, "errors": []}

    async def test_categories_left_out_stay_as_they_were(self, client) -> None:
        token = await signed_up(client)
        await changed(client, self.OPERATION, {"functional": True, "analytics": True}, token=token)

        account = await changed(client, self.OPERATION, {"analytics": False}, token=token)

        cookies = account["cookieConsent"]
        assert cookies["strictlyNecessary"] is True
        assert (cookies["functional"], cookies["analytics"], cookies["advertising"]) == (
            True,
            False,
            False,
        )
        assert cookies["updatedAt"] is not None
        analytics = await events(client, token, key="cookies.analytics")
        assert [e["newValue"] for e in analytics] == ["false", "true", "false"]


class TestOptOutOfMarketing:
    OPERATION = "optOutOfMarketing"

    async def test_anonymous_caller_is_refused(self, client) -> None:
        assert_unauthenticated(await gql(client, settings_mutation(self.OPERATION)))

    async def test_turns_every_consent_based_message_off_with_one_event_each(
        self, client, database
    ) -> None:
        token = await signed_up(client, phone="+447400123456")
        consent_based = list(product(CHANNELS, CONSENT_TOPICS))
        chosen = [toggle(*pair, True) for pair in consent_based]
        chosen.append(toggle("PUSH", "SERVICE_UPDATES", False))
        await changed(client, "updateCommunicationPreferences", {"changes": chosen}, token=token)
        stored = await count_events(database)

        response = await post(
            client,
            settings_mutation(self.OPERATION),
            token=token,
            headers={"X-Client-Source": "mobile"},
        )

        payload = response.json()["data"][self.OPERATION]
        assert payload["errors"] == []
        account = payload["account"]
        assert not any(preference(account, *pair) for pair in consent_based)
        assert preference(account, "EMAIL", "SERVICE_UPDATES") is True
        assert preference(account, "PUSH", "SERVICE_UPDATES") is False  # as the person left it
        assert preference(account, "EMAIL", "SECURITY_ALERTS") is True
        assert preference(account, "PUSH", "SECURITY_ALERTS") is True
        assert await count_events(database) == stored + len(consent_based)
        newest = (await events(client, token))[: len(consent_based)]
        assert summary(newest) == sorted(
            (f"communication.{channel}.{topic}".lower(), "true", "false", "PERSON", "MOBILE")
            for channel, topic in consent_based
        )
        assert {e["requestId"] for e in newest} == {response.headers["X-Request-ID"]}

    async def test_a_second_opt_out_records_nothing(self, client, database) -> None:
        token = await signed_up(client)
        await changed(client, SET_PREFERENCE, toggle("EMAIL", "MARKETING", True), token=token)
        await changed(client, self.OPERATION, token=token)
        stored = await count_events(database)

        await changed(client, self.OPERATION, {"idempotencyKey": None}, token=token)

        assert await count_events(database) == stored


MINOR = {"email": "teen@example.com", "country": "DE", "birthDate": birth_date_for_age(15)}


class TestMinors:
    async def test_a_15_year_old_in_germany_is_a_minor(self, client) -> None:
        token = await signed_up(client, **MINOR)
        assert (await my_settings(client, token))["isMinor"] is True

    async def test_switching_on_anything_consent_based_needs_a_parent(
        self, client, database
    ) -> None:
        token = await signed_up(client, **MINOR)
        before, stored = await my_settings(client, token), await count_events(database)
        attempts = [
            (SET_PREFERENCE, toggle("EMAIL", "MARKETING", True)),
            ("updateCommunicationPreferences", {"changes": [toggle("PUSH", "NEWSLETTER", True)]}),
            ("setDataSharing", {"purpose": "USAGE_ANALYTICS", "enabled": True}),
            ("setCookieConsent", {"analytics": True}),
        ]

        for operation, input in attempts:
            payload = await change(client, operation, input, token=token)
            assert codes(payload) == ["PARENTAL_CONSENT_REQUIRED"], operation
            assert payload["account"] is None

        assert await my_settings(client, token) == before
        assert await count_events(database) == stored

    async def test_nothing_can_be_made_public_or_indexed(self, client, database) -> None:
        token = await signed_up(client, **MINOR)
        before, stored = await my_settings(client, token), await count_events(database)
        attempts = [
            {"profile": "PUBLIC"},
            {"email": "PUBLIC"},
            {"searchEngineIndexing": True},
            {"profile": "MEMBERS", "phone": "PUBLIC"},  # all or nothing: MEMBERS is not kept
        ]

        for input in attempts:
            payload = await change(client, "updateVisibility", input, token=token)
            assert codes(payload) == ["MINOR_PROTECTED"], input

        assert await my_settings(client, token) == before
        assert await count_events(database) == stored

    async def test_members_only_and_switching_off_are_allowed(self, client) -> None:
        token = await signed_up(client, **MINOR)

        account = await changed(
            client, "updateVisibility", {"profile": "MEMBERS", "email": "MEMBERS"}, token=token
        )
        assert account["visibility"]["profile"] == account["visibility"]["email"] == "MEMBERS"
        account = await changed(
            client, SET_PREFERENCE, toggle("PUSH", "SERVICE_UPDATES", False), token=token
        )
        assert preference(account, "PUSH", "SERVICE_UPDATES") is False
        await changed(
            client, "setDataSharing", {"purpose": "RESEARCH", "enabled": False}, token=token
        )
        await changed(client, "setCookieConsent", {"advertising": False}, token=token)
        await changed(client, "optOutOfMarketing", token=token)


class TestIdempotency:
    async def test_a_retry_answers_alike_and_records_nothing_more(self, client, database) -> None:
        token = await signed_up(client)
        retried = toggle("EMAIL", "MARKETING", True, idempotencyKey="toggle-0001")
        first = await change(client, SET_PREFERENCE, retried, token=token)
        stored = await count_events(database)

        second = await change(client, SET_PREFERENCE, retried, token=token)

        assert first["errors"] == []
        assert second == first
        assert await count_events(database) == stored

    async def test_a_late_retry_does_not_undo_a_later_choice(self, client, database) -> None:
        token = await signed_up(client)
        retried = toggle("EMAIL", "MARKETING", True, idempotencyKey="toggle-0001")
        await changed(client, SET_PREFERENCE, retried, token=token)
        await changed(client, SET_PREFERENCE, toggle("EMAIL", "MARKETING", False), token=token)
        stored = await count_events(database)

        account = await changed(client, SET_PREFERENCE, retried, token=token)

        assert preference(account, "EMAIL", "MARKETING") is False
        assert await count_events(database) == stored

    async def test_the_same_key_for_another_change_is_refused(self, client, database) -> None:
        token = await signed_up(client)
        key = "toggle-0001"
        await changed(
            client,
            SET_PREFERENCE,
            toggle("EMAIL", "MARKETING", True, idempotencyKey=key),
            token=token,
        )
        before, stored = await my_settings(client, token), await count_events(database)
        attempts = [
            (SET_PREFERENCE, toggle("PUSH", "NEWSLETTER", True, idempotencyKey=key)),
            ("setDataSharing", {"purpose": "RESEARCH", "enabled": True, "idempotencyKey": key}),
        ]

        for operation, input in attempts:
            payload = await change(client, operation, input, token=token)
            assert [(e["field"], e["code"]) for e in payload["errors"]] == [
                ("idempotencyKey", "IDEMPOTENCY_KEY_REUSED")
            ], operation
            assert payload["account"] is None

        assert await my_settings(client, token) == before
        assert await count_events(database) == stored

    async def test_each_account_has_its_own_keys(self, client) -> None:
        ada = await signed_up(client)
        bob = await signed_up(client, email="bob@example.com")
        input = toggle("EMAIL", "MARKETING", True, idempotencyKey="toggle-0001")
        await changed(client, SET_PREFERENCE, input, token=ada)

        account = await changed(client, SET_PREFERENCE, input, token=bob)

        assert preference(account, "EMAIL", "MARKETING") is True
        assert (await events(client, bob))[0]["key"] == EMAIL_MARKETING

    async def test_a_key_has_1_to_100_characters(self, client, database) -> None:
        token = await signed_up(client)
        stored = await count_events(database)

        for key in ("", "k" * 101, "toggle\x00"):
            input = toggle("EMAIL", "MARKETING", True, idempotencyKey=key)
            payload = await change(client, SET_PREFERENCE, input, token=token)
            assert [(e["field"], e["code"]) for e in payload["errors"]] == [
                ("idempotencyKey", "INVALID_INPUT")
            ]
        assert await count_events(database) == stored

        input = toggle("EMAIL", "MARKETING", True, idempotencyKey="k" * 100)
        await changed(client, SET_PREFERENCE, input, token=token)


async def advertising_on(client: httpx.AsyncClient, token: str) -> None:
    await changed(client, "setCookieConsent", {"advertising": True, "analytics": True}, token=token)


COOKIE_CONSENT = "{ me { cookieConsent { advertising gpcApplied gpcConflict gpcConflictKeys } } }"


async def cookie_consent(
    client: httpx.AsyncClient, token: str, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    body = await gql(client, COOKIE_CONSENT, token=token, headers=headers)
    assert "errors" not in body, body
    cookies: dict[str, Any] = body["data"]["me"]["cookieConsent"]
    return cookies


class TestGlobalPrivacyControl:
    async def test_an_anonymous_signal_changes_nothing(self, client, database) -> None:
        token = await signed_up(client)
        await advertising_on(client, token)
        stored = await count_events(database)
        client.cookies.clear()

        assert await gql(client, ME_SETTINGS, headers=GPC) == {"data": {"me": None}}

        me = await my_settings(client, token)
        assert me["cookieConsent"]["advertising"] is True
        assert me["cookieConsent"]["gpcApplied"] is False
        assert await count_events(database) == stored

    async def test_switches_advertising_off(self, client) -> None:
        token = await signed_up(client)
        await advertising_on(client, token)

        response = await post(client, ME_SETTINGS, token=token, headers=GPC)

        me = response.json()["data"]["me"]
        assert me["cookieConsent"]["advertising"] is False
        assert me["cookieConsent"]["gpcApplied"] is True
        assert me["cookieConsent"]["analytics"] is True  # not the signal's business
        newest = (await events(client, token))[:2]
        assert summary(newest[:1]) == [("cookies.advertising", "true", "false", "GPC", "GPC")]
        assert newest[0]["requestId"] == response.headers["X-Request-ID"]
        assert newest[1]["actor"] == "PERSON"

    async def test_a_second_signal_records_nothing(self, client, database) -> None:
        token = await signed_up(client)
        await advertising_on(client, token)
        await my_settings(client, token, headers=GPC)
        stored = await count_events(database)

        me = await my_settings(client, token, headers=GPC)

        assert me["cookieConsent"]["gpcApplied"] is True
        assert await count_events(database) == stored

    async def test_an_opt_in_under_the_signal_stays_and_is_shown_as_a_conflict(
        self, client, database
    ) -> None:
        token = await signed_up(client)
        await advertising_on(client, token)
        await my_settings(client, token, headers=GPC)

        await changed(client, "setCookieConsent", {"advertising": True}, token=token, headers=GPC)
        stored = await count_events(database)
        for _ in range(2):
            cookies = await cookie_consent(client, token, headers=GPC)

        assert cookies["advertising"] is True
        assert cookies["gpcConflict"] is True
        assert cookies["gpcConflictKeys"] == ["cookies.advertising"]
        assert await count_events(database) == stored
        assert (await events(client, token))[0]["actor"] == "PERSON"

    async def test_an_opt_in_after_the_signal_without_it_is_a_conflict_too(self, client) -> None:
        token = await signed_up(client)
        await my_settings(client, token, headers=GPC)

        await changed(client, "setCookieConsent", {"advertising": True}, token=token)
        cookies = await cookie_consent(client, token, headers=GPC)

        assert cookies["advertising"] is True
        assert cookies["gpcConflictKeys"] == ["cookies.advertising"]

    async def test_switching_off_again_ends_the_conflict_and_the_signal_holds_after(
        self, client, database
    ) -> None:
        token = await signed_up(client)
        await my_settings(client, token, headers=GPC)
        await changed(client, "setCookieConsent", {"advertising": True}, token=token, headers=GPC)

        await changed(client, "setCookieConsent", {"advertising": False}, token=token)
        stored = await count_events(database)
        cookies = await cookie_consent(client, token, headers=GPC)

        assert cookies == {
            "advertising": False,
            "gpcApplied": True,
            "gpcConflict": False,
            "gpcConflictKeys": [],
        }
        assert await count_events(database) == stored

    async def test_a_choice_made_before_any_signal_is_switched_off_by_it(
        self, client, database
    ) -> None:
        token = await signed_up(client)
        await changed(client, "setCookieConsent", {"advertising": True}, token=token)

        cookies = await cookie_consent(client, token, headers=GPC)

        assert cookies == {
            "advertising": False,
            "gpcApplied": True,
            "gpcConflict": False,
            "gpcConflictKeys": [],
        }
        newest = await events(client, token, key="cookies.advertising")
        assert [(e["actor"], e["source"], e["newValue"]) for e in newest[:2]] == [
            ("GPC", "GPC", "false"),
            ("PERSON", "API", "true"),
        ]

    async def test_a_signal_sent_with_signup_is_recorded(self, client, database) -> None:
        token = (await signup(client, headers=GPC))["token"]

        cookies = await cookie_consent(client, token)
        recorded = await events(client, token)
        stored = await count_events(database)
        await my_settings(client, token, headers=GPC)

        assert cookies == {
            "advertising": False,
            "gpcApplied": True,
            "gpcConflict": False,
            "gpcConflictKeys": [],
        }
        started_by_gpc = [
            (e["key"], e["oldValue"], e["newValue"])
            for e in recorded
            if (e["actor"], e["source"]) == ("GPC", "GPC")
        ]
        assert started_by_gpc == [("cookies.advertising", None, "false")]
        assert [e["key"] for e in recorded].count("cookies.advertising") == 1
        assert await count_events(database) == stored


class TestConsentHistory:
    async def test_anonymous_caller_gets_null(self, client) -> None:
        assert await gql(client, HISTORY, {"first": 5}) == {"data": {"me": None}}

    async def test_bad_page_arguments_are_graphql_errors(self, client) -> None:
        token = await signed_up(client)

        past_any_event = base64.urlsafe_b64encode(b"consent:99999999999").decode()
        attempts = [
            {"first": 0},
            {"first": 101},
            {"first": 5, "after": "garbage"},
            {"first": 5, "after": past_any_event},
        ]

        for variables in attempts:
            body = await gql(client, HISTORY, variables, token=token)
            assert body["data"] == {"me": None}, variables
            assert [e["extensions"]["code"] for e in body["errors"]] == ["BAD_USER_INPUT"]

    async def test_a_new_account_holds_its_signup(self, client) -> None:
        token = await signed_up(client)
        entries = await catalogue(client)

        nodes = await events(client, token)

        assert len(nodes) == len(entries) + 1
        assert {(n["actor"], n["source"], n["oldValue"]) for n in nodes} == {
            ("SIGNUP", "SIGNUP", None)
        }
        assert nodes[-1]["key"] == "policy"
        assert nodes[-1]["newValue"] == SEED_POLICY_VERSION
        assert {n["key"]: n["newValue"] for n in nodes[:-1]} == {
            e["key"]: e["defaultValue"] for e in entries
        }

    async def test_newest_first_page_by_page(self, client) -> None:
        token = await signed_up(client)
        await changed(client, SET_PREFERENCE, toggle("EMAIL", "MARKETING", True), token=token)
        await changed(
            client, "setDataSharing", {"purpose": "RESEARCH", "enabled": True}, token=token
        )
        await changed(client, "setCookieConsent", {"functional": True}, token=token)
        everything = await events(client, token)

        walked: list[dict[str, Any]] = []
        pages, after = 0, None
        while True:
            page = await history(client, token, first=10, after=after)
            pages += 1
            walked += [edge["node"] for edge in page["edges"]]
            if not page["pageInfo"]["hasNextPage"]:
                break
            after = page["pageInfo"]["endCursor"]

        assert [e["key"] for e in everything[:3]] == [
            "cookies.functional",
            "data_sharing.research",
            EMAIL_MARKETING,
        ]
        assert walked == everything
        assert pages == -(-len(everything) // 10)

    async def test_filters_by_key(self, client) -> None:
        token = await signed_up(client)
        for enabled in (True, False, True):
            await changed(
                client, SET_PREFERENCE, toggle("EMAIL", "MARKETING", enabled), token=token
            )
        await changed(client, SET_PREFERENCE, toggle("PUSH", "MARKETING", True), token=token)

        marketing = await events(client, token, key=EMAIL_MARKETING)
        policy = await events(client, token, key="policy")

        assert {e["key"] for e in marketing} == {EMAIL_MARKETING}
        assert [e["newValue"] for e in marketing] == ["true", "false", "true", "false"]
        assert [(e["key"], e["newValue"]) for e in policy] == [("policy", SEED_POLICY_VERSION)]

    async def test_a_key_no_setting_has_finds_nothing(self, client) -> None:
        token = await signed_up(client)

        page = await history(client, token, key="communication.fax.marketing")
        assert page == {"edges": [], "pageInfo": {"hasNextPage": False, "endCursor": None}}

    async def test_a_cursor_keeps_its_place_when_new_events_arrive(self, client) -> None:
        token = await signed_up(client)
        cursor = (await history(client, token, first=2))["pageInfo"]["endCursor"]
        following = await history(client, token, first=5, after=cursor)

        await changed(client, SET_PREFERENCE, toggle("EMAIL", "MARKETING", True), token=token)

        assert await history(client, token, first=5, after=cursor) == following
        assert (await events(client, token))[0]["key"] == EMAIL_MARKETING


async def test_gpc_applies_even_when_the_request_does_not_read_the_person(client) -> None:
    token = await signed_up(client)
    client.cookies.clear()
    turn_on = """mutation { setCookieConsent(input: {advertising: true}) { errors { code } } }"""
    await gql(client, turn_on, token=token)

    await gql(client, "{ privacyCatalogue { key } }", token=token, headers={"Sec-GPC": "1"})

    body = await gql(client, "{ me { cookieConsent { advertising gpcApplied } } }", token=token)
    assert body["data"]["me"]["cookieConsent"] == {"advertising": False, "gpcApplied": True}
