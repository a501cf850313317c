"""Support and privacy officers looking at accounts: every read audited, with a reason."""

from __future__ import annotations

import pytest
from sqlalchemy import insert, select

from models import Account, AuditEntry, Role
from tests.helpers import count_statements, gql, signed_up, staff_token

LOOK_UP = """
query LookUp($id: ID, $email: String, $reason: String!) {
  staffAccount(id: $id, email: $email, reason: $reason) {
    id email
    communicationPreferences { channel topic enabled }
    consentHistory(first: 5) { edges { node { key actor } } }
  }
}
"""
SEARCH = """
query Search($text: String!, $reason: String!, $first: Int! = 20) {
  staffAccounts(emailContains: $text, reason: $reason, first: $first) {
    id email cookieConsent { advertising } dataSharing { purpose enabled }
  }
}
"""
AUDIT = "query($id: ID) { auditLog(accountId: $id) { staffId action accountId reason requestId } }"
REASON = "Ticket 4521: customer asked about their newsletter"


@pytest.fixture
async def support(client, database) -> str:
    return await staff_token(client, database, Role.SUPPORT, "support@example.com")


@pytest.fixture
async def officer(client, database) -> str:
    return await staff_token(client, database, Role.PRIVACY_OFFICER, "officer@example.com")


async def audit_entries(database) -> list[AuditEntry]:
    async with database.session() as session:
        return list(await session.scalars(select(AuditEntry).order_by(AuditEntry.id)))


class TestStaffAccount:
    async def test_anonymous_and_users_are_refused(self, client, database) -> None:
        user = await signed_up(client)
        client.cookies.clear()
        variables = {"email": "ada@example.com", "reason": REASON}
        anonymous = await gql(client, LOOK_UP, variables)
        as_user = await gql(client, LOOK_UP, variables, token=user)
        assert anonymous["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
        assert as_user["errors"][0]["extensions"]["code"] == "FORBIDDEN"
        assert await audit_entries(database) == []

    async def test_an_unknown_account_is_null_and_still_audited(
        self, client, support, database
    ) -> None:
        body = await gql(
            client, LOOK_UP, {"email": "nobody@example.com", "reason": REASON}, token=support
        )
        assert body["data"]["staffAccount"] is None
        [entry] = await audit_entries(database)
        assert entry.account_id is None and entry.action == "account.read"

    @pytest.mark.parametrize(
        "variables",
        [
            {"email": "ada@example.com", "reason": "  "},
            {"reason": REASON},
            {"id": "00000000-0000-0000-0000-000000000001", "email": "a@b.co", "reason": REASON},
        ],
    )
    async def test_bad_arguments(self, client, support, database, variables) -> None:
        body = await gql(client, LOOK_UP, variables, token=support)
        assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
        assert body["data"]["staffAccount"] is None
        assert await audit_entries(database) == []

    async def test_support_sees_settings_and_history_and_it_is_audited(
        self, client, support, database
    ) -> None:
        await signed_up(client)
        client.cookies.clear()

        body = await gql(
            client, LOOK_UP, {"email": "ADA@example.com", "reason": REASON}, token=support
        )

        account = body["data"]["staffAccount"]
        assert account["email"] == "ada@example.com"
        assert len(account["communicationPreferences"]) == 18
        assert account["consentHistory"]["edges"][0]["node"]["actor"] == "SIGNUP"
        [entry] = await audit_entries(database)
        assert str(entry.account_id) == account["id"]
        assert entry.reason == REASON and entry.action == "account.read"
        assert entry.request_id


class TestStaffAccounts:
    async def test_three_and_a_hundred_accounts_cost_the_same_statements(
        self, client, support, database, app
    ) -> None:
        async def add_accounts(start: int, count: int) -> None:
            rows = [
                {
                    "email": f"member{n:03d}@example.org",
                    "password_hash": "x",
                    "display_name": f"Member {n}",
                    "role": Role.USER,
                }
                for n in range(start, start + count)
            ]
            async with database.session() as session:
                await session.execute(insert(Account), rows)
                await session.commit()

        engine = app.state.services.database.engine
        await add_accounts(0, 3)
        with count_statements(engine) as three:
            body = await gql(
                client, SEARCH, {"text": "example.org", "reason": REASON}, token=support
            )
        assert len(body["data"]["staffAccounts"]) == 3
        await add_accounts(3, 97)
        with count_statements(engine) as hundred:
            body = await gql(
                client,
                SEARCH,
                {"text": "example.org", "reason": REASON, "first": 100},
                token=support,
            )
        found = body["data"]["staffAccounts"]
        assert len(found) == 100
        assert all(len(a["dataSharing"]) == 3 for a in found)

        assert len(hundred) == len(three), hundred
        audited = [e for e in await audit_entries(database) if e.action == "account.search"]
        assert len(audited) == 103

    async def test_like_wildcards_are_taken_literally(self, client, support) -> None:
        await signed_up(client)
        body = await gql(client, SEARCH, {"text": "%_%", "reason": REASON}, token=support)
        assert body["data"]["staffAccounts"] == []


class TestAuditLog:
    async def test_only_privacy_officers_read_it(self, client, support, officer) -> None:
        await gql(client, LOOK_UP, {"email": "nobody@example.com", "reason": REASON}, token=support)

        refused = await gql(client, AUDIT, token=support)
        body = await gql(client, AUDIT, token=officer)

        assert refused["errors"][0]["extensions"]["code"] == "FORBIDDEN"
        [entry] = body["data"]["auditLog"]
        assert entry["action"] == "account.read" and entry["reason"] == REASON


class TestLegalHolds:
    SET = """
    mutation Hold($input: SetLegalHoldInput!) {
      setLegalHold(input: $input) { hold { id accountId reason releasedAt } errors { field code } }
    }
    """
    RELEASE = """
    mutation Release($input: ReleaseLegalHoldInput!) {
      releaseLegalHold(input: $input) { hold { releasedAt } errors { field code } }
    }
    """
    MATTER = "Court order 2026/114: preserve records"

    async def account_id(self, client) -> str:
        token = await signed_up(client)
        client.cookies.clear()
        return str((await gql(client, "{ me { id } }", token=token))["data"]["me"]["id"])

    async def test_support_may_not(self, client, support) -> None:
        account_id = await self.account_id(client)
        variables = {"input": {"accountId": account_id, "reason": self.MATTER}}
        body = await gql(client, self.SET, variables, token=support)
        assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"

    async def test_unknown_account(self, client, officer) -> None:
        variables = {
            "input": {"accountId": "00000000-0000-0000-0000-000000000009", "reason": self.MATTER}
        }
        body = await gql(client, self.SET, variables, token=officer)
        assert body["data"]["setLegalHold"]["errors"][0]["code"] == "NOT_FOUND"

    async def test_set_and_release_are_audited(self, client, officer, database) -> None:
        account_id = await self.account_id(client)
        variables = {"input": {"accountId": account_id, "reason": self.MATTER}}

        held = await gql(client, self.SET, variables, token=officer)

        hold = held["data"]["setLegalHold"]["hold"]
        assert hold["accountId"] == account_id and hold["releasedAt"] is None
        release = {"input": {"id": hold["id"], "reason": "Case closed by the court"}}
        released = await gql(client, self.RELEASE, release, token=officer)
        assert released["data"]["releaseLegalHold"]["hold"]["releasedAt"]
        again = await gql(client, self.RELEASE, release, token=officer)
        assert again["data"]["releaseLegalHold"]["errors"][0]["code"] == "NOT_FOUND"
        actions = [(e.action, str(e.account_id)) for e in await audit_entries(database)]
        assert ("legal_hold.set", account_id) in actions
        assert ("legal_hold.release", account_id) in actions


class TestStaffOptOutOfMarketing:
    OPT_OUT = """
    mutation OptOut($input: StaffOptOutInput!) {
      staffOptOutOfMarketing(input: $input) {
        account { communicationPreferences { channel topic enabled } }
        errors { field code }
      }
    }
    """
    HISTORY = """{ me { consentHistory(first: 1, key: "communication.email.marketing")
        { edges { node { newValue actor source } } } } }"""

    async def person(self, client) -> tuple[str, str]:
        token = await signed_up(client)
        client.cookies.clear()
        on = """mutation { setCommunicationPreference(input: {channel: EMAIL, topic: MARKETING,
            enabled: true}) { errors { code } } }"""
        await gql(client, on, token=token)
        me = await gql(client, "{ me { id } }", token=token)
        return token, me["data"]["me"]["id"]

    async def test_users_may_not(self, client) -> None:
        token, account_id = await self.person(client)
        variables = {"input": {"accountId": account_id, "reason": REASON}}
        body = await gql(client, self.OPT_OUT, variables, token=token)
        assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"

    async def test_unknown_account(self, client, support) -> None:
        variables = {"input": {"accountId": "not-an-id", "reason": REASON}}
        body = await gql(client, self.OPT_OUT, variables, token=support)
        assert body["data"]["staffOptOutOfMarketing"]["errors"][0]["code"] == "NOT_FOUND"

    async def test_recorded_as_staff_through_the_admin_and_audited(
        self, client, support, database
    ) -> None:
        token, account_id = await self.person(client)
        variables = {"input": {"accountId": account_id, "reason": REASON}}

        body = await gql(client, self.OPT_OUT, variables, token=support)

        preferences = body["data"]["staffOptOutOfMarketing"]["account"]["communicationPreferences"]
        marketing = [p for p in preferences if p["topic"] == "MARKETING"]
        assert marketing and not any(p["enabled"] for p in marketing)
        node = (await gql(client, self.HISTORY, token=token))["data"]["me"]["consentHistory"][
            "edges"
        ][0]["node"]
        assert node == {"newValue": "false", "actor": "STAFF", "source": "ADMIN"}
        [entry] = await audit_entries(database)
        assert entry.action == "settings.marketing_opt_out" and str(entry.account_id) == account_id
