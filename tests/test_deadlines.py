"""Deadlines of privacy requests (GDPR Art. 12(3)): one calendar month from receipt, extended by
up to two more months with a reason told to the person, and the queue of what is due."""

from __future__ import annotations

import calendar
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select, update

from auth.actor import Actor
from auth.rate_limits import RateLimiter
from models import (
    AuditEntry,
    Notification,
    NotificationKind,
    PrivacyRequest,
    RequestKind,
    RequestStatus,
    Role,
    utcnow,
)
from resolvers.requests import add_months, file_request
from tests.helpers import gql, signed_up, staff_token

MY_REQUESTS = "{ me { id privacyRequests { id dueAt extendedMonths extensionReason } } }"
EXTEND = """
mutation Extend($input: ExtendRequestInput!) {
  extendPrivacyRequest(input: $input) {
    request { id dueAt extendedMonths extensionReason }
    errors { field code }
  }
}
"""
QUEUE = """
query Queue($reason: String!, $overdue: Boolean, $dueWithinDays: Int) {
  privacyRequests(reason: $reason, overdue: $overdue, dueWithinDays: $dueWithinDays) { id }
  privacyRequestsConnection(reason: $reason, overdue: $overdue, dueWithinDays: $dueWithinDays) {
    edges { node { id } }
  }
}
"""
PROCESS = """
mutation Process($input: ProcessRequestInput!) {
  processPrivacyRequest(input: $input) { request { status } errors { code } }
}
"""
REASON = "Weekly review of open requests"
DELAY = "We need records from the archive, which takes longer"


@pytest.fixture
async def officer(client, database) -> str:
    return await staff_token(client, database, Role.PRIVACY_OFFICER, "officer@example.com")


async def file_at(database, token_account: str, now: datetime) -> uuid.UUID:
    """A complaint the person files at `now`, through the use case the mutation calls."""
    actor = Actor(account_id=uuid.UUID(token_account), session_id=uuid.uuid4(), role=Role.USER)
    prepared = await file_request(
        RateLimiter("memory://"),
        actor,
        kind=RequestKind.COMPLAINT,
        subject="Newsletter",
        details="I got mail after opting out",
        now=now,
    )
    async with database.transaction() as session:
        request = await prepared.write(session)
        return request.id


async def person(client) -> tuple[str, str]:
    token = await signed_up(client)
    me = await gql(client, "{ me { id } }", token=token)
    return token, me["data"]["me"]["id"]


async def messages(database, kind: NotificationKind) -> list[Notification]:
    async with database.session() as session:
        return list(await session.scalars(select(Notification).where(Notification.kind == kind)))


class TestOneMonth:
    @pytest.mark.parametrize(
        ("filed", "due"),
        [
            (datetime(2027, 1, 31, 9, 30, tzinfo=UTC), datetime(2027, 2, 28, 9, 30, tzinfo=UTC)),
            (datetime(2028, 1, 31, 9, 30, tzinfo=UTC), datetime(2028, 2, 29, 9, 30, tzinfo=UTC)),
            (datetime(2027, 3, 31, 0, 0, tzinfo=UTC), datetime(2027, 4, 30, 0, 0, tzinfo=UTC)),
            (datetime(2027, 12, 15, 8, 0, tzinfo=UTC), datetime(2028, 1, 15, 8, 0, tzinfo=UTC)),
        ],
    )
    def test_the_same_day_next_month_or_its_last_day(self, filed, due) -> None:
        assert add_months(filed, 1) == due

    @given(
        st.datetimes(
            min_value=datetime(2000, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
        ),
        st.integers(min_value=0, max_value=3),
    )
    def test_month_arithmetic(self, moment: datetime, months: int) -> None:
        later = add_months(moment, months)
        assert (later.year * 12 + later.month) - (moment.year * 12 + moment.month) == months
        last_day = calendar.monthrange(later.year, later.month)[1]
        assert later.day == min(moment.day, last_day)
        assert later.timetz() == moment.timetz()
        assert later - moment <= timedelta(days=31 * months)
        # A later filing is never due earlier.
        assert add_months(moment + timedelta(days=1), months) >= later

    async def test_a_request_of_31_january_is_due_28_february(self, client, database) -> None:
        token, account_id = await person(client)
        await file_at(database, account_id, datetime(2027, 1, 31, 9, 30, tzinfo=UTC))
        await file_at(database, account_id, datetime(2028, 1, 31, 9, 30, tzinfo=UTC))

        body = await gql(client, MY_REQUESTS, token=token)

        dues = sorted(
            datetime.fromisoformat(r["dueAt"]) for r in body["data"]["me"]["privacyRequests"]
        )
        assert [(d.year, d.month, d.day) for d in dues] == [(2027, 2, 28), (2028, 2, 29)]

    async def test_a_complaint_filed_now_is_due_in_one_calendar_month(self, client) -> None:
        token = await signed_up(client)
        filed = await gql(
            client,
            'mutation { fileComplaint(input: {subject: "S", details: "D"}) '
            "{ request { createdAt dueAt } } }",
            token=token,
        )
        request = filed["data"]["fileComplaint"]["request"]
        created = datetime.fromisoformat(request["createdAt"])
        due = datetime.fromisoformat(request["dueAt"])
        assert due == add_months(created, 1)


class TestExtendPrivacyRequest:
    async def filed(self, client, database) -> tuple[str, str]:
        """A person's complaint, received on a 31 January, still open and not yet overdue."""
        token, account_id = await person(client)
        request_id = await file_at(database, account_id, datetime(2027, 1, 31, 9, 30, tzinfo=UTC))
        async with database.transaction() as session:
            # Moved to a 31 January still to come, so that it is not overdue yet.
            await session.execute(
                update(PrivacyRequest)
                .where(PrivacyRequest.id == request_id)
                .values(
                    created_at=datetime(2099, 1, 31, 9, 30, tzinfo=UTC),
                    due_at=datetime(2099, 2, 28, 9, 30, tzinfo=UTC),
                )
            )
        return token, str(request_id)

    def extend(self, request_id: str, months: int, reason: str = DELAY) -> dict:
        return {"input": {"id": request_id, "months": months, "reason": reason}}

    async def test_needs_a_privacy_officer(self, client, database) -> None:
        token, request_id = await self.filed(client, database)
        support = await staff_token(client, database, Role.SUPPORT, "support@example.com")
        for caller, code in (
            (None, "UNAUTHENTICATED"),
            (token, "FORBIDDEN"),
            (support, "FORBIDDEN"),
        ):
            body = await gql(client, EXTEND, self.extend(request_id, 1), token=caller)
            assert body["errors"][0]["extensions"]["code"] == code

    async def test_unknown_request(self, client, officer) -> None:
        variables = self.extend("00000000-0000-0000-0000-000000000001", 1)
        body = await gql(client, EXTEND, variables, token=officer)
        assert body["data"]["extendPrivacyRequest"]["errors"] == [
            {"field": "id", "code": "NOT_FOUND"}
        ]

    @pytest.mark.parametrize(("months", "reason"), [(0, DELAY), (3, DELAY), (1, " ")])
    async def test_bad_input_changes_nothing(
        self, client, database, officer, months, reason
    ) -> None:
        token, request_id = await self.filed(client, database)
        before = await gql(client, MY_REQUESTS, token=token)

        body = await gql(client, EXTEND, self.extend(request_id, months, reason), token=officer)

        [error] = body["data"]["extendPrivacyRequest"]["errors"]
        assert error["code"] == "INVALID_INPUT"
        assert await gql(client, MY_REQUESTS, token=token) == before
        assert await messages(database, NotificationKind.REQUEST_EXTENDED) == []

    async def test_moves_the_due_date_by_the_months_asked_at_most_two_in_all(
        self, client, database, officer
    ) -> None:
        token, request_id = await self.filed(client, database)

        first = await gql(client, EXTEND, self.extend(request_id, 1), token=officer)
        second = await gql(client, EXTEND, self.extend(request_id, 1), token=officer)
        third = await gql(client, EXTEND, self.extend(request_id, 1), token=officer)

        extended = first["data"]["extendPrivacyRequest"]["request"]
        assert extended["extendedMonths"] == 1 and extended["extensionReason"] == DELAY
        # Counted from the day it was received: 31 January, one month and one more: 31 March.
        assert datetime.fromisoformat(extended["dueAt"]).date().isoformat() == "2099-03-31"
        again = second["data"]["extendPrivacyRequest"]["request"]
        assert datetime.fromisoformat(again["dueAt"]).date().isoformat() == "2099-04-30"
        assert again["extendedMonths"] == 2
        [refused] = third["data"]["extendPrivacyRequest"]["errors"]
        assert refused["code"] == "INVALID_INPUT"
        mine = (await gql(client, MY_REQUESTS, token=token))["data"]["me"]["privacyRequests"]
        assert mine == [again]
        async with database.session() as session:
            entries = list(
                await session.scalars(
                    select(AuditEntry).where(AuditEntry.action == "request.extend")
                )
            )
        assert len(entries) == 2 and all(e.reason == DELAY for e in entries)
        told = await messages(database, NotificationKind.REQUEST_EXTENDED)
        assert len(told) == 2
        assert all(DELAY in m.body for m in told)
        assert "30 April 2099" in told[-1].body or "30 April 2099" in told[0].body
        assert {m.recipient for m in told} == {"ada@example.com"}

    async def test_two_months_at_once_then_no_more(self, client, database, officer) -> None:
        _, request_id = await self.filed(client, database)
        body = await gql(client, EXTEND, self.extend(request_id, 2), token=officer)
        assert body["data"]["extendPrivacyRequest"]["request"]["extendedMonths"] == 2
        more = await gql(client, EXTEND, self.extend(request_id, 1), token=officer)
        assert more["data"]["extendPrivacyRequest"]["errors"][0]["code"] == "INVALID_INPUT"

    async def test_an_overdue_or_closed_request_cannot_be_extended(
        self, client, database, officer
    ) -> None:
        _, request_id = await self.filed(client, database)
        async with database.transaction() as session:
            await session.execute(
                update(PrivacyRequest)
                .where(PrivacyRequest.id == uuid.UUID(request_id))
                .values(due_at=utcnow() - timedelta(hours=1))
            )
        late = await gql(client, EXTEND, self.extend(request_id, 1), token=officer)
        assert late["data"]["extendPrivacyRequest"]["errors"][0]["code"] == "INVALID_INPUT"
        close = {"id": request_id, "status": "REJECTED", "resolution": "No.", "reason": REASON}
        await gql(client, PROCESS, {"input": close}, token=officer)
        closed = await gql(client, EXTEND, self.extend(request_id, 1), token=officer)
        assert closed["data"]["extendPrivacyRequest"]["errors"][0]["code"] == "INVALID_INPUT"


class TestQueueFilters:
    async def requests_due(self, client, database) -> dict[str, uuid.UUID]:
        """Open requests due at different times, and a closed one past its date."""
        _, account_id = await person(client)
        now = utcnow()
        due = {
            "overdue": now - timedelta(days=2),
            "in 3 days": now + timedelta(days=3),
            "in 10 days": now + timedelta(days=10),
            "closed": now - timedelta(days=5),
        }
        ids = {name: await file_at(database, account_id, now) for name in due}
        async with database.transaction() as session:
            for name, at in due.items():
                await session.execute(
                    update(PrivacyRequest)
                    .where(PrivacyRequest.id == ids[name])
                    .values(
                        due_at=at,
                        status=RequestStatus.COMPLETED if name == "closed" else RequestStatus.OPEN,
                    )
                )
        return ids

    async def listed(self, client, officer, **filters) -> set[uuid.UUID]:
        body = await gql(client, QUEUE, {"reason": REASON, **filters}, token=officer)
        listed = [uuid.UUID(r["id"]) for r in body["data"]["privacyRequests"]]
        paged = [
            uuid.UUID(e["node"]["id"]) for e in body["data"]["privacyRequestsConnection"]["edges"]
        ]
        assert listed == paged
        return set(listed)

    async def test_overdue_and_due_within(self, client, database, officer) -> None:
        ids = await self.requests_due(client, database)

        assert await self.listed(client, officer, overdue=True) == {ids["overdue"]}
        assert await self.listed(client, officer, dueWithinDays=7) == {
            ids["overdue"],
            ids["in 3 days"],
        }
        assert await self.listed(client, officer, dueWithinDays=7, overdue=False) == {
            ids["in 3 days"]
        }
        assert await self.listed(client, officer, overdue=False) == {
            ids["in 3 days"],
            ids["in 10 days"],
        }
        assert await self.listed(client, officer) == set(ids.values())

    async def test_a_negative_number_of_days_is_refused(self, client, officer) -> None:
        body = await gql(client, QUEUE, {"reason": REASON, "dueWithinDays": -1}, token=officer)
        assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
        assert body["data"] is None


class TestAnswerIsTold:
    @pytest.mark.parametrize("status", ["COMPLETED", "REJECTED"])
    async def test_closing_a_request_queues_a_message_to_the_person(
        self, client, database, officer, status
    ) -> None:
        _, account_id = await person(client)
        request_id = await file_at(database, account_id, utcnow())
        resolution = "We removed you from the newsletter list."
        variables = {
            "input": {
                "id": str(request_id),
                "status": status,
                "resolution": resolution,
                "reason": REASON,
            }
        }

        body = await gql(client, PROCESS, variables, token=officer)

        assert body["data"]["processPrivacyRequest"]["request"]["status"] == status
        [message] = await messages(database, NotificationKind.REQUEST_ANSWERED)
        assert str(message.account_id) == account_id
        assert message.recipient == "ada@example.com"
        assert resolution in message.body
        assert ("rejected" in message.body.lower()) == (status == "REJECTED")
