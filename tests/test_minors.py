"""Minors stay protected whatever changes who they are: a move, a corrected date of birth, or a new
age table. Their consent-based settings go off and nothing of theirs stays public, recorded in the
ledger as done by the age rules."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from models import (
    Account,
    AuditEntry,
    Notification,
    NotificationKind,
    PendingSignup,
    PrivacyRequest,
    ProfileChange,
    RequestStatus,
    Role,
)
from resolvers import age
from tests.helpers import (
    birth_date_for_age,
    change,
    changed,
    codes,
    count_events,
    database_behind,
    events,
    gql,
    my_settings,
    new_account,
    post,
    preference,
    run_cli,
    sharing,
    signed_up,
    signed_up_through_the_api,
    signup,
    staff_token,
)
from workers.age_rules import AgeRulesReport, apply_age_rules

UPDATE = """
mutation Update($input: UpdateProfileInput!) {
  updateProfile(input: $input) { account { country isMinor } errors { field code message } }
}
"""
PROFILE = "query($id: ID!) { publicProfile(id: $id) { displayName email } }"
CORRECT = """
mutation Correct($input: CorrectAccountInput!) {
  correctAccount(input: $input) {
    account { id birthDate country isMinor }
    request { id status resolution }
    errors { field code message }
  }
}
"""
REQUEST_CORRECTION = """
mutation { requestCorrection(input: {subject: "Date of birth", details: "It is wrong"}) {
  request { id } errors { code } } }
"""
REASON = "Ticket 77: the person sent proof of their date of birth"


async def a_person(client: httpx.AsyncClient, *, years: int, country: str) -> tuple[str, str]:
    """Sign up someone of that age in that country: their id and bearer token."""
    return await new_account(
        client, email="teen@example.com", birthDate=birth_date_for_age(years), country=country
    )


async def consenting(client: httpx.AsyncClient, token: str) -> None:
    """Newsletter on, research sharing on, and the email shown to everyone."""
    await changed(
        client,
        "setCommunicationPreference",
        {"channel": "EMAIL", "topic": "NEWSLETTER", "enabled": True},
        token=token,
    )
    await changed(client, "setDataSharing", {"purpose": "RESEARCH", "enabled": True}, token=token)
    await changed(
        client,
        "updateVisibility",
        {"profile": "MEMBERS", "email": "PUBLIC", "searchEngineIndexing": True},
        token=token,
    )


async def a_member(client: httpx.AsyncClient) -> str:
    return await signed_up(client, email="bob@example.com", displayName="Bob")


def assert_protected(me: dict[str, Any]) -> None:
    assert me["isMinor"] is True
    assert preference(me, "EMAIL", "NEWSLETTER") is False
    assert sharing(me, "RESEARCH") is False
    assert me["visibility"] == {
        "profile": "MEMBERS",  # not public, so a minor may keep it
        "email": "PRIVATE",
        "phone": "PRIVATE",
        "searchEngineIndexing": False,
    }


async def withdrawn_by(client: httpx.AsyncClient, token: str) -> dict[str, tuple[str, str]]:
    """For each key the age rules changed: the actor and the request id of its newest event."""
    found: dict[str, tuple[str, str]] = {}
    for event in await events(client, token):
        if event["source"] == "AGE_RULES" and event["key"] not in found:
            found[event["key"]] = (event["actor"], event["requestId"])
    return found


WITHDRAWN = {
    "communication.email.newsletter",
    "data_sharing.research",
    "visibility.email",
    "visibility.search_engine_indexing",
}


class TestCountryChange:
    async def test_a_minor_cannot_lift_their_protection_by_moving(self, client, database) -> None:
        _, token = await a_person(client, years=14, country="DE")
        before = await my_settings(client, token)

        body = await gql(client, UPDATE, {"input": {"country": "GB"}}, token=token)

        [error] = body["data"]["updateProfile"]["errors"]
        assert error["code"] == "CORRECTION_REQUIRED" and error["field"] == "country"
        assert "requestCorrection" in error["message"]
        me = await gql(client, "{ me { country isMinor } }", token=token)
        assert me["data"]["me"] == {"country": "DE", "isMinor": True}
        assert await my_settings(client, token) == before
        async with database.session() as session:
            assert list(await session.scalars(select(ProfileChange))) == []

    async def test_a_move_that_keeps_the_protection_is_made(self, client) -> None:
        _, token = await a_person(client, years=14, country="DE")
        body = await gql(client, UPDATE, {"input": {"country": "FR"}}, token=token)
        payload = body["data"]["updateProfile"]
        assert payload["errors"] == []
        assert payload["account"] == {"country": "FR", "isMinor": True}

    async def test_moving_below_the_age_of_consent_withdraws_consent(self, client) -> None:
        person_id, token = await a_person(client, years=14, country="GB")
        await consenting(client, token)
        member = await a_member(client)
        shown = await gql(client, PROFILE, {"id": person_id}, token=member)
        assert shown["data"]["publicProfile"]["email"] == "teen@example.com"

        response = await post(
            client,
            UPDATE,
            {"input": {"country": "DE"}},
            token=token,
            headers={"X-Request-ID": "move-to-germany"},
        )

        assert response.json()["data"]["updateProfile"]["errors"] == []
        assert_protected(await my_settings(client, token))
        seen = await gql(client, PROFILE, {"id": person_id}, token=member)
        assert seen["data"]["publicProfile"] == {"displayName": "Ada Lovelace", "email": None}
        by = await withdrawn_by(client, token)
        assert set(by) == WITHDRAWN
        assert set(by.values()) == {("SYSTEM", "move-to-germany")}

    async def test_an_adult_moving_keeps_their_choices(self, client) -> None:
        _, token = await a_person(client, years=30, country="US")
        await consenting(client, token)
        before = await my_settings(client, token)
        await gql(client, UPDATE, {"input": {"country": "DE"}}, token=token)
        assert await my_settings(client, token) == before


@pytest.fixture
async def officer(client, database) -> str:
    return await staff_token(client, database, Role.PRIVACY_OFFICER, "officer@example.com")


async def audit_entries(database) -> list[AuditEntry]:
    async with database.session() as session:
        return list(await session.scalars(select(AuditEntry).order_by(AuditEntry.id)))


class TestCorrectAccount:
    async def test_users_and_support_are_refused(self, client, database) -> None:
        person_id, token = await a_person(client, years=30, country="US")
        support = await staff_token(client, database, Role.SUPPORT, "support@example.com")
        variables = {"input": {"accountId": person_id, "country": "DE", "reason": REASON}}
        for caller in (token, support):
            body = await gql(client, CORRECT, variables, token=caller)
            assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
        me = await gql(client, "{ me { country } }", token=token)
        assert me["data"]["me"]["country"] == "US"
        assert await audit_entries(database) == []

    async def test_an_unknown_account(self, client, officer) -> None:
        variables = {
            "input": {
                "accountId": "00000000-0000-0000-0000-000000000001",
                "country": "DE",
                "reason": REASON,
            }
        }
        body = await gql(client, CORRECT, variables, token=officer)
        assert [e["code"] for e in body["data"]["correctAccount"]["errors"]] == ["NOT_FOUND"]

    @pytest.mark.parametrize(
        ("change", "field", "code"),
        [
            ({"birthDate": "1850-01-01"}, "birthDate", "INVALID_BIRTH_DATE"),
            ({"birthDate": "2999-01-01"}, "birthDate", "INVALID_BIRTH_DATE"),
            ({"birthDate": birth_date_for_age(12).isoformat()}, "birthDate", "AGE_RESTRICTED"),
            ({"country": "ZZ"}, "country", "INVALID_COUNTRY"),
            ({}, None, "INVALID_INPUT"),
            ({"country": "DE", "reason": "x"}, "reason", "INVALID_INPUT"),
        ],
    )
    async def test_bad_input_changes_nothing(
        self, client, database, officer, change, field, code
    ) -> None:
        person_id, token = await a_person(client, years=30, country="US")
        variables = {"input": {"accountId": person_id, "reason": REASON, **change}}
        body = await gql(client, CORRECT, variables, token=officer)
        [error] = body["data"]["correctAccount"]["errors"]
        assert (error["field"], error["code"]) == (field, code)
        me = await gql(client, "{ me { birthDate country } }", token=token)
        assert me["data"]["me"]["country"] == "US"
        assert await audit_entries(database) == []

    async def test_under_13_tells_the_officer_what_to_do_instead(self, client, officer) -> None:
        person_id, _ = await a_person(client, years=30, country="US")
        variables = {
            "input": {
                "accountId": person_id,
                "birthDate": birth_date_for_age(10).isoformat(),
                "reason": REASON,
            }
        }
        body = await gql(client, CORRECT, variables, token=officer)
        [error] = body["data"]["correctAccount"]["errors"]
        assert "reviewChildReport" in error["message"]

    async def test_a_request_of_another_account_is_refused(self, client, officer) -> None:
        await a_member(client)
        bob = await gql(
            client,
            'mutation { login(input: {email: "bob@example.com", password: "correct horse '
            'battery"}) { token } }',
        )
        client.cookies.clear()
        filed = await gql(client, REQUEST_CORRECTION, token=bob["data"]["login"]["token"])
        request_id = filed["data"]["requestCorrection"]["request"]["id"]
        person_id, _ = await a_person(client, years=30, country="US")
        variables = {
            "input": {
                "accountId": person_id,
                "country": "DE",
                "privacyRequestId": request_id,
                "reason": REASON,
            }
        }
        body = await gql(client, CORRECT, variables, token=officer)
        [error] = body["data"]["correctAccount"]["errors"]
        assert (error["field"], error["code"]) == ("privacyRequestId", "INVALID_INPUT")

    async def test_a_correction_that_makes_someone_a_minor_protects_them(
        self, client, database, officer
    ) -> None:
        person_id, token = await a_person(client, years=30, country="DE")
        await consenting(client, token)
        filed = await gql(client, REQUEST_CORRECTION, token=token)
        request_id = filed["data"]["requestCorrection"]["request"]["id"]
        born = birth_date_for_age(14).isoformat()

        response = await post(
            client,
            CORRECT,
            {
                "input": {
                    "accountId": person_id,
                    "birthDate": born,
                    "privacyRequestId": request_id,
                    "reason": REASON,
                }
            },
            token=officer,
            headers={"X-Request-ID": "correction-77"},
        )

        payload = response.json()["data"]["correctAccount"]
        assert payload["errors"] == []
        assert payload["account"] == {
            "id": person_id,
            "birthDate": born,
            "country": "DE",
            "isMinor": True,
        }
        assert payload["request"]["status"] == "COMPLETED"
        assert_protected(await my_settings(client, token))
        by = await withdrawn_by(client, token)
        assert set(by) == WITHDRAWN
        assert set(by.values()) == {("STAFF", "correction-77")}
        [entry] = await audit_entries(database)
        assert (entry.action, str(entry.account_id), entry.reason, entry.request_id) == (
            "account.correct",
            person_id,
            REASON,
            "correction-77",
        )
        async with database.session() as session:
            changes = list(await session.scalars(select(ProfileChange)))
            request = await session.scalar(select(PrivacyRequest))
        assert [change.field for change in changes] == ["birth_date"]
        assert changes[0].changed_by == entry.staff_id
        assert request is not None and request.status is RequestStatus.COMPLETED

    async def test_the_person_is_mailed_the_outcome_of_the_request_it_closes(
        self, client, officer
    ) -> None:
        person_id, token = await a_person(client, years=30, country="US")
        filed = await gql(client, REQUEST_CORRECTION, token=token)
        request_id = filed["data"]["requestCorrection"]["request"]["id"]
        answer = "We checked your passport and corrected your date of birth."
        variables = {
            "input": {
                "accountId": person_id,
                "birthDate": birth_date_for_age(31).isoformat(),
                "privacyRequestId": request_id,
                "resolution": answer,
                "reason": REASON,
            }
        }

        body = await gql(client, CORRECT, variables, token=officer)

        assert body["data"]["correctAccount"]["request"]["status"] == "COMPLETED"
        messages = await gql(client, "{ me { messages { kind subject } } }", token=token)
        [told] = [m for m in messages["data"]["me"]["messages"] if m["kind"] == "REQUEST_ANSWERED"]
        assert told["subject"].startswith("Your request for a correction of ")
        assert told["subject"].endswith(" has been answered")
        async with database_behind(client).session() as session:
            [body_text] = await session.scalars(
                select(Notification.body).where(
                    Notification.kind == NotificationKind.REQUEST_ANSWERED
                )
            )
        assert answer in body_text

    async def test_a_correction_may_lift_the_protection(self, client, officer) -> None:
        person_id, token = await a_person(client, years=14, country="DE")
        before = await my_settings(client, token)
        variables = {"input": {"accountId": person_id, "country": "GB", "reason": REASON}}
        body = await gql(client, CORRECT, variables, token=officer)
        payload = body["data"]["correctAccount"]
        assert payload["errors"] == [] and payload["account"]["isMinor"] is False
        # Nothing is switched on for them: the choices are theirs to make now.
        after = await my_settings(client, token)
        assert after == {**before, "isMinor": False}


class TestApplyAgeRules:
    async def test_a_new_age_table_protects_who_it_makes_a_minor_once(
        self, client, database, monkeypatch
    ) -> None:
        _, token = await a_person(client, years=14, country="GB")
        await consenting(client, token)
        monkeypatch.setitem(age.DIGITAL_CONSENT_AGE, "GB", 16)

        first = await apply_age_rules(database)
        written = await count_events(database)
        again = await apply_age_rules(database)

        assert first == AgeRulesReport(protected=1, failed=0)
        assert again == AgeRulesReport(protected=0, failed=0)
        assert await count_events(database) == written
        assert_protected(await my_settings(client, token))
        assert {actor for actor, _ in (await withdrawn_by(client, token)).values()} == {"SYSTEM"}

    async def test_the_command_is_idempotent(
        self, client, database, database_url, tmp_path
    ) -> None:
        person_id, token = await a_person(client, years=14, country="GB")
        await consenting(client, token)
        adult = await signed_up(client, email="adult@example.com", country="DE")
        client.cookies.clear()
        await consenting(client, adult)
        # What a deploy of a stricter table leaves behind: a minor by today's rules, consenting.
        async with database.transaction() as session:
            await session.execute(
                update(Account).where(Account.id == uuid.UUID(person_id)).values(country="DE")
            )
        adult_before = await my_settings(client, adult)

        code, out, err = await run_cli(database_url, tmp_path, "apply-age-rules")
        assert (code, err) == (0, "")
        assert "1 account" in out
        written = await count_events(database)
        code, out, _ = await run_cli(database_url, tmp_path, "apply-age-rules")
        assert code == 0 and "0 accounts" in out
        assert await count_events(database) == written

        assert_protected(await my_settings(client, token))
        assert await my_settings(client, adult) == adult_before


WHERE = "{ me { country usState isMinor } }"
UPDATE_STATE = """
mutation Update($input: UpdateProfileInput!) {
  updateProfile(input: $input) {
    account { country usState isMinor } errors { field code message }
  }
}
"""


async def where(client: httpx.AsyncClient, token: str) -> dict[str, Any]:
    body = await gql(client, WHERE, token=token)
    found: dict[str, Any] = body["data"]["me"]
    return found


async def in_the_us(
    client: httpx.AsyncClient, *, years: int, state: str | None = None, email: str = "t@x.org"
) -> tuple[str, str]:
    """Someone of that age in the US, in that state if one is given: their id and token."""
    return await new_account(
        client, email=email, birthDate=birth_date_for_age(years), country="US", usState=state
    )


class TestUsStates:
    async def test_a_us_14_year_old_cannot_share_advertise_or_go_public(self, client) -> None:
        _, token = await in_the_us(client, years=14)

        cookies = await change(client, "setCookieConsent", {"advertising": True}, token=token)
        sharing_on = await change(
            client, "setDataSharing", {"purpose": "RESEARCH", "enabled": True}, token=token
        )
        public = await change(
            client,
            "updateVisibility",
            {"profile": "PUBLIC", "searchEngineIndexing": True},
            token=token,
        )

        assert codes(cookies) == codes(sharing_on) == ["PARENTAL_CONSENT_REQUIRED"]
        assert set(codes(public)) == {"MINOR_PROTECTED"}
        assert await where(client, token) == {"country": "US", "usState": None, "isMinor": True}

    async def test_signup_keeps_the_state_and_it_decides_the_age(self, client) -> None:
        token = await signed_up_through_the_api(
            client, birthDate=birth_date_for_age(16), country="US", usState="ca"
        )
        assert await where(client, token) == {
            "country": "US",
            "usState": "US-CA",
            "isMinor": False,  # California protects teens up to 16
        }

    @pytest.mark.parametrize(
        ("years", "state", "minor"),
        [
            (15, "US-CA", True),
            (17, "US-CT", True),
            (17, "US-NJ", True),
            (16, "US-OR", False),
            (14, "US-TX", False),  # no teen rule beyond 13 there
            (17, None, True),  # no state given: the strictest state's age, 18
        ],
    )
    async def test_each_states_age(self, client, years, state, minor) -> None:
        _, token = await in_the_us(client, years=years, state=state)
        assert (await where(client, token))["isMinor"] is minor

    @pytest.mark.parametrize(
        ("country", "state"), [("US", "ZZ"), ("US", "US-C@"), ("DE", "US-CA"), ("US", "x" * 40)]
    )
    async def test_a_bad_state_is_refused_at_signup_and_nothing_is_kept(
        self, client, database, country, state
    ) -> None:
        payload = await signup(client, country=country, usState=state)
        assert payload["confirmationSent"] is False
        assert [(e["field"], e["code"]) for e in payload["errors"]] == [
            ("usState", "INVALID_INPUT")
        ]
        async with database.session() as session:
            assert list(await session.scalars(select(PendingSignup))) == []

    async def test_an_adult_gives_changes_and_leaves_their_state(self, client) -> None:
        _, token = await in_the_us(client, years=30)

        given = await gql(client, UPDATE_STATE, {"input": {"usState": "US-NY"}}, token=token)
        bad = await gql(client, UPDATE_STATE, {"input": {"usState": "Narnia"}}, token=token)
        moved = await gql(client, UPDATE_STATE, {"input": {"country": "DE"}}, token=token)

        assert given["data"]["updateProfile"]["account"]["usState"] == "US-NY"
        [error] = bad["data"]["updateProfile"]["errors"]
        assert (error["field"], error["code"]) == ("usState", "INVALID_INPUT")
        assert moved["data"]["updateProfile"]["account"] == {
            "country": "DE",
            "usState": None,
            "isMinor": False,
        }

    async def test_a_state_that_ends_the_protection_needs_staff(self, client, officer) -> None:
        person_id, token = await in_the_us(client, years=16)

        body = await gql(client, UPDATE_STATE, {"input": {"usState": "US-CA"}}, token=token)

        [error] = body["data"]["updateProfile"]["errors"]
        assert (error["field"], error["code"]) == ("usState", "CORRECTION_REQUIRED")
        assert await where(client, token) == {"country": "US", "usState": None, "isMinor": True}
        variables = {"input": {"accountId": person_id, "usState": "CA", "reason": REASON}}
        corrected = await gql(client, CORRECT, variables, token=officer)
        assert corrected["data"]["correctAccount"]["errors"] == []
        assert await where(client, token) == {"country": "US", "usState": "US-CA", "isMinor": False}

    async def test_a_state_that_makes_someone_a_minor_protects_them(self, client) -> None:
        _, token = await in_the_us(client, years=17, state="US-TX")
        await consenting(client, token)

        response = await post(
            client,
            UPDATE_STATE,
            {"input": {"usState": "US-CT"}},
            token=token,
            headers={"X-Request-ID": "move-to-connecticut"},
        )

        assert response.json()["data"]["updateProfile"]["errors"] == []
        assert_protected(await my_settings(client, token))
        by = await withdrawn_by(client, token)
        assert set(by) == WITHDRAWN
        assert set(by.values()) == {("SYSTEM", "move-to-connecticut")}

    async def test_apply_age_rules_protects_us_teens_the_old_table_left_consenting(
        self, client, database
    ) -> None:
        # As the release before the state table left them: a 14-year-old in the US, consenting.
        person_id, token = await a_person(client, years=14, country="GB")
        await consenting(client, token)
        async with database.transaction() as session:
            await session.execute(
                update(Account).where(Account.id == uuid.UUID(person_id)).values(country="US")
            )

        report = await apply_age_rules(database)

        assert report == AgeRulesReport(protected=1, failed=0)
        assert_protected(await my_settings(client, token))
