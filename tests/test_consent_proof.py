"""Proof of consent: each event says which policy the person had accepted, which session and
client a change came through, and `verify-ledger` checks that the settings are what the events
say."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import select, text

from models import Account, ConsentEvent, Database, Role
from resolvers import consent
from tests.conftest import SEED_POLICY_VERSION
from tests.helpers import (
    LOGIN,
    PASSWORD,
    count_statements,
    gql,
    run_cli,
    signed_up,
    signup,
    staff_token,
)
from tests.test_consent_ledger import tamper

NEWSLETTER = """
mutation {
  setCommunicationPreference(input: {channel: EMAIL, topic: NEWSLETTER, enabled: true}) {
    errors { code }
  }
}
"""
PUBLISH = """
mutation Publish($version: String!) {
  publishPolicyVersion(input: {version: $version, summary: "More purposes.", material: true}) {
    errors { code }
  }
}
"""
ACCEPT = """
mutation Accept($version: String!) {
  acceptPolicy(input: {version: $version}) { errors { code } }
}
"""
HISTORY = """
query History($key: String) {
  me {
    sessions { id current }
    consentHistory(first: 50, key: $key) {
      edges { node {
        key newValue actor policyVersion acceptedPolicyVersion sessionId userAgent requestId
      } }
    }
  }
}
"""
BROWSER = "Mozilla/5.0 (ProofTest; like Gecko) Firefox/140.0"


async def history(client: Any, token: str, key: str | None = None) -> dict[str, Any]:
    body = await gql(client, HISTORY, {"key": key}, token=token)
    assert "errors" not in body, body
    me: dict[str, Any] = body["data"]["me"]
    return me


async def events_of(database: Database) -> list[ConsentEvent]:
    async with database.session() as session:
        query = select(ConsentEvent).order_by(ConsentEvent.account_id, ConsentEvent.seq)
        return list(await session.scalars(query))


async def account_id_of(database: Database, email: str) -> uuid.UUID:
    async with database.session() as session:
        return (await session.scalars(select(Account.id).where(Account.email == email))).one()


async def verify(database: Database) -> consent.BrokenLink | None:
    async with database.session() as session:
        return (await consent.verify_ledger(session))[1]


class TestAcceptedPolicyVersion:
    async def test_an_opt_in_before_accepting_a_material_change_names_both_versions(
        self, client, database
    ) -> None:
        ada = await signed_up(client)
        officer = await staff_token(client, database, Role.PRIVACY_OFFICER, "dpo@example.com")
        assert (await gql(client, PUBLISH, {"version": "2026-01"}, token=officer))["data"][
            "publishPolicyVersion"
        ]["errors"] == []

        # Ada has not accepted 2026-01 yet: her consent was given under 2025-07.
        await gql(client, NEWSLETTER, token=ada)
        newest = (await history(client, ada, "communication.email.newsletter"))["consentHistory"]
        opt_in = newest["edges"][0]["node"]
        assert (opt_in["newValue"], opt_in["actor"]) == ("true", "PERSON")
        assert opt_in["policyVersion"] == "2026-01"
        assert opt_in["acceptedPolicyVersion"] == SEED_POLICY_VERSION

        await gql(client, ACCEPT, {"version": "2026-01"}, token=ada)
        acceptance = (await history(client, ada, "policy"))["consentHistory"]["edges"][0]["node"]
        assert acceptance["newValue"] == "2026-01"
        assert acceptance["acceptedPolicyVersion"] == acceptance["policyVersion"] == "2026-01"
        assert await verify(database) is None

    async def test_signup_records_the_version_accepted(self, client, database) -> None:
        await signed_up(client)
        assert {e.accepted_policy_version for e in await events_of(database)} == {
            SEED_POLICY_VERSION
        }


class TestSessionAndClient:
    async def test_a_change_names_the_bearer_session_and_user_agent_never_the_token(
        self, client, database
    ) -> None:
        await signed_up(client)
        client.cookies.clear()
        login = await gql(
            client,
            LOGIN,
            {"input": {"email": "ada@example.com", "password": PASSWORD}},
            headers={"User-Agent": BROWSER},
        )
        phone = login["data"]["login"]["token"]
        client.cookies.clear()

        await gql(client, NEWSLETTER, token=phone, headers={"User-Agent": BROWSER})

        me = await history(client, phone, "communication.email.newsletter")
        this_session = next(s["id"] for s in me["sessions"] if s["current"])
        opt_in = me["consentHistory"]["edges"][0]["node"]
        assert (opt_in["sessionId"], opt_in["userAgent"]) == (this_session, BROWSER)
        stored = (await events_of(database))[-1]
        assert stored.session_id == uuid.UUID(this_session)
        assert all(phone not in str(value) for value in vars(stored).values())
        assert stored.hash_version == 2

    async def test_signup_events_name_the_session_signup_opened(self, client, database) -> None:
        payload = await signup(client, headers={"User-Agent": BROWSER})
        me = await history(client, payload["token"])
        [session] = me["sessions"]
        events = await events_of(database)
        assert {(str(e.session_id), e.user_agent) for e in events} == {(session["id"], BROWSER)}

    async def test_a_long_user_agent_is_cut_short(self, client, database) -> None:
        token = await signed_up(client)
        await gql(client, NEWSLETTER, token=token, headers={"User-Agent": "x" * 1000})
        assert (await events_of(database))[-1].user_agent == "x" * consent.USER_AGENT_LENGTH
        assert await verify(database) is None


class TestHashVersions:
    @pytest.mark.parametrize(
        ("column", "forged"),
        [
            ("user_agent", "'SomeOtherApp/1.0'"),
            ("accepted_policy_version", "'2099-01'"),
            ("session_id", "NULL"),
        ],
    )
    async def test_editing_a_version_2_field_breaks_the_chain(
        self, client, database, column, forged
    ) -> None:
        token = await signed_up(client)
        await gql(client, NEWSLETTER, token=token, headers={"User-Agent": BROWSER})
        target = (await events_of(database))[-1]
        assert target.hash_version == 2

        await tamper(
            database, f"UPDATE consent_events SET {column} = {forged} WHERE id = :id", id=target.id
        )

        broken = await verify(database)
        assert broken is not None and broken.event_id == target.id
        assert "hash" in broken.reason

    async def test_passing_an_event_off_as_version_1_breaks_the_chain(
        self, client, database
    ) -> None:
        token = await signed_up(client)
        await gql(client, NEWSLETTER, token=token)
        target = (await events_of(database))[-1]
        await tamper(
            database, "UPDATE consent_events SET hash_version = 1 WHERE id = :id", id=target.id
        )

        broken = await verify(database)
        assert broken is not None and broken.event_id == target.id


class TestSettingsAgreeWithTheLedger:
    async def test_an_untouched_database_passes(self, client, database, database_url, tmp_path):
        await signed_up(client)
        code, out, err = await run_cli(database_url, tmp_path, "verify-ledger")
        assert code == 0, err
        assert "every chain is intact" in out and "matches its newest consent event" in out

    async def test_a_setting_switched_on_in_sql_is_named(
        self, client, database, database_url, tmp_path
    ) -> None:
        await signed_up(client)
        await signed_up(client, email="bob@example.com")
        bob = await account_id_of(database, "bob@example.com")
        async with database.engine.begin() as connection:
            await connection.execute(
                text(
                    "UPDATE account_settings SET value = 'true' "
                    "WHERE account_id = :id AND key = 'communication.email.marketing'"
                ),
                {"id": bob.hex if connection.dialect.name == "sqlite" else bob},
            )

        code, out, err = await run_cli(database_url, tmp_path, "verify-ledger")

        assert code == 1
        assert "every chain is intact" in out  # the events themselves were not touched
        assert f"Account {bob}, communication.email.marketing: stored 'true'" in err
        assert "'false'" in err
        assert str(await account_id_of(database, "ada@example.com")) not in err

    async def test_an_accepted_policy_changed_in_sql_is_named(self, client, database) -> None:
        await signed_up(client)
        ada = await account_id_of(database, "ada@example.com")
        async with database.engine.begin() as connection:
            await connection.execute(text("UPDATE accounts SET accepted_policy_version = NULL"))

        async with database.session() as session:
            found = await consent.disagreeing_settings(session, limit=10)

        assert found == [consent.Disagreement(ada, "policy", None, SEED_POLICY_VERSION)]

    async def test_a_missing_row_means_the_default_on_both_sides(self, client, database) -> None:
        await signed_up(client)
        async with database.engine.begin() as connection:
            # Marketing is off by default and its newest event says off: nothing disagrees.
            await connection.execute(
                text("DELETE FROM account_settings WHERE key = 'communication.email.marketing'")
            )
        async with database.session() as session:
            assert await consent.disagreeing_settings(session, limit=10) == []

    async def test_one_statement_however_many_accounts(self, client, database) -> None:
        for name in ("ada", "bob", "cy", "di"):
            await signed_up(client, email=f"{name}@example.com")
        async with database.session() as session:
            with count_statements(database.engine) as statements:
                assert await consent.disagreeing_settings(session, limit=10) == []
        assert len(statements) == 1
