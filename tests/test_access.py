"""The right of access (GDPR Art. 15): a person sees, in `me` and in the export, when their profile
was hidden after a report, when they accepted the policy, what changed in their profile, the
messages sent to them and which staff (by role) read their data and why."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from models import Account, Notification, Role
from tests.helpers import PASSWORD, gql, new_account, post, staff_token
from tests.test_export import download

ME = """
{ me {
    restrictedAt policyAcceptedAt
    profileChanges(first: 10) { field changedAt byStaff }
    messages(first: 10) { kind subject createdAt sentAt }
    staffAccess(first: 10) { role action reason occurredAt }
} }
"""
REPORT = """
mutation($id: ID!) { reportChildAccount(input: {accountId: $id, details: "In year 5"}) {
  errors { code } } }
"""
STAFF_READ = """
query($email: String!, $reason: String!) { staffAccount(email: $email, reason: $reason) { id } }
"""
REASON = "Ticket 4521: the person asked why their newsletter stopped"


async def me(client: httpx.AsyncClient, token: str) -> dict[str, Any]:
    body = await gql(client, ME, token=token)
    assert "errors" not in body, body
    account: dict[str, Any] = body["data"]["me"]
    return account


async def a_person(client: httpx.AsyncClient) -> tuple[str, str]:
    account_id, token = await new_account(client)
    return token, account_id


class TestMe:
    async def test_a_reported_person_sees_since_when_their_profile_is_hidden(
        self, app, client
    ) -> None:
        token, account_id = await a_person(client)
        before = await me(client, token)
        assert before["restrictedAt"] is None
        assert before["policyAcceptedAt"] is not None

        await post(client, REPORT, {"id": account_id})
        elsewhere = httpx.ASGITransport(app=app, client=("203.0.113.9", 4000))
        async with httpx.AsyncClient(transport=elsewhere, base_url="http://testserver") as other:
            await post(other, REPORT, {"id": account_id})

        assert (await me(client, token))["restrictedAt"] is not None

    async def test_profile_changes_and_messages_without_values_or_codes(
        self, client, database
    ) -> None:
        token, _ = await a_person(client)
        await gql(
            client,
            'mutation { updateProfile(input: {displayName: "Countess"}) { errors { code } } }',
            token=token,
        )
        await gql(
            client,
            """mutation($input: EmailChangeInput!) { requestEmailChange(input: $input) {
                 errors { code } } }""",
            {"input": {"newEmail": "new@example.com", "currentPassword": PASSWORD}},
            token=token,
        )

        account = await me(client, token)
        assert [c["field"] for c in account["profileChanges"]] == ["display_name"]
        assert account["profileChanges"][0]["byStaff"] is False
        assert "Countess" not in json.dumps(account)
        kinds = [m["kind"] for m in account["messages"]]
        assert "EMAIL_CONFIRMATION" in kinds
        async with database.session() as session:
            secrets = (await session.scalars(select(Notification.secret))).all()
        assert secrets and all(secret and secret not in json.dumps(account) for secret in secrets)

    async def test_staff_who_read_the_account_show_by_role_and_reason(
        self, client, database
    ) -> None:
        token, _ = await a_person(client)
        support = await staff_token(client, database, Role.SUPPORT, "sam@example.com")
        body = await gql(
            client, STAFF_READ, {"email": "ada@example.com", "reason": REASON}, token=support
        )
        assert "errors" not in body, body

        [access] = (await me(client, token))["staffAccess"]
        assert access["role"] == "SUPPORT"
        assert access["reason"] == REASON
        assert access["occurredAt"]
        async with database.session() as session:
            staff_id = (
                await session.scalars(select(Account.id).where(Account.email == "sam@example.com"))
            ).one()
        seen = json.dumps(access)
        assert str(staff_id) not in seen and "sam@example.com" not in seen

    @pytest.mark.parametrize("first", [0, 101])
    async def test_lists_are_capped(self, client, first: int) -> None:
        token, _ = await a_person(client)
        for field in ("profileChanges", "messages", "staffAccess"):
            body = await gql(
                client, f"{{ me {{ {field}(first: {first}) {{ __typename }} }} }}", token=token
            )
            assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", body


class TestExport:
    async def test_the_export_holds_all_of_it(self, app, client, database) -> None:
        token, account_id = await a_person(client)
        await gql(
            client,
            'mutation { updateProfile(input: {displayName: "Countess"}) { errors { code } } }',
            token=token,
        )
        await gql(
            client,
            """mutation($input: EmailChangeInput!) { requestEmailChange(input: $input) {
                 errors { code } } }""",
            {"input": {"newEmail": "new@example.com", "currentPassword": PASSWORD}},
            token=token,
        )
        await post(client, REPORT, {"id": account_id})
        elsewhere = httpx.ASGITransport(app=app, client=("203.0.113.9", 4000))
        async with httpx.AsyncClient(transport=elsewhere, base_url="http://testserver") as other:
            await post(other, REPORT, {"id": account_id})
        support = await staff_token(client, database, Role.SUPPORT, "sam@example.com")
        await gql(client, STAFF_READ, {"email": "ada@example.com", "reason": REASON}, token=support)

        document = await download(client, token)

        assert document["version"] == "1.4"
        assert document["profile"]["restricted_at"] is not None
        assert document["profile"]["policy_accepted_at"] is not None
        assert [c["field"] for c in document["profile_changes"]] == ["display_name"]
        [message] = [m for m in document["messages"] if m["kind"] == "email_confirmation"]
        async with database.session() as session:
            secrets = (await session.scalars(select(Notification.secret))).all()
        text = json.dumps(document)
        assert all(secret not in text for secret in secrets if secret)
        assert message["subject"]
        [access] = document["staff_access"]
        assert access["role"] == "support" and access["reason"] == REASON
        assert "sam@example.com" not in text
        # The reports about the person are listed, without the reporter's words.
        reports = [r for r in document["privacy_requests"] if r["kind"] == "child_report"]
        assert reports and all(not r["made_by_you"] and r["details"] is None for r in reports)
        assert "In year 5" not in text

    async def test_the_export_holds_the_persons_own_words_and_staffs_answer(
        self, client, database
    ) -> None:
        token, _ = await a_person(client)
        officer = await staff_token(client, database, Role.PRIVACY_OFFICER, "olga@example.com")
        complaint = await gql(
            client,
            """mutation($input: PrivacyRequestInput!) { fileComplaint(input: $input) {
                 request { id } errors { code } } }""",
            {"input": {"subject": "Newsletter", "details": "I got mail after opting out"}},
            token=token,
        )
        request_id = complaint["data"]["fileComplaint"]["request"]["id"]
        answer = {
            "id": request_id,
            "status": "COMPLETED",
            "resolution": "Removed.",
            "reason": REASON,
        }
        body = await gql(
            client,
            """mutation($input: ProcessRequestInput!) { processPrivacyRequest(input: $input) {
                 errors { code } } }""",
            {"input": answer},
            token=officer,
        )
        assert body["data"]["processPrivacyRequest"]["errors"] == [], body

        document = await download(client, token)

        [mine] = [r for r in document["privacy_requests"] if r["kind"] == "complaint"]
        assert mine["made_by_you"] is True
        assert (mine["subject"], mine["details"], mine["resolution"]) == (
            "Newsletter",
            "I got mail after opting out",
            "Removed.",
        )
        assert (mine["extended_months"], mine["extension_reason"]) == (0, None)
        assert {a["role"] for a in document["staff_access"]} == {"privacy_officer"}
