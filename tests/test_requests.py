"""Complaints, reports of a child's account, and what privacy officers do with them."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import func, select

from models import AuditEntry, PrivacyRequest, RequestKind, Role
from resolvers.requests import add_months
from tests.helpers import birth_date_for_age, count_statements, gql, signed_up, staff_token

COMPLAIN = """
mutation Complain($input: PrivacyRequestInput!) {
  fileComplaint(input: $input) {
    request { id kind status createdAt dueAt subject }
    errors { field code }
  }
}
"""
REPORT = """
mutation Report($input: ChildReportInput!) {
  reportChildAccount(input: $input) { request { id kind status dueAt } errors { field code } }
}
"""
REQUESTS = """
query Requests($reason: String!, $kind: RequestKind, $first: Int! = 50) {
  privacyRequests(reason: $reason, kind: $kind, first: $first) {
    id kind status contactEmail
    account { id email displayName visibility { profile } }
  }
}
"""
REVIEW = """
mutation Review($input: ChildReportReviewInput!) {
  reviewChildReport(input: $input) { request { status resolution } errors { field code } }
}
"""
PROCESS = """
mutation Process($input: ProcessRequestInput!) {
  processPrivacyRequest(input: $input) { request { status resolution handledAt } errors { code } }
}
"""
PROFILE = "query($id: ID!) { publicProfile(id: $id) { displayName } }"
MY_ID = "{ me { id } }"
PUBLIC = "mutation { updateVisibility(input: {profile: PUBLIC}) { errors { code } } }"
REASON = "Weekly review of open requests"


@pytest.fixture
async def officer(client, database) -> str:
    return await staff_token(client, database, Role.PRIVACY_OFFICER, "officer@example.com")


@pytest.fixture
async def support(client, database) -> str:
    return await staff_token(client, database, Role.SUPPORT, "support@example.com")


async def public_account(client, email: str = "kid@example.com", age: int = 40) -> tuple[str, str]:
    token = await signed_up(
        client, email=email, displayName="Reported Person", birthDate=birth_date_for_age(age)
    )
    await gql(client, PUBLIC, token=token)
    account_id = (await gql(client, MY_ID, token=token))["data"]["me"]["id"]
    client.cookies.clear()  # from here on the client is a stranger; the token is the person
    return token, account_id


class TestFileComplaint:
    async def test_needs_sign_in(self, client) -> None:
        body = await gql(client, COMPLAIN, {"input": {"subject": "s", "details": "d"}})
        assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"

    async def test_empty_text_is_refused(self, client) -> None:
        token = await signed_up(client)
        body = await gql(client, COMPLAIN, {"input": {"subject": " ", "details": ""}}, token=token)
        errors = body["data"]["fileComplaint"]["errors"]
        assert {(e["field"], e["code"]) for e in errors} == {
            ("subject", "INVALID_INPUT"),
            ("details", "INVALID_INPUT"),
        }

    async def test_is_recorded_with_a_due_date_a_month_out(self, client) -> None:
        token = await signed_up(client)
        variables = {"input": {"subject": "Newsletter", "details": "I got mail after opting out"}}

        body = await gql(client, COMPLAIN, variables, token=token)

        request = body["data"]["fileComplaint"]["request"]
        assert request["kind"] == "COMPLAINT" and request["status"] == "OPEN"
        from datetime import datetime

        created = datetime.fromisoformat(request["createdAt"])
        due = datetime.fromisoformat(request["dueAt"])
        assert due == add_months(created, 1)
        mine = await gql(client, "{ me { privacyRequests { kind subject } } }", token=token)
        assert mine["data"]["me"]["privacyRequests"] == [
            {"kind": "COMPLAINT", "subject": "Newsletter"}
        ]

    async def test_a_person_cannot_see_who_handles_it(self, client) -> None:
        token = await signed_up(client)
        variables = {"input": {"subject": "S", "details": "D"}}
        await gql(client, COMPLAIN, variables, token=token)
        body = await gql(client, "{ me { privacyRequests { account { id } } } }", token=token)
        assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"


@pytest.mark.parametrize(
    ("mutation", "kind"),
    [("fileComplaint", RequestKind.COMPLAINT), ("requestCorrection", RequestKind.CORRECTION)],
)
async def test_ten_requests_an_hour_per_account(client, database, mutation, kind) -> None:
    file = f"""
    mutation File($input: PrivacyRequestInput!) {{
      {mutation}(input: $input) {{ request {{ id }} errors {{ field code message }} }}
    }}
    """
    token = await signed_up(client)
    other = await signed_up(client, email="bob@example.com")
    variables = {"input": {"subject": "Again", "details": "Please look at this"}}

    answers = [
        (await gql(client, file, variables, token=token))["data"][mutation] for _ in range(11)
    ]

    assert all(a["request"] and a["errors"] == [] for a in answers[:10])
    assert answers[10]["request"] is None
    [error] = answers[10]["errors"]
    assert error["code"] == "RATE_LIMITED" and "hour" in error["message"]
    async with database.session() as session:
        stored = await session.scalar(
            select(func.count()).select_from(PrivacyRequest).where(PrivacyRequest.kind == kind)
        )
    assert stored == 10
    # The limit is the person's, not everyone's.
    assert (await gql(client, file, variables, token=other))["data"][mutation]["errors"] == []


class TestRequestCorrection:
    CORRECT = """
    mutation Correct($input: PrivacyRequestInput!) {
      requestCorrection(input: $input) { request { kind status } errors { field code } }
    }
    """

    async def test_needs_sign_in(self, client) -> None:
        body = await gql(client, self.CORRECT, {"input": {"subject": "s", "details": "d"}})
        assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"

    async def test_asks_staff_to_fix_what_the_person_cannot(self, client) -> None:
        token = await signed_up(client)
        variables = {"input": {"subject": "Date of birth", "details": "It is 1990-12-01."}}
        body = await gql(client, self.CORRECT, variables, token=token)
        assert body["data"]["requestCorrection"]["request"] == {
            "kind": "CORRECTION",
            "status": "OPEN",
        }


class TestReportChildAccount:
    async def test_unknown_account(self, client) -> None:
        variables = {
            "input": {"accountId": "00000000-0000-0000-0000-000000000001", "details": "Young"}
        }
        body = await gql(client, REPORT, variables)
        assert body["data"]["reportChildAccount"]["errors"][0]["code"] == "NOT_FOUND"

    async def test_bad_contact_email(self, client) -> None:
        _, account_id = await public_account(client)
        variables = {"input": {"accountId": account_id, "details": "x", "contactEmail": "nope"}}
        body = await gql(client, REPORT, variables)
        errors = body["data"]["reportChildAccount"]["errors"]
        assert errors == [{"field": "contactEmail", "code": "INVALID_EMAIL"}]
        assert (await gql(client, PROFILE, {"id": account_id}))["data"]["publicProfile"]

    async def test_needs_no_login_and_hides_a_teen_profile(self, client, database) -> None:
        # A child under 13 who lied at sign-up most likely gave an age just above it.
        token, account_id = await public_account(client, age=14)
        assert (await gql(client, PROFILE, {"id": account_id}))["data"]["publicProfile"]
        variables = {
            "input": {
                "accountId": account_id,
                "details": "Says they are in year 5 at school",
                "contactEmail": "Parent@Example.com",
            }
        }

        body = await gql(client, REPORT, variables)

        assert body["data"]["reportChildAccount"]["request"]["kind"] == "CHILD_REPORT"
        assert (await gql(client, PROFILE, {"id": account_id}))["data"]["publicProfile"] is None
        # The person still sees their own profile.
        own = await gql(client, PROFILE, {"id": account_id}, token=token)
        assert own["data"]["publicProfile"]["displayName"] == "Reported Person"
        async with database.session() as session:
            stored = (await session.scalars(select(PrivacyRequest))).one()
        assert stored.contact_email == "parent@example.com"
        assert stored.requested_by is None

    async def test_one_report_about_an_adult_does_not_hide_but_reaches_officers(
        self, client, database, officer
    ) -> None:
        _, account_id = await public_account(client, age=40)
        variables = {"input": {"accountId": account_id, "details": "Seems young"}}

        first = await gql(client, REPORT, variables)
        again = await gql(client, REPORT, variables)  # the same client twice is one reporter

        assert first["data"]["reportChildAccount"]["request"]["kind"] == "CHILD_REPORT"
        assert again["data"]["reportChildAccount"]["errors"] == []
        profile = await gql(client, PROFILE, {"id": account_id})
        assert profile["data"]["publicProfile"] == {"displayName": "Reported Person"}
        listed = await gql(
            client, REQUESTS, {"reason": REASON, "kind": "CHILD_REPORT"}, token=officer
        )
        reports = listed["data"]["privacyRequests"]
        assert len(reports) == 2 and {r["account"]["id"] for r in reports} == {account_id}
        async with database.session() as session:
            stored = list(await session.scalars(select(PrivacyRequest)))
        assert all(r.requested_by is None for r in stored)

    async def test_reports_from_two_clients_hide_an_adult_profile(self, client, app) -> None:
        _, account_id = await public_account(client, age=40)
        variables = {"input": {"accountId": account_id, "details": "Seems young"}}
        await gql(client, REPORT, variables)
        transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 40000))  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as other:
            body = await gql(other, REPORT, variables)

        assert body["data"]["reportChildAccount"]["errors"] == []
        assert (await gql(client, PROFILE, {"id": account_id}))["data"]["publicProfile"] is None

    async def test_is_rate_limited(self, client) -> None:
        _, account_id = await public_account(client)
        variables = {"input": {"accountId": account_id, "details": "again"}}
        answers = [
            (await gql(client, REPORT, variables))["data"]["reportChildAccount"]["errors"]
            for _ in range(6)
        ]
        assert answers[:5] == [[]] * 5
        assert answers[5][0]["code"] == "RATE_LIMITED"


class TestReviewChildReport:
    async def report(self, client) -> tuple[str, str, str]:
        token, account_id = await public_account(client)
        body = await gql(client, REPORT, {"input": {"accountId": account_id, "details": "young"}})
        return token, account_id, body["data"]["reportChildAccount"]["request"]["id"]

    def review(self, request_id: str, decision: str) -> dict:
        return {"input": {"requestId": request_id, "decision": decision, "reason": REASON}}

    async def test_needs_a_privacy_officer(self, client, support) -> None:
        _, _, request_id = await self.report(client)
        anonymous = await gql(client, REVIEW, self.review(request_id, "CLEAR"))
        as_support = await gql(client, REVIEW, self.review(request_id, "CLEAR"), token=support)
        assert anonymous["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
        assert as_support["errors"][0]["extensions"]["code"] == "FORBIDDEN"

    async def test_unknown_request(self, client, officer) -> None:
        variables = self.review("00000000-0000-0000-0000-000000000001", "CLEAR")
        body = await gql(client, REVIEW, variables, token=officer)
        assert body["data"]["reviewChildReport"]["errors"][0]["code"] == "NOT_FOUND"

    async def test_a_reason_is_required(self, client, officer) -> None:
        _, _, request_id = await self.report(client)
        variables = {"input": {"requestId": request_id, "decision": "CLEAR", "reason": " "}}
        body = await gql(client, REVIEW, variables, token=officer)
        assert body["data"]["reviewChildReport"]["errors"] == [
            {"field": "reason", "code": "INVALID_INPUT"}
        ]

    async def test_clearing_shows_the_profile_again(self, client, officer, database) -> None:
        _, account_id, request_id = await self.report(client)

        body = await gql(client, REVIEW, self.review(request_id, "CLEAR"), token=officer)

        assert body["data"]["reviewChildReport"]["request"]["status"] == "COMPLETED"
        assert (await gql(client, PROFILE, {"id": account_id}))["data"]["publicProfile"]
        again = await gql(client, REVIEW, self.review(request_id, "CLEAR"), token=officer)
        assert again["data"]["reviewChildReport"]["errors"][0]["code"] == "INVALID_INPUT"
        async with database.session() as session:
            actions = list(await session.scalars(select(AuditEntry.action)))
        assert "child_report.clear" in actions

    async def test_deleting_signs_out_and_schedules_erasure_now(self, client, officer) -> None:
        token, account_id, request_id = await self.report(client)

        body = await gql(client, REVIEW, self.review(request_id, "DELETE"), token=officer)

        assert body["data"]["reviewChildReport"]["request"]["status"] == "COMPLETED"
        assert (await gql(client, MY_ID, token=token))["data"]["me"] is None
        assert (await gql(client, PROFILE, {"id": account_id}))["data"]["publicProfile"] is None


class TestPrivacyRequests:
    async def test_needs_a_privacy_officer(self, client, support) -> None:
        user = await signed_up(client)
        client.cookies.clear()
        for token, code in ((None, "UNAUTHENTICATED"), (user, "FORBIDDEN"), (support, "FORBIDDEN")):
            body = await gql(client, REQUESTS, {"reason": REASON}, token=token)
            assert body["errors"][0]["extensions"]["code"] == code
            assert body["data"] is None

    async def test_a_reason_is_required(self, client, officer) -> None:
        body = await gql(client, REQUESTS, {"reason": ""}, token=officer)
        assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"

    async def test_lists_and_audits_each_account_read(self, client, officer, database) -> None:
        _, account_id = await public_account(client)
        await gql(client, REPORT, {"input": {"accountId": account_id, "details": "d"}})

        body = await gql(
            client, REQUESTS, {"reason": REASON, "kind": "CHILD_REPORT"}, token=officer
        )

        [request] = body["data"]["privacyRequests"]
        assert request["account"]["id"] == account_id
        assert request["account"]["visibility"]["profile"] == "PUBLIC"
        async with database.session() as session:
            entry = (
                await session.scalars(
                    select(AuditEntry).where(AuditEntry.action == "requests.read")
                )
            ).one()
        assert str(entry.account_id) == account_id and entry.reason == REASON

    async def test_three_and_a_hundred_rows_cost_the_same_statements(
        self, client, officer, database, app
    ) -> None:
        from models import Account
        from resolvers.requests import open_request

        async def add_requests(count: int) -> None:
            async with database.session() as session:
                accounts = [
                    Account(
                        email=f"person{n}-{count}@example.com",
                        password_hash="x",
                        display_name=f"Person {n}",
                        role=Role.USER,
                    )
                    for n in range(count)
                ]
                session.add_all(accounts)
                await session.flush()
                for account in accounts:
                    open_request(
                        session,
                        kind=RequestKind.CORRECTION,
                        account_id=account.id,
                        requested_by=account.id,
                    )
                await session.commit()

        engine = app.state.services.database.engine
        await add_requests(3)
        with count_statements(engine) as three:
            body = await gql(client, REQUESTS, {"reason": REASON}, token=officer)
        assert len(body["data"]["privacyRequests"]) == 3
        await add_requests(97)
        with count_statements(engine) as hundred:
            body = await gql(client, REQUESTS, {"reason": REASON, "first": 100}, token=officer)
        assert len(body["data"]["privacyRequests"]) == 100
        assert all(
            r["account"]["visibility"]["profile"] == "PRIVATE"
            for r in body["data"]["privacyRequests"]
        )

        assert len(hundred) == len(three), hundred
        async with database.session() as session:
            audited = await session.scalar(
                select(func.count())
                .select_from(AuditEntry)
                .where(AuditEntry.action == "requests.read")
            )
        assert audited == 103


class TestProcessPrivacyRequest:
    async def test_closes_a_complaint_with_a_resolution(self, client, officer) -> None:
        token = await signed_up(client)
        complaint = await gql(
            client, COMPLAIN, {"input": {"subject": "S", "details": "D"}}, token=token
        )
        request_id = complaint["data"]["fileComplaint"]["request"]["id"]
        variables = {
            "input": {
                "id": request_id,
                "status": "COMPLETED",
                "resolution": "We removed you from the list.",
                "reason": REASON,
            }
        }

        body = await gql(client, PROCESS, variables, token=officer)

        closed = body["data"]["processPrivacyRequest"]["request"]
        assert closed["status"] == "COMPLETED" and closed["handledAt"]
        mine = await gql(client, "{ me { privacyRequests { status resolution } } }", token=token)
        assert mine["data"]["me"]["privacyRequests"] == [
            {"status": "COMPLETED", "resolution": "We removed you from the list."}
        ]

    async def test_cannot_reopen_to_open(self, client, officer) -> None:
        token = await signed_up(client)
        complaint = await gql(
            client, COMPLAIN, {"input": {"subject": "S", "details": "D"}}, token=token
        )
        request_id = complaint["data"]["fileComplaint"]["request"]["id"]
        variables = {
            "input": {"id": request_id, "status": "OPEN", "resolution": "", "reason": REASON}
        }
        body = await gql(client, PROCESS, variables, token=officer)
        assert body["data"]["processPrivacyRequest"]["errors"][0]["code"] == "INVALID_INPUT"
